//! The joint multi-task trainer of mtgpt: task mixture sampling ([`sampler`]), loss weighting
//! ([`weighting`]), AdamW with schedules ([`optim`]), resumable batch streams ([`stream`]) and
//! the training loop with evaluation, early stopping and checkpoints ([`trainer`]), data-parallel
//! across processes ([`dist`]; MPI behind the `mpi` feature).
#![warn(missing_docs)]

pub mod bench;
pub mod dist;
pub mod error;
pub mod genaug;
pub mod guard;
pub mod lr_find;
pub mod optim;
pub mod pretrain;
pub mod report;
pub mod sampler;
pub mod trainer;
pub mod transfer;
pub mod weighting;

pub use error::{Error, Result};
/// Resumable per-task batch streams (they live with the task data in `mtgpt-tasks`).
pub use mtgpt_tasks::stream;
