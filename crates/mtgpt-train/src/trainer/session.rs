//! One training run in memory — model, loss weighting, optimizer, samplers, guard, streams and
//! trainer state — and the named parts of the loop that [`super::train`] calls in order:
//! generated examples, the optimizer step, logging, evaluation, checkpoints.
use super::checkpoint::{TrainerState, save_model, write_checkpoint};
use super::data::{RunData, TaskRun, streams};
use super::options::TrainOptions;
use super::step::{Phase, Snapshot, StepOut, run_step, sorted_vars};
use super::summary::{RunLog, TrainSummary};
use crate::dist::Distributed;
use crate::error::{Error, Result};
use crate::genaug::AugmentOutcome;
use crate::guard::{DivergenceGuard, Verdict};
use crate::optim::{AdamW, learning_rate};
use crate::sampler::TaskSampler;
use crate::weighting::LossWeighting;
use mtgpt_core::{Config, GenerateAugmentConfig, TaskKind};
use mtgpt_tasks::{MultiTaskModel, ScoreLimits, TaskFormatter, aggregate};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

/// What one optimizer step did: its task groups, the passes' outcome and the learning rate.
pub(crate) struct StepDone {
    plan: Vec<(usize, usize)>,
    out: StepOut,
    lr: f64,
}

/// A run between its set-up and its summary.
pub(crate) struct Session<'a> {
    pub(super) config: &'a Config,
    pub(super) opts: &'a TrainOptions,
    pub(super) data: &'a RunData,
    pub(super) dist: Option<&'a Distributed>,
    pub(super) rank: usize,
    pub(super) world: usize,
    /// Rank 0: the one process that writes into `out`.
    pub(super) writer: bool,
    pub(super) formatters: Vec<TaskFormatter<'a>>,
    pub(super) runs: Vec<TaskRun>,
    pub(super) model: MultiTaskModel,
    pub(super) weighting: LossWeighting,
    pub(super) opt: AdamW,
    /// Every variable, sorted by name (snapshots), and those that train.
    pub(super) all_vars: Vec<Tensor>,
    pub(super) trainable: Vec<Tensor>,
    /// `train.ema_decay` > 0: the running average of `trainable`.
    pub(super) ema: Option<super::ema::Ema>,
    pub(super) pretrain: Option<Phase>,
    pub(super) joint: Phase,
    /// LM pretraining steps + joint steps.
    pub(super) total: usize,
    pub(super) guard: DivergenceGuard,
    /// Tasks that get generated examples, and how.
    pub(super) augment_tasks: Vec<(usize, GenerateAugmentConfig)>,
    pub(super) state: TrainerState,
    pub(super) run_config: String,
    pub(super) snapshot: Option<Snapshot>,
    pub(super) log: Option<RunLog>,
    pub(super) stopped_early: bool,
    pub(super) final_scores: Vec<mtgpt_tasks::TaskScores>,
    pub(super) augmented: Vec<AugmentOutcome>,
    pub(super) tokens_seen: usize,
    /// Token slots computed on (padding included), for the useful-token fraction.
    pub(super) slots_seen: usize,
    /// Examples trained on.
    pub(super) examples_seen: usize,
    /// Seconds spent in optimizer steps (evaluation and checkpoints left out).
    pub(super) train_seconds: f64,
    /// `--dump-batches`: where every step's batches are written.
    pub(super) dump: Option<super::step::BatchDump>,
    pub(super) tick: Instant,
    pub(super) loop_started: Instant,
}

