//! The joint training loop: `prep` → model → (LM pretraining) → joint multi-task training with
//! task sampling (one task per step or mixed batches), loss weighting (PCGrad included), AdamW,
//! schedule, clipping and gradient accumulation → divergence guard, generated-example
//! augmentation, evaluation, best model, early stopping, atomic checkpoints and exact resume →
//! curves and a Markdown report.
use crate::dist::{Distributed, average_gradients, average_tensors, set_gradients, shard};
use crate::error::{Error, Result};
use crate::genaug::{AugmentOutcome, generate_examples};
use crate::guard::{DivergenceGuard, GuardState};
use crate::optim::{AdamW, learning_rate};
use crate::sampler::TaskSampler;
use crate::stream::{StreamState, TaskStream};
use crate::weighting::{LossWeighting, WeightingState, pcgrad};
use mtgpt_core::{Config, Example, ModelConfig, TaskKind};
use mtgpt_heads::{
    Evaluator, HeadSpec, MultiTaskModel, TaskFormatter, TaskHead, TaskScores, aggregate,
};
use mtgpt_model::io::{load_weights, read_safetensors, save_weights, write_safetensors};
use mtgpt_text::TextTokenizer;
use mtgpt_text::prep::{
    PrepManifest, PrepOptions, cached_manifest, prepare_cached, read_split, read_token_file,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Tensor};
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
    /// Parameters of the trained model.
    pub parameters: i64,
}

/// Everything besides weights and moments that a checkpoint must hold for exact resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    step: usize,
    pretrain_sampler: Option<serde_json::Value>,
    sampler: serde_json::Value,
    weighting: serde_json::Value,
    streams: Vec<StreamState>,
    best_score: Option<f64>,
    evals_without_improvement: usize,
    #[serde(default)]
    guard: Option<GuardState>,
    /// Tasks whose generated examples (in `out/augment/<task>.jsonl`) joined their stream.
    #[serde(default)]
    augmented: Vec<String>,
    /// Ranks of the data-parallel job that wrote it (absent: 1); a resume needs the same.
    #[serde(default)]
    world_size: Option<usize>,
}

pub(crate) struct TaskRun {
    name: String,
    kind: TaskKind,
    stream: TaskStream,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

fn heads_from(manifest: &PrepManifest, config: &Config) -> Vec<TaskHead> {
    config
        .tasks
        .iter()
        .map(|t| TaskHead {
            name: t.name.clone(),
            kind: t.kind,
            labels: manifest.tasks[&t.name].labels.clone(),
        })
        .collect()
}

/// The latest checkpoint folder in `dir`, if any.
pub fn latest_checkpoint(dir: &Path) -> Option<PathBuf> {
    let mut steps: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("step-")?.parse::<usize>().ok()?;
            e.path()
                .join("trainer.json")
                .exists()
                .then_some((n, e.path()))
        })
        .collect();
    steps.sort();
    steps.pop().map(|(_, p)| p)
}

/// The data side of a run: preprocessing output, tokenizer, heads and the model shape.
pub struct RunData {
    /// The preprocessing folder.
    pub prep_dir: PathBuf,
    /// Its manifest.
    pub manifest: PrepManifest,
    /// The tokenizer.
    pub tok: TextTokenizer,
    /// One head per task, in config order.
    pub heads: Vec<TaskHead>,
    /// The model config with the tokenizer's vocabulary size.
    pub model_cfg: ModelConfig,
}

/// Runs (or reuses) the preprocessing of `config` and loads what training needs.
pub fn load_data(config: &Config, opts: &TrainOptions) -> Result<RunData> {
    let prep_dir = opts
        .prep_dir
        .clone()
        .unwrap_or_else(|| opts.out.join("prep"));
    let (manifest, cached) = prepare_cached(
        config,
        &prep_dir,
        &PrepOptions {
            lexicons: opts.lexicons.clone(),
            skip_bad: false,
        },
    )?;
    if cached {
        tracing::info!(
            "preprocessing: inputs unchanged, reusing {}",
            prep_dir.display()
        );
    }
    data_from(config, prep_dir, manifest)
}

/// [`load_data`] for ranks other than 0 of a distributed job: rank 0's preprocessing is read,
/// never written (the ranks of one host would race, and only rank 0 writes into `out`).
fn load_prepared(config: &Config, opts: &TrainOptions) -> Result<RunData> {
    let prep_dir = opts
        .prep_dir
        .clone()
        .unwrap_or_else(|| opts.out.join("prep"));
    let popts = PrepOptions {
        lexicons: opts.lexicons.clone(),
        skip_bad: false,
    };
    let manifest = cached_manifest(config, &prep_dir, &popts).ok_or_else(|| {
        Error::Invalid(format!(
            "{}: rank 0's preprocessing is not visible here or differs; every rank needs the \
             output folder on a shared file system (or a copy of rank 0's prep folder)",
            prep_dir.display()
        ))
    })?;
    data_from(config, prep_dir, manifest)
}

