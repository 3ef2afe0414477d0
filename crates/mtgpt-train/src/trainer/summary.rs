//! What a run tells: the summary it returns, and its log (`metrics.jsonl`, log lines, the
//! progress bar, per-task loss means between log lines).
use super::checkpoint::{drop_partial_line, io_err};
use crate::error::Result;
use crate::genaug::AugmentOutcome;
use mtgpt_tasks::TaskScores;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// Optimizer steps done (including any before a resume).
    pub steps: usize,
    /// Best aggregate validation score seen.
    pub best_score: Option<f64>,
    /// Scores of the final evaluation.
    pub final_scores: Vec<TaskScores>,
    /// Wall-clock seconds of this invocation.
    pub seconds: f64,
    /// Whether early stopping or the time budget ended the run.
    pub stopped_early: bool,
    /// Divergence-guard events (restores).
    pub guard_events: usize,
    /// Learning-rate multiplier left by the guard.
    pub lr_scale: f64,
    /// Generated-example augmentation done in this invocation.
    pub augmented: Vec<AugmentOutcome>,
    /// Parameters that trained (with a frozen trunk, adapters and heads).
    pub parameters: i64,
    /// Every parameter of the model, frozen ones included.
    pub all_parameters: i64,
    /// Bytes of optimizer state (AdamW's two moments of every trained parameter).
    pub optimizer_state_bytes: i64,
    /// Real tokens over the token slots the trunk computed on (1 = no padding at all).
    pub useful_fraction: f64,
    /// Seconds spent in optimizer steps (evaluations and checkpoints left out).
    pub train_seconds: f64,
    /// Real tokens trained on.
    pub tokens: usize,
    /// Examples (sequences) trained on.
    pub examples: usize,
}

/// The log of a run. Ranks other than 0 (`writer` false) write and say nothing.
pub(crate) struct RunLog {
    writer: bool,
    path: PathBuf,
    metrics: Box<dyn Write>,
    bar: Option<indicatif::ProgressBar>,
    /// Per-task loss sums and counts since the last log line.
    pub(crate) window: BTreeMap<String, (f64, usize)>,
}

impl RunLog {
    /// Opens `path` (`metrics.jsonl`): a fresh run starts a fresh log; a resumed one appends
    /// (steps it repeats are logged again and the later line wins). `bar_at` draws a progress
    /// bar of `total` steps from that step when `progress` is asked and stderr is a terminal.
    pub(crate) fn open(
        path: PathBuf,
        writer: bool,
        resume: bool,
        progress: bool,
        total: usize,
        bar_at: usize,
    ) -> Result<Self> {
        if resume && writer {
            drop_partial_line(&path)?;
        }
        let metrics: Box<dyn Write> = if writer {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(resume)
                    .write(true)
                    .truncate(!resume)
                    .open(&path)
                    .map_err(io_err(&path))?,
            )
        } else {
            Box::new(std::io::sink())
        };
        let bar = (writer && progress && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_position(bar_at as u64);
            bar
        });
        Ok(RunLog {
            writer,
            path,
            metrics,
            bar,
            window: BTreeMap::new(),
        })
    }

    /// One JSON line into `metrics.jsonl`.
    pub(crate) fn record(&mut self, line: &serde_json::Value) -> Result<()> {
        writeln!(self.metrics, "{line}").map_err(io_err(&self.path))
    }

    /// An info line (around the progress bar).
    pub(crate) fn say(&self, msg: &str) {
        match &self.bar {
            _ if !self.writer => {}
            Some(b) => b.suspend(|| tracing::info!("{msg}")),
            None => tracing::info!("{msg}"),
        }
    }

    /// A warning line (around the progress bar).
    pub(crate) fn warn(&self, msg: &str) {
        match &self.bar {
            _ if !self.writer => {}
            Some(b) => b.suspend(|| tracing::warn!("{msg}")),
            None => tracing::warn!("{msg}"),
        }
    }

    /// A per-step line: debug level when a bar shows progress, info otherwise.
    pub(crate) fn step_line(&self, msg: &str) {
        if self.bar.is_some() || !self.writer {
            tracing::debug!("{msg}");
        } else {
            tracing::info!("{msg}");
        }
    }

    /// Moves the progress bar.
    pub(crate) fn progress(&self, done: usize, msg: impl FnOnce() -> String) {
        if let Some(b) = &self.bar {
            b.set_position(done as u64);
            b.set_message(msg());
        }
    }

    /// Adds a task's step loss to the window of the next log line.
    pub(crate) fn observe(&mut self, task: &str, loss: f64) {
        let e = self.window.entry(task.to_string()).or_default();
        e.0 += loss;
        e.1 += 1;
    }

    /// Clears the progress bar at the end.
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
