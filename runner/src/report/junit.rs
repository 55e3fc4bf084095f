//! The JUnit XML report, written with quick-junit: one testsuite per design-note scenario (row),
//! one testcase per matrix cell (classname = the covering scenario's id, name = the service).
//!
//! - failures and errors carry "expected ... ; happened ..." messages; under `--repeat`, later
//!   failing runs are `rerunFailure`s. A flaky cell (passed in some runs) is, by default, a
//!   `failure` with a `rerunFailure` per failed run, so no JUnit reader counts it as passed;
//!   with `--flaky-is-pass` it is a passed testcase with a `flakyFailure` per failed run, the
//!   shape Surefire and nextest give a test that failed and then passed;
//! - each testcase's time is the cell's own share of its runs (see `report::cell_share_ms`), so
//!   a suite's times add up to what it took;
//! - SKIP, pending and not-selected cells are `skipped` with their reason; DOC-GAP cells are
//!   `skipped` with type `DOC-GAP`, the gap, the observed behaviour and the recommendation;
//! - recovery numbers are testsuite properties named `<cell>.<metric>` (Jenkins' JUnit XSD allows
//!   properties on testsuites only) and are repeated, per run, in the testcase's system-out
//!   together with the evidence folder.
//!
//! The output is validated against Jenkins' xUnit schema in the tests; the only thing
//! quick-junit writes that the schema rejects (a `skipped` count on the root `testsuites`) is
//! removed with quick-xml before the file is written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use quick_junit::{
    FlakyOrRerun, NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};
use quick_xml::events::{BytesStart, Event};

use super::{Basis, CellReport};
use crate::matrix::CellStatus;
use crate::verdict::Outcome;

/// Facts about the whole run, recorded as properties of every testsuite.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub seed: u64,
    pub repeat: u32,
    pub network: String,
    pub evidence_root: String,
    pub duration: Duration,
    /// Each server binary that ran: service, "PATH (VERSION)".
    pub binaries: Vec<(String, String)>,
}

/// The report of a run that could not start (exit 2): one testcase in error saying why, so a
/// CI's JUnit publisher shows the reason instead of "no report".
pub fn not_run_report(reason: &str) -> Report {
    let mut report = Report::new("reconnect-tests");
    let mut suite = TestSuite::new("reconnect-runner");
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status.set_message("nothing ran: the run was refused before any scenario started");
    status.set_description(reason);
    suite.add_test_case(TestCase::new("the run could start", status));
    report.add_test_suite(suite);
    report
}

