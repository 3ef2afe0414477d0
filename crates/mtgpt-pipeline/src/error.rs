//! Errors of `mtgpt-pipeline`.
use std::path::PathBuf;

/// Everything that can stop a pipeline run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config or a task file.
    #[error(transparent)]
    Core(#[from] mtgpt_core::Error),
    /// Preprocessing.
    #[error(transparent)]
    Text(#[from] mtgpt_text::Error),
    /// Model folders.
    #[error(transparent)]
    Model(#[from] mtgpt_model::Error),
    /// Task data, heads and scoring.
    #[error(transparent)]
    Tasks(#[from] mtgpt_tasks::Error),
    /// Training.
    #[error(transparent)]
    Train(#[from] mtgpt_train::Error),
    /// Compression.
    #[error(transparent)]
    Compress(#[from] mtgpt_compress::Error),
    /// Classic baselines.
    #[error(transparent)]
    Baselines(#[from] mtgpt_baselines::Error),
    /// File I/O.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A bad input or state.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of `mtgpt-pipeline`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