fn data_from(config: &Config, prep_dir: PathBuf, manifest: PrepManifest) -> Result<RunData> {
    let tok = TextTokenizer::load(&prep_dir.join("tokenizer.json"))?;
    let heads = heads_from(&manifest, config);
    let mut model_cfg = config.model.clone();
    model_cfg.vocab_size = tok.vocab_size();
    Ok(RunData {
        prep_dir,
        manifest,
        tok,
        heads,
        model_cfg,
    })
}

/// One formatter per task, in config order.
pub fn formatters<'a>(config: &Config, data: &'a RunData) -> Result<Vec<TaskFormatter<'a>>> {
    let block = data.model_cfg.block_size;
    config
        .tasks
        .iter()
        .zip(&data.heads)
        .map(|(t, h)| {
            let max_len = t.max_len.unwrap_or(block).min(block);
            Ok(TaskFormatter::new(
                &data.tok, &t.name, t.kind, &h.labels, max_len,
            )?)
        })
        .collect()
}

pub(crate) fn streams(
    config: &Config,
    data: &RunData,
    formatters: &[TaskFormatter],
) -> Result<Vec<TaskRun>> {
    let mut runs = Vec::new();
    for (t, f) in config.tasks.iter().zip(formatters) {
        let info = &data.manifest.tasks[&t.name];
        let train = info
            .splits
            .get("train")
            .ok_or_else(|| Error::Invalid(format!("task `{}` has no training data", t.name)))?;
        let seed = mtgpt_core::seed::derive_seed(config.seed, &format!("data/{}", t.name));
        let stream = if t.kind == TaskKind::Lm {
            let tokens = read_token_file(&data.prep_dir.join(&train.file))?;
            let task_id = data.tok.task_id(&t.name).unwrap_or(0) as i64;
            TaskStream::tokens(tokens, f.max_len() - 1, task_id, seed)
        } else {
            let mut items = Vec::new();
            for (k, ex) in read_split(&data.prep_dir.join(&train.file))?
                .iter()
                .enumerate()
            {
                items.extend(f.format(ex, k)?);
            }
            TaskStream::examples(items, seed)
        };
        if stream.is_empty() {
            return Err(Error::Invalid(format!(
                "task `{}`: no training sequences",
                t.name
            )));
        }
        runs.push(TaskRun {
            name: t.name.clone(),
            kind: t.kind,
            stream,
        });
    }
    Ok(runs)
}

/// A training phase: a sampler over a subset of the tasks.
struct Phase {
    sampler: TaskSampler,
    tasks: Vec<usize>,
}

impl Phase {
    /// `(task, examples)` groups of the next step.
    fn plan(&mut self, mixed: bool, batch: usize) -> Vec<(usize, usize)> {
        if mixed && self.tasks.len() > 1 {
            let mut counts = vec![0usize; self.tasks.len()];
            for k in self.sampler.mixed_batch(batch) {
                counts[k] += 1;
            }
            counts
                .into_iter()
                .enumerate()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (self.tasks[k], n))
                .collect()
        } else {
            vec![(self.tasks[self.sampler.next_task()], batch)]
        }
    }
}

/// The outcome of one forward/backward pass over a step's groups.
pub(crate) struct StepOut {
    /// Mean loss of each group's task.
    pub(crate) task_losses: Vec<(usize, f64)>,
    /// Global gradient norm before clipping.
    pub(crate) norm: f64,
    /// Real tokens processed.
    pub(crate) tokens: usize,
}

/// An in-memory copy of the last good state, for the divergence guard.
struct Snapshot {
    vars: Vec<Tensor>,
    opt: Vec<(String, Tensor)>,
    weighting: WeightingState,
}

impl Snapshot {
    fn take(vars: &[Tensor], opt: &AdamW, weighting: &LossWeighting) -> Self {
        tch::no_grad(|| Snapshot {
            vars: vars.iter().map(|v| v.detach().copy()).collect(),
            opt: opt
                .state()
                .into_iter()
                .map(|(n, t)| (n, t.copy()))
                .collect(),
            weighting: weighting.state(),
        })
    }

    fn restore(
        &self,
        vars: &[Tensor],
        opt: &mut AdamW,
        weighting: &mut LossWeighting,
    ) -> Result<()> {
        tch::no_grad(|| {
            for (v, s) in vars.iter().zip(&self.vars) {
                v.shallow_clone().copy_(s);
            }
        });
        opt.load_state(&self.opt).map_err(Error::Invalid)?;
        weighting.restore(&self.weighting)?;
        Ok(())
    }
}

