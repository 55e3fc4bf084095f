//! Finding scenario files in the paths given on the command line and parsing them.
//!
//! Parsing uses serde-saphyr with its default budget (limits on nesting, aliases and size, so a
//! hostile file cannot exhaust memory) and `deny_unknown_fields` on every type, so a typo is an
//! error with its line and column rather than a silently ignored key.

use std::path::{Path, PathBuf};

use super::model::Scenario;
use super::problem::{Problem, Problems};

/// The matrix file's name; it lives among the scenarios but is not one.
pub const MATRIX_FILE_NAME: &str = "matrix.yaml";

/// A parsed scenario and the file it came from.
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    pub path: PathBuf,
    pub scenario: Scenario,
    /// Every duration a step gives (a number under a key `ms` or `*_ms`, at any depth), for
    /// `validate`'s range check: one list for every step kind, present and future.
    pub step_durations: Vec<StepDuration>,
    /// Every key a step names (`key`, `key_prefix`, at any depth), for the same reason.
    pub step_keys: Vec<StepKey>,
}

/// One key in a step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepKey {
    pub step: usize,
    pub path: String,
    pub key: String,
}

/// One duration in a step: the step's index, the key path inside it, the value.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDuration {
    pub step: usize,
    pub path: String,
    pub ms: u64,
}

/// The steps again, untyped, to find their durations.
#[derive(serde::Deserialize)]
struct UntypedSteps {
    #[serde(default)]
    steps: Vec<serde_json::Value>,
}

/// What `validate` range-checks in one step, found by key name at any depth.
#[derive(Default)]
struct Found {
    durations: Vec<StepDuration>,
    keys: Vec<StepKey>,
}

fn ranged_values_in(step: usize, path: &str, value: &serde_json::Value, out: &mut Found) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if (key == "ms" || key.ends_with("_ms"))
                    && let Some(ms) = v.as_u64()
                {
                    out.durations.push(StepDuration {
                        step,
                        path: here.clone(),
                        ms,
                    });
                }
                if (key == "key" || key == "key_prefix")
                    && let Some(text) = v.as_str()
                {
                    out.keys.push(StepKey {
                        step,
                        path: here.clone(),
                        key: text.to_owned(),
                    });
                }
                ranged_values_in(step, &here, v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                ranged_values_in(step, path, item, out);
            }
        }
        _ => {}
    }
}

/// The scenario files named by `paths`: files as given, folders searched (not recursively)
/// for `*.yaml` / `*.yml` other than the matrix. Sorted within each folder, so runs are
/// reproducible.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problems> {
    let mut files = Vec::new();
    let mut problems = Problems::default();
    for path in paths {
        if path.is_dir() {
            let entries = match std::fs::read_dir(path) {
                Ok(entries) => entries,
                Err(e) => {
                    problems.push(Problem::in_file(path, format!("cannot read folder: {e}")));
                    continue;
                }
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_scenario_file_name(p))
                .collect();
            found.sort();
            if found.is_empty() {
                problems.push(Problem::in_file(
                    path,
                    "no scenario files (*.yaml) in folder",
                ));
            }
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            problems.push(Problem::in_file(path, "no such file or folder"));
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(problems)
    }
}

fn is_scenario_file_name(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    (name.ends_with(".yaml") || name.ends_with(".yml")) && name != MATRIX_FILE_NAME
}