/// Whether a report can be written at `path` (its folder made if needed), checked before the
/// run rather than after it: a probe file is written next to it and removed.
pub fn check_writable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!(
            "--junit {} is a folder; give a file name",
            path.display()
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".reconnect-junit-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| format!("cannot write the JUnit report in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Builds the report for every cell (cells must be in matrix order).
pub fn build_report(cells: &[CellReport], facts: &RunFacts) -> Report {
    let mut report = Report::new("reconnect-tests");
    report.set_time(facts.duration);
    let mut rows: BTreeMap<u32, Vec<&CellReport>> = BTreeMap::new();
    for c in cells {
        rows.entry(c.cell.row).or_default().push(c);
    }
    for (row, cells) in rows {
        let title = cells
            .first()
            .map(|c| c.row_title.as_str())
            .unwrap_or_default();
        let mut suite = TestSuite::new(format!("S{row} {title}"));
        suite.add_properties([
            Property::new("seed", facts.seed.to_string()),
            Property::new("repeat", facts.repeat.to_string()),
            Property::new("network", facts.network.clone()),
            Property::new("evidence", facts.evidence_root.clone()),
        ]);
        for (service, binary) in &facts.binaries {
            suite.add_property(Property::new(format!("binary.{service}"), binary.clone()));
        }
        let mut time = Duration::ZERO;
        for c in &cells {
            for (metric, value) in c.median_numbers() {
                suite.add_property(Property::new(
                    format!("{}.{metric}", c.cell),
                    format_number(value),
                ));
            }
            for (i, r) in c.runs.iter().enumerate() {
                let name = if c.runs.len() == 1 {
                    format!("{}.evidence", c.cell)
                } else {
                    format!("{}.evidence.run{}", c.cell, i + 1)
                };
                suite.add_property(Property::new(name, r.evidence_dir.display().to_string()));
            }
            let case = test_case(c);
            time += case.time.unwrap_or_default();
            suite.add_test_case(case);
        }
        suite.set_time(time);
        report.add_test_suite(suite);
    }
    report
}

fn test_case(c: &CellReport) -> TestCase {
    let message = &c.verdict.verdict.message;
    let mut status = match (&c.verdict.basis, c.verdict.outcome()) {
        (Basis::Flaky { .. }, Outcome::Pass) => {
            let mut s = TestCaseStatus::success();
            s.add_reruns(c.runs.iter().filter_map(rerun));
            s
        }
        (Basis::Flaky { .. }, _) => {
            let mut s = non_success(NonSuccessKind::Failure, &c.verdict.explanation(), "flaky");
            s.set_rerun_kind(FlakyOrRerun::Rerun);
            s.add_reruns(c.runs.iter().filter_map(rerun));
            s
        }
        (Basis::Missing, _) => non_success(
            NonSuccessKind::Error,
            &c.verdict.explanation(),
            "missing-scenario",
        ),
        (Basis::Pending, _) => skipped(&c.verdict.explanation(), "PENDING", None),
        (Basis::NotSelected, _) => skipped(&c.verdict.explanation(), "NOT-SELECTED", None),
        (
            Basis::Gap {
                gap,
                recommendation,
            },
            _,
        ) => skipped(
            &format!("DOC-GAP: {gap}"),
            "DOC-GAP",
            Some(format!(
                "Gap: {gap}\nObserved: {message}\nRecommendation: {recommendation}"
            )),
        ),
        (Basis::Runs, Outcome::Pass) => TestCaseStatus::success(),
        (Basis::Runs, Outcome::Fail) => {
            let mut s = non_success(NonSuccessKind::Failure, message, "expectation");
            s.add_reruns(c.runs.iter().skip(1).filter_map(rerun));
            s
        }
        (Basis::Runs, Outcome::Error) => {
            let mut s = non_success(NonSuccessKind::Error, message, "error");
            s.add_reruns(c.runs.iter().skip(1).filter_map(rerun));
            s
        }
        (Basis::Runs, Outcome::NotRun) => non_success(NonSuccessKind::Error, message, "not-run"),
        (Basis::Runs, Outcome::Skip) => skipped(message, "SKIP", None),
        // Observations come with the gap they document; one without is still no verdict.
        (Basis::Runs, Outcome::Observed) => skipped(message, "DOC-GAP", None),
    };
    if c.status == CellStatus::DocGap
        && let TestCaseStatus::Skipped { ty, .. } = &mut status
    {
        *ty = Some("DOC-GAP".into());
    }
    let mut case = TestCase::new(c.cell.service_label(), status);
    case.set_classname(c.classname());
    let time: f64 = c.runs.iter().map(|r| r.duration_ms).sum();
    case.set_time(Duration::from_secs_f64(time.max(0.0) / 1000.0));
    case.set_system_out(system_out(c));
    case
}

fn non_success(kind: NonSuccessKind, message: &str, ty: &str) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(kind);
    s.set_message(first_line(message));
    s.set_type(ty);
    s.set_description(message);
    s
}

fn skipped(message: &str, ty: &str, description: Option<String>) -> TestCaseStatus {
    let mut s = TestCaseStatus::skipped();
    s.set_message(first_line(message));
    s.set_type(ty);
    if let Some(d) = description {
        s.set_description(d);
    }
    s
}

/// A failing or erroring run as a rerun element (the schema requires its `type`).
fn rerun(r: &super::CellRunSummary) -> Option<TestRerun> {
    let kind = match r.verdict.outcome {
        Outcome::Fail => NonSuccessKind::Failure,
        Outcome::Error => NonSuccessKind::Error,
        _ => return None,
    };
    let message = &r.verdict.message;
    let mut rerun = TestRerun::new(kind);
    rerun.set_message(format!("run {}: {}", r.run, first_line(message)));
    rerun.set_type(match kind {
        NonSuccessKind::Failure => "expectation",
        NonSuccessKind::Error => "error",
    });
    // No `time` on reruns: Jenkins' schema does not allow it there.
    rerun.set_system_out(format!("{message}\nevidence: {}", r.evidence_dir.display()));
    Some(rerun)
}