/// Every variable of the model, sorted by name (a fixed order for snapshots and PCGrad).
pub(crate) fn sorted_vars(model: &MultiTaskModel) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run_step(
    model: &MultiTaskModel,
    formatters: &[TaskFormatter],
    runs: &mut [TaskRun],
    weighting: &LossWeighting,
    opt: &mut AdamW,
    trainable: &[Tensor],
    c: &mtgpt_core::TrainConfig,
    plan: &[(usize, usize)],
    inject_nan: bool,
    pcgrad_seed: u64,
    dist: Option<&Distributed>,
) -> Result<StepOut> {
    let total: usize = plan.iter().map(|g| g.1).sum();
    let (rank, size) = dist.map_or((0, 1), |d| (d.comm.rank(), d.comm.size()));
    let use_pcgrad = weighting.uses_pcgrad() && plan.len() > 1;
    let mut task_grads: Vec<Vec<Tensor>> = Vec::new();
    let mut task_losses = Vec::new();
    let mut tokens = 0;
    for &(task, n) in plan {
        let share = n as f64 / total.max(1) as f64;
        let mut sum = 0.0;
        // Every rank draws the whole group and trains on its own slice; the slice's loss is
        // scaled so that averaging over ranks gives the mean over the whole group.
        let mine = shard(n, rank, size);
        let part = mine.len() as f64 / n.max(1) as f64;
        for _ in 0..c.grad_accum {
            let mut items = runs[task].stream.next_batch(n);
            if size > 1 {
                items = items.drain(mine.clone()).collect();
                if items.is_empty() {
                    continue;
                }
            }
            let batch = formatters[task].collate(&items)?;
            tokens += batch.attention_mask.iter().filter(|&&m| m == 1).count();
            let out = model.forward(&batch, true)?;
            let loss = if inject_nan {
                out.loss * f64::NAN
            } else {
                out.loss
            };
            sum += loss.double_value(&[]) * part;
            let weighted = weighting.combine(task, &loss)?
                * (share / c.grad_accum as f64 * part * size as f64);
            weighted.backward();
        }
        task_losses.push((task, sum / c.grad_accum as f64));
        if use_pcgrad {
            // This task's gradients, then a clean slate for the next task.
            task_grads.push(
                trainable
                    .iter()
                    .map(|v| {
                        let g = v.grad();
                        if g.defined() {
                            let copy = g.copy();
                            let _ = tch::no_grad(|| g.shallow_clone().zero_());
                            copy
                        } else {
                            Tensor::new()
                        }
                    })
                    .collect(),
            );
        }
    }
    if let Some(d) = dist.filter(|_| size > 1) {
        // Ranks agree on the losses (the guard, the weighting and the logs use them) and
        // average the gradients before clipping and before PCGrad's projections.
        let mut shared: Vec<f64> = task_losses.iter().map(|x| x.1).collect();
        shared.push(tokens as f64);
        d.comm.all_reduce_sum_f64(&mut shared)?;
        for (x, v) in task_losses.iter_mut().zip(&shared) {
            x.1 = *v;
        }
        tokens = shared[shared.len() - 1] as usize;
        if use_pcgrad {
            for g in &mut task_grads {
                average_tensors(d.comm.as_ref(), g, trainable, d.bucket_bytes)?;
            }
        } else {
            average_gradients(d.comm.as_ref(), trainable, d.bucket_bytes)?;
        }
    }
    if use_pcgrad {
        let mut rng = mtgpt_core::seed::rng_for(pcgrad_seed, "pcgrad");
        let combined = pcgrad(&task_grads, &mut rng)?;
        // A gradient this rank's shard never touched still gets the averaged one.
        let absent: Vec<usize> = (0..trainable.len())
            .filter(|&i| combined[i].defined() && !trainable[i].grad().defined())
            .collect();
        set_gradients(trainable, &combined, &absent);
        tch::no_grad(|| {
            for (v, g) in trainable.iter().zip(&combined) {
                let dst = v.grad();
                if g.defined() && dst.defined() {
                    dst.shallow_clone().copy_(g);
                }
            }
        });
    }
    let mut norm = opt.clip_grad_norm(c.grad_clip);
    if let Some(d) = dist.filter(|_| size > 1) {
        // Rank 0's view decides (all-reduce results may differ in the last bit between ranks).
        let mut shared: Vec<f64> = task_losses.iter().map(|x| x.1).collect();
        shared.push(norm);
        d.comm.broadcast_f64(&mut shared, 0)?;
        for (x, v) in task_losses.iter_mut().zip(&shared) {
            x.1 = *v;
        }
        norm = shared[shared.len() - 1];
    }
    Ok(StepOut {
        task_losses,
        norm,
        tokens,
    })
}