impl<'a> Session<'a> {
    /// Streams, model, loss weighting (its parameters join the optimizer), optimizer,
    /// samplers and guard of a fresh run.
    pub(crate) fn new(
        config: &'a Config,
        opts: &'a TrainOptions,
        data: &'a RunData,
    ) -> Result<Self> {
        let c = &config.train;
        let dist = opts.dist.as_ref().filter(|d| d.comm.size() > 1);
        let (rank, world) = dist.map_or((0, 1), |d| (d.comm.rank(), d.comm.size()));
        let formatters = data.formatters()?;
        let runs = streams(data, &formatters)?;
        tch::manual_seed(config.seed as i64);
        let model = crate::trainer::data::new_model(config, data, opts.device, opts.resume)?;
        let weights: Vec<f64> = config.tasks.iter().map(|t| t.weight).collect();
        let weighting =
            LossWeighting::new(&(model.vs.root() / "loss_weights"), &c.weighting, &weights)?;
        let opt = AdamW::from_config(&model.vs, c);
        let all_vars: Vec<Tensor> = sorted_vars(&model).into_iter().map(|(_, t)| t).collect();
        let trainable: Vec<Tensor> = all_vars
            .iter()
            .filter(|t| t.requires_grad())
            .map(Tensor::shallow_clone)
            .collect();
        let ema = (c.ema_decay > 0.0).then(|| {
            let named: Vec<(String, Tensor)> = sorted_vars(&model)
                .into_iter()
                .filter(|(_, t)| t.requires_grad())
                .collect();
            super::ema::Ema::new(c.ema_decay, &named)
        });
        // The mixture counts each task as `sample_weight` × its size.
        let sizes: Vec<usize> = runs
            .iter()
            .map(|r| {
                let w = config
                    .tasks
                    .iter()
                    .find(|t| t.name == r.name)
                    .map_or(1.0, |t| t.sample_weight);
                (r.stream.len() as f64 * w).round() as usize
            })
            .collect();
        let lm_tasks: Vec<usize> = runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == TaskKind::Lm)
            .map(|(i, _)| i)
            .collect();
        let joint_tasks: Vec<usize> = match &opts.joint_tasks {
            Some(names) => names
                .iter()
                .map(|n| index_of(config, n))
                .collect::<Result<_>>()?,
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
        let pretrain = if c.pretrain_steps > 0 {
            Some(phase(lm_tasks, c.pretrain_steps, "pretrain")?)
        } else {
            None
        };
        let joint = phase(joint_tasks, c.steps, "sampler")?;
        let guard = DivergenceGuard::new(runs.len(), c.spike_factor);
        let augment_tasks: Vec<(usize, GenerateAugmentConfig)> = if opts.no_generate_augment {
            Vec::new()
        } else {
            config
                .tasks
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.generate_augment.clone().map(|g| (i, g)))
                .collect()
        };
        if dist.is_some() && !augment_tasks.is_empty() {
            return Err(Error::Invalid(
                "generate_augment is not supported in distributed training yet; remove it from \
                 the config or train on one process"
                    .into(),
            ));
        }
        let state = TrainerState {
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
        Ok(Session {
            config,
            opts,
            data,
            dist,
            rank,
            world,
            writer: rank == 0,
            formatters,
            runs,
            model,
            weighting,
            opt,
            all_vars,
            trainable,
            ema,
            pretrain,
            joint,
            total: c.pretrain_steps + c.steps,
            guard,
            augment_tasks,
            state,
            run_config: config.to_toml_string(),
            snapshot: None,
            log: None,
            stopped_early: false,
            final_scores: Vec::new(),
            augmented: Vec::new(),
            tokens_seen: 0,
            slots_seen: 0,
            examples_seen: 0,
            train_seconds: 0.0,
            dump: None,
            tick: Instant::now(),
            loop_started: Instant::now(),
        })
    }

    pub(super) fn out(&self) -> &Path {
        &self.opts.out
    }

    pub(super) fn augment_dir(&self) -> PathBuf {
        self.out().join("augment")
    }

    pub(super) fn log(&mut self) -> &mut RunLog {
        self.log
            .as_mut()
            .expect("the log is opened before the loop")
    }

