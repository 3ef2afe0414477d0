//! The joint training loop: `prep` → model → (LM pretraining) → joint multi-task training with
//! task sampling (one task per step or mixed batches), loss weighting (PCGrad included), AdamW,
//! schedule, clipping and gradient accumulation → divergence guard, generated-example
//! augmentation, evaluation, best model, early stopping, atomic checkpoints and exact resume →
//! curves and a Markdown report.
//!
//! [`train`] reads as the orchestration; the parts live beside it: [`data`] (preprocessing,
//! streams), `step` (one optimizer step), `session` (the run's state and the loop's named
//! parts), `checkpoint` (atomic checkpoints, resume), [`summary`] (summary and log).
use crate::dist::Distributed;
use crate::error::Result;
use mtgpt_core::Config;
use std::path::PathBuf;
use std::time::Instant;
use tch::Device;

mod checkpoint;
pub mod data;
mod session;
pub(crate) mod step;
pub mod summary;

pub use checkpoint::latest_checkpoint;
pub use data::{RunData, formatters, load_data};
pub(crate) use data::streams;
pub(crate) use step::{run_step, sorted_vars};
pub use summary::TrainSummary;

/// How [`train`] runs beyond the config.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Output folder (`prep/`, `checkpoints/`, `model/`, `best/`, `metrics.jsonl`, `report.md`).
    pub out: PathBuf,
    /// The preprocessing folder; `out/prep` when `None`. Reused when its inputs are unchanged.
    pub prep_dir: Option<PathBuf>,
    /// Continue from the latest checkpoint in `out/checkpoints`.
    pub resume: bool,
    /// Synonym lexicons for augmentation in `prep`.
    pub lexicons: Vec<PathBuf>,
    /// Validation examples per task per evaluation (the first ones of the split).
    pub eval_examples: usize,
    /// LM tokens per LM task per evaluation.
    pub eval_lm_tokens: usize,
    /// Steps between log lines.
    pub log_every: usize,
    /// Device.
    pub device: Device,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Write `report.md` and `curves/*.png` at the end.
    pub report: bool,
    /// Only these tasks are sampled in the joint phase (single-task baselines); all when `None`.
    pub joint_tasks: Option<Vec<String>>,
    /// Skip `generate_augment` even where the config asks for it (the transfer report's
    /// "without generated examples" run).
    pub no_generate_augment: bool,
    /// Fault injection for tests: the loss of these (0-based) steps is made NaN.
    pub inject_nan_at: Vec<usize>,
    /// Data-parallel training across ranks (`train.batch_size` is then per rank); only rank 0
    /// writes into `out`. `None`: this process trains alone.
    pub dist: Option<Distributed>,
}

impl TrainOptions {
    /// Defaults for an output folder.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        TrainOptions {
            out: out.into(),
            prep_dir: None,
            resume: false,
            lexicons: Vec::new(),
            eval_examples: 256,
            eval_lm_tokens: 8192,
            log_every: 10,
            device: Device::Cpu,
            progress: false,
            report: true,
            joint_tasks: None,
            no_generate_augment: false,
            inject_nan_at: Vec::new(),
            dist: None,
        }
    }
}

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
        let (plan, out, lr) = run.step()?;
        run.log_step(&plan, &out, lr)?;
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
