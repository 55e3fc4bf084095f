//! Scenario files: the typed model ([`model`]), node selectors ([`target`]), finding and
//! parsing files ([`load`]), reference checks ([`validate`]), the server flags a scenario may
//! set ([`flags`]), the JSON Schema ([`schema`]) and
//! [`Suite`]: the matrix plus every selected scenario, checked together before anything runs.

mod describe;
pub mod flags;
mod load;
mod model;
#[cfg(test)]
mod no_panic;
mod problem;
mod schema;
mod target;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use load::{MATRIX_FILE_NAME, ScenarioFile, parse_file};
pub use model::*;
pub use problem::{Problem, Problems};
pub use schema::schema_json;
pub use target::NodeRef;

use crate::cli::SelectArgs;
use crate::matrix::{CellId, CellStatus, Matrix};

/// The matrix and the scenarios to run, all checked.
#[derive(Debug, Clone)]
pub struct Suite {
    pub matrix_path: PathBuf,
    pub matrix: Matrix,
    /// Every scenario found (selected or not), in file order.
    pub scenarios: Vec<ScenarioFile>,
    /// Ids of the scenarios selected: named on the command line (directly or by folder) and
    /// matching `--filter`.
    pub selected: Vec<String>,
}

impl Suite {
    /// Loads the matrix and every scenario named by `args`, and checks them all: syntax,
    /// references, and the coverage of matrix cells across files. All problems are reported
    /// at once.
    pub fn load(args: &SelectArgs) -> Result<Suite, Problems> {
        let matrix_path = args
            .matrix
            .clone()
            .unwrap_or_else(|| Matrix::default_path(&args.paths));
        let mut problems = Problems::default();
        let matrix = Matrix::load(&matrix_path);
        // The scenarios next to the matrix are always known, so a cell covered by a scenario
        // that was not named on the command line shows as "not selected", not as missing.
        let named = load::discover(&args.paths);
        let (matrix, named) = match (matrix, named) {
            (Ok(m), Ok(f)) => (m, f),
            (m, f) => {
                problems.0.extend(m.err().into_iter().flat_map(|p| p.0));
                problems.0.extend(f.err().into_iter().flat_map(|p| p.0));
                return Err(problems);
            }
        };
        let matrix_dir = matrix_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let named_set: Vec<PathBuf> = named.iter().map(|p| canonical(p)).collect();
        let siblings: Vec<PathBuf> = load::discover(&[matrix_dir.to_owned()])
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !named_set.contains(&canonical(p)))
            .collect();
        let mut scenarios = Vec::new();
        for path in &named {
            match parse_file(path) {
                Ok(file) => {
                    problems.0.extend(validate::validate(&file, &matrix).0);
                    scenarios.push(file);
                }
                Err(p) => problems.push(p),
            }
        }
        // A scenario named on the command line (a draft anywhere) stands in for the matrix's
        // own scenario of the same id or of any same cell: that one is left out.
        for path in siblings {
            let file = match parse_file(&path) {
                Ok(file) => file,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let replaced = scenarios.iter().any(|named: &ScenarioFile| {
                named.scenario.id == file.scenario.id
                    || named
                        .scenario
                        .covers
                        .iter()
                        .any(|c| file.scenario.covers.iter().any(|s| s.cell == c.cell))
            });
            if !replaced {
                problems.0.extend(validate::validate(&file, &matrix).0);
                scenarios.push(file);
            }
        }
        let named = named_set;
        problems
            .0
            .extend(cross_checks(&matrix, &matrix_path, &scenarios).0);
        if !problems.is_empty() {
            return Err(problems);
        }
        let selected = scenarios
            .iter()
            .filter(|f| named.contains(&canonical(&f.path)))
            .filter(|f| matches_filter(&f.scenario, args.filter.as_deref()))
            .map(|f| f.scenario.id.clone())
            .collect::<Vec<_>>();
        if selected.is_empty() {
            problems.push(Problem::in_file(
                &matrix_path,
                format!(
                    "no scenario matches --filter {:?}",
                    args.filter.as_deref().unwrap_or_default()
                ),
            ));
            return Err(problems);
        }
        Ok(Suite {
            matrix_path,
            matrix,
            scenarios,
            selected,
        })
    }

