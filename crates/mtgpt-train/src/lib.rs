//! The joint multi-task trainer of mtgpt: task mixture sampling, loss weighting, AdamW with
//! schedules, checkpoints with exact resume, evaluation, early stopping and reports.
//!
//! Status: the optimizer ([`optim`]) works and is tested; the sampler, loss weighting and the
//! training loop are being written (issue #6).
#![warn(missing_docs)]

pub mod optim;
pub mod stream;
