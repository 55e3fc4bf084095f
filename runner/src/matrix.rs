//! The test matrix (`scenarios/matrix.yaml`): every cell of the design note's matrix with the
//! note's status, and the reason (SKIP), gap and recommendation (DOC-GAP) that go into the
//! report. The report always shows every cell listed here, run or not.

mod cell;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

pub use cell::{CellId, CellStatus, Service, is_slug};

use crate::scenario::{Problem, Problems};

/// The matrix file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// The design note's scenarios, in order.
    pub rows: Vec<Row>,
    /// Every cell; the note's "n/a" cells are left out.
    #[schemars(with = "Vec<MatrixCell>")]
    pub cells: Vec<Spanned<MatrixCell>>,
}

/// A design-note scenario (a row of the matrix).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// `S1`, `S2`, ...
    pub id: String,
    /// The note's title, e.g. "Raft Recovery".
    pub title: String,
}

/// Where a cell comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The design note's matrix.
    #[default]
    Note,
    /// Added by this project next to the note's cells (e.g. testing a gap's recommendation).
    Added,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatrixCell {
    pub cell: CellId,
    pub status: CellStatus,
    /// The design note's own status, when this project tests a cell the note skipped because
    /// what it would test did not exist yet (and now does): `status` is then TEST, and `note`
    /// says why. Kept so the note's matrix stays readable from this file.
    #[serde(default)]
    pub note_status: Option<CellStatus>,
    #[serde(default)]
    pub origin: Origin,
    /// Why an added cell exists (required for `origin: added`).
    #[serde(default)]
    pub note: Option<String>,
    /// SKIP: why the cell is not tested.
    #[serde(default)]
    pub reason: Option<String>,
    /// DOC-GAP: the gap the note documents.
    #[serde(default)]
    pub gap: Option<String>,
    /// DOC-GAP: the note's recommendation ("Future Work").
    #[serde(default)]
    pub recommendation: Option<String>,
    /// DOC-GAP cells no scenario observes: what is known without running anything.
    #[serde(default)]
    pub observed: Option<String>,
    /// TEST cells without a scenario yet: why. Reported as "pending" (visibly, not as passed);
    /// an error once a scenario covers the cell, so the marker cannot go stale.
    #[serde(default)]
    pub pending: Option<String>,
}

