//! Task heads for mtgpt: task formatting into batches ([`format`]), one head per task kind
//! with its loss and predictions, and [`MultiTaskModel`] = one shared GPT trunk plus named
//! heads whose parameters are kept apart (`heads.<task>.*`).
//!
//! [`Evaluator`] turns a head's outputs into predictions and per-task scores (`mtgpt predict`,
//! `mtgpt eval`); model folders ([`folder`]) hold the trunk, the heads and the task list.
#![warn(missing_docs)]

pub mod error;
pub mod evaluate;
pub mod folder;
pub mod format;
pub mod heads;

pub use error::{Error, Result};
pub use evaluate::{Evaluator, Prediction, TaskScores, aggregate};
pub use folder::TaskHead;
pub use format::{Formatted, Target, TaskFormatter, span_text};
pub use heads::{
    Head, HeadOutput, HeadSpec, MultiTaskModel, best_span, predict_classes, predict_tags,
};
