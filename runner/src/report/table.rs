//! The summary printed at the end of a run: every matrix cell with its verdict and key numbers,
//! then one line of totals. Plain text (no colours, fixed width) so it reads the same in a
//! terminal and in a CI log.

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{ContentArrangement, Table};

use super::junit::format_number;
use super::{CellReport, CellVerdict, Totals};

/// Numbers shown first when a cell has many (the ones the design note promises something
/// about), matched as parts of the metric names.
const KEY_NUMBERS: [&str; 7] = [
    "reconnect",
    "failover",
    "recovery",
    "retries",
    "election_ms",
    "lost",
    "acked_writes",
];
const TABLE_WIDTH: u16 = 150;

pub fn render(cells: &[CellReport]) -> String {
    let mut table = Table::new();
    table
        .load_style(ASCII_MARKDOWN)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(TABLE_WIDTH)
        .set_header(["Cell", "Matrix", "Result", "Scenario", "Key numbers", "Why"]);
    for c in cells {
        table.add_row([
            format!("{} {}", c.cell.row_id(), c.cell.service_label()),
            c.status.to_string(),
            result_label(c),
            c.scenario.clone().unwrap_or_else(|| "-".into()),
            key_numbers(c),
            shorten(&c.verdict.explanation(), 70),
        ]);
    }
    table.to_string()
}

fn result_label(c: &CellReport) -> String {
    match &c.verdict {
        CellVerdict::Flaky { passed, runs, .. } => format!("FLAKY {passed}/{runs}"),
        v if c.runs.len() > 1 && *v == CellVerdict::Passed => format!("pass x{}", c.runs.len()),
        v => v.label().to_owned(),
    }
}

/// The key numbers of a cell, medians when there are several runs, ms rounded.
fn key_numbers(c: &CellReport) -> String {
    let numbers = c.median_numbers();
    // Second measurements of a name (`x@step9`) and zero retry counts stay in the JUnit and
    // summary.md; the table keeps the few numbers a reader looks for.
    let mut keys: Vec<&String> = numbers
        .iter()
        .filter(|(k, v)| {
            let repeated = k.contains('@');
            let no_retries = k.ends_with("retries") && **v == 0.0;
            !(repeated || no_retries)
        })
        .map(|(k, _)| k)
        .collect();
    keys.sort_by_key(|k| {
        let rank = KEY_NUMBERS
            .iter()
            .position(|p| k.contains(p))
            .unwrap_or(KEY_NUMBERS.len());
        (rank, (*k).clone())
    });
    let shown: Vec<String> = keys
        .iter()
        .take(4)
        .map(|k| format!("{k}={}", format_number(numbers[*k])))
        .collect();
    let mut text = shown.join(" ");
    if c.runs.len() > 1 && !text.is_empty() {
        text.push_str(&format!(" (median of {})", c.runs.len()));
    }
    text
}

fn shorten(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(max - 3).collect();
        format!("{cut}...")
    }
}

/// One closing line, e.g. `4 passed, 0 failed, 0 flaky, 0 errors; 2 skipped, 4 gaps, 3 pending`.
pub fn totals_line(cells: &[CellReport]) -> String {
    let t = Totals::of(cells);
    let mut line = format!(
        "{} passed, {} failed, {} flaky, {} errors; {} skipped, {} gaps",
        t.passed, t.failed, t.flaky, t.errored, t.skipped, t.gaps
    );
    if t.pending > 0 {
        line.push_str(&format!(", {} pending (TEST cells NOT tested)", t.pending));
    }
    if t.not_selected > 0 {
        line.push_str(&format!(", {} not selected", t.not_selected));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{CellStatus, Origin};
    use crate::report::RunVerdict;
    use crate::report::tests::summary;

    fn cell(id: &str, verdict: CellVerdict, runs: usize) -> CellReport {
        CellReport {
            cell: id.parse().unwrap(),
            row_title: "t".into(),
            status: CellStatus::Test,
            origin: Origin::Note,
            scenario: Some("s".into()),
            verdict,
            runs: (1..=runs as u32)
                .map(|i| summary(i, RunVerdict::Passed, 100.0 * f64::from(i)))
                .collect(),
        }
    }

    #[test]
    fn table_lists_every_cell_with_result_and_numbers() {
        let cells = vec![
            cell("S1/chainfire", CellVerdict::Passed, 3),
            cell(
                "S3/chainfire",
                CellVerdict::Flaky {
                    passed: 1,
                    runs: 2,
                    failures: vec!["run 2: lost write".into()],
                },
                2,
            ),
            cell(
                "S2/flaredb",
                CellVerdict::Pending {
                    reason: "flaredb scenarios not yet implemented".into(),
                },
                0,
            ),
        ];
        let out = render(&cells);
        assert!(out.contains("S1 ChainFire"), "{out}");
        assert!(out.contains("pass x3"), "{out}");
        assert!(out.contains("reconnect_ms=200 (median of 3)"), "{out}");
        assert!(out.contains("FLAKY 1/2"), "{out}");
        assert!(out.contains("pending"), "{out}");
        let totals = totals_line(&cells);
        assert_eq!(
            totals,
            "1 passed, 0 failed, 1 flaky, 0 errors; 0 skipped, 0 gaps, 1 pending (TEST cells NOT tested)"
        );
    }
}
