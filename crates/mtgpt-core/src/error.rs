//! The error type shared by the mtgpt crates that have no richer one of their own.
use std::path::PathBuf;

/// Everything that can go wrong while reading configs and task data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// A config file is not valid TOML or does not fit the schema.
    #[error("{}:{line}:{column}: key `{key}`: {message}", file.display())]
    ConfigParse {
        /// The config file.
        file: PathBuf,
        /// 1-based line of the offending text (0 when unknown).
        line: usize,
        /// 1-based column of the offending text (0 when unknown).
        column: usize,
        /// Dotted key path such as `model.n_layer` or `task[1].kind` (`?` when unknown).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A config value parsed but is not acceptable.
    #[error("{}{}: key `{key}` = {value}: {reason}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    ConfigValue {
        /// The config file (or `--set` for a command-line override).
        file: PathBuf,
        /// 1-based line of the key, when it is written in the file.
        line: Option<usize>,
        /// Dotted key path.
        key: String,
        /// The bad value as written.
        value: String,
        /// Why it is rejected and what is expected.
        reason: String,
    },
    /// A `--set key=value` override is malformed or names no known key.
    #[error("--set {arg}: {reason}")]
    Override {
        /// The argument as given.
        arg: String,
        /// What is wrong.
        reason: String,
    },
    /// One record (line) of a data file is malformed.
    #[error("{}:{line}: field `{field}`: {reason}", file.display())]
    BadRecord {
        /// The data file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field at fault (`-` when the whole line is).
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias used across `mtgpt-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
