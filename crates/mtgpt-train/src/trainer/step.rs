//! One optimizer step's forward and backward passes (task groups, gradient accumulation,
//! loss weighting, PCGrad, data-parallel averaging, clipping), the task plan of a step, and
//! the in-memory snapshot the divergence guard restores.
use super::data::TaskRun;
use crate::dist::{Distributed, average_gradients, average_tensors, set_gradients, shard};
use crate::error::{Error, Result};
use crate::optim::AdamW;
use crate::sampler::TaskSampler;
use crate::weighting::{LossWeighting, WeightingState, pcgrad};
use mtgpt_tasks::{MultiTaskModel, TaskFormatter};
use tch::Tensor;

/// A training phase: a sampler over a subset of the tasks.
pub(crate) struct Phase {
    pub(crate) sampler: TaskSampler,
    pub(crate) tasks: Vec<usize>,
}

impl Phase {
    /// `(task, examples)` groups of the next step: `batch` examples, or with a token budget
    /// (`tokens` > 0) as many coming examples as fit in it (at least one).
    pub(crate) fn plan(
        &mut self,
        mixed: bool,
        batch: usize,
        tokens: usize,
        runs: &[TaskRun],
    ) -> Vec<(usize, usize)> {
        if tokens > 0 {
            return self.plan_tokens(mixed, tokens, runs);
        }
        if mixed && self.tasks.len() > 1 {
            let mut counts = vec![0usize; self.tasks.len()];
            for k in self.sampler.mixed_batch(batch) {
                counts[k] += 1;
            }
            self.groups(counts)
        } else {
            vec![(self.tasks[self.sampler.next_task()], batch)]
        }
    }

    fn plan_tokens(&mut self, mixed: bool, budget: usize, runs: &[TaskRun]) -> Vec<(usize, usize)> {
        let mut counts = vec![0usize; self.tasks.len()];
        let mut used = 0;
        let tasks = &self.tasks;
        // Takes the next example of task k while it fits (the first one always).
        let mut take = |k: usize| {
            let len = runs[tasks[k]].stream.peek_len(counts[k]).max(1);
            let fits = used == 0 || used + len <= budget;
            if fits {
                used += len;
                counts[k] += 1;
            }
            fits
        };
        if mixed && self.tasks.len() > 1 {
            self.sampler.mixed_until(&mut take);
        } else {
            let k = self.sampler.next_task();
            while take(k) {}
        }
        self.groups(counts)
    }

    /// `(task, examples)` of every phase task with examples in `counts`.
    fn groups(&self, counts: Vec<usize>) -> Vec<(usize, usize)> {
        counts
            .into_iter()
            .enumerate()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (self.tasks[k], n))
            .collect()
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
    /// Token slots the trunk computed on (padding included): `tokens / slots` is the
    /// useful-token fraction.
    pub(crate) slots: usize,
}

/// Where a run writes the batches it trains on (`mtgpt train --dump-batches`), for a replay
/// by another framework (`scripts/bench_joint_torch.py`).
pub(crate) struct BatchDump {
    pub(crate) path: std::path::PathBuf,
    pub(crate) out: std::io::BufWriter<std::fs::File>,
    /// The step being dumped and its learning rate.
    pub(crate) step: usize,
    pub(crate) lr: f64,
}

impl BatchDump {
    /// One line per batch: its rows unpadded, their targets, input lengths and aux weight.
    fn write(&mut self, batch: &mtgpt_core::Batch, kind: mtgpt_core::TaskKind) -> Result<()> {
        use mtgpt_core::Targets;
        use std::io::Write as _;
        let t = batch.seq_len;
        let lens: Vec<usize> = (0..batch.batch_size).map(|r| batch.row_len(r)).collect();
        fn rows<'v>(v: &'v [i64], lens: &[usize], t: usize) -> Vec<&'v [i64]> {
            lens.iter()
                .enumerate()
                .map(|(r, &l)| &v[r * t..r * t + l])
                .collect()
        }
        let targets = match &batch.targets {
            Targets::Tokens(v) | Targets::Tags(v) => serde_json::json!(rows(v, &lens, t)),
            Targets::Classes(c) => serde_json::json!(c),
            Targets::Spans { start, end } => serde_json::json!({"start": start, "end": end}),
        };
        let line = serde_json::json!({
            "step": self.step, "lr": self.lr, "task": batch.task, "kind": kind.as_str(),
            "rows": rows(&batch.input_ids, &lens, t), "targets": targets, "input_len": batch.input_len,
            "lm_aux_weight": batch.lm_aux_weight, "prefix_attention": batch.prefix_attention,
        });
        writeln!(self.out, "{line}").map_err(super::checkpoint::io_err(&self.path))
    }
}

