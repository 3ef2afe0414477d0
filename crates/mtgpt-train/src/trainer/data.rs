//! The data side of a run: the preprocessing stage (cached by its inputs), the tokenizer, one
//! head per task and the training stream of every task.
use super::options::TrainOptions;
use crate::error::{Error, Result};
use mtgpt_core::{Config, Example, ModelConfig, TaskKind, TrunkTraining};
use mtgpt_tasks::data::format_all;
use mtgpt_tasks::{
    HeadSpec, MultiTaskModel, StreamState, TaskData, TaskFormatter, TaskHead, TaskStream,
};
use mtgpt_text::TextTokenizer;
use mtgpt_text::prep::{PrepOptions, cached_manifest, prepare_cached};
use std::path::{Path, PathBuf};

/// The data side of a run: preprocessing output, tokenizer and the model shape.
pub struct RunData {
    /// The prepared tasks (config, heads in config order, manifest, folder).
    pub tasks: TaskData,
    /// The tokenizer.
    pub tok: TextTokenizer,
    /// The model config with the tokenizer's vocabulary size.
    pub model_cfg: ModelConfig,
    /// Whether the preprocessing folder was read as it was (inputs unchanged) rather than
    /// made in this call.
    pub prep_reused: bool,
}

impl RunData {
    /// One head per task, in config order.
    pub fn heads(&self) -> &[TaskHead] {
        &self.tasks.heads
    }

    /// The fingerprint of the preprocessing inputs.
    pub fn fingerprint(&self) -> &str {
        &self.tasks.manifest.fingerprint
    }

    /// One formatter per task, in config order ([`mtgpt_tasks::max_len`] rule).
    pub fn formatters(&self) -> Result<Vec<TaskFormatter<'_>>> {
        Ok(self
            .tasks
            .formatters(&self.tok, self.model_cfg.block_size)?)
    }
}

/// The model a run trains: a head per task on a fresh trunk, or on the trunk of the
/// `model.init` folder (its token embedding grown by the tokens the run's tokenizer added).
/// `resuming` skips the init weights (the checkpoint replaces every weight anyway).
pub fn new_model(
    config: &Config,
    data: &RunData,
    device: tch::Device,
    resuming: bool,
) -> Result<MultiTaskModel> {
    let specs: Vec<HeadSpec> = data.heads().iter().map(TaskHead::spec).collect();
    let mut shape = data.model_cfg.clone();
    if config.precision_auto && device.is_cuda() {
        // `auto` means bf16 on CUDA (the config resolved it for the CPU).
        shape.precision = mtgpt_core::Precision::Bf16;
    }
    let mut model = MultiTaskModel::new(&shape, &specs, device)?;
    if config.adapters.mode.enabled() {
        model.add_adapters(&config.adapters)?;
    }
    if config.train.trunk == TrunkTraining::Frozen {
        for (name, t) in model.vs.variables() {
            if name.starts_with("transformer.")
                && !mtgpt_core::adapters::trunk_trainable(&name, &config.train.trunk_trainable)
            {
                let _ = t.set_requires_grad(false);
            }
        }
    }
    if let Some(dir) = config.init.as_ref().filter(|_| !resuming) {
        let r = mtgpt_tasks::init_trunk_for(&model.vs, dir, &data.tok)?;
        tracing::info!(
            "trunk from {}: {} tensors, {} new token-embedding rows (mean-initialised), new heads",
            dir.display(),
            r.tensors,
            r.new_rows
        );
    }
    let (trainable, all) = model.parameter_counts();
    if trainable < all {
        tracing::info!(
            "{trainable} of {all} parameters train ({:.2} %)",
            100.0 * trainable as f64 / all.max(1) as f64
        );
    }
    Ok(model)
}

/// The preprocessing folder of a run.
pub fn prep_dir(opts: &TrainOptions) -> PathBuf {
    opts.prep_dir
        .clone()
        .unwrap_or_else(|| opts.out.join("prep"))
}

/// The preprocessing options of a run.
pub fn prep_options(opts: &TrainOptions) -> PrepOptions {
    PrepOptions {
        lexicons: opts.lexicons.clone(),
        skip_bad: false,
    }
}