    /// Opens the log, takes the first good-state snapshot and starts the clocks: the time
    /// budget counts training, not preprocessing or building the model.
    pub(crate) fn start(&mut self) -> Result<()> {
        let path = self.out().join("metrics.jsonl");
        let o = self.opts;
        self.log = Some(RunLog::open(
            path,
            self.writer,
            o.resume,
            o.progress,
            self.total,
            self.state.step,
        )?);
        if let Some(path) = self.opts.dump_batches.clone().filter(|_| self.writer) {
            self.open_dump(&path)?;
        }
        self.tick = Instant::now();
        self.snapshot = Some(Snapshot::take(&self.all_vars, &self.opt, &self.weighting));
        self.loop_started = Instant::now();
        Ok(())
    }

    /// Saves the model as it starts (`out/dump-init`) and opens the batch dump with its
    /// header: that model, the pad id and the optimizer settings.
    fn open_dump(&mut self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        self.save_model("dump-init")?;
        let c = &self.config.train;
        let init = std::fs::canonicalize(self.out().join("dump-init"))
            .map_err(super::checkpoint::io_err(self.out()))?;
        let file = std::fs::File::create(path).map_err(super::checkpoint::io_err(path))?;
        let mut out = std::io::BufWriter::new(file);
        let header = json!({"header": {"init": init, "pad": self.data.tok.special().pad,
            "weight_decay": c.weight_decay, "beta1": c.beta1, "beta2": c.beta2, "eps": c.eps,
            "grad_clip": c.grad_clip, "dropout": self.model.gpt.config.dropout,
            "threads": tch::get_num_threads(), "trunk_lr_factor": c.trunk_lr_factor}});
        writeln!(out, "{header}").map_err(super::checkpoint::io_err(path))?;
        self.dump = Some(super::step::BatchDump {
            path: path.to_path_buf(),
            out,
            step: 0,
            lr: 0.0,
        });
        Ok(())
    }

    /// Real tokens over the token slots the trunk computed on, so far.
    fn useful_fraction(&self) -> f64 {
        self.tokens_seen as f64 / self.slots_seen.max(1) as f64
    }

    /// Whether every step is done.
    pub(crate) fn finished(&self) -> bool {
        self.state.step >= self.total
    }

    /// One optimizer step: the step's task plan, forward and backward passes, then the guard
    /// decides between an optimizer update and a restore of the last good state.
    pub(crate) fn step(&mut self) -> Result<StepDone> {
        let c = &self.config.train;
        let step = self.state.step;
        // Dropout draws depend on (seed, step) only, so a resumed run repeats them.
        // Each rank draws its own dropout masks (rank 0 those of a single-process run).
        let step_seed = mtgpt_core::seed::derive_seed(self.config.seed, &format!("step/{step}"));
        let dropout_seed = match self.rank {
            0 => step_seed,
            r => mtgpt_core::seed::derive_seed(step_seed, &format!("rank/{r}")),
        };
        tch::manual_seed(dropout_seed as i64);
        // The plan is of the global batch; each rank trains on its slice of every group.
        let global_batch = c.batch_size * self.world;
        let budget = c.batch_tokens * self.world;
        let mixed = c.sampling.mixed_batches;
        let plan = match self.pretrain.as_mut() {
            Some(p) if step < c.pretrain_steps => p.plan(mixed, global_batch, budget, &self.runs),
            _ => self.joint.plan(mixed, global_batch, budget, &self.runs),
        };
        let lr = learning_rate(c, step, self.total) * self.guard.lr_scale();
        if let Some(d) = self.dump.as_mut() {
            d.step = step;
            d.lr = lr;
        }
        let step_started = Instant::now();
        let so = run_step(
            &self.model,
            &self.formatters,
            &mut self.runs,
            &self.weighting,
            &mut self.opt,
            &self.trainable,
            c,
            &plan,
            self.opts.inject_nan_at.contains(&step),
            step_seed,
            self.dist,
            self.dump.as_mut(),
        )?;
        self.tokens_seen += so.tokens;
        self.slots_seen += so.slots;
        self.examples_seen += plan.iter().map(|g| g.1).sum::<usize>() * c.grad_accum;
        match self.guard.check(&so.task_losses, so.norm) {
            Verdict::Healthy => {
                self.opt.step(lr);
                if let Some(e) = self.ema.as_mut() {
                    e.update(&self.trainable);
                }
                for &(t, l) in &so.task_losses {
                    self.weighting.observe(t, l)?;
                    let name = self.runs[t].name.clone();
                    self.log().observe(&name, l);
                }
                self.guard.observe(&so.task_losses);
            }
            Verdict::Skip { tasks, reason } => {
                self.guard.skip(&tasks);
                let msg = format!(
                    "step {step}: loss spike ({reason}); the update is skipped (a second spike of a task in a row counts as divergence)"
                );
                self.log().warn(&msg);
                let line =
                    json!({"step": step, "guard_skip": reason, "skipped": self.guard.skipped()});
                self.log().record(&line)?;
            }
            Verdict::Diverged(reason) => self.restore_good_state(step, &reason)?,
        }
        self.opt.zero_grad();
        self.state.step += 1;
        self.train_seconds += step_started.elapsed().as_secs_f64();
        Ok(StepDone { plan, out: so, lr })
    }