/// Parses one scenario file (syntax and types only; references are checked by `validate`).
pub fn parse_file(path: &Path) -> Result<ScenarioFile, Problem> {
    let bytes = std::fs::read(path)
        .map_err(|e| Problem::in_file(path, format!("cannot read scenario file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid_up_to = e.utf8_error().valid_up_to();
        super::problem::not_utf8(path, e.as_bytes(), valid_up_to)
    })?;
    parse_str(path, &text)
}

/// Parses scenario text; `path` is only used in error messages.
pub fn parse_str(path: &Path, text: &str) -> Result<ScenarioFile, Problem> {
    let scenario: Scenario =
        serde_saphyr::from_str(text).map_err(|e| Problem::from_yaml(path, &e))?;
    let untyped: UntypedSteps =
        serde_saphyr::from_str(text).map_err(|e| Problem::from_yaml(path, &e))?;
    let mut found = Found::default();
    for (i, step) in untyped.steps.iter().enumerate() {
        ranged_values_in(i, "", step, &mut found);
    }
    Ok(ScenarioFile {
        path: path.to_owned(),
        scenario,
        step_durations: found.durations,
        step_keys: found.keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::model::Step;

    const GOOD: &str = r#"
id: s1-example
title: Example
covers:
  - cell: S1/chainfire
    status: TEST
clusters:
  chainfire:
    nodes: 3
    config:
      election_timeout_ms: 1000
    overrides:
      2:
        retry: {max_retries: 5}
steps:
  - put: {key: a, value: "1", name: first}
  - block: {node: leader, as: old_leader}
  - get:
      key: a
      value: "1"
      expect: {outcome: either, within_ms: 20000, retries: {min: 1, max: 3}}
  - unblock: {node: $old_leader}
  - wait_for_leader: {within_ms: 10000}
  - check_reconnect: {from: first, until: first_ok, max_ms: 5000}
  - check_reconnect: {from: first, until: {log: seen}, max_ms: 5000}
  - check_no_lost_writes: {}
"#;

    fn parse(text: &str) -> Result<ScenarioFile, Problem> {
        parse_str(Path::new("scenarios/test.yaml"), text)
    }

    #[test]
    fn a_good_file_parses_into_typed_steps_with_positions() {
        let file = parse(GOOD).unwrap();
        let s = &file.scenario;
        assert_eq!(s.id, "s1-example");
        let cf = s.clusters.chainfire.as_ref().unwrap();
        assert_eq!(cf.nodes, 3);
        assert_eq!(cf.node_config(2).retry.unwrap().max_retries, Some(5));
        assert_eq!(cf.node_config(2).election_timeout_ms, Some(1000));
        assert_eq!(cf.node_config(1).retry, None);
        assert_eq!(s.steps.len(), 8);
        let kinds: Vec<_> = s.steps.iter().map(|st| st.value.kind()).collect();
        assert_eq!(
            kinds,
            [
                "put",
                "block",
                "get",
                "unblock",
                "wait_for_leader",
                "check_reconnect",
                "check_reconnect",
                "check_no_lost_writes"
            ]
        );
        // The steps keep their positions for later reference errors.
        assert_eq!(s.steps[0].referenced.line(), 16);
        assert_eq!(s.steps[1].referenced.line(), 17);
        let Step::Get(get) = &s.steps[2].value else {
            panic!("step 3 is a get")
        };
        assert_eq!(get.expect.retries.unwrap().to_string(), "1..=3");
        assert_eq!(s.steps[2].value.own_bound_ms(), Some(20_000));
    }

    #[test]
    fn an_unknown_step_kind_names_file_line_and_column() {
        let text = GOOD.replace(
            "  - unblock: {node: $old_leader}",
            "  - unblok: {node: $old_leader}",
        );
        let p = parse(&text).unwrap_err();
        assert_eq!(p.file, Path::new("scenarios/test.yaml"));
        assert_eq!((p.line, p.column), (Some(22), Some(5)), "{p}");
        assert!(p.message.contains("unblok"), "{p}");
        assert!(
            p.to_string().starts_with("scenarios/test.yaml:22:5: "),
            "{p}"
        );
    }

    #[test]
    fn an_unknown_field_names_file_line_and_column() {
        let text = GOOD.replace("election_timeout_ms: 1000", "election_timout_ms: 1000");
        let p = parse(&text).unwrap_err();
        assert_eq!((p.line, p.column), (Some(11), Some(7)), "{p}");
        assert!(p.message.contains("election_timout_ms"), "{p}");
    }

    #[test]
    fn an_unknown_field_inside_a_step_names_its_position() {
        let text = GOOD.replace("value: \"1\", name: first", "value: \"1\", nmae: first");
        let p = parse(&text).unwrap_err();
        assert_eq!(p.line, Some(16), "{p}");
        assert!(p.message.contains("nmae"), "{p}");
    }

    #[test]
    fn a_wrong_type_names_its_position() {
        let text = GOOD.replace("nodes: 3", "nodes: three");
        let p = parse(&text).unwrap_err();
        assert_eq!((p.line, p.column), (Some(9), Some(12)), "{p}");
    }

    #[test]
    fn a_syntax_error_names_its_position() {
        let text = GOOD.replace(
            "  - put: {key: a, value: \"1\", name: first}",
            "  - put: {key: a, value: \"1\"",
        );
        let p = parse(&text).unwrap_err();
        assert!(p.line.is_some(), "{p}");
    }

    #[test]
    fn a_missing_required_field_is_an_error() {
        let text = GOOD.replace("title: Example\n", "");
        let p = parse(&text).unwrap_err();
        assert!(p.message.contains("title"), "{p}");
    }

    #[test]
    fn discovery_skips_the_matrix_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "b.yaml",
            "a.yml",
            "matrix.yaml",
            "README.md",
            "scenario.schema.json",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let files = discover(&[dir.path().to_owned()]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml"]);
    }

    #[test]
    fn discovery_reports_missing_paths() {
        let err = discover(&[PathBuf::from("/nonexistent/scenarios")]).unwrap_err();
        assert!(err.to_string().contains("no such file or folder"), "{err}");
    }
}
