//! How a training run goes beyond its config.
use crate::dist::Distributed;
use std::path::PathBuf;
use tch::Device;

/// How [`super::train`] runs beyond the config.
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
    /// Write every step's batches (unpadded rows, targets, learning rate) to this JSONL file,
    /// after a header naming the model at step 0 (saved as `out/dump-init`), for a replay by
    /// `scripts/bench_joint_torch.py`.
    pub dump_batches: Option<PathBuf>,
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
            dump_batches: None,
        }
    }
}
