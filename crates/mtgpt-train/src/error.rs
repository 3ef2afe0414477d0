//! Errors of `mtgpt-train`.
use std::path::PathBuf;

/// Everything that can go wrong while training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Preprocessing failed.
    #[error(transparent)]
    Text(#[from] mtgpt_text::Error),
    /// The model failed (shapes, checkpoints).
    #[error(transparent)]
    Model(#[from] mtgpt_model::Error),
    /// Formatting or a head failed.
    #[error(transparent)]
    Tasks(#[from] mtgpt_tasks::Error),
    /// The task sampler refused its settings or state.
    #[error(transparent)]
    Sampler(#[from] crate::sampler::SamplerError),
    /// The loss weighting refused its settings, a loss or its state.
    #[error(transparent)]
    Weighting(#[from] crate::weighting::WeightingError),
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
    /// A bad setting or state.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of `mtgpt-train`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
