//! Errors of `mtgpt-compress`.
use std::path::PathBuf;

/// Everything that can go wrong while compressing a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Preprocessing failed.
    #[error(transparent)]
    Text(#[from] mtgpt_text::Error),
    /// The trunk failed (shapes, checkpoints).
    #[error(transparent)]
    Model(#[from] mtgpt_model::Error),
    /// Formatting, a head or a model folder failed.
    #[error(transparent)]
    Heads(#[from] mtgpt_tasks::Error),
    /// The trainer's pieces (sampler) refused their settings.
    #[error(transparent)]
    Train(#[from] mtgpt_train::Error),
    /// The task sampler refused its settings.
    #[error(transparent)]
    Sampler(#[from] mtgpt_train::sampler::SamplerError),
    /// libtorch refused an operation.
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
    /// A bad setting, method name or model.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of `mtgpt-compress`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
