//! Compression of trained mtgpt models: unstructured magnitude pruning on a cubic schedule
//! ([`prune`]), structured pruning of attention heads and MLP neurons ([`structured`]),
//! per-channel int8 weights on libtorch's int8 kernels (`mtgpt_model::Gpt::quantize_int8`),
//! multi-task distillation into a shallower student ([`distill`]), and a size / speed / score
//! report for each ([`report`]).
//!
//! [`compress`] does one method end to end: it loads a model folder, preprocesses the
//! config's tasks with the model's tokenizer, compresses (fine-tuning where the method needs
//! it), writes the compressed model folder — which `mtgpt generate`, `predict`, `eval` and
//! `embed` load like any other — loads it back, and measures both.
//!
//! ```no_run
//! use mtgpt_compress::{CompressOptions, Method, compress};
//! use std::path::Path;
//! let config = mtgpt_core::Config::load(Path::new("configs/demo.toml"), &[])?;
//! let report = compress(
//!     Path::new("runs/demo/model"),
//!     &config,
//!     Method::Int8,
//!     Path::new("runs/demo/int8"),
//!     &CompressOptions::default(),
//! )?;
//! println!("{}", report.table());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod data;
pub mod distill;
pub mod error;
pub mod finetune;
pub mod prune;
pub mod report;
pub mod structured;

pub use error::{Error, Result};
pub use report::{CompressReport, ModelStats};

use finetune::{Moment, finetune};
use mtgpt_core::{Config, Importance};
use mtgpt_model::compact::{WeightFormat, save_trunk_as};
use mtgpt_tasks::{HeadSpec, MultiTaskModel, TaskHead, TaskScores};
use mtgpt_tasks::{ScoreLimits, TaskData};
use mtgpt_text::TextTokenizer;
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use tch::Device;

/// A compression method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Unstructured magnitude pruning, gradual during fine-tuning; stored sparse.
    Prune,
    /// Removing whole attention heads and MLP neurons, then fine-tuning.
    PruneStructured,
    /// Per-channel symmetric int8 weights.
    Int8,
    /// A shallower student distilled from the model.
    Distill,
}

impl Method {
    /// The name used in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Prune => "prune",
            Method::PruneStructured => "prune-structured",
            Method::Int8 => "int8",
            Method::Distill => "distill",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "prune" => Method::Prune,
            "prune-structured" => Method::PruneStructured,
            "int8" => Method::Int8,
            "distill" => Method::Distill,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown compression method `{s}`; expected one of {}",
                    mtgpt_core::config::COMPRESS_METHODS.join(", ")
                )));
            }
        })
    }
}

/// How [`compress`] runs beyond the config's `[compress]` section.
#[derive(Debug, Clone)]
pub struct CompressOptions {
    /// Device.
    pub device: Device,
    /// Split the scores are measured on (`test` or `valid`).
    pub split: String,
    /// At most this many examples per labelled task are scored (`None` = all).
    pub eval_examples: Option<usize>,
    /// LM tokens scored per LM task.
    pub lm_tokens: usize,
    /// Timed rounds of the speed measurement (0 = skip it).
    pub speed_runs: usize,
    /// Batches used to rank heads and neurons by Taylor importance.
    pub importance_batches: usize,
    /// The uncompressed model's scores on `split` from an earlier call with the same model
    /// and options (`CompressReport.before.scores`), reused instead of evaluating it again
    /// (`mtgpt run` passes them from its first method to the next ones).
    pub before_scores: Option<Vec<TaskScores>>,
    /// A preprocessing folder of the config made for this model (a run's `prep/`) and the
    /// options it was made with: read instead of preprocessing again when it is up to date
    /// and made with the model's tokenizer.
    pub prepared: Option<(std::path::PathBuf, mtgpt_text::prep::PrepOptions)>,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            device: Device::Cpu,
            split: "test".into(),
            eval_examples: None,
            lm_tokens: 20000,
            speed_runs: 5,
            importance_batches: 32,
            before_scores: None,
            prepared: None,
        }
    }
}

