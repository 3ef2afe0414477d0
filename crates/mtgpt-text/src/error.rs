//! Errors of `mtgpt-text`.
use std::path::PathBuf;

/// Everything that can go wrong while preprocessing text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// File I/O, config and bad-record errors shared with `mtgpt-core`.
    #[error(transparent)]
    Core(#[from] mtgpt_core::Error),
    /// A stemmer language rust-stemmers does not have.
    #[error("unknown stemmer language `{language}`; expected one of {}", mtgpt_core::STEMMER_LANGUAGES.join(", "))]
    UnknownLanguage {
        /// The name given.
        language: String,
    },
    /// A jieba user dictionary could not be loaded.
    #[error("{}: jieba dictionary: {reason}", path.display())]
    Dictionary {
        /// The dictionary file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tokenizer file is unreadable, malformed or lacks what mtgpt needs.
    #[error("{}: tokenizer: {reason}", path.display())]
    Tokenizer {
        /// The tokenizer file (or `<memory>`).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Training or running the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// A bad argument or setting.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of `mtgpt-text`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A bad-record error naming file, line and field.
    pub fn bad_record(
        file: impl Into<PathBuf>,
        line: usize,
        field: &str,
        reason: impl Into<String>,
    ) -> Self {
        Error::Core(mtgpt_core::Error::BadRecord {
            file: file.into(),
            line,
            field: field.to_string(),
            reason: reason.into(),
        })
    }

    /// Whether this is one record's fault (so `--skip-bad` may skip it).
    pub fn is_bad_record(&self) -> bool {
        matches!(self, Error::Core(mtgpt_core::Error::BadRecord { .. }))
    }
}