    /// The guard saw a divergence: back to the last good state at a lower learning rate, or
    /// give up after too many events.
    fn restore_good_state(&mut self, step: usize, reason: &str) -> Result<()> {
        let c = &self.config.train;
        let snapshot = self.snapshot.as_ref().expect("taken at the start");
        snapshot.restore(&self.all_vars, &mut self.opt, &mut self.weighting)?;
        self.guard.record_event(c.guard_lr_factor);
        let msg = format!(
            "step {step}: divergence ({reason}); restored the last good state, learning rate × {} (now × {:.3}), event {} of at most {}",
            c.guard_lr_factor,
            self.guard.lr_scale(),
            self.guard.events(),
            c.guard_max_events
        );
        self.log().warn(&msg);
        let line = json!({"step": step, "guard_event": reason, "lr_scale": self.guard.lr_scale(), "events": self.guard.events()});
        self.log().record(&line)?;
        if self.guard.events() > c.guard_max_events {
            self.opt.zero_grad();
            return Err(Error::Invalid(format!(
                "training diverged {} times (more than train.guard_max_events = {}); lower train.lr or raise train.grad_clip",
                self.guard.events(),
                c.guard_max_events
            )));
        }
        Ok(())
    }

    /// The progress bar after every step, and a log line every `log_every` steps.
    pub(crate) fn log_step(&mut self, done_step: &StepDone) -> Result<()> {
        let (plan, so, lr) = (&done_step.plan, &done_step.out, done_step.lr);
        let c = &self.config.train;
        let done = self.state.step;
        let total = self.total;
        let rate = self.tokens_seen as f64 / self.tick.elapsed().as_secs_f64().max(1e-9);
        let useful = self.useful_fraction();
        let log = self.log.as_mut().expect("opened");
        log.progress(done, || {
            let losses: Vec<String> = self
                .runs
                .iter()
                .enumerate()
                .filter_map(|(i, r)| self.guard.mean(i).map(|m| format!("{} {m:.3}", r.name)))
                .collect();
            format!("{} | {rate:.0} tok/s", losses.join(" "))
        });
        if done % self.opts.log_every.max(1) != 0 && done != total {
            return Ok(());
        }
        let secs = self.tick.elapsed().as_secs_f64();
        let losses: serde_json::Map<String, serde_json::Value> = log
            .window
            .iter()
            .map(|(k, (s, n))| (k.clone(), json!(s / *n as f64)))
            .collect();
        let names: Vec<&str> = plan
            .iter()
            .map(|&(t, _)| self.runs[t].name.as_str())
            .collect();
        let loss =
            so.task_losses.iter().map(|x| x.1).sum::<f64>() / so.task_losses.len().max(1) as f64;
        let step = done - 1;
        let line = json!({"step": done, "phase": if step < c.pretrain_steps { "pretrain" } else { "joint" },
            "task": names.join("+"), "loss": loss, "losses": losses, "lr": lr, "grad_norm": so.norm,
            "weights": self.weighting.weights(), "tokens_per_s": self.tokens_seen as f64 / secs.max(1e-9),
            "useful_fraction": useful,
            "examples_per_s": self.examples_seen as f64 / secs.max(1e-9),
            "epochs": self.runs.iter().map(|r| (r.name.clone(), json!(r.stream.epochs()))).collect::<serde_json::Map<_, _>>()});
        log.record(&line)?;
        log.window.clear();
        let epochs: Vec<String> = plan
            .iter()
            .map(|&(t, _)| format!("{:.2}", self.runs[t].stream.epochs()))
            .collect();
        log.step_line(&format!(
            "step {done}/{total} {} (epoch {}) loss {loss:.4} lr {lr:.2e} |g| {:.2} {:.0} tok/s ({:.0} % useful)",
            names.join("+"),
            epochs.join("+"),
            so.norm,
            self.tokens_seen as f64 / secs.max(1e-9),
            100.0 * useful
        ));
        Ok(())
    }

