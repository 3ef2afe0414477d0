//! The joint training loop: `prep` → model → (LM pretraining) → joint multi-task training with
//! task sampling, loss weighting, AdamW, schedule, clipping and gradient accumulation →
//! evaluation, best model, early stopping, atomic checkpoints and exact resume.
use crate::error::{Error, Result};
use crate::optim::{AdamW, learning_rate};
use crate::sampler::TaskSampler;
use crate::stream::{StreamState, TaskStream};
use crate::weighting::LossWeighting;
use mtgpt_core::{Config, TaskKind};
use mtgpt_heads::{
    Evaluator, HeadSpec, MultiTaskModel, TaskFormatter, TaskHead, TaskScores, aggregate,
};
use mtgpt_model::io::{load_weights, read_safetensors, save_weights, write_safetensors};
use mtgpt_text::TextTokenizer;
use mtgpt_text::prep::{PrepManifest, PrepOptions, prepare, read_split, read_token_file};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

/// How [`train`] runs beyond the config.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Output folder (`prep/`, `checkpoints/`, `model/`, `best/`, `metrics.jsonl`).
    pub out: PathBuf,
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
}

impl TrainOptions {
    /// Defaults for an output folder.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        TrainOptions {
            out: out.into(),
            resume: false,
            lexicons: Vec::new(),
            eval_examples: 256,
            eval_lm_tokens: 8192,
            log_every: 10,
            device: Device::Cpu,
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
}

