//! Errors of `mtgpt-tasks`.

/// Everything that can go wrong formatting examples or running heads.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tokenizer and text errors.
    #[error(transparent)]
    Text(#[from] mtgpt_text::Error),
    /// The trunk or libtorch failed.
    #[error(transparent)]
    Model(#[from] mtgpt_model::Error),
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Tch(#[from] tch::TchError),
    /// A bad argument or example.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of `mtgpt-tasks`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
