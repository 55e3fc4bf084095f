//! The run index at the evidence root: `index.html` (and the same as `summary.md`), every matrix
//! cell with its verdict, key numbers, the whole "why" and links to each run's timeline, summary,
//! history, node logs and the JUnit report, so a person starts from one page.
//!
//! Both files carry a marker line: a file of the same name the runner did not write is never
//! overwritten (the evidence folder is the runner's, but a person's file in it is theirs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::CellReport;
use super::table::{key_numbers, needs_attention, result_label};
use super::timeline::TIMELINE_FILE;

pub const INDEX_FILE: &str = "index.html";
pub const INDEX_SUMMARY_FILE: &str = "summary.md";
/// The first line of both files: what makes them the runner's to overwrite.
const MARKER: &str = "<!-- reconnect-runner run index -->";

/// `path` as a link from `root`: relative when it is below it.
fn link(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => path.display().to_string(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The evidence links of one run folder.
fn run_links(root: &Path, dir: &Path) -> Vec<(&'static str, String)> {
    let file = |name: &str| link(root, &dir.join(name));
    vec![
        ("timeline", file(TIMELINE_FILE)),
        ("summary", file("summary.md")),
        ("history", file("history.jsonl")),
        ("node logs", file("nodes")),
    ]
}

fn verdict_class(c: &CellReport) -> &'static str {
    if needs_attention(c) {
        "bad"
    } else {
        c.verdict.verdict.outcome.as_str()
    }
}

/// The page.
pub fn html(cells: &[CellReport], root: &Path, junit: &Path, totals: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"{MARKER}<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>reconnect-tests: run index</title><style>
body {{ font-family: sans-serif; margin: 16px; color: #222; }} h1 {{ font-size: 18px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ddd; padding: 4px 8px; font-size: 13px; vertical-align: top; text-align: left; }}
td.bad {{ color: #d73a49; font-weight: bold; }} td.passed {{ color: #2ea043; }} td.skipped, td.observed, td.not_run {{ color: #777; }}
.why {{ max-width: 640px; white-space: pre-wrap; }} a {{ margin-right: 8px; }}
</style></head><body><h1>reconnect-tests: run index</h1><p id="totals">{}</p><p><a href="{}">JUnit report</a></p>
<table id="cells"><tr><th>cell</th><th>matrix</th><th>verdict</th><th>scenario</th><th>key numbers</th><th>why</th><th>evidence</th></tr>"#,
        esc(totals),
        esc(&link(root, junit))
    );
    for c in cells {
        let mut evidence = String::new();
        for r in &c.runs {
            if c.runs.len() > 1 {
                let _ = write!(evidence, "run {}: ", r.run);
            }
            for (label, href) in run_links(root, &r.evidence_dir) {
                let _ = write!(evidence, r#"<a href="{}">{label}</a>"#, esc(&href));
            }
            evidence.push_str("<br>");
        }
        let _ = write!(
            h,
            r#"<tr class="cell"><td>{} {}</td><td>{}</td><td class="{}">{}</td><td>{}</td><td>{}</td><td class="why">{}</td><td>{evidence}</td></tr>"#,
            esc(&c.cell.row_id()),
            esc(&c.cell.service_label()),
            c.status,
            verdict_class(c),
            esc(&result_label(c)),
            esc(c.scenario.as_deref().unwrap_or("-")),
            esc(&key_numbers(c)),
            esc(&c.verdict.explanation())
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

/// The same as markdown.
pub fn markdown(cells: &[CellReport], root: &Path, junit: &Path, totals: &str) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', "<br>");
    let mut md = format!(
        "{MARKER}\n# reconnect-tests: run index\n\n{totals}\n\n[JUnit report]({})\n\n\
         | Cell | Matrix | Verdict | Scenario | Key numbers | Why | Evidence |\n\
         |---|---|---|---|---|---|---|\n",
        link(root, junit)
    );
    for c in cells {
        let evidence: Vec<String> = c
            .runs
            .iter()
            .flat_map(|r| run_links(root, &r.evidence_dir))
            .map(|(label, href)| format!("[{label}]({href})"))
            .collect();
        let _ = writeln!(
            md,
            "| {} {} | {} | {} | {} | {} | {} | {} |",
            c.cell.row_id(),
            c.cell.service_label(),
            c.status,
            result_label(c),
            c.scenario.as_deref().unwrap_or("-"),
            cell(&key_numbers(c)),
            cell(&c.verdict.explanation()),
            evidence.join(" ")
        );
    }
    md
}

/// Writes both into `root`, skipping (and naming) a file of that name the runner did not write.
pub fn write(
    cells: &[CellReport],
    root: &Path,
    junit: &Path,
    totals: &str,
) -> Result<Vec<PathBuf>, String> {
    let files = [
        (root.join(INDEX_FILE), html(cells, root, junit, totals)),
        (
            root.join(INDEX_SUMMARY_FILE),
            markdown(cells, root, junit, totals),
        ),
    ];
    for (path, _) in &files {
        if let Ok(old) = std::fs::read(path)
            && !old.starts_with(MARKER.as_bytes())
        {
            return Err(format!(
                "{} is not the runner's run index, so it is left as it is (and no index is written)",
                path.display()
            ));
        }
    }
    let mut written = Vec::new();
    for (path, text) in files {
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{CellStatus, Origin};
    use crate::report::tests::summary;
    use crate::report::{Basis, CellVerdict};
    use crate::verdict::Verdict;

    fn cells(root: &Path) -> Vec<CellReport> {
        let mut run = summary(1, Verdict::fail("lost write of <k>"), 100.0);
        run.evidence_dir = root.join("s1-x");
        vec![CellReport {
            cell: "S1/chainfire".parse().unwrap(),
            row_title: "t".into(),
            status: CellStatus::Test,
            origin: Origin::Note,
            scenario: Some("s1-x".into()),
            verdict: CellVerdict {
                verdict: Verdict::fail("lost write of <k>"),
                basis: Basis::Runs,
            },
            runs: vec![run],
        }]
    }

    #[test]
    fn the_index_links_every_cell_to_its_evidence_relative_to_the_root() {
        let root = Path::new("/r/results");
        let page = html(
            &cells(root),
            root,
            &root.join("junit.xml"),
            "0 passed, 1 failed",
        );
        assert!(page.starts_with(MARKER));
        assert_eq!(page.matches(r#"<tr class="cell">"#).count(), 1);
        assert!(
            page.contains(r#"<a href="s1-x/timeline.html">timeline</a>"#),
            "{page}"
        );
        assert!(
            page.contains(r#"<a href="junit.xml">JUnit report</a>"#),
            "{page}"
        );
        assert!(page.contains(r#"<td class="bad">FAIL</td>"#), "{page}");
        assert!(page.contains("lost write of &lt;k&gt;"), "{page}");
        let md = markdown(&cells(root), root, Path::new("/elsewhere/j.xml"), "t");
        assert!(md.contains("[timeline](s1-x/timeline.html)"), "{md}");
        assert!(md.contains("[JUnit report](/elsewhere/j.xml)"), "{md}");
    }

    #[test]
    fn a_file_of_the_same_name_the_runner_did_not_write_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let c = cells(root);
        let written = write(&c, root, &root.join("junit.xml"), "t").unwrap();
        assert_eq!(written.len(), 2);
        // Its own files it overwrites.
        write(&c, root, &root.join("junit.xml"), "t").unwrap();
        std::fs::write(root.join(INDEX_FILE), "my notes").unwrap();
        let err = write(&c, root, &root.join("junit.xml"), "t").unwrap_err();
        assert!(err.contains("not the runner's run index"), "{err}");
        assert_eq!(
            std::fs::read_to_string(root.join(INDEX_FILE)).unwrap(),
            "my notes"
        );
    }
}