impl Matrix {
    /// Reads and checks a matrix file.
    pub fn load(path: &Path) -> Result<Matrix, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem::in_file(
                path,
                format!("cannot read the matrix file: {e} (name one with --matrix FILE)"),
            )])
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Matrix, Problems> {
        let matrix: Matrix = serde_saphyr::from_str(text)
            .map_err(|e| Problems(vec![Problem::from_yaml(path, &e)]))?;
        let problems = matrix.check(path);
        if problems.is_empty() {
            Ok(matrix)
        } else {
            Err(problems)
        }
    }

    /// Consistency of the matrix on its own (scenario coverage is checked with the suite).
    fn check(&self, path: &Path) -> Problems {
        let mut problems = Problems::default();
        let mut rows = BTreeSet::new();
        for row in &self.rows {
            let valid = row
                .id
                .strip_prefix('S')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n > 0);
            match valid {
                Some(n) if !rows.insert(n) => problems.push(Problem::in_file(
                    path,
                    format!("row {} is listed twice", row.id),
                )),
                Some(_) => {}
                None => problems.push(Problem::in_file(
                    path,
                    format!("bad row id `{}`: expected S1, S2, ...", row.id),
                )),
            }
        }
        let mut seen = BTreeSet::new();
        for spanned in &self.cells {
            let c = &spanned.value;
            let at = |msg: String| Problem::at(path, spanned.referenced, msg);
            if !seen.insert(c.cell.clone()) {
                problems.push(at(format!("cell {} is listed twice", c.cell)));
            }
            if !rows.contains(&c.cell.row) {
                problems.push(at(format!(
                    "cell {} belongs to row S{}, which is not in `rows`",
                    c.cell, c.cell.row
                )));
            }
            if c.status == CellStatus::Skip && c.reason.is_none() {
                problems.push(at(format!("SKIP cell {} needs a `reason`", c.cell)));
            }
            if c.status != CellStatus::Skip && c.reason.is_some() {
                problems.push(at(format!(
                    "`reason` is for SKIP cells; {} is {}",
                    c.cell, c.status
                )));
            }
            if c.status != CellStatus::DocGap
                && (c.gap.is_some() || c.recommendation.is_some() || c.observed.is_some())
            {
                problems.push(at(format!(
                    "`gap`, `recommendation` and `observed` are for DOC-GAP cells; {} is {}",
                    c.cell, c.status
                )));
            }
            if c.pending.is_some() && c.status != CellStatus::Test {
                problems.push(at(format!(
                    "`pending` is for TEST cells; {} is {}",
                    c.cell, c.status
                )));
            }
            if let Some(was) = c.note_status
                && (c.status != CellStatus::Test
                    || was == CellStatus::Test
                    || c.origin == Origin::Added
                    || c.note.is_none())
            {
                problems.push(at(format!(
                    "`note_status` is for the note's own cells that this project tests although the note said {was}: {} must be TEST, with a `note` saying why",
                    c.cell
                )));
            }
            if c.origin == Origin::Added && c.note.is_none() {
                problems.push(at(format!(
                    "added cell {} needs a `note` saying why it exists",
                    c.cell
                )));
            }
        }
        problems
    }

    pub fn cell(&self, id: &CellId) -> Option<&MatrixCell> {
        self.cells.iter().map(|c| &c.value).find(|c| &c.cell == id)
    }

    /// Cells in report order: by row, then the note's service columns, then variant.
    pub fn cells_in_order(&self) -> Vec<&MatrixCell> {
        let mut cells: Vec<_> = self.cells.iter().map(|c| &c.value).collect();
        cells.sort_by(|a, b| a.cell.cmp(&b.cell));
        cells
    }

    pub fn row_title(&self, row: u32) -> Option<&str> {
        let id = format!("S{row}");
        self.rows
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.title.as_str())
    }

    /// The default matrix file for the given scenario paths: `matrix.yaml` in the first folder,
    /// or next to the first file; when there is none there (a scenario drafted elsewhere), the
    /// project's `scenarios/matrix.yaml` under the current directory.
    pub fn default_path(paths: &[PathBuf]) -> PathBuf {
        let project = PathBuf::from("scenarios").join(crate::scenario::MATRIX_FILE_NAME);
        let beside = match paths.first() {
            Some(p) if p.is_dir() => p.join(crate::scenario::MATRIX_FILE_NAME),
            Some(p) => p
                .parent()
                .unwrap_or(Path::new("."))
                .join(crate::scenario::MATRIX_FILE_NAME),
            None => return project,
        };
        if !beside.exists() && project.exists() {
            project
        } else {
            beside
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matrix_is_beside_the_scenarios_or_the_projects() {
        let dir = tempfile::tempdir().unwrap();
        let with_matrix = dir.path().join("suite");
        std::fs::create_dir(&with_matrix).unwrap();
        std::fs::write(with_matrix.join("matrix.yaml"), "rows: []\ncells: []\n").unwrap();
        assert_eq!(
            Matrix::default_path(std::slice::from_ref(&with_matrix)),
            with_matrix.join("matrix.yaml")
        );
        assert_eq!(
            Matrix::default_path(&[with_matrix.join("s1.yaml")]),
            with_matrix.join("matrix.yaml")
        );
        // A scenario drafted where no matrix is: the project's, relative to the working dir
        // (cargo runs unit tests in the crate dir, which has no scenarios/ folder of its own).
        let lone = dir.path().join("draft.yaml");
        let expected = if Path::new("scenarios/matrix.yaml").exists() {
            PathBuf::from("scenarios/matrix.yaml")
        } else {
            dir.path().join("matrix.yaml")
        };
        assert_eq!(Matrix::default_path(&[lone]), expected);
        assert_eq!(
            Matrix::default_path(&[]),
            PathBuf::from("scenarios/matrix.yaml")
        );
    }

    fn committed_matrix() -> Matrix {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/matrix.yaml");
        Matrix::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The design note's matrix, transcribed by hand: "n/a" cells are absent.
    const NOTE_MATRIX: &[(&str, &str)] = &[
        ("S1/chainfire", "TEST"),
        ("S2/flaredb", "TEST"),
        ("S3/chainfire", "TEST"),
        ("S3/flaredb", "TEST"),
        ("S3/plasmavmc", "SKIP"),
        ("S3/iam", "SKIP"),
        ("S4/chainfire", "TEST"),
        ("S4/flaredb", "TEST"),
        ("S4/plasmavmc", "DOC-GAP"),
        ("S4/iam", "DOC-GAP"),
        ("S5/chainfire", "DOC-GAP"),
        ("S5/flaredb", "DOC-GAP"),
    ];

    #[test]
    fn committed_matrix_has_exactly_the_design_notes_cells() {
        let m = committed_matrix();
        let from_note: Vec<(String, String)> = m
            .cells_in_order()
            .into_iter()
            .filter(|c| c.origin == Origin::Note)
            .map(|c| {
                let note = c.note_status.unwrap_or(c.status);
                (c.cell.to_string(), note.to_string())
            })
            .collect();
        let expected: Vec<(String, String)> = NOTE_MATRIX
            .iter()
            .map(|(c, s)| (c.to_string(), s.to_string()))
            .collect();
        assert_eq!(from_note, expected);
        for row in 1..=5 {
            assert!(m.row_title(row).is_some(), "row S{row} missing");
        }
    }

    #[test]
    fn committed_gap_cells_carry_the_notes_recommendations() {
        let m = committed_matrix();
        let rec = |id: &str| {
            m.cell(&id.parse().unwrap())
                .and_then(|c| c.recommendation.clone())
                .unwrap_or_default()
        };
        assert!(rec("S4/plasmavmc").contains("Add retry logic for remote service calls"));
        assert!(rec("S4/iam").contains("Add exponential backoff retry"));
        assert!(rec("S5/chainfire").contains("auto-reconnect wrapper"));
    }

    #[test]
    fn inconsistent_matrices_are_rejected_with_positions() {
        let text = r#"
rows:
  - {id: S1, title: Raft Recovery}
cells:
  - {cell: S1/chainfire, status: TEST}
  - {cell: S1/chainfire, status: TEST}
  - {cell: S2/flaredb, status: TEST}
  - {cell: S1/iam, status: SKIP}
  - {cell: S1/flaredb, status: TEST, gap: x}
  - {cell: S1/plasmavmc, status: DOC-GAP, pending: later}
"#;
        let err = Matrix::parse(Path::new("m.yaml"), text)
            .unwrap_err()
            .to_string();
        for needle in [
            "m.yaml:6:5: cell S1/chainfire is listed twice",
            "m.yaml:7:5: cell S2/flaredb belongs to row S2",
            "m.yaml:8:5: SKIP cell S1/iam needs a `reason`",
            "m.yaml:9:5: `gap`, `recommendation` and `observed` are for DOC-GAP cells",
            "m.yaml:10:5: `pending` is for TEST cells",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn unknown_status_is_rejected() {
        let text = "rows: [{id: S1, title: x}]\ncells:\n  - {cell: S1/chainfire, status: TESTED}\n";
        let err = Matrix::parse(Path::new("m.yaml"), text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.yaml:3:"), "{err}");
        assert!(err.contains("TESTED"), "{err}");
    }
}