/// Runs (or reuses) the preprocessing of `config` and loads what training needs.
pub fn load_data(config: &Config, opts: &TrainOptions) -> Result<RunData> {
    let dir = prep_dir(opts);
    let (manifest, cached) = prepare_cached(config, &dir, &prep_options(opts))?;
    if cached {
        tracing::info!("preprocessing: inputs unchanged, reusing {}", dir.display());
    }
    data_from(config, &dir, manifest, cached)
}

/// [`load_data`] for ranks other than 0 of a distributed job: rank 0's preprocessing is read,
/// never written (the ranks of one host would race, and only rank 0 writes into `out`).
pub(crate) fn load_prepared(config: &Config, opts: &TrainOptions) -> Result<RunData> {
    let dir = prep_dir(opts);
    let manifest = cached_manifest(config, &dir, &prep_options(opts)).ok_or_else(|| {
        Error::Invalid(format!(
            "{}: rank 0's preprocessing is not visible here or differs; every rank needs the \
             output folder on a shared file system (or a copy of rank 0's prep folder)",
            dir.display()
        ))
    })?;
    data_from(config, &dir, manifest, true)
}

fn data_from(
    config: &Config,
    dir: &Path,
    manifest: mtgpt_text::prep::PrepManifest,
    prep_reused: bool,
) -> Result<RunData> {
    let tok = TextTokenizer::load(&dir.join("tokenizer.json"))?;
    let mut tasks = TaskData::from_manifest(config, dir, manifest)?;
    tasks.learn_word_splits(&tok)?;
    warn_single_label(&tasks)?;
    let mut model_cfg = config.model.clone();
    // From `model.init`, the embedding keeps at least the folder's rows (a checkpoint may pad
    // its vocabulary beyond the tokenizer's, e.g. to a multiple of 64).
    model_cfg.vocab_size = if config.init.is_some() {
        tok.vocab_size().max(config.model.vocab_size)
    } else {
        tok.vocab_size()
    };
    Ok(RunData {
        tasks,
        tok,
        model_cfg,
        prep_reused,
    })
}

/// One task's training stream and what the loop needs to know of the task.
pub(crate) struct TaskRun {
    pub(crate) name: String,
    pub(crate) kind: TaskKind,
    pub(crate) stream: TaskStream,
}

/// The training stream of every task (augmented copies included), in config order.
pub(crate) fn streams(data: &RunData, formatters: &[TaskFormatter]) -> Result<Vec<TaskRun>> {
    let streams = data
        .tasks
        .train_streams(&data.tok, formatters, "data", true)?;
    Ok(data
        .tasks
        .config
        .tasks
        .iter()
        .zip(streams)
        .map(|(t, stream)| TaskRun {
            name: t.name.clone(),
            kind: t.kind,
            stream,
        })
        .collect())
}

/// Adds generated examples to a task's stream; the stream starts a fresh epoch over the
/// larger set (done identically on resume, so the order is reproducible).
pub(crate) fn extend_stream(
    run: &mut TaskRun,
    f: &TaskFormatter,
    examples: &[Example],
    fresh_epoch: bool,
) -> Result<()> {
    run.stream.extend(format_all(f, examples)?);
    if fresh_epoch {
        let s = run.stream.state();
        run.stream.restore(StreamState {
            epoch: s.epoch + 1,
            cursor: 0,
        });
    }
    Ok(())
}

/// Warns about a classify task whose training data holds one label only: it trains, but its
/// classifier can only ever predict that label.
fn warn_single_label(tasks: &TaskData) -> Result<()> {
    for (i, t) in tasks.config.tasks.iter().enumerate() {
        if t.kind != TaskKind::Classify {
            continue;
        }
        let examples = tasks.examples(i, "train", false)?.unwrap_or_default();
        let labels: std::collections::BTreeSet<&str> = examples
            .iter()
            .filter_map(|ex| match ex {
                Example::Classify { label, .. } => Some(label.as_str()),
                _ => None,
            })
            .collect();
        if labels.len() == 1 {
            tracing::warn!(
                "task `{}`: every training example has the label {:?}; the classifier can only \
                 ever predict it (check {})",
                t.name,
                labels.first().copied().unwrap_or_default(),
                t.train.display()
            );
        }
    }
    Ok(())
}