/// One trunk pass over a step's batches — packed, or stacked and padded — and the token
/// slots it computed on.
fn pass(
    model: &MultiTaskModel,
    batches: &[mtgpt_core::Batch],
    packing: bool,
    train: bool,
) -> Result<(Vec<mtgpt_tasks::HeadOutput>, usize)> {
    if packing {
        let (outs, packed) = model.forward_packed(batches, model.gpt.config.block_size, train)?;
        Ok((outs, packed.rows * packed.cols))
    } else {
        let rows: usize = batches.iter().map(|b| b.batch_size).sum();
        let cols = batches.iter().map(|b| b.seq_len).max().unwrap_or(0);
        Ok((model.forward_mixed(batches, train)?, rows * cols))
    }
}

/// An in-memory copy of the last good state, for the divergence guard.
pub(crate) struct Snapshot {
    vars: Vec<Tensor>,
    opt: Vec<(String, Tensor)>,
    weighting: WeightingState,
}

impl Snapshot {
    pub(crate) fn take(vars: &[Tensor], opt: &AdamW, weighting: &LossWeighting) -> Self {
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

    pub(crate) fn restore(
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
    mut dump: Option<&mut BatchDump>,
) -> Result<StepOut> {
    let total: usize = plan.iter().map(|g| g.1).sum();
    let (rank, size) = dist.map_or((0, 1), |d| (d.comm.rank(), d.comm.size()));
    let use_pcgrad = weighting.uses_pcgrad() && plan.len() > 1;
    let mut task_grads: Vec<Vec<Tensor>> = Vec::new();
    let mut task_losses = Vec::new();
    let mut tokens = 0;
    let mut slots = 0;
    // Every group's rows in one trunk pass (packed, or stacked and padded), one backward.
    let joint_pass = !use_pcgrad && (c.packing || (c.sampling.one_pass && plan.len() > 1));
    if joint_pass {
        let mut sums = vec![0.0; plan.len()];
        for _ in 0..c.grad_accum {
            let mut batches = Vec::with_capacity(plan.len());
            let mut scale = Vec::with_capacity(plan.len());
            for &(task, n) in plan {
                let mine = shard(n, rank, size);
                let part = mine.len() as f64 / n.max(1) as f64;
                let mut items = runs[task].stream.next_batch(n);
                if size > 1 {
                    items = items.drain(mine.clone()).collect();
                    if items.is_empty() {
                        scale.push(None);
                        continue;
                    }
                }
                let batch = formatters[task].collate(&items)?;
                tokens += batch.real_tokens();
                if let Some(d) = dump.as_deref_mut() {
                    d.write(&batch, runs[task].kind)?;
                }
                batches.push(batch);
                scale.push(Some(part));
            }
            let (outs, computed) = pass(model, &batches, c.packing, true)?;
            slots += computed;
            let mut outs = outs.into_iter();
            let mut total_loss: Option<Tensor> = None;
            for (g, (&(task, n), part)) in plan.iter().zip(&scale).enumerate() {
                let Some(part) = part else { continue };
                let out = outs.next().expect("one output per batch");
                let share = n as f64 / total.max(1) as f64;
                let loss = if inject_nan {
                    out.loss * f64::NAN
                } else {
                    out.loss
                };
                sums[g] += loss.double_value(&[]) * part;
                let weighted = weighting.combine(task, &loss)?
                    * (share / c.grad_accum as f64 * part * size as f64);
                total_loss = Some(match total_loss {
                    Some(t) => t + weighted,
                    None => weighted,
                });
            }
            if let Some(l) = total_loss {
                l.backward();
            }
        }
        for (g, &(task, _)) in plan.iter().enumerate() {
            task_losses.push((task, sums[g] / c.grad_accum as f64));
        }
    }
    for &(task, n) in plan.iter().filter(|_| !joint_pass) {
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
            tokens += batch.real_tokens();
            if let Some(d) = dump.as_deref_mut() {
                d.write(&batch, runs[task].kind)?;
            }
            let (mut outs, computed) = pass(model, std::slice::from_ref(&batch), c.packing, true)?;
            slots += computed;
            let out = outs.remove(0);
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
        shared.push(slots as f64);
        d.comm.all_reduce_sum_f64(&mut shared)?;
        for (x, v) in task_losses.iter_mut().zip(&shared) {
            x.1 = *v;
        }
        tokens = shared[shared.len() - 2] as usize;
        slots = shared[shared.len() - 1] as usize;
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
        slots,
    })
}
