//! The TOML configuration: its schema (`schema`), reading it with
//! path-precise syntax errors (`load`), and the checks that need only the
//! parsed file (`validate`). Everything that reads other files (certificates,
//! keys, CRLs, allowlists, secrets) is loaded once, when `Runtime::compile`
//! builds a snapshot — which also runs `validate`, so `check` reports every
//! problem of a file at once.

mod load;
mod schema;
mod units;
mod validate;

pub use schema::*;
pub use units::{Dur, Size};

use std::fmt;
use std::path::PathBuf;

/// One problem found in a config file: where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// TOML path such as `route[1].upstream`.
    pub path: String,
    /// What is wrong, followed by the fix.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {problem}")]
    Syntax { file: PathBuf, problem: Problem },
    #[error("{file}: {} problem(s):\n{}", .problems.len(), render(.problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