    /// Whether the time budget is spent (rank 0's clock decides, so that every rank stops
    /// after the same step).
    pub(crate) fn budget_over(&self) -> Result<bool> {
        let c = &self.config.train;
        let mut over =
            c.max_seconds > 0.0 && self.loop_started.elapsed().as_secs_f64() >= c.max_seconds;
        if let Some(d) = self.dist.filter(|_| c.max_seconds > 0.0) {
            let mut flag = [if over { 1.0 } else { 0.0 }];
            d.comm.broadcast_f64(&mut flag, 0)?;
            over = flag[0] > 0.0;
        }
        Ok(over)
    }

    /// Validation of every task when due: the best model is kept, early stopping decided.
    /// Rank 0 evaluates and tells the others the aggregate.
    pub(crate) fn evaluate_if_due(&mut self, budget_over: bool) -> Result<()> {
        let c = &self.config.train;
        let done = self.state.step;
        let due =
            done == self.total || budget_over || (c.eval_every > 0 && done % c.eval_every == 0);
        if !due {
            return Ok(());
        }
        let scores = if self.writer {
            let limits = ScoreLimits {
                max_examples: Some(self.opts.eval_examples),
                lm_tokens: self.opts.eval_lm_tokens,
                samples: 0,
            };
            self.averaged(|s| s.data.tasks.score(&s.model, &s.data.tok, "valid", &limits))?
                .scores
        } else {
            Vec::new()
        };
        let mut agg = aggregate(&scores);
        if let Some(d) = self.dist {
            let mut shared = [agg.unwrap_or(f64::NAN)];
            d.comm.broadcast_f64(&mut shared, 0)?;
            agg = Some(shared[0]).filter(|a| !a.is_nan());
        }
        let (train_s, wall_s) = (
            self.train_seconds,
            self.loop_started.elapsed().as_secs_f64(),
        );
        self.log()
            .record(&json!({"step": done, "eval": scores, "aggregate": agg,
            "train_seconds": train_s, "seconds": wall_s}))?;
        self.log().say(&format!(
            "step {done}: validation aggregate {}",
            agg.map_or("-".into(), |a| format!("{a:.4}"))
        ));
        if agg.is_some_and(|a| self.state.best_score.is_none_or(|b| a > b)) {
            self.state.best_score = agg;
            self.state.evals_without_improvement = 0;
            if self.writer {
                self.averaged(|s| s.save_model("best"))?;
            }
        } else {
            self.state.evals_without_improvement += 1;
        }
        self.final_scores = scores;
        if c.patience > 0 && self.state.evals_without_improvement >= c.patience {
            self.log().say(&format!(
                "early stop: {} evaluations without improvement",
                c.patience
            ));
            self.stopped_early = true;
        }
        Ok(())
    }