    pub fn selected_scenarios(&self) -> impl Iterator<Item = &ScenarioFile> {
        self.scenarios
            .iter()
            .filter(|f| self.selected.contains(&f.scenario.id))
    }

    /// The scenario covering a cell, if any.
    pub fn covering(&self, cell: &CellId) -> Option<&ScenarioFile> {
        self.scenarios
            .iter()
            .find(|f| f.scenario.covers.iter().any(|c| &c.cell == cell))
    }
}

/// A path for comparisons (the path itself when it cannot be resolved).
fn canonical(p: &std::path::Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_owned())
}

/// `--filter`: a scenario is selected when its id or one of its cells contains the text.
fn matches_filter(s: &Scenario, filter: Option<&str>) -> bool {
    let Some(f) = filter else { return true };
    s.id.contains(f) || s.covers.iter().any(|c| c.cell.to_string().contains(f))
}

/// Checks across files: unique ids, each cell covered at most once, no stale `pending`.
fn cross_checks(
    matrix: &Matrix,
    matrix_path: &std::path::Path,
    files: &[ScenarioFile],
) -> Problems {
    let mut problems = Problems::default();
    let mut ids: BTreeMap<&str, &PathBuf> = BTreeMap::new();
    let mut covered: BTreeMap<&CellId, &PathBuf> = BTreeMap::new();
    for f in files {
        if let Some(other) = ids.insert(&f.scenario.id, &f.path) {
            problems.push(Problem::in_file(
                &f.path,
                format!(
                    "scenario id `{}` is also used by {}",
                    f.scenario.id,
                    other.display()
                ),
            ));
        }
        for c in &f.scenario.covers {
            if let Some(other) = covered.insert(&c.cell, &f.path) {
                problems.push(Problem::in_file(
                    &f.path,
                    format!("cell {} is also covered by {}", c.cell, other.display()),
                ));
            }
        }
    }
    for cell in &matrix.cells {
        let c = &cell.value;
        if c.pending.is_some()
            && let Some(path) = covered.get(&c.cell)
        {
            problems.push(Problem::at(
                matrix_path,
                cell.referenced,
                format!(
                    "cell {} is marked pending but {} covers it: remove `pending`",
                    c.cell,
                    path.display()
                ),
            ));
        }
        if c.status == CellStatus::DocGap
            && (c.gap.is_none() || c.recommendation.is_none())
            && !covered.contains_key(&c.cell)
        {
            problems.push(Problem::at(
                matrix_path,
                cell.referenced,
                format!(
                    "DOC-GAP cell {} needs `gap` and `recommendation` (no scenario gives them)",
                    c.cell
                ),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn select(paths: Vec<PathBuf>, filter: Option<&str>) -> SelectArgs {
        SelectArgs {
            paths,
            matrix: None,
            filter: filter.map(str::to_owned),
        }
    }

    fn committed_scenarios() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
    }

    #[test]
    fn the_committed_scenarios_are_valid() {
        let suite = Suite::load(&select(vec![committed_scenarios()], None))
            .unwrap_or_else(|p| panic!("{p}"));
        assert!(
            suite.scenarios.len() >= 7,
            "S1, S3, S4, S5 ChainFire; S2, S3, S4 FlareDB"
        );
        // Every TEST cell of the note, and the observed ChainFire watch gap, has a scenario.
        for cell in [
            "S1/chainfire",
            "S2/flaredb",
            "S3/chainfire",
            "S3/flaredb",
            "S4/chainfire",
            "S4/flaredb",
            "S5/chainfire",
            "S5/chainfire/reconnecting-watch",
        ] {
            let id: CellId = cell.parse().unwrap();
            assert!(suite.covering(&id).is_some(), "{cell} is not covered");
        }
    }

    #[test]
    fn filter_selects_by_id_or_cell() {
        let suite =
            Suite::load(&select(vec![committed_scenarios()], Some("S3/chainfire"))).unwrap();
        assert_eq!(suite.selected.len(), 1);
        let err = Suite::load(&select(vec![committed_scenarios()], Some("no-such"))).unwrap_err();
        assert!(err.to_string().contains("no scenario matches"), "{err}");
    }

    #[test]
    fn the_readme_example_is_a_valid_scenario() {
        let readme = std::fs::read_to_string(committed_scenarios().join("README.md")).unwrap();
        let start = readme.find("```yaml\n").expect("a yaml example") + "```yaml\n".len();
        let len = readme[start..].find("```").unwrap();
        let example = &readme[start..start + len];
        let file =
            load::parse_str(Path::new("README.md"), example).unwrap_or_else(|p| panic!("{p}"));
        let matrix = Matrix::load(&committed_scenarios().join(MATRIX_FILE_NAME)).unwrap();
        let problems = validate::validate(&file, &matrix);
        assert!(problems.is_empty(), "{problems}");
        assert!(file.scenario.steps.len() > 10);
    }

    #[test]
    fn naming_one_file_still_knows_its_siblings() {
        let one = committed_scenarios().join("s4-chainfire-restart.yaml");
        let suite = Suite::load(&select(vec![one], None)).unwrap();
        assert_eq!(suite.selected, ["s4-chainfire-restart"]);
        let s1: CellId = "S1/chainfire".parse().unwrap();
        assert!(
            suite.covering(&s1).is_some(),
            "S1 is known, just not selected"
        );
    }

    #[test]
    fn a_cell_covered_twice_and_stale_pending_markers_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("matrix.yaml"),
            "rows: [{id: S1, title: t}]\ncells:\n  - {cell: S1/chainfire, status: TEST, pending: later}\n",
        )
        .unwrap();
        let scenario = |id: &str| {
            format!(
                "id: {id}\ntitle: t\ncovers: [{{cell: S1/chainfire, status: TEST}}]\nclusters: {{chainfire: {{}}}}\nsteps: [{{sleep: {{ms: 1}}}}]\n"
            )
        };
        std::fs::write(dir.path().join("a.yaml"), scenario("a")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), scenario("a")).unwrap();
        let err = Suite::load(&select(vec![dir.path().to_owned()], None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("scenario id `a` is also used by"), "{err}");
        assert!(
            err.contains("cell S1/chainfire is also covered by"),
            "{err}"
        );
        assert!(
            err.contains("matrix.yaml:3:5: cell S1/chainfire is marked pending"),
            "{err}"
        );
    }

    #[test]
    fn a_draft_anywhere_stands_in_for_the_matrix_scenario_of_its_cell() {
        let dir = tempfile::tempdir().unwrap();
        let committed =
            std::fs::read_to_string(committed_scenarios().join("s4-chainfire-restart.yaml"))
                .unwrap();
        // The same cell under another id, in a folder of its own (no matrix beside it).
        let draft = dir.path().join("my-s4.yaml");
        std::fs::write(
            &draft,
            committed.replace("id: s4-chainfire-restart", "id: my-s4"),
        )
        .unwrap();
        let suite = Suite::load(&SelectArgs {
            paths: vec![draft],
            matrix: Some(committed_scenarios().join(MATRIX_FILE_NAME)),
            filter: None,
        })
        .unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(suite.selected, ["my-s4"]);
        let s4: CellId = "S4/chainfire".parse().unwrap();
        assert_eq!(suite.covering(&s4).unwrap().scenario.id, "my-s4");
        assert!(
            !suite
                .scenarios
                .iter()
                .any(|f| f.scenario.id == "s4-chainfire-restart")
        );
        // The other cells are still known (reported as not selected, not missing).
        let s1: CellId = "S1/chainfire".parse().unwrap();
        assert!(suite.covering(&s1).is_some());
    }
}
