//! Task heads for mtgpt: task formatting into batches ([`format`]), one head per task kind
//! with its loss and predictions, and [`MultiTaskModel`] = one shared GPT trunk plus named
//! heads whose parameters are kept apart (`heads.<task>.*`).
//!
//! Status: formatting and the heads work and are tested; `mtgpt predict`/`mtgpt eval` arrive
//! with the trainer (issue #6), which writes the models they read.
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
