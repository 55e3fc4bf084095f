//! A problem found in an input file (scenario or matrix), with the position it refers to, so
//! `validate` and `run` can point at `file:line:column` like a compiler.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::Location;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; `None` when the problem is about the file as a whole.
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

impl Problem {
    pub fn in_file(file: &Path, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// A problem at a parser location (unknown locations become file-level problems).
    pub fn at(file: &Path, location: Location, message: impl Into<String>) -> Self {
        let known = location.line() > 0;
        Problem {
            file: file.to_owned(),
            line: known.then(|| location.line()),
            column: known.then(|| location.column()),
            message: message.into(),
        }
    }

    /// A YAML syntax or type error, with the position and the excerpt the parser rendered, in
    /// the scenario's words (the parser's own option and type names are translated).
    pub fn from_yaml(file: &Path, err: &serde_saphyr::Error) -> Self {
        let location = err.location().unwrap_or(Location::UNKNOWN);
        Problem::at(file, location, humanize(file, &err.to_string()))
    }
}

/// The parser's message without its own position prefix (the problem has the position) and
/// with library wording replaced; the excerpt it draws names the file.
fn humanize(file: &Path, message: &str) -> String {
    let mut text = message
        .strip_prefix("error: ")
        .unwrap_or(message)
        .to_owned();
    // "line 3 column 1: ..." repeats the position the problem already carries.
    if let Some(rest) = text.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
        && rest
            .split_once(": ")
            .is_some_and(|(pos, _)| pos.contains(" column "))
    {
        text = after.to_owned();
    }
    let replacements = [
        (", set DuplicateKeyPolicy in Options if acceptable", ""),
        (
            "duplicate mapping key: ",
            "a key given twice in one mapping: ",
        ),
        (
            "invalid u64",
            "expected a whole number from 0 to 18446744073709551615",
        ),
        (
            "invalid u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("invalid usize", "expected a whole number"),
        ("invalid f64", "expected a number"),
        ("<input>", "FILE"),
        (
            "multiple YAML documents detected; use from_str_multiple or from_str_multiple_with_options",
            "more than one YAML document: a scenario file holds one (no `---` between several)",
        ),
        (
            "budget breached",
            "the file is too large, too deeply nested or uses too many aliases for a scenario",
        ),
        ("Options", "parser settings"),
    ];
    for (from, to) in replacements {
        text = text.replace(from, to);
    }
    text.replace("FILE", &file.display().to_string())
}

/// The position of the first byte that is not UTF-8, as a problem: a scenario must be text.
pub fn not_utf8(file: &Path, bytes: &[u8], valid_up_to: usize) -> Problem {
    let before = &bytes[..valid_up_to];
    let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count() as u64
        + 1;
    Problem {
        file: file.to_owned(),
        line: Some(line),
        column: Some(column),
        message: format!(
            "byte 0x{:02x} is not UTF-8: a scenario file must be UTF-8 text",
            bytes[valid_up_to]
        ),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Problems collected while loading, reported all at once (exit code 2).
#[derive(Debug, Clone, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "error: {p}")?;
        }
        write!(
            f,
            "{} problem{} found",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Problems {}