struct TaskRun {
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

/// Trains `config` into `opts.out`.
pub fn train(config: &Config, opts: &TrainOptions) -> Result<TrainSummary> {
    let started = Instant::now();
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let c = &config.train;

    // 1. Data: the prep stage, then one batch stream per task.
    let prep_dir = out.join("prep");
    let manifest = prepare(
        config,
        &prep_dir,
        &PrepOptions {
            lexicons: opts.lexicons.clone(),
            skip_bad: false,
        },
    )?;
    let tok = TextTokenizer::load(&prep_dir.join("tokenizer.json"))?;
    let heads = heads_from(&manifest, config);
    let mut model_cfg = config.model.clone();
    model_cfg.vocab_size = tok.vocab_size();
    let block = model_cfg.block_size;
    let mut formatters = Vec::new();
    let mut runs = Vec::new();
    for (i, t) in config.tasks.iter().enumerate() {
        let max_len = t.max_len.unwrap_or(block).min(block);
        let f = TaskFormatter::new(&tok, &t.name, t.kind, &heads[i].labels, max_len)?;
        let info = &manifest.tasks[&t.name];
        let train = info
            .splits
            .get("train")
            .ok_or_else(|| Error::Invalid(format!("task `{}` has no training data", t.name)))?;
        let seed = mtgpt_core::seed::derive_seed(config.seed, &format!("data/{}", t.name));
        let stream = if t.kind == TaskKind::Lm {
            let tokens = read_token_file(&prep_dir.join(&train.file))?;
            let task_id = tok.task_id(&t.name).unwrap_or(0) as i64;
            TaskStream::tokens(tokens, max_len - 1, task_id, seed)
        } else {
            let mut items = Vec::new();
            for (k, ex) in read_split(&prep_dir.join(&train.file))?.iter().enumerate() {
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
        formatters.push(f);
        runs.push(TaskRun {
            name: t.name.clone(),
            kind: t.kind,
            stream,
        });
    }

    // 2. Model, loss weighting (its parameters join the optimizer), optimizer, samplers.
    tch::manual_seed(config.seed as i64);
    let specs: Vec<HeadSpec> = heads.iter().map(TaskHead::spec).collect();
    let model = MultiTaskModel::new(&model_cfg, &specs, opts.device)?;
    let weights: Vec<f64> = config.tasks.iter().map(|t| t.weight).collect();
    let mut weighting =
        LossWeighting::new(&(model.vs.root() / "loss_weights"), &c.weighting, &weights)?;
    if weighting.uses_pcgrad() {
        // The projection exists (`weighting::pcgrad`), but the loop does not yet compute
        // per-task gradients for it: refuse rather than silently train without it.
        return Err(Error::Invalid(
            "train.weighting.strategy = \"pcgrad\" is not wired into the training loop yet; use static, uncertainty or dwa".into(),
        ));
    }
    let mut opt = AdamW::from_config(&model.vs, c);
    let sizes: Vec<usize> = runs.iter().map(|r| r.stream.len()).collect();
    let lm_tasks: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == TaskKind::Lm)
        .map(|(i, _)| i)
        .collect();
    let mut pretrain = if c.pretrain_steps > 0 {
        let lm_sizes: Vec<usize> = lm_tasks.iter().map(|&i| sizes[i]).collect();
        Some(TaskSampler::new(
            &lm_sizes,
            &c.sampling,
            c.pretrain_steps,
            mtgpt_core::seed::derive_seed(config.seed, "pretrain"),
        )?)
    } else {
        None
    };
    let mut sampler = TaskSampler::new(
        &sizes,
        &c.sampling,
        c.steps,
        mtgpt_core::seed::derive_seed(config.seed, "sampler"),
    )?;
    let total = c.pretrain_steps + c.steps;

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
        if state.streams.len() != runs.len() {
            return Err(Error::Invalid(format!(
                "{}: {} task streams, the config has {} tasks",
                path.display(),
                state.streams.len(),
                runs.len()
            )));
        }
        for (r, s) in runs.iter_mut().zip(&state.streams) {
            r.stream.restore(*s);
        }
        let bad = |e: serde_json::Error| Error::Invalid(format!("{}: {e}", path.display()));
        sampler.restore(&serde_json::from_value(state.sampler.clone()).map_err(bad)?)?;
        if let (Some(p), Some(s)) = (pretrain.as_mut(), state.pretrain_sampler.as_ref()) {
            p.restore(&serde_json::from_value(s.clone()).map_err(bad)?)?;
        }
        weighting.restore(&serde_json::from_value(state.weighting.clone()).map_err(bad)?)?;
        tracing::info!("resumed from {} at step {}", dir.display(), state.step);
    }

    // 4. The loop.
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(io_err(&metrics_path))?;
    let run_config = config.to_toml_string();
    let mut stopped_early = false;
    let mut final_scores = Vec::new();
    let mut tokens_seen = 0usize;
    let tick = Instant::now();
    while state.step < total {
        let step = state.step;
        // Dropout draws depend on (seed, step) only, so a resumed run repeats them.
        tch::manual_seed(
            mtgpt_core::seed::derive_seed(config.seed, &format!("step/{step}")) as i64,
        );
        let task = match pretrain.as_mut() {
            Some(p) if step < c.pretrain_steps => lm_tasks[p.next_task()],
            _ => sampler.next_task(),
        };
        let mut loss_sum = 0.0;
        for _ in 0..c.grad_accum {
            let items = runs[task].stream.next_batch(c.batch_size);
            let batch = formatters[task].collate(&items)?;
            tokens_seen += batch.attention_mask.iter().filter(|&&m| m == 1).count();
            let out = model.forward(&batch, true)?;
            loss_sum += out.loss.double_value(&[]);
            let weighted = weighting.combine(task, &out.loss)? / c.grad_accum as f64;
            weighted.backward();
        }
        let loss = loss_sum / c.grad_accum as f64;
        let norm = opt.clip_grad_norm(c.grad_clip);
        let lr = learning_rate(c, step, total);
        if loss.is_finite() && norm.is_finite() {
            opt.step(lr);
            weighting.observe(task, loss)?;
        } else {
            tracing::warn!(
                "step {step}: non-finite loss {loss} or gradient norm {norm} on task `{}`; update skipped",
                runs[task].name
            );
        }
        opt.zero_grad();
        state.step += 1;
        let done = state.step;
        if done % opts.log_every.max(1) == 0 || done == total {
            let secs = tick.elapsed().as_secs_f64();
            let line = json!({"step": done, "task": runs[task].name, "loss": loss, "lr": lr, "grad_norm": norm,
                "weights": weighting.weights(), "tokens_per_s": tokens_seen as f64 / secs.max(1e-9),
                "epochs": runs.iter().map(|r| (r.name.clone(), json!(r.stream.epochs()))).collect::<serde_json::Map<_, _>>()});
            writeln!(metrics, "{line}").map_err(io_err(&metrics_path))?;
            tracing::info!(
                "step {done}/{total} {} loss {loss:.4} lr {lr:.2e} |g| {norm:.2} {:.0} tok/s",
                runs[task].name,
                tokens_seen as f64 / secs.max(1e-9)
            );
        }
        let budget_over = c.max_seconds > 0.0 && started.elapsed().as_secs_f64() >= c.max_seconds;
        let eval_now =
            done == total || budget_over || (c.eval_every > 0 && done % c.eval_every == 0);
        if eval_now {
            let scores = evaluate(
                &model,
                &tok,
                &heads,
                &formatters,
                &manifest,
                &prep_dir,
                config,
                opts,
            )?;
            let agg = aggregate(&scores);
            writeln!(
                metrics,
                "{}",
                json!({"step": done, "eval": scores, "aggregate": agg})
            )
            .map_err(io_err(&metrics_path))?;
            tracing::info!(
                "step {done}: validation aggregate {}",
                agg.map_or("-".into(), |a| format!("{a:.4}"))
            );
            if agg.is_some_and(|a| state.best_score.is_none_or(|b| a > b)) {
                state.best_score = agg;
                state.evals_without_improvement = 0;
                save_model(&model, &tok, &heads, &run_config, &out.join("best"))?;
            } else {
                state.evals_without_improvement += 1;
            }
            final_scores = scores;
            if c.patience > 0 && state.evals_without_improvement >= c.patience {
                tracing::info!("early stop: {} evaluations without improvement", c.patience);
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
            state.sampler = serde_json::to_value(sampler.state()).map_err(js)?;
            state.pretrain_sampler = pretrain
                .as_ref()
                .map(|p| serde_json::to_value(p.state()))
                .transpose()
                .map_err(js)?;
            state.weighting = serde_json::to_value(weighting.state()).map_err(js)?;
            write_checkpoint(&ckpt_dir, &model, &opt, &state, c.keep_checkpoints)?;
        }
        if stopped_early || budget_over {
            stopped_early = true;
            break;
        }
    }
    save_model(&model, &tok, &heads, &run_config, &out.join("model"))?;
    Ok(TrainSummary {
        steps: state.step,
        best_score: state.best_score,
        final_scores,
        seconds: started.elapsed().as_secs_f64(),
        stopped_early,
    })
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

/// Writes `dir/step-N/` atomically (built as `step-N.tmp`, then renamed) and keeps the
/// newest `keep` checkpoints.
fn write_checkpoint(
    dir: &Path,
    model: &MultiTaskModel,
    opt: &AdamW,
    state: &TrainerState,
    keep: usize,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = format!("step-{:08}", state.step);
    let tmp = dir.join(format!("{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    save_weights(&model.vs, &tmp.join("weights.safetensors"), "")?;
    write_safetensors(&tmp.join("optimizer.safetensors"), &opt.state())?;
    let text = serde_json::to_string_pretty(state).map_err(|e| Error::Invalid(e.to_string()))?;
    let path = tmp.join("trainer.json");
    std::fs::write(&path, text).map_err(io_err(&path))?;
    let final_dir = dir.join(&name);
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with("step-") && !n.to_string_lossy().ends_with(".tmp")
            })
        })
        .collect();
    all.sort();
    let excess = all.len().saturating_sub(keep.max(1));
    for old in &all[..excess] {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}
