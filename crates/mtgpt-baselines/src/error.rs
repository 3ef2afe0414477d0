//! Errors of `mtgpt-baselines`.

/// Everything that can go wrong fitting or scoring a baseline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading task data or scoring.
    #[error(transparent)]
    Tasks(#[from] mtgpt_tasks::Error),
    /// Reading prepared splits.
    #[error(transparent)]
    Text(#[from] mtgpt_text::Error),
    /// A learner (linfa, crfsuite) failed.
    #[error("{method}: {message}")]
    Fit {
        /// Which baseline.
        method: &'static str,
        /// What the learner said.
        message: String,
    },
}

/// Result alias of `mtgpt-baselines`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of baseline `method`.
pub(crate) fn fit_error(method: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Fit {
        method,
        message: e.to_string(),
    }
}
