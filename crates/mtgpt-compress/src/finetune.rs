//! The fine-tuning loop shared by pruning, structured pruning and distillation: batches from
//! every task, a caller-given loss, AdamW over plain tensors with warmup and decay, global-norm
//! clipping, and hooks around each optimizer step (where pruning keeps its masks).
use crate::data::Batches;
use crate::error::Result;
use mtgpt_core::{Batch, TrainConfig};
use mtgpt_train::optim::{AdamW, learning_rate};
use tch::{Tensor, nn};

/// Where a [`finetune`] hook is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Gradients are ready (clipped), the update not yet done.
    BeforeUpdate,
    /// The update is done.
    AfterUpdate,
}

/// Runs `steps` optimizer steps on the variables of `vs`. `loss_of(task, batch)` returns the
/// loss to minimise (before the task's static weight, which is applied here); `hook(moment,
/// step)` runs around each update. The learning rate follows `train` (its peak `lr`, its
/// schedule, a warmup of at most a tenth of `steps`). Returns the mean loss of each step.
pub fn finetune(
    vs: &nn::VarStore,
    batches: &mut Batches<'_>,
    train: &TrainConfig,
    steps: usize,
    mut loss_of: impl FnMut(usize, &Batch) -> Result<Tensor>,
    mut hook: impl FnMut(Moment, usize),
) -> Result<Vec<f64>> {
    let mut c = train.clone();
    c.warmup_steps = c.warmup_steps.min(steps / 10);
    // Recovery after pruning (or a student's training) moves the whole trunk; a factor meant
    // to keep a pretrained trunk in place during fine-tuning does not apply here.
    c.trunk_lr_factor = 1.0;
    let mut opt = AdamW::from_config(vs, &c);
    let mut losses = Vec::with_capacity(steps);
    let started = std::time::Instant::now();
    for step in 0..steps {
        let mut sum = 0.0;
        for _ in 0..c.grad_accum.max(1) {
            let (task, batch) = batches.next_batch()?;
            let loss = loss_of(task, &batch)?;
            sum += loss.double_value(&[]);
            (loss * (batches.weight(task) / c.grad_accum.max(1) as f64)).backward();
        }
        let loss = sum / c.grad_accum.max(1) as f64;
        let norm = opt.clip_grad_norm(c.grad_clip);
        if loss.is_finite() && norm.is_finite() {
            hook(Moment::BeforeUpdate, step);
            opt.step(learning_rate(&c, step, steps));
        } else {
            tracing::warn!(
                "fine-tuning step {step}: non-finite loss {loss} or gradient norm {norm}; update skipped"
            );
        }
        opt.zero_grad();
        hook(Moment::AfterUpdate, step);
        losses.push(loss);
        if (step + 1) % 25 == 0 || step + 1 == steps {
            let recent = &losses[losses.len().saturating_sub(25)..];
            tracing::info!(
                "fine-tuning step {}/{steps}: loss {:.4} ({:.1} s)",
                step + 1,
                recent.iter().sum::<f64>() / recent.len() as f64,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(losses)
}
