//! `mtgpt pretrain`: language-model training of a reusable base on large corpora, written as a
//! model folder that `[model] init` takes.
//!
//! It is the joint trainer run on LM tasks only, so it has everything a run has: corpora
//! streamed through preprocessing in chunks and their token files memory-mapped while
//! training (a corpus larger than memory trains with only the windows it reads resident), the
//! tokenizer trained on the first [`mtgpt_text::prep::TOKENIZER_LM_BYTES`] of text, bf16 when
//! `model.precision = "bf16"`, checkpoints with exact `--resume`, the progress bar with
//! tokens/s and time left, and validation perplexity on each corpus's held-out text. The base
//! folder gets the trunk, the tokenizer and `pretrain.json`, the record of what made it.
use crate::error::{Error, Result};
use crate::trainer::{TrainOptions, TrainSummary, train};
use mtgpt_core::{Config, TaskKind};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The record written to `BASE/pretrain.json`.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainRecord {
    /// The config's `name`.
    pub name: String,
    /// One entry per corpus (LM task).
    pub corpora: Vec<Corpus>,
    /// Optimizer steps done in total (over resumes).
    pub steps: usize,
    /// Tokens the model was trained on: steps × batch × accumulation × context (every LM
    /// window is a full context).
    pub tokens_seen: usize,
    /// Validation perplexity per corpus at the end.
    pub valid_perplexity: std::collections::BTreeMap<String, f64>,
    /// `[step, mean training loss]` pairs from `metrics.jsonl` (at most 200, evenly spaced).
    pub loss_curve: Vec<(usize, f64)>,
    /// Wall-clock seconds of the last invocation (a resumed run counts from its resume).
    pub seconds: f64,
    /// Trunk parameters.
    pub parameters: i64,
    /// The machine: CPU model, cores, and the precision trained in.
    pub machine: String,
    /// The resolved config, as TOML.
    pub config: String,
}

/// One pretraining corpus.
#[derive(Debug, Clone, Serialize)]
pub struct Corpus {
    /// The LM task that reads it.
    pub task: String,
    /// Training text.
    pub train: PathBuf,
    /// Its size in bytes.
    pub train_bytes: u64,
    /// Held-out text (validation perplexity), if any.
    pub valid: Option<PathBuf>,
    /// Training tokens after preprocessing (the token file's length).
    pub train_tokens: u64,
    /// The task's sampling weight.
    pub weight: f64,
}

/// Trains the LM tasks of `config` into the run folder `opts.out` (checkpoints, `prep/`,
/// `metrics.jsonl`; `--resume` continues there) and writes the base model folder `base`:
/// `model.safetensors` + `config.json` (the trunk after the last step), the tokenizer and
/// `pretrain.json`. One process (no `opts.dist`): ranks would all write `base`.
pub fn pretrain(config: &Config, opts: &TrainOptions, base: &Path) -> Result<PretrainRecord> {
    if opts.dist.as_ref().is_some_and(|d| d.comm.size() > 1) {
        return Err(Error::Invalid(
            "pretrain runs in one process; train data-parallel with `mtgpt train \
             --distributed` and copy the model folder"
                .into(),
        ));
    }
    if config.tasks.is_empty() {
        return Err(Error::Invalid(
            "pretrain: the config has no [[task]]; give each corpus a `kind = \"lm\"` task".into(),
        ));
    }
    if let Some(t) = config.tasks.iter().find(|t| t.kind != TaskKind::Lm) {
        return Err(Error::Invalid(format!(
            "pretrain trains language models only, but task `{}` is `{}`; fine-tune on it \
             with `mtgpt train` and `model.init = \"{}\"` instead",
            t.name,
            t.kind.as_str(),
            base.display()
        )));
    }
    let summary = train(config, opts)?;
    // LM tasks give no validation aggregate, so the final model is the base (a `best/` left
    // by an earlier run in the same folder must not be taken).
    let from = opts.out.join("model");
    if !from.join("model.safetensors").exists() {
        return Err(Error::Invalid(format!(
            "{}: training wrote no model",
            opts.out.display()
        )));
    }
    std::fs::create_dir_all(base).map_err(|e| Error::Io {
        path: base.to_path_buf(),
        source: e,
    })?;
    for name in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer.mtgpt.json",
    ] {
        let (src, dst) = (from.join(name), base.join(name));
        std::fs::copy(&src, &dst).map_err(|e| Error::Io {
            path: src,
            source: e,
        })?;
    }
    let record = record(config, opts, &summary)?;
    let text = serde_json::to_string_pretty(&record).unwrap_or_default() + "\n";
    let path = base.join("pretrain.json");
    mtgpt_model::io::write_text_atomically(&path, &text)?;
    Ok(record)
}

fn record(config: &Config, opts: &TrainOptions, s: &TrainSummary) -> Result<PretrainRecord> {
    let prep = crate::trainer::data::prep_dir(opts);
    let manifest: Option<mtgpt_text::prep::PrepManifest> =
        std::fs::read_to_string(prep.join("prep.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
    let corpora = config
        .tasks
        .iter()
        .map(|t| {
            let train_tokens = manifest
                .as_ref()
                .and_then(|m| m.tasks.get(&t.name))
                .and_then(|i| i.splits.get("train"))
                .and_then(|sp| std::fs::metadata(prep.join(&sp.file)).ok())
                .map_or(0, |m| m.len() / 4);
            Corpus {
                task: t.name.clone(),
                train: t.train.clone(),
                train_bytes: std::fs::metadata(&t.train).map_or(0, |m| m.len()),
                valid: t.valid.clone(),
                train_tokens,
                weight: t.weight,
            }
        })
        .collect();
    let valid_perplexity = s
        .final_scores
        .iter()
        .filter_map(|t| t.metrics.get("perplexity").map(|p| (t.task.clone(), *p)))
        .collect();
    let c = &config.train;
    let world = opts.dist.as_ref().map_or(1, |d| d.comm.size());
    Ok(PretrainRecord {
        name: config.name.clone(),
        corpora,
        steps: s.steps,
        tokens_seen: s.steps * c.batch_size * c.grad_accum.max(1) * world * config.model.block_size,
        valid_perplexity,
        loss_curve: loss_curve(&opts.out.join("metrics.jsonl"), 200),
        seconds: s.seconds,
        parameters: s.parameters,
        machine: machine(config),
        config: config.to_toml_string(),
    })
}

/// `[step, loss]` of the training lines of a `metrics.jsonl`, thinned to at most `max`.
fn loss_curve(path: &Path, max: usize) -> Vec<(usize, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut by_step = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
            && let (Some(step), Some(loss)) = (
                v.get("step").and_then(|x| x.as_u64()),
                v.get("loss").and_then(|x| x.as_f64()),
            )
        {
            by_step.insert(step as usize, loss);
        }
    }
    let all: Vec<(usize, f64)> = by_step.into_iter().collect();
    let every = all.len().div_ceil(max.max(1)).max(1);
    let mut out: Vec<(usize, f64)> = all.iter().copied().step_by(every).collect();
    if let (Some(last), Some(kept)) = (all.last(), out.last())
        && last.0 != kept.0
    {
        out.push(*last);
    }
    out
}

/// The CPU model, its cores and the training precision, for the record.
fn machine(config: &Config) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{cpu}, {cores} cores, {} threads, precision {:?}",
        tch::get_num_threads(),
        config.model.precision
    )
    .replace("Fp32", "fp32")
    .replace("Bf16", "bf16")
}