/// Compresses the model folder `model_dir` with `method` (settings from `config.compress`,
/// fine-tuning on `config`'s tasks with its `[train]` optimizer settings) into `out_dir`,
/// writes `out_dir/compress.json` and returns the report.
pub fn compress(
    model_dir: &Path,
    config: &Config,
    method: Method,
    out_dir: &Path,
    opts: &CompressOptions,
) -> Result<CompressReport> {
    let started = Instant::now();
    if out_dir.exists()
        && let (Ok(a), Ok(b)) = (out_dir.canonicalize(), model_dir.canonicalize())
        && a == b
    {
        return Err(Error::Invalid(format!(
            "--out {} is the input model folder; write the compressed model elsewhere",
            out_dir.display()
        )));
    }
    let (teacher, tasks) = MultiTaskModel::load(model_dir, opts.device)?;
    if teacher.gpt.is_int8() {
        return Err(Error::Invalid(format!(
            "{} is already int8; compress the float model it came from",
            model_dir.display()
        )));
    }
    let tok_path = model_dir.join("tokenizer.json");
    let tok = TextTokenizer::load(&tok_path)?;
    let prepared = opts.prepared.as_ref().map(|(d, o)| (d.as_path(), o));
    let data = TaskData::for_model(config, &tasks, &tok_path, prepared)?;
    let specs: Vec<HeadSpec> = tasks.iter().map(TaskHead::spec).collect();
    let c = &config.compress;
    let steps = c.finetune_steps;
    let block = teacher.gpt.config.block_size;
    let train_started = Instant::now();
    let (model, details, format) = match method {
        Method::Int8 => {
            let (mut m, _) = MultiTaskModel::load(model_dir, opts.device)?;
            m.gpt.quantize_int8();
            let layers = m.gpt.linears().len();
            (
                m,
                json!({"quantized_linears": layers, "quantized_embedding": true,
                       "kernels": format!("per-output-channel symmetric int8 weights; up to {} rows aten::_weight_int8pack_mm on bf16 activations, above that aten::_int_mm on per-row int8 activations", mtgpt_model::layers::INT8_WEIGHT_ONLY_MAX_ROWS)}),
                WeightFormat::Int8,
            )
        }
        Method::Prune => {
            let (m, _) = MultiTaskModel::load(model_dir, opts.device)?;
            let mut pruner = prune::Pruner::new(&m.gpt, c.scope);
            let prune_steps = (steps * 3 / 4).max(1);
            let every = (prune_steps / 10).max(1);
            let mut losses = Vec::new();
            if steps > 0 {
                let mut batches = data::batches(&data, &tok, block, steps)?;
                losses = finetune(
                    &m.vs,
                    &mut batches,
                    &config.train,
                    steps,
                    |_, b| Ok(m.forward(b, true)?.loss),
                    |moment, step| match moment {
                        Moment::BeforeUpdate => pruner.mask_grads(),
                        Moment::AfterUpdate => {
                            let done = step + 1;
                            if done <= prune_steps && (done % every == 0 || done == prune_steps) {
                                pruner.prune_to(prune::cubic_sparsity(
                                    c.sparsity,
                                    done,
                                    prune_steps,
                                ));
                            } else {
                                pruner.apply();
                            }
                        }
                    },
                )?;
            }
            // The schedule ends at the target; one-shot when there is no fine-tuning.
            pruner.prune_to(c.sparsity);
            let (zeros, total) = pruner.counts();
            (
                m,
                json!({"target_sparsity": c.sparsity, "scope": c.scope, "sparsity": pruner.sparsity(),
                       "pruned_weights": zeros, "prunable_weights": total,
                       "finetune_steps": steps, "schedule": format!("cubic over the first {prune_steps} steps, every {every}"),
                       "layer_sparsity": pruner.layer_sparsity(), "loss_first": losses.first(), "loss_last": losses.last()}),
                WeightFormat::Sparse,
            )
        }
        Method::PruneStructured => {
            let scores = match c.importance {
                Importance::Norm => structured::norm_importance(&teacher.gpt),
                Importance::Taylor => {
                    let mut batches = data::batches(&data, &tok, block, opts.importance_batches)?;
                    structured::taylor_importance(&teacher, &mut batches, opts.importance_batches)?
                }
            };
            let keep_heads = structured::select(&scores.heads, c.head_fraction);
            let keep_neurons = structured::select(&scores.neurons, c.neuron_fraction);
            let m = structured::shrink(&teacher, &specs, &keep_heads, &keep_neurons)?;
            let mut losses = Vec::new();
            if steps > 0 {
                let mut batches = data::batches(&data, &tok, block, steps)?;
                losses = finetune(
                    &m.vs,
                    &mut batches,
                    &config.train,
                    steps,
                    |_, b| Ok(m.forward(b, true)?.loss),
                    |_, _| {},
                )?;
            }
            (
                m,
                json!({"importance": c.importance, "head_fraction": c.head_fraction, "neuron_fraction": c.neuron_fraction,
                       "kept_heads": keep_heads, "kept_neurons_per_layer": keep_neurons.iter().map(Vec::len).collect::<Vec<_>>(),
                       "finetune_steps": steps, "loss_first": losses.first(), "loss_last": losses.last()}),
                WeightFormat::Dense,
            )
        }
        Method::Distill => {
            let (student, map) = distill::init_student(&teacher, &specs, c.student_layers)?;
            let d = distill::Distiller {
                teacher: &teacher,
                student: &student,
                alpha: c.alpha,
                temperature: c.temperature,
                hidden_weight: c.hidden_weight,
                map: map.clone(),
            };
            let mut kls = Vec::new();
            if steps > 0 {
                let mut batches = data::batches(&data, &tok, block, steps)?;
                finetune(
                    &student.vs,
                    &mut batches,
                    &config.train,
                    steps,
                    |_, b| {
                        let l = d.loss(b, true)?;
                        kls.push(l.kl);
                        Ok(l.total)
                    },
                    |_, _| {},
                )?;
            }
            let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            let k = kls.len().min(25);
            (
                student,
                json!({"student_layers": map.len(), "teacher_layers": teacher.gpt.config.n_layer,
                       "initialised_from_teacher_blocks": map, "alpha": c.alpha, "temperature": c.temperature,
                       "hidden_weight": c.hidden_weight, "finetune_steps": steps,
                       "kl_first_25": mean(&kls[..k]), "kl_last_25": mean(&kls[kls.len() - k..])}),
                WeightFormat::Dense,
            )
        }
    };
    let train_seconds = train_started.elapsed().as_secs_f64();

    // Write the folder: the model's own run config with the new shape recorded.
    let mut run_config =
        Config::load_saved(model_dir.join("mtgpt.toml")).unwrap_or_else(|_| config.clone());
    run_config.model = model.gpt.config.clone();
    model.save(out_dir, &tasks, Some(&run_config.to_toml_string()))?;
    if format != WeightFormat::Dense {
        save_trunk_as(&model.gpt, &model.vs, out_dir, format)?;
    }
    mtgpt_model::io::copy_tokenizer(model_dir, out_dir)?;
    drop(model);

    // Measure the folder as every verb will load it.
    let (after, _) = MultiTaskModel::load(out_dir, opts.device)?;
    let speed = if opts.speed_runs > 0 {
        report::measure_speed(
            &[&teacher, &after],
            &tok,
            &data,
            &opts.split,
            opts.speed_runs,
        )?
    } else {
        vec![(f64::NAN, f64::NAN, f64::NAN); 2]
    };
    let limits = ScoreLimits {
        max_examples: opts.eval_examples,
        lm_tokens: opts.lm_tokens,
        samples: 0,
    };
    let before_scores = match &opts.before_scores {
        Some(scores) => scores.clone(),
        None => data.score(&teacher, &tok, &opts.split, &limits)?.scores,
    };
    let after_scores = data.score(&after, &tok, &opts.split, &limits)?.scores;
    let report = CompressReport {
        method: method.as_str().into(),
        model: model_dir.display().to_string(),
        out: out_dir.display().to_string(),
        split: opts.split.clone(),
        before: report::stats(&teacher, model_dir, speed[0], before_scores),
        after: report::stats(&after, out_dir, speed[1], after_scores),
        details,
        seconds: started.elapsed().as_secs_f64(),
        train_seconds,
        prep_reused: data.reused(),
    };
    let path = out_dir.join("compress.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))?;
    Ok(report)
}