fn system_out(c: &CellReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "cell: {} ({})", c.cell, c.status);
    let _ = writeln!(out, "verdict: {}", c.verdict.label());
    match &c.scenario {
        Some(id) => {
            let _ = writeln!(out, "scenario: {id}");
        }
        None => {
            let _ = writeln!(out, "scenario: none");
        }
    }
    let explanation = c.verdict.explanation();
    if !explanation.is_empty() {
        let _ = writeln!(out, "why: {explanation}");
    }
    for r in &c.runs {
        let numbers: Vec<String> = r
            .verdict
            .numbers
            .iter()
            .map(|(k, v)| format!("{k}={}", format_number(*v)))
            .collect();
        let _ = writeln!(
            out,
            "run {}: {} in {:.1} s; evidence: {}{}",
            r.run,
            r.verdict.outcome.as_str(),
            r.duration_ms / 1000.0,
            r.evidence_dir.display(),
            if numbers.is_empty() {
                String::new()
            } else {
                format!("; {}", numbers.join(" "))
            }
        );
        let _ = writeln!(
            out,
            "  timeline: {}",
            r.evidence_dir
                .join(super::timeline::TIMELINE_FILE)
                .display()
        );
    }
    // Parsers trim the text's end; keep what is written equal to what is read back.
    out.trim_end().to_owned()
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

/// Whole numbers without decimals, others with one.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Serializes the report and makes it conform to Jenkins' JUnit XSD.
pub fn to_xml(report: &Report) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    report
        .serialize(&mut raw)
        .map_err(|e| format!("cannot serialize the JUnit report: {e}"))?;
    conform_to_xsd(&raw)
}

/// Writes the report to `path`, creating its folder.
pub fn write(report: &Report, path: &Path) -> Result<(), String> {
    let xml = to_xml(report)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, xml).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Re-emits the XML event by event, dropping the `skipped` attribute of the root `testsuites`
/// element: Jenkins' schema does not declare it (the per-testsuite counts it does declare stay).
fn conform_to_xsd(xml: &[u8]) -> Result<Vec<u8>, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(xml.len()));
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("cannot re-read the JUnit XML: {e}"))?;
        let event = match event {
            Event::Eof => break,
            Event::Start(e) if e.name().as_ref() == b"testsuites" => {
                Event::Start(without_attribute(&e, b"skipped")?)
            }
            Event::Empty(e) if e.name().as_ref() == b"testsuites" => {
                Event::Empty(without_attribute(&e, b"skipped")?)
            }
            other => other,
        };
        writer
            .write_event(event)
            .map_err(|e| format!("cannot write the JUnit XML: {e}"))?;
        buf.clear();
    }
    Ok(writer.into_inner())
}

