//! The summary printed at the end of a run: every matrix cell with its verdict and key numbers,
//! then every cell that did not pass again in full (what was expected, what happened, where the
//! evidence is), as nextest repeats its failures, then one line of totals. Plain text, as wide
//! as the terminal (`COLUMNS`, else the terminal's width, else 150 columns in a log), so it
//! reads the same in a terminal and in a CI log; the table shortens, the full list never does.

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{ContentArrangement, Table};

use super::junit::format_number;
use super::{Basis, CellReport, CellVerdict, Totals};
use crate::verdict::Outcome;

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
/// The width when neither `COLUMNS` nor a terminal says (a CI log).
const LOG_WIDTH: u16 = 150;
/// Narrower than this, the table is not worth reading; it is drawn this wide.
const MIN_WIDTH: u16 = 60;

/// The width to print at: `COLUMNS`, else the terminal on stdout, else [`LOG_WIDTH`].
pub fn output_width() -> u16 {
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok());
    let terminal = || terminal_size::terminal_size().map(|(w, _)| w.0);
    columns
        .or_else(terminal)
        .unwrap_or(LOG_WIDTH)
        .max(MIN_WIDTH)
}

/// The table, `width` columns wide at most.
pub fn render(cells: &[CellReport], width: u16) -> String {
    let mut table = Table::new();
    table
        .load_style(ASCII_MARKDOWN)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width)
        .set_header(["Cell", "Matrix", "Result", "Scenario", "Key numbers", "Why"]);
    // The why column gets what is left; the full text follows the table (see `failures`).
    let why = usize::from(width.saturating_sub(100)).max(30);
    for c in cells {
        table.add_row([
            format!("{} {}", c.cell.row_id(), c.cell.service_label()),
            c.status.to_string(),
            result_label(c),
            c.scenario.clone().unwrap_or_else(|| "-".into()),
            key_numbers(c),
            shorten(&c.verdict.explanation(), why),
        ]);
    }
    table.to_string()
}

/// Whether a cell is one a reader must look at: failed, flaky, errored, or a TEST cell that
/// did not run or has no scenario.
pub(crate) fn needs_attention(c: &CellReport) -> bool {
    !matches!(
        c.verdict.verdict.outcome,
        Outcome::Pass | Outcome::Skip | Outcome::Observed
    ) || matches!(c.verdict.basis, Basis::Flaky { .. })
}

/// Every cell that needs attention, in full: its verdict, the whole message (every flaky run's
/// failure too) and where each run's evidence is. Empty when every cell passed.
pub fn failures(cells: &[CellReport]) -> String {
    let mut out = String::new();
    for c in cells.iter().filter(|c| needs_attention(c)) {
        let header = format!(
            "--- {}: {} {} ({})",
            result_label(c),
            c.cell.row_id(),
            c.cell.service_label(),
            c.scenario.as_deref().unwrap_or("no scenario")
        );
        out.push_str(&format!("\n{}\n", super::colour::failure_header(&header)));
        for line in c.verdict.explanation().lines() {
            out.push_str(&format!("    {line}\n"));
        }
        if let Basis::Flaky { failures, .. } = &c.verdict.basis {
            for f in failures {
                out.push_str(&format!("    {f}\n"));
            }
        }
        for r in &c.runs {
            out.push_str(&format!(
                "    evidence (run {}, {}): {}\n",
                r.run,
                r.verdict.outcome.as_str(),
                r.evidence_dir.display()
            ));
        }
    }
    out
}

pub(crate) fn result_label(c: &CellReport) -> String {
    match &c.verdict.basis {
        Basis::Flaky { passed, runs, .. } => format!("FLAKY {passed}/{runs}"),
        _ if c.runs.len() > 1 && c.verdict == CellVerdict::passed() => {
            format!("pass x{}", c.runs.len())
        }
        _ => c.verdict.label().to_owned(),
    }
}

/// The key numbers of a cell, medians when there are several runs, ms rounded.
pub(crate) fn key_numbers(c: &CellReport) -> String {
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
    use crate::report::tests::summary;
    use crate::verdict::Verdict;

    fn cell(id: &str, verdict: CellVerdict, runs: usize) -> CellReport {
        CellReport {
            cell: id.parse().unwrap(),
            row_title: "t".into(),
            status: CellStatus::Test,
            origin: Origin::Note,
            scenario: Some("s".into()),
            verdict,
            runs: (1..=runs as u32)
                .map(|i| summary(i, Verdict::pass(""), 100.0 * f64::from(i)))
                .collect(),
        }
    }

    #[test]
    fn table_lists_every_cell_with_result_and_numbers() {
        let cells = vec![
            cell("S1/chainfire", CellVerdict::passed(), 3),
            cell(
                "S3/chainfire",
                CellVerdict::flaky(1, 2, vec!["run 2: lost write".into()]),
                2,
            ),
            cell(
                "S2/flaredb",
                CellVerdict::pending("flaredb scenarios not yet implemented"),
                0,
            ),
        ];
        let out = render(&cells, 150);
        assert!(out.contains("S1 ChainFire"), "{out}");
        assert!(out.contains("pass x3"), "{out}");
        assert!(out.contains("reconnect_ms=200 (median of 3)"), "{out}");
        assert!(out.contains("FLAKY 1/2"), "{out}");
        assert!(out.contains("pending"), "{out}");
        // Each line of the table fits the width asked for.
        for width in [80, 100, 150] {
            let narrow = render(&cells, width);
            assert!(
                narrow
                    .lines()
                    .all(|l| l.chars().count() <= usize::from(width)),
                "{width}:\n{narrow}"
            );
        }
        let totals = totals_line(&cells);
        assert_eq!(
            totals,
            "1 passed, 0 failed, 1 flaky, 0 errors; 0 skipped, 0 gaps, 1 pending (TEST cells NOT tested)"
        );
    }

    #[test]
    fn every_cell_that_did_not_pass_is_repeated_in_full_after_the_table() {
        let why = format!(
            "step 24 (check_peer_backoff): {} the cause at the end",
            "x".repeat(300)
        );
        let mut failed = cell("S1/chainfire", CellVerdict::passed(), 1);
        failed.verdict = CellVerdict {
            verdict: Verdict::fail(why.clone()),
            basis: Basis::Runs,
        };
        let cells = vec![
            failed,
            cell("S4/chainfire", CellVerdict::passed(), 1),
            cell(
                "S3/chainfire",
                CellVerdict::flaky(1, 2, vec!["run 2: lost write of s3/k".into()]),
                2,
            ),
        ];
        // The table cuts the message; the list after it does not.
        assert!(!render(&cells, 100).contains("the cause at the end"));
        let full = failures(&cells);
        assert!(full.contains(&why), "{full}");
        assert!(full.contains("--- FAIL: S1 ChainFire (s)"), "{full}");
        assert!(full.contains("--- FLAKY 1/2: S3 ChainFire"), "{full}");
        assert!(full.contains("run 2: lost write of s3/k"), "{full}");
        assert!(full.contains("evidence (run 1, passed): "), "{full}");
        assert!(
            !full.contains("S4"),
            "a passed cell is not repeated: {full}"
        );
        assert_eq!(failures(&cells[1..2]), "");
    }
}
