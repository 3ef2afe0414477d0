//! The joint multi-task trainer of mtgpt: task mixture sampling, loss weighting, AdamW with
//! schedules, checkpoints with exact resume, evaluation, early stopping and reports.
//!
//! Status: not implemented yet; issue #6 fills this crate.