    /// A checkpoint when due; the last good state is snapshotted on a schedule and at every
    /// checkpoint (so a resumed run restores the same snapshot as an uninterrupted one).
    pub(crate) fn checkpoint_if_due(&mut self, budget_over: bool) -> Result<()> {
        let c = &self.config.train;
        let done = self.state.step;
        let due = done == self.total
            || self.stopped_early
            || budget_over
            || (c.checkpoint_every > 0 && done % c.checkpoint_every == 0);
        if due {
            let state = &mut self.state;
            state.streams = self.runs.iter().map(|r| r.stream.state()).collect();
            let js = |e: serde_json::Error| Error::Invalid(e.to_string());
            state.sampler = serde_json::to_value(self.joint.sampler.state()).map_err(js)?;
            state.pretrain_sampler = self
                .pretrain
                .as_ref()
                .map(|p| serde_json::to_value(p.sampler.state()))
                .transpose()
                .map_err(js)?;
            state.weighting = serde_json::to_value(self.weighting.state()).map_err(js)?;
            state.guard = Some(self.guard.state().clone());
            if self.writer {
                write_checkpoint(
                    &self.out().join("checkpoints"),
                    &self.model,
                    &self.opt,
                    self.ema.as_ref(),
                    &self.state,
                    &self.run_config,
                    c.keep_checkpoints,
                )?;
            }
        }
        if due || done % c.guard_snapshot_every.max(1) == 0 {
            self.snapshot = Some(Snapshot::take(&self.all_vars, &self.opt, &self.weighting));
        }
        Ok(())
    }

    /// Runs `f` with the weight average in the model when `train.ema_decay` is on (the raw
    /// weights come back afterwards), else as it is.
    fn averaged<R>(&self, f: impl FnOnce(&Self) -> R) -> R {
        match &self.ema {
            Some(e) => e.with_averaged(&self.trainable, || f(self)),
            None => f(self),
        }
    }

    fn save_model(&self, name: &str) -> Result<()> {
        save_model(
            &self.model,
            &self.data.tok,
            self.data.heads(),
            &self.run_config,
            &self.out().join(name),
        )
    }

    /// Saves `model/` and says what the run did.
    pub(crate) fn finish(mut self, started: Instant) -> Result<TrainSummary> {
        if let Some(log) = &self.log {
            log.finish();
        }
        if let Some(mut d) = self.dump.take() {
            use std::io::Write as _;
            d.out.flush().map_err(super::checkpoint::io_err(&d.path))?;
        }
        if self.writer {
            self.averaged(|s| s.save_model("model"))?;
        }
        let useful = self.useful_fraction();
        Ok(TrainSummary {
            steps: self.state.step,
            best_score: self.state.best_score,
            final_scores: self.final_scores,
            seconds: started.elapsed().as_secs_f64(),
            stopped_early: self.stopped_early,
            guard_events: self.guard.events(),
            lr_scale: self.guard.lr_scale(),
            augmented: self.augmented,
            parameters: self
                .all_vars
                .iter()
                .filter(|t| t.requires_grad())
                .map(|t| t.numel() as i64)
                .sum(),
            all_parameters: self.all_vars.iter().map(|t| t.numel() as i64).sum(),
            optimizer_state_bytes: 4 * self.opt.state_elements(),
            useful_fraction: useful,
            train_seconds: self.train_seconds,
            tokens: self.tokens_seen,
            examples: self.examples_seen,
        })
    }
}

/// The index of task `name` in the config.
pub(super) fn index_of(config: &Config, name: &str) -> Result<usize> {
    config
        .tasks
        .iter()
        .position(|t| t.name == name)
        .ok_or_else(|| Error::Invalid(format!("no task called `{name}` in the config")))
}