fn without_attribute(e: &BytesStart<'_>, drop: &[u8]) -> Result<BytesStart<'static>, String> {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let mut out = BytesStart::new(name);
    for attr in e.attributes() {
        let attr = attr.map_err(|err| format!("bad attribute in the JUnit XML: {err}"))?;
        if attr.key.as_ref() != drop {
            out.push_attribute(attr);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::matrix::Origin;
    use crate::report::CellVerdict;
    use crate::report::tests::summary;
    use crate::verdict::Verdict;

    fn cell(
        id: &str,
        status: CellStatus,
        verdict: CellVerdict,
        runs: Vec<super::super::CellRunSummary>,
    ) -> CellReport {
        CellReport {
            cell: id.parse().unwrap(),
            row_title: "Raft Recovery".into(),
            status,
            origin: Origin::Note,
            scenario: Some("s1-chainfire-raft-recovery".into()),
            verdict,
            runs,
        }
    }

    fn sample() -> Vec<CellReport> {
        vec![
            cell(
                "S1/chainfire",
                CellStatus::Test,
                CellVerdict::failed(
                    "step 5 (get): expected ok within 20000 ms; happened: error after 3 retries",
                ),
                vec![summary(
                    1,
                    Verdict::fail("step 5 (get): expected ok"),
                    812.0,
                )],
            ),
            cell(
                "S3/chainfire",
                CellStatus::Test,
                CellVerdict::flaky(1, 2, vec!["run 2: lost write k3".into()]),
                vec![
                    summary(1, Verdict::pass(""), 400.0),
                    summary(2, Verdict::fail("lost write k3"), 600.0),
                ],
            ),
            cell(
                "S4/chainfire",
                CellStatus::Test,
                CellVerdict::passed(),
                vec![summary(1, Verdict::pass(""), 90.0)],
            ),
            cell(
                "S3/iam",
                CellStatus::Skip,
                CellVerdict::skipped("IAM is not part of this environment"),
                vec![],
            ),
            cell(
                "S5/chainfire",
                CellStatus::DocGap,
                CellVerdict::gap(
                    "watch streams break".into(),
                    "add an auto-reconnect wrapper".into(),
                    "stream ended 12 ms after kill -9".into(),
                ),
                vec![],
            ),
            cell(
                "S2/flaredb",
                CellStatus::Test,
                CellVerdict::pending("flaredb scenarios not yet implemented"),
                vec![],
            ),
            cell(
                "S4/flaredb",
                CellStatus::Test,
                CellVerdict::missing(),
                vec![],
            ),
        ]
    }

    fn facts() -> RunFacts {
        RunFacts {
            seed: 42,
            repeat: 2,
            network: "private network namespace".into(),
            evidence_root: "reconnect-results".into(),
            duration: Duration::from_secs(3),
            binaries: vec![(
                "chainfire".into(),
                "/nix/store/x/bin/chainfire (chainfire 0.1.0)".into(),
            )],
        }
    }

    fn xml() -> String {
        String::from_utf8(to_xml(&build_report(&sample(), &facts())).unwrap()).unwrap()
    }

    #[test]
    fn written_report_parses_back_to_the_same_cases() {
        let original = build_report(&sample(), &facts());
        let parsed = Report::deserialize_from_str(&xml()).unwrap();
        assert_eq!(parsed.test_suites, original.test_suites);
        assert_eq!(
            (parsed.tests, parsed.failures, parsed.errors),
            (original.tests, original.failures, original.errors)
        );
    }

    #[test]
    fn every_cell_is_a_testcase_with_scenario_classname_and_service_name() {
        let parsed = Report::deserialize_from_str(&xml()).unwrap();
        let cases: Vec<(String, String)> = parsed
            .test_suites
            .iter()
            .flat_map(|s| &s.test_cases)
            .map(|c| {
                (
                    c.classname.as_ref().unwrap().as_str().to_owned(),
                    c.name.as_str().to_owned(),
                )
            })
            .collect();
        assert_eq!(cases.len(), sample().len());
        assert!(cases.contains(&("s1-chainfire-raft-recovery".into(), "ChainFire".into())));
        assert!(cases.contains(&("s1-chainfire-raft-recovery".into(), "IAM".into())));
    }

    #[test]
    fn verdicts_map_to_the_right_junit_elements() {
        let parsed = Report::deserialize_from_str(&xml()).unwrap();
        let find = |row: &str, name: &str| {
            parsed
                .test_suites
                .iter()
                .find(|s| s.name.as_str().starts_with(row))
                .and_then(|s| s.test_cases.iter().find(|c| c.name.as_str() == name))
                .unwrap()
                .clone()
        };
        match find("S1", "ChainFire").status {
            TestCaseStatus::NonSuccess { kind, message, .. } => {
                assert_eq!(kind, NonSuccessKind::Failure);
                assert!(
                    message
                        .unwrap()
                        .as_str()
                        .contains("expected ok within 20000 ms")
                );
            }
            other => panic!("S1 should fail: {other:?}"),
        }
        match find("S3", "ChainFire").status {
            TestCaseStatus::NonSuccess { kind, reruns, .. } => {
                assert_eq!(kind, NonSuccessKind::Failure, "flaky is not passed");
                // rerunFailure, which every JUnit reader shows as failed.
                assert_eq!(reruns.kind, FlakyOrRerun::Rerun);
                assert_eq!(reruns.runs.len(), 1);
            }
            other => panic!("S3 should be flaky: {other:?}"),
        }
        // With --flaky-is-pass: passed, the failed run a flakyFailure (Surefire, nextest).
        let mut cells = sample();
        crate::report::flaky_is_pass(&mut cells);
        let xml = String::from_utf8(to_xml(&build_report(&cells, &facts())).unwrap()).unwrap();
        assert!(xml.contains("<flakyFailure"), "{xml}");
        assert!(!xml.contains("<rerunFailure message=\"run 2"), "{xml}");
        let flaky = Report::deserialize_from_str(&xml).unwrap();
        let s3 = flaky
            .test_suites
            .iter()
            .find(|s| s.name.as_str().starts_with("S3"))
            .and_then(|s| s.test_cases.iter().find(|c| c.name.as_str() == "ChainFire"))
            .unwrap();
        match &s3.status {
            TestCaseStatus::Success { flaky_runs } => assert_eq!(flaky_runs.len(), 1),
            other => panic!("S3 should pass as flaky: {other:?}"),
        }
        match find("S5", "ChainFire").status {
            TestCaseStatus::Skipped {
                ty, description, ..
            } => {
                assert_eq!(ty.unwrap().as_str(), "DOC-GAP");
                let d = description.unwrap();
                assert!(
                    d.as_str()
                        .contains("Observed: stream ended 12 ms after kill -9")
                );
                assert!(
                    d.as_str()
                        .contains("Recommendation: add an auto-reconnect wrapper")
                );
            }
            other => panic!("S5 should be a gap: {other:?}"),
        }
        match find("S2", "FlareDB").status {
            TestCaseStatus::Skipped { ty, message, .. } => {
                assert_eq!(ty.unwrap().as_str(), "PENDING");
                assert!(message.unwrap().as_str().contains("not yet implemented"));
            }
            other => panic!("S2 should be pending: {other:?}"),
        }
        assert!(matches!(
            find("S4", "FlareDB").status,
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Error,
                ..
            }
        ));
        assert!(matches!(
            find("S4", "ChainFire").status,
            TestCaseStatus::Success { .. }
        ));
    }

    #[test]
    fn numbers_and_evidence_are_testsuite_properties_and_in_system_out() {
        let parsed = Report::deserialize_from_str(&xml()).unwrap();
        let s3 = parsed
            .test_suites
            .iter()
            .find(|s| s.name.as_str().starts_with("S3"))
            .unwrap();
        let prop = |n: &str| {
            s3.properties
                .iter()
                .find(|p| p.name.as_str() == n)
                .map(|p| p.value.as_str().to_owned())
        };
        assert_eq!(
            prop("S3/chainfire.reconnect_ms").as_deref(),
            Some("500"),
            "median of 400, 600"
        );
        assert_eq!(
            prop("S3/chainfire.evidence.run2").as_deref(),
            Some("reconnect-results/s1/run-2")
        );
        assert_eq!(prop("seed").as_deref(), Some("42"));
        let case = s3
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == "ChainFire")
            .unwrap();
        let out = case.system_out.as_ref().unwrap().as_str();
        assert!(out.contains("run 2: failed"), "{out}");
        assert!(
            out.contains("timeline: reconnect-results/s1/run-2/timeline.html"),
            "{out}"
        );
        assert!(
            out.contains("evidence: reconnect-results/s1/run-2"),
            "{out}"
        );
    }

    #[test]
    fn output_validates_against_jenkins_junit_xsd() {
        let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/junit/junit-10.xsd");
        let Some(xmllint) = which("xmllint") else {
            eprintln!("xmllint not installed: XSD validation skipped");
            return;
        };
        if !xsd.exists() {
            eprintln!("{} not found: XSD validation skipped", xsd.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut flaky_passed = sample();
        crate::report::flaky_is_pass(&mut flaky_passed);
        for (name, report) in [
            ("junit.xml", build_report(&sample(), &facts())),
            ("flaky-is-pass.xml", build_report(&flaky_passed, &facts())),
            (
                "not-run.xml",
                not_run_report("error: s.yaml:3:1: unknown step `kil`"),
            ),
        ] {
            let path = dir.path().join(name);
            write(&report, &path).unwrap();
            let out = std::process::Command::new(&xmllint)
                .arg("--noout")
                .arg("--schema")
                .arg(&xsd)
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "xmllint rejected {name}:\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&path).unwrap()
            );
        }
    }

    #[test]
    fn a_refused_run_reports_one_error_saying_why_and_binaries_are_properties() {
        let xml = String::from_utf8(to_xml(&not_run_report("no chainfire binary found")).unwrap())
            .unwrap();
        assert!(xml.contains("errors=\"1\""), "{xml}");
        assert!(xml.contains("no chainfire binary found"), "{xml}");
        assert!(xml.contains("nothing ran"), "{xml}");
        let xml = self::xml();
        assert!(
            xml.contains(
                r#"name="binary.chainfire" value="/nix/store/x/bin/chainfire (chainfire 0.1.0)""#
            ),
            "{xml}"
        );
    }

    #[test]
    fn an_unwritable_report_path_is_found_before_the_run() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable(&dir.path().join("sub/junit.xml")).is_ok());
        let err = check_writable(dir.path()).unwrap_err();
        assert!(err.contains("is a folder"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = check_writable(&file.join("junit.xml")).unwrap_err();
        assert!(err.contains("cannot create"), "{err}");
    }

    #[test]
    fn raw_quick_junit_output_is_rejected_by_the_xsd_rule_we_fix() {
        // Guards the reason conform_to_xsd exists: if quick-junit stops writing the attribute,
        // this test says the workaround can go.
        let mut raw = Vec::new();
        build_report(&sample(), &facts())
            .serialize(&mut raw)
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let root = raw.lines().find(|l| l.contains("<testsuites")).unwrap();
        assert!(root.contains(" skipped=\""), "{root}");
        let fixed = xml();
        let root = fixed.lines().find(|l| l.contains("<testsuites")).unwrap();
        assert!(!root.contains(" skipped=\""), "{root}");
        assert!(root.contains(" failures=\""), "{root}");
    }

    pub fn which(name: &str) -> Option<PathBuf> {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    }
}
