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

    /// A YAML syntax or type error, with the position and the excerpt the parser rendered.
    pub fn from_yaml(file: &Path, err: &serde_saphyr::Error) -> Self {
        let location = err.location().unwrap_or(Location::UNKNOWN);
        Problem::at(file, location, err.to_string())
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