fn write_augment_file(path: &Path, examples: &[Example]) -> Result<()> {
    let mut text = String::new();
    for ex in examples {
        text.push_str(&serde_json::to_string(ex).map_err(|e| Error::Invalid(e.to_string()))?);
        text.push('\n');
    }
    mtgpt_model::io::write_text_atomically(path, &text)?;
    Ok(())
}

/// Adds generated examples to a task's stream; the stream starts a fresh epoch over the
/// larger set (done identically on resume, so the order is reproducible).
fn extend_stream(
    run: &mut TaskRun,
    f: &TaskFormatter,
    examples: &[Example],
    fresh_epoch: bool,
) -> Result<()> {
    let mut items = Vec::new();
    for (k, ex) in examples.iter().enumerate() {
        items.extend(f.format(ex, k)?);
    }
    run.stream.extend(items);
    if fresh_epoch {
        let s = run.stream.state();
        run.stream.restore(StreamState {
            epoch: s.epoch + 1,
            cursor: 0,
        });
    }
    Ok(())
}

/// Trains `config` into `opts.out`.
pub fn train(config: &Config, opts: &TrainOptions) -> Result<TrainSummary> {
    let started = Instant::now();
    let out = &opts.out;
    // Data-parallel: this rank and the number of ranks; only rank 0 writes into `out`.
    let dist = opts.dist.as_ref().filter(|d| d.comm.size() > 1);
    let (rank, world) = dist.map_or((0, 1), |d| (d.comm.rank(), d.comm.size()));
    let writer = rank == 0;
    if writer {
        std::fs::create_dir_all(out).map_err(io_err(out))?;
    }
    let c = &config.train;

    // 1. Data: the prep stage (rank 0 alone when distributed), then one batch stream per task.
    let data = match dist {
        Some(d) => {
            let prepared = writer.then(|| load_data(config, opts));
            d.comm.barrier()?;
            match prepared {
                Some(data) => data?,
                None => load_prepared(config, opts)?,
            }
        }
        None => load_data(config, opts)?,
    };
    let formatters = formatters(config, &data)?;
    let mut runs = streams(config, &data, &formatters)?;
    let (tok, heads, manifest, prep_dir) = (&data.tok, &data.heads, &data.manifest, &data.prep_dir);

    // 2. Model, loss weighting (its parameters join the optimizer), optimizer, samplers.
    tch::manual_seed(config.seed as i64);
    let specs: Vec<HeadSpec> = heads.iter().map(TaskHead::spec).collect();
    let model = MultiTaskModel::new(&data.model_cfg, &specs, opts.device)?;
    let weights: Vec<f64> = config.tasks.iter().map(|t| t.weight).collect();
    let mut weighting =
        LossWeighting::new(&(model.vs.root() / "loss_weights"), &c.weighting, &weights)?;
    let mut opt = AdamW::from_config(&model.vs, c);
    let all_vars: Vec<Tensor> = sorted_vars(&model).into_iter().map(|(_, t)| t).collect();
    let trainable: Vec<Tensor> = all_vars
        .iter()
        .filter(|t| t.requires_grad())
        .map(Tensor::shallow_clone)
        .collect();
    let sizes: Vec<usize> = runs.iter().map(|r| r.stream.len()).collect();
    let index_of = |name: &str| {
        config
            .tasks
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| Error::Invalid(format!("no task called `{name}` in the config")))
    };
    let lm_tasks: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == TaskKind::Lm)
        .map(|(i, _)| i)
        .collect();
    let joint_tasks: Vec<usize> = match &opts.joint_tasks {
        Some(names) => names.iter().map(|n| index_of(n)).collect::<Result<_>>()?,
        None => (0..runs.len()).collect(),
    };
    if joint_tasks.is_empty() {
        return Err(Error::Invalid("no task to train in the joint phase".into()));
    }
    let phase = |tasks: Vec<usize>, steps: usize, name: &str| -> Result<Phase> {
        let sub: Vec<usize> = tasks.iter().map(|&i| sizes[i]).collect();
        Ok(Phase {
            sampler: TaskSampler::new(
                &sub,
                &c.sampling,
                steps,
                mtgpt_core::seed::derive_seed(config.seed, name),
            )?,
            tasks,
        })
    };
    let mut pretrain = if c.pretrain_steps > 0 {
        Some(phase(lm_tasks.clone(), c.pretrain_steps, "pretrain")?)
    } else {
        None
    };
    let mut joint = phase(joint_tasks, c.steps, "sampler")?;
    let total = c.pretrain_steps + c.steps;
    let mut guard = DivergenceGuard::new(runs.len(), c.spike_factor);
    // Where generated examples are made: after this many steps.
    let augment_tasks: Vec<(usize, mtgpt_core::GenerateAugmentConfig)> = if opts.no_generate_augment
    {
        Vec::new()
    } else {
        config
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.generate_augment.clone().map(|g| (i, g)))
            .collect()
    };
    let augment_dir = out.join("augment");
    if dist.is_some() && !augment_tasks.is_empty() {
        return Err(Error::Invalid(
            "generate_augment is not supported in distributed training yet; remove it from the \
             config or train on one process"
                .into(),
        ));
    }

    // 3. Resume.
    let ckpt_dir = out.join("checkpoints");
    let mut state = TrainerState {
        step: 0,
        pretrain_sampler: None,
        sampler: serde_json::Value::Null,
        weighting: serde_json::Value::Null,
        streams: Vec::new(),
        best_score: None,
        evals_without_improvement: 0,
        guard: None,
        augmented: Vec::new(),
        world_size: dist.map(|_| world),
    };
    if opts.resume {
        let dir = latest_checkpoint(&ckpt_dir).ok_or_else(|| {
            Error::Invalid(format!("--resume: no checkpoint in {}", ckpt_dir.display()))
        })?;
        load_weights(&model.vs, &dir.join("weights.safetensors"), "")?;
        opt.load_state(&read_safetensors(&dir.join("optimizer.safetensors"))?)
            .map_err(|e| {
                Error::Invalid(format!(
                    "{}: {e}",
                    dir.join("optimizer.safetensors").display()
                ))
            })?;
        let path = dir.join("trainer.json");
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        state = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let written_by = state.world_size.unwrap_or(1);
        if written_by != world {
            return Err(Error::Invalid(format!(
                "{}: written by a job of {written_by} rank(s), this one has {world}; resume \
                 with the same number of ranks (the data order depends on it)",
                path.display()
            )));
        }
        if state.streams.len() != runs.len() {
            return Err(Error::Invalid(format!(
                "{}: {} task streams, the config has {} tasks",
                path.display(),
                state.streams.len(),
                runs.len()
            )));
        }
        for name in &state.augmented {
            let i = index_of(name)?;
            let file = augment_dir.join(format!("{name}.jsonl"));
            let examples = read_split(&file)?;
            extend_stream(&mut runs[i], &formatters[i], &examples, false)?;
        }
        for (r, s) in runs.iter_mut().zip(&state.streams) {
            r.stream.restore(*s);
        }
        let bad = |e: serde_json::Error| Error::Invalid(format!("{}: {e}", path.display()));
        joint
            .sampler
            .restore(&serde_json::from_value(state.sampler.clone()).map_err(bad)?)?;
        if let (Some(p), Some(s)) = (pretrain.as_mut(), state.pretrain_sampler.as_ref()) {
            p.sampler
                .restore(&serde_json::from_value(s.clone()).map_err(bad)?)?;
        }
        weighting.restore(&serde_json::from_value(state.weighting.clone()).map_err(bad)?)?;
        if let Some(g) = state.guard.clone() {
            guard
                .restore(g)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        }
        tracing::info!("resumed from {} at step {}", dir.display(), state.step);
    }

    // 4. The loop.
    let metrics_path = out.join("metrics.jsonl");
    // A fresh run starts a fresh log; a resumed one appends (steps it repeats are logged again
    // and the later line wins).
    if opts.resume && writer {
        drop_partial_line(&metrics_path)?;
    }
    let mut metrics: Box<dyn Write> = if writer {
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(opts.resume)
                .write(true)
                .truncate(!opts.resume)
                .open(&metrics_path)
                .map_err(io_err(&metrics_path))?,
        )
    } else {
        Box::new(std::io::sink())
    };
    let run_config = config.to_toml_string();
    let mut stopped_early = false;
    let mut final_scores = Vec::new();
    let mut augmented = Vec::new();
    let mut tokens_seen = 0usize;
    let tick = Instant::now();
    let mut snapshot = Snapshot::take(&all_vars, &opt, &weighting);
    let bar = (writer && opts.progress && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_position(state.step as u64);
        bar
    });
    let say = |msg: String| match &bar {
        _ if !writer => {}
        Some(b) => b.suspend(|| tracing::info!("{msg}")),
        None => tracing::info!("{msg}"),
    };
    // Per-task loss sums since the last log line.
    let mut window: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    // The time budget counts training, not preprocessing or building the model.
    let loop_started = Instant::now();
    while state.step < total {
        let step = state.step;
        // Generated examples join their task once the classifier is trained enough to filter.
        for (i, g) in &augment_tasks {
            let name = runs[*i].name.clone();
            let name = &name;
            let at = c.pretrain_steps + (g.at_fraction * c.steps as f64) as usize;
            if step == at && !state.augmented.contains(name) {
                let train_split = &manifest.tasks[name].splits["train"];
                let train_examples = read_split(&prep_dir.join(&train_split.file))?;
                say(format!(
                    "step {step}: generating {} examples for `{name}`",
                    g.n
                ));
                let (examples, outcome) = generate_examples(
                    &model,
                    &data.model_cfg,
                    tok,
                    &formatters[*i],
                    &heads[*i],
                    &train_examples,
                    g,
                    mtgpt_core::seed::derive_seed(config.seed, &format!("genaug/{name}")),
                    opts.device,
                )?;
                std::fs::create_dir_all(&augment_dir).map_err(io_err(&augment_dir))?;
                write_augment_file(&augment_dir.join(format!("{name}.jsonl")), &examples)?;
                extend_stream(&mut runs[*i], &formatters[*i], &examples, true)?;
                say(format!(
                    "`{name}`: kept {} of {} generated examples (generator loss {:.3} → {:.3})",
                    outcome.kept,
                    outcome.generated,
                    outcome.finetune_loss.0,
                    outcome.finetune_loss.1
                ));
                writeln!(metrics, "{}", json!({"step": step, "augment": outcome}))
                    .map_err(io_err(&metrics_path))?;
                state.augmented.push(name.clone());
                augmented.push(outcome);
            }
        }
        // Dropout draws depend on (seed, step) only, so a resumed run repeats them.
        // Each rank draws its own dropout masks (rank 0 those of a single-process run).
        let step_seed = mtgpt_core::seed::derive_seed(config.seed, &format!("step/{step}"));
        let dropout_seed = match rank {
            0 => step_seed,
            r => mtgpt_core::seed::derive_seed(step_seed, &format!("rank/{r}")),
        };
        tch::manual_seed(dropout_seed as i64);
        // The plan is of the global batch; each rank trains on its slice of every group.
        let global_batch = c.batch_size * world;
        let plan = match pretrain.as_mut() {
            Some(p) if step < c.pretrain_steps => p.plan(c.sampling.mixed_batches, global_batch),
            _ => joint.plan(c.sampling.mixed_batches, global_batch),
        };
        let so = run_step(
            &model,
            &formatters,
            &mut runs,
            &weighting,
            &mut opt,
            &trainable,
            c,
            &plan,
            opts.inject_nan_at.contains(&step),
            step_seed,
            dist,
        )?;
        tokens_seen += so.tokens;
        let lr = learning_rate(c, step, total) * guard.lr_scale();
        match guard.check(&so.task_losses, so.norm) {
            None => {
                opt.step(lr);
                for &(t, l) in &so.task_losses {
                    weighting.observe(t, l)?;
                    let e = window.entry(runs[t].name.clone()).or_default();
                    e.0 += l;
                    e.1 += 1;
                }
                guard.observe(&so.task_losses);
            }
            Some(reason) => {
                snapshot.restore(&all_vars, &mut opt, &mut weighting)?;
                guard.record_event(c.guard_lr_factor);
                let msg = format!(
                    "step {step}: divergence ({reason}); restored the last good state, learning rate × {} (now × {:.3}), event {} of at most {}",
                    c.guard_lr_factor,
                    guard.lr_scale(),
                    guard.events(),
                    c.guard_max_events
                );
                match &bar {
                    _ if !writer => {}
                    Some(b) => b.suspend(|| tracing::warn!("{msg}")),
                    None => tracing::warn!("{msg}"),
                }
                writeln!(
                    metrics,
                    "{}",
                    json!({"step": step, "guard_event": reason, "lr_scale": guard.lr_scale(), "events": guard.events()})
                )
                .map_err(io_err(&metrics_path))?;
                if guard.events() > c.guard_max_events {
                    opt.zero_grad();
                    return Err(Error::Invalid(format!(
                        "training diverged {} times (more than train.guard_max_events = {}); lower train.lr or raise train.grad_clip",
                        guard.events(),
                        c.guard_max_events
                    )));
                }
            }
        }
        opt.zero_grad();
        state.step += 1;
        let done = state.step;
        if let Some(b) = &bar {
            b.set_position(done as u64);
            let losses: Vec<String> = runs
                .iter()
                .enumerate()
                .filter_map(|(i, r)| guard.mean(i).map(|m| format!("{} {m:.3}", r.name)))
                .collect();
            b.set_message(format!(
                "{} | {:.0} tok/s",
                losses.join(" "),
                tokens_seen as f64 / tick.elapsed().as_secs_f64().max(1e-9)
            ));
        }
        if done % opts.log_every.max(1) == 0 || done == total {
            let secs = tick.elapsed().as_secs_f64();
            let losses: serde_json::Map<String, serde_json::Value> = window
                .iter()
                .map(|(k, (s, n))| (k.clone(), json!(s / *n as f64)))
                .collect();
            let names: Vec<&str> = plan.iter().map(|&(t, _)| runs[t].name.as_str()).collect();
            let loss = so.task_losses.iter().map(|x| x.1).sum::<f64>()
                / so.task_losses.len().max(1) as f64;
            let line = json!({"step": done, "phase": if step < c.pretrain_steps { "pretrain" } else { "joint" },
                "task": names.join("+"), "loss": loss, "losses": losses, "lr": lr, "grad_norm": so.norm,
                "weights": weighting.weights(), "tokens_per_s": tokens_seen as f64 / secs.max(1e-9),
                "epochs": runs.iter().map(|r| (r.name.clone(), json!(r.stream.epochs()))).collect::<serde_json::Map<_, _>>()});
            writeln!(metrics, "{line}").map_err(io_err(&metrics_path))?;
            window.clear();
            let epochs: Vec<String> = plan
                .iter()
                .map(|&(t, _)| format!("{:.2}", runs[t].stream.epochs()))
                .collect();
            let msg = format!(
                "step {done}/{total} {} (epoch {}) loss {loss:.4} lr {lr:.2e} |g| {:.2} {:.0} tok/s",
                names.join("+"),
                epochs.join("+"),
                so.norm,
                tokens_seen as f64 / secs.max(1e-9)
            );
            if bar.is_some() || !writer {
                tracing::debug!("{msg}");
            } else {
                tracing::info!("{msg}");
            }
        }
        let mut budget_over =
            c.max_seconds > 0.0 && loop_started.elapsed().as_secs_f64() >= c.max_seconds;
        if let Some(d) = dist.filter(|_| c.max_seconds > 0.0) {
            // Rank 0's clock decides, so that every rank stops after the same step.
            let mut flag = [if budget_over { 1.0 } else { 0.0 }];
            d.comm.broadcast_f64(&mut flag, 0)?;
            budget_over = flag[0] > 0.0;
        }
        let eval_now =
            done == total || budget_over || (c.eval_every > 0 && done % c.eval_every == 0);
        if eval_now {
            // Rank 0 evaluates and tells the others the aggregate (best model, early stop).
            let scores = if writer {
                evaluate(
                    &model,
                    tok,
                    heads,
                    &formatters,
                    manifest,
                    prep_dir,
                    config,
                    opts,
                )?
            } else {
                Vec::new()
            };
            let mut agg = aggregate(&scores);
            if let Some(d) = dist {
                let mut shared = [agg.unwrap_or(f64::NAN)];
                d.comm.broadcast_f64(&mut shared, 0)?;
                agg = Some(shared[0]).filter(|a| !a.is_nan());
            }
            writeln!(
                metrics,
                "{}",
                json!({"step": done, "eval": scores, "aggregate": agg})
            )
            .map_err(io_err(&metrics_path))?;
            say(format!(
                "step {done}: validation aggregate {}",
                agg.map_or("-".into(), |a| format!("{a:.4}"))
            ));
            if agg.is_some_and(|a| state.best_score.is_none_or(|b| a > b)) {
                state.best_score = agg;
                state.evals_without_improvement = 0;
                if writer {
                    save_model(&model, tok, heads, &run_config, &out.join("best"))?;
                }
            } else {
                state.evals_without_improvement += 1;
            }
            final_scores = scores;
            if c.patience > 0 && state.evals_without_improvement >= c.patience {
                say(format!(
                    "early stop: {} evaluations without improvement",
                    c.patience
                ));
                stopped_early = true;
            }
        }
        let ckpt_now = done == total
            || stopped_early
            || budget_over
            || (c.checkpoint_every > 0 && done % c.checkpoint_every == 0);
        if ckpt_now {
            state.streams = runs.iter().map(|r| r.stream.state()).collect();
            let js = |e: serde_json::Error| Error::Invalid(e.to_string());
            state.sampler = serde_json::to_value(joint.sampler.state()).map_err(js)?;
            state.pretrain_sampler = pretrain
                .as_ref()
                .map(|p| serde_json::to_value(p.sampler.state()))
                .transpose()
                .map_err(js)?;
            state.weighting = serde_json::to_value(weighting.state()).map_err(js)?;
            state.guard = Some(guard.state().clone());
            if writer {
                write_checkpoint(
                    &ckpt_dir,
                    &model,
                    &opt,
                    &state,
                    &run_config,
                    c.keep_checkpoints,
                )?;
            }
        }
        // The last good state: on a schedule, and at every checkpoint (so a resumed run
        // restores the same snapshot as an uninterrupted one).
        if ckpt_now || done % c.guard_snapshot_every.max(1) == 0 {
            snapshot = Snapshot::take(&all_vars, &opt, &weighting);
        }
        if stopped_early || budget_over {
            stopped_early = true;
            break;
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if writer {
        save_model(&model, tok, heads, &run_config, &out.join("model"))?;
    }
    let summary = TrainSummary {
        steps: state.step,
        best_score: state.best_score,
        final_scores,
        seconds: started.elapsed().as_secs_f64(),
        stopped_early,
        guard_events: guard.events(),
        lr_scale: guard.lr_scale(),
        augmented,
        parameters: all_vars
            .iter()
            .filter(|t| t.requires_grad())
            .map(|t| t.numel() as i64)
            .sum(),
    };
    if opts.report && writer {
        crate::report::write_report(out, config, &summary)?;
    }
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    model: &MultiTaskModel,
    tok: &TextTokenizer,
    heads: &[TaskHead],
    formatters: &[TaskFormatter],
    manifest: &PrepManifest,
    prep_dir: &Path,
    config: &Config,
    opts: &TrainOptions,
) -> Result<Vec<TaskScores>> {
    let mut scores = Vec::new();
    for (i, t) in config.tasks.iter().enumerate() {
        let Some(split) = manifest.tasks[&t.name].splits.get("valid") else {
            continue;
        };
        let path = prep_dir.join(&split.file);
        let eval = Evaluator::new(model, tok, &heads[i], formatters[i].max_len())?;
        scores.push(if t.kind == TaskKind::Lm {
            eval.evaluate_lm_tokens(&read_token_file(&path)?, opts.eval_lm_tokens)?
        } else {
            let mut ex = read_split(&path)?;
            ex.truncate(opts.eval_examples);
            eval.evaluate(&ex)?
        });
    }
    Ok(scores)
}

fn save_model(
    model: &MultiTaskModel,
    tok: &TextTokenizer,
    heads: &[TaskHead],
    run_config: &str,
    dir: &Path,
) -> Result<()> {
    model.save(dir, heads, Some(run_config))?;
    tok.save(&dir.join("tokenizer.json"))?;
    Ok(())
}

/// Writes `dir/step-N/` (weights, optimizer moments, trainer state, the resolved config)
/// atomically — built as `step-N.tmp`, every file fsynced, then renamed — and keeps the
/// newest `keep` checkpoints. A failed write (disk full, read-only folder) removes its
/// half-written `.tmp` folder and leaves every earlier checkpoint as it was.
fn write_checkpoint(
    dir: &Path,
    model: &MultiTaskModel,
    opt: &AdamW,
    state: &TrainerState,
    run_config: &str,
    keep: usize,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = format!("step-{:08}", state.step);
    let tmp = dir.join(format!("{name}.tmp"));
    let written = fill_checkpoint(&tmp, model, opt, state, run_config);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Error::Invalid(format!(
            "writing checkpoint {}: {e}; the earlier checkpoints are untouched",
            dir.join(&name).display()
        )));
    }
    let final_dir = dir.join(&name);
    if final_dir.exists() {
        // A same-step folder left by an earlier, interrupted run: move it aside first so a
        // crash at any moment leaves either it or the new one whole.
        retire(&final_dir);
    }
    std::fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("step-"))
                .is_some_and(|n| n.parse::<usize>().is_ok())
        })
        .collect();
    all.sort();
    let excess = all.len().saturating_sub(keep.max(1));
    for old in &all[..excess] {
        retire(old);
    }
    Ok(())
}

