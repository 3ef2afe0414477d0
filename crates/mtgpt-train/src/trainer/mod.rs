//! The joint training loop: `prep` → model → (LM pretraining) → joint multi-task training with
//! task sampling (one task per step or mixed batches), loss weighting (PCGrad included), AdamW,
//! schedule, clipping and gradient accumulation → divergence guard, generated-example
//! augmentation, evaluation, best model, early stopping, atomic checkpoints and exact resume →
//! curves and a Markdown report.
//!
//! [`train`] reads as the orchestration; the parts live beside it: [`data`] (preprocessing,
//! streams), `step` (one optimizer step), `session` (the run's state and the loop's named
//! parts), `checkpoint` (atomic checkpoints, resume), [`summary`] (summary and log).
use crate::error::Result;
use mtgpt_core::Config;
use std::time::Instant;

mod augment;
mod checkpoint;
pub mod data;
mod ema;
mod options;
mod resume;
mod session;
pub(crate) mod step;
pub mod summary;

pub use checkpoint::latest_checkpoint;
pub(crate) use data::streams;
pub use data::{RunData, load_data};
pub use options::TrainOptions;
pub(crate) use step::{run_step, sorted_vars};
pub use summary::TrainSummary;

/// Trains `config` into `opts.out`: preprocessing (reused when its inputs are unchanged; rank 0
/// alone when distributed), then [`train_on`].
pub fn train(config: &Config, opts: &TrainOptions) -> Result<TrainSummary> {
    let started = Instant::now();
    let data = prepare(config, opts)?;
    train_from(config, opts, &data, started)
}

/// Trains `config` into `opts.out` on data already prepared by [`load_data`] (the pipeline
/// prepares once and hands the data on).
pub fn train_on(config: &Config, opts: &TrainOptions, data: &RunData) -> Result<TrainSummary> {
    train_from(config, opts, data, Instant::now())
}

/// The output folder and the data of this rank: only rank 0 writes into `out`, and the others
/// read its preprocessing once it is done.
fn prepare(config: &Config, opts: &TrainOptions) -> Result<RunData> {
    let dist = opts.dist.as_ref().filter(|d| d.comm.size() > 1);
    let writer = dist.is_none_or(|d| d.comm.rank() == 0);
    if writer {
        std::fs::create_dir_all(&opts.out).map_err(checkpoint::io_err(&opts.out))?;
    }
    match dist {
        Some(d) => {
            let prepared = writer.then(|| load_data(config, opts));
            d.comm.barrier()?;
            match prepared {
                Some(data) => data,
                None => data::load_prepared(config, opts),
            }
        }
        None => load_data(config, opts),
    }
}

fn train_from(
    config: &Config,
    opts: &TrainOptions,
    data: &RunData,
    started: Instant,
) -> Result<TrainSummary> {
    let writer = opts.dist.as_ref().is_none_or(|d| d.comm.rank() == 0);
    if writer {
        std::fs::create_dir_all(&opts.out).map_err(checkpoint::io_err(&opts.out))?;
    }
    let mut run = session::Session::new(config, opts, data)?;
    if opts.resume {
        run.resume()?;
    }
    run.start()?;
    while !run.finished() {
        run.augment_if_due()?;
        let step = run.step()?;
        run.log_step(&step)?;
        let budget_over = run.budget_over()?;
        run.evaluate_if_due(budget_over)?;
        run.checkpoint_if_due(budget_over)?;
        if run.stopped_early || budget_over {
            run.stopped_early = true;
            break;
        }
    }
    let summary = run.finish(started)?;
    if opts.report && writer {
        crate::report::write_report(&opts.out, config, &summary)?;
    }
    Ok(summary)
}
