//! Task heads for mtgpt: task formatting into batches (this part works today), and — with
//! issue #5 — one head per task kind with its loss and decoding, and `MultiTaskModel` = one
//! shared trunk plus named heads.
//!
//! Status: [`format`] (formatting, truncation, QA windows, collation) is implemented and
//! tested; the heads themselves are not written yet.
#![warn(missing_docs)]

pub mod error;
pub mod format;

pub use error::{Error, Result};
pub use format::{Formatted, Target, TaskFormatter, span_text};