/// Builds a checkpoint's files in `tmp`, each fsynced before the caller's rename makes it
/// visible.
fn fill_checkpoint(
    tmp: &Path,
    model: &MultiTaskModel,
    opt: &AdamW,
    state: &TrainerState,
    run_config: &str,
) -> Result<()> {
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(io_err(tmp))?;
    }
    std::fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    save_weights(&model.vs, &tmp.join("weights.safetensors"), "")?;
    write_safetensors(&tmp.join("optimizer.safetensors"), &opt.state())?;
    let text = serde_json::to_string_pretty(state).map_err(|e| Error::Invalid(e.to_string()))?;
    let path = tmp.join("trainer.json");
    std::fs::write(&path, text).map_err(io_err(&path))?;
    let path = tmp.join("config.toml");
    std::fs::write(&path, run_config).map_err(io_err(&path))?;
    for f in [
        "weights.safetensors",
        "optimizer.safetensors",
        "trainer.json",
        "config.toml",
    ] {
        let p = tmp.join(f);
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&p))?;
    }
    Ok(())
}

/// Cuts a line that a killed run left half written off the end of a log, so appending goes on
/// from a whole line.
fn drop_partial_line(path: &Path) -> Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path)(e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(keep as u64))
        .map_err(io_err(path))
}

/// Removes a checkpoint folder so that no crash leaves it half deleted under its own name:
/// it is first renamed to `NAME.old` (which [`latest_checkpoint`] never picks), then deleted.
fn retire(path: &Path) {
    let mut old = path.as_os_str().to_owned();
    old.push(".old");
    let old = PathBuf::from(old);
    let _ = std::fs::remove_dir_all(&old);
    if std::fs::rename(path, &old).is_ok() {
        let _ = std::fs::remove_dir_all(&old);
    }
}
