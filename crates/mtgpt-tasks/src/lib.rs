//! Tasks on the mtgpt trunk: task formatting into batches ([`format`]), one head per task kind
//! with its loss and predictions, and [`MultiTaskModel`] = one shared GPT trunk plus named
//! heads whose parameters are kept apart (`heads.<task>.*`).
//!
//! [`TaskData`] is the one task-data and scoring service: prepared splits → formatters →
//! resumable training streams ([`stream`]) → per-task scores. [`Evaluator`] turns a head's
//! outputs into predictions and scores (`mtgpt predict`, `mtgpt eval`); model folders
//! ([`folder`]) hold the trunk, the heads and the task list.
//!
//! ```no_run
//! # fn main() -> mtgpt_tasks::Result<()> {
//! use mtgpt_tasks::{MultiTaskModel, ScoreLimits, TaskData};
//! let dir = std::path::Path::new("runs/smoke/model");
//! let config = mtgpt_core::Config::load(std::path::Path::new("configs/smoke.toml"), &[])
//!     .map_err(|e| mtgpt_tasks::Error::Invalid(e.to_string()))?;
//! let (model, heads) = MultiTaskModel::load(dir, tch::Device::Cpu)?;
//! let tok = mtgpt_text::TextTokenizer::load(&dir.join("tokenizer.json"))?;
//! let data = TaskData::for_model(&config, &heads, &dir.join("tokenizer.json"), None)?;
//! let scored = data.score(&model, &tok, "test", &ScoreLimits::default())?;
//! println!("{:?}", scored.scores);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod crf;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod folder;
pub mod format;
pub mod heads;
pub mod inputs;
pub mod packing;
pub mod stream;
pub mod viterbi;

pub use crf::{Crf, Transitions};
pub use data::{Sample, ScoreLimits, SplitScores, TaskData, WorkDir, max_len};
pub use error::{Error, Result};
pub use evaluate::{
    Evaluator, INVARIANT_BUCKET, Prediction, TaskScores, aggregate, score_predictions,
};
pub use folder::{ModelDir, TaskHead, init_trunk_for, load_tokenizer, resolve_model_dir};
pub use format::{Formatted, Target, TaskFormatter, span_text};
pub use heads::{
    Head, HeadOutput, HeadSpec, MultiTaskModel, best_span, predict_classes, predict_tags,
};
pub use inputs::{Input, parse_input, with_prediction};
pub use packing::{Packed, pack};
pub use stream::{StreamState, TaskStream, TokenBuf};
pub use viterbi::TagScheme;
