//! Errors of `mtgpt-model`.
use std::path::PathBuf;

/// Everything that can go wrong building, running, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libtorch refused an operation (shapes, dtypes, devices).
    #[error("libtorch: {0}")]
    Tch(#[from] tch::TchError),
    /// File I/O.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A model folder or checkpoint is malformed or does not fit the model.
    #[error("{}: {reason}", path.display())]
    Checkpoint {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A bad argument (shapes, settings).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of `mtgpt-model`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
