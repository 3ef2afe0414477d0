//! What a baseline reports.
use mtgpt_tasks::TaskScores;
use serde::{Deserialize, Serialize};

/// One baseline's scores on one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineScores {
    /// What the baseline is (`tfidf+logreg`, `crf`, ...).
    pub method: String,
    /// Training and prediction time.
    pub seconds: f64,
    /// The scores, with the same metric names as the model's.
    pub scores: TaskScores,
}
