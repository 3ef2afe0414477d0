//! The divergence guard: decides when a training step went wrong (a non-finite loss or
//! gradient norm, or a loss spike) and keeps the running statistics and the learning-rate
//! scale that the trainer saves in checkpoints.
//!
//! A loss spike is a task loss above `spike_factor ×` that task's running mean **and** at least
//! [`SPIKE_MARGIN`] nats above it, once the task has been seen [`WARMUP_OBSERVATIONS`] times.
//! The margin keeps a well-trained classifier meeting one hard batch (mean loss 0.09, one
//! batch at 1.75 — seen on the demo's SMS spam task) from counting as divergence; a diverging
//! model jumps by several nats.
//!
//! A first spike of a task only skips the step's update ([`Verdict::Skip`]): a confident
//! classifier that sees few rows per step (mixed batches, adapters at a high learning rate)
//! meets single batches 4–6 nats above a mean of 0.1 that are hard examples, not divergence.
//! A spike of the same task at its next observation too, a non-finite loss or a non-finite
//! gradient norm is an event ([`Verdict::Diverged`]): the trainer restores its last good
//! in-memory snapshot (weights, optimizer moments, loss-weighting state), multiplies the
//! learning rate by `guard_lr_factor`, skips the step's update and goes on with the next batch.
use serde::{Deserialize, Serialize};

/// Observations of a task before spikes are checked.
pub const WARMUP_OBSERVATIONS: usize = 20;
/// Smoothing of the running mean: `mean ← (1 − a)·mean + a·loss`.
pub const EMA_ALPHA: f64 = 0.05;
/// A spike must also exceed the running mean by this many nats.
pub const SPIKE_MARGIN: f64 = 2.0;

/// What the guard carries between steps (saved in checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardState {
    /// Multiplier on the scheduled learning rate (1 until an event).
    pub lr_scale: f64,
    /// Events so far.
    pub events: usize,
    /// Running mean of each task's loss.
    pub mean: Vec<Option<f64>>,
    /// Observations of each task.
    pub seen: Vec<usize>,
    /// Tasks whose last observation was a spike (a second in a row is an event).
    #[serde(default)]
    pub suspect: Vec<bool>,
    /// Steps skipped for a first spike.
    #[serde(default)]
    pub skipped: usize,
}

/// What the guard makes of one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Apply the update.
    Healthy,
    /// A first loss spike of each of `tasks`: skip the update, remember the tasks.
    Skip {
        /// The tasks that spiked.
        tasks: Vec<usize>,
        /// Why (the first of them).
        reason: String,
    },
    /// Divergence: restore the last good state.
    Diverged(String),
}

/// Divergence detection over `n` tasks.
#[derive(Debug, Clone)]
pub struct DivergenceGuard {
    spike_factor: f64,
    state: GuardState,
}

impl DivergenceGuard {
    /// A guard for `n_tasks` tasks that calls a loss above `spike_factor ×` its running mean
    /// (and [`SPIKE_MARGIN`] above it) a spike.
    pub fn new(n_tasks: usize, spike_factor: f64) -> Self {
        DivergenceGuard {
            spike_factor,
            state: GuardState {
                lr_scale: 1.0,
                events: 0,
                mean: vec![None; n_tasks],
                seen: vec![0; n_tasks],
                suspect: vec![false; n_tasks],
                skipped: 0,
            },
        }
    }

    /// What to do with this step. `task_losses` are `(task, loss)` pairs of the step,
    /// `grad_norm` its global gradient norm before clipping.
    pub fn check(&self, task_losses: &[(usize, f64)], grad_norm: f64) -> Verdict {
        if !grad_norm.is_finite() {
            return Verdict::Diverged(format!("gradient norm {grad_norm}"));
        }
        let mut spiked = Vec::new();
        let mut first_reason = None;
        for &(task, loss) in task_losses {
            if !loss.is_finite() {
                return Verdict::Diverged(format!("task {task}: loss {loss}"));
            }
            let (Some(Some(mean)), Some(&seen)) =
                (self.state.mean.get(task), self.state.seen.get(task))
            else {
                continue;
            };
            if seen >= WARMUP_OBSERVATIONS
                && loss > self.spike_factor * mean
                && loss > mean + SPIKE_MARGIN
            {
                let reason = format!(
                    "task {task}: loss {loss:.4} is over {}× its running mean {mean:.4}",
                    self.spike_factor
                );
                if self.state.suspect.get(task).copied().unwrap_or(false) {
                    return Verdict::Diverged(format!("{reason}, the second spike in a row"));
                }
                spiked.push(task);
                first_reason.get_or_insert(reason);
            }
        }
        match first_reason {
            Some(reason) => Verdict::Skip {
                tasks: spiked,
                reason,
            },
            None => Verdict::Healthy,
        }
    }

    /// Remembers a first spike of each of `tasks` (the step was skipped).
    pub fn skip(&mut self, tasks: &[usize]) {
        for &task in tasks {
            if let Some(s) = self.state.suspect.get_mut(task) {
                *s = true;
            }
        }
        self.state.skipped += 1;
    }

    /// Steps skipped for a first spike so far.
    pub fn skipped(&self) -> usize {
        self.state.skipped
    }

    /// Adds a healthy step's losses to the running means.
    pub fn observe(&mut self, task_losses: &[(usize, f64)]) {
        for &(task, loss) in task_losses {
            if task >= self.state.mean.len() || !loss.is_finite() {
                continue;
            }
            let m = &mut self.state.mean[task];
            *m = Some(match *m {
                None => loss,
                Some(prev) => (1.0 - EMA_ALPHA) * prev + EMA_ALPHA * loss,
            });
            self.state.seen[task] += 1;
            if let Some(s) = self.state.suspect.get_mut(task) {
                *s = false;
            }
        }
    }

    /// Counts an event and scales the learning rate by `lr_factor`.
    pub fn record_event(&mut self, lr_factor: f64) {
        self.state.events += 1;
        self.state.lr_scale *= lr_factor;
    }

    /// The running mean of `task`'s loss.
    pub fn mean(&self, task: usize) -> Option<f64> {
        self.state.mean.get(task).copied().flatten()
    }

    /// Events so far.
    pub fn events(&self) -> usize {
        self.state.events
    }

    /// The current learning-rate multiplier.
    pub fn lr_scale(&self) -> f64 {
        self.state.lr_scale
    }

    /// The state to save.
    pub fn state(&self) -> &GuardState {
        &self.state
    }

    /// Continues from a saved state; errors when it is for another number of tasks.
    pub fn restore(&mut self, state: GuardState) -> Result<(), String> {
        if state.mean.len() != self.state.mean.len() || state.seen.len() != self.state.seen.len() {
            return Err(format!(
                "divergence guard state has {} tasks, the run has {}",
                state.mean.len(),
                self.state.mean.len()
            ));
        }
        self.state = state;
        // A state saved before `suspect` existed has none: no task is suspect.
        self.state.suspect.resize(self.state.mean.len(), false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warmed(loss: f64) -> DivergenceGuard {
        let mut g = DivergenceGuard::new(2, 5.0);
        for _ in 0..WARMUP_OBSERVATIONS {
            g.observe(&[(0, loss)]);
        }
        g
    }

    #[test]
    fn running_mean_follows_the_hand_worked_ema() {
        let mut g = DivergenceGuard::new(1, 5.0);
        g.observe(&[(0, 2.0)]);
        assert_eq!(g.mean(0), Some(2.0));
        g.observe(&[(0, 4.0)]);
        // 0.95 · 2 + 0.05 · 4 = 2.1
        assert!((g.mean(0).unwrap() - 2.1).abs() < 1e-12);
        g.observe(&[(0, f64::NAN)]);
        assert!((g.mean(0).unwrap() - 2.1).abs() < 1e-12);
        assert_eq!(g.state().seen, vec![2]);
    }

    #[test]
    fn non_finite_values_are_events_at_once() {
        let g = DivergenceGuard::new(2, 5.0);
        assert!(matches!(
            g.check(&[(1, f64::NAN)], 1.0),
            Verdict::Diverged(_)
        ));
        assert!(matches!(
            g.check(&[(1, 0.5)], f64::INFINITY),
            Verdict::Diverged(_)
        ));
        assert_eq!(g.check(&[(1, 0.5)], 3.0), Verdict::Healthy);
    }

    #[test]
    fn spikes_need_the_factor_the_margin_and_warmup() {
        let spike = |v: Verdict| matches!(v, Verdict::Skip { ref tasks, .. } if tasks == &[0]);
        let g = warmed(2.0);
        // 11 > 5·2 and > 2 + 2: a spike.
        assert!(spike(g.check(&[(0, 11.0)], 1.0)));
        // 9 < 10: not.
        assert_eq!(g.check(&[(0, 9.0)], 1.0), Verdict::Healthy);
        // Small losses: 1.75 > 5·0.09 but not 2 nats above, so not a spike.
        let g = warmed(0.09);
        assert_eq!(g.check(&[(0, 1.75)], 1.0), Verdict::Healthy);
        assert!(spike(g.check(&[(0, 2.2)], 1.0)));
        // Task 1 has no history: nothing to compare with.
        assert_eq!(g.check(&[(1, 50.0)], 1.0), Verdict::Healthy);
        // Before warmup a big jump is not judged.
        let mut g = DivergenceGuard::new(1, 5.0);
        g.observe(&[(0, 1.0)]);
        assert_eq!(g.check(&[(0, 30.0)], 1.0), Verdict::Healthy);
    }

    #[test]
    fn a_first_spike_skips_and_a_second_in_a_row_diverges() {
        let mut g = warmed(0.1);
        // One hard batch: skipped, not an event; a healthy observation clears it.
        assert!(matches!(
            g.check(&[(0, 4.4)], 1.0),
            Verdict::Skip { ref tasks, .. } if tasks == &[0]
        ));
        g.skip(&[0]);
        g.observe(&[(0, 0.1)]);
        assert!(matches!(
            g.check(&[(0, 4.4)], 1.0),
            Verdict::Skip { ref tasks, .. } if tasks == &[0]
        ));
        // Spiking again at the task's next observation is divergence.
        g.skip(&[0]);
        assert!(matches!(g.check(&[(0, 5.0)], 1.0), Verdict::Diverged(_)));
        // Another task's observations do not clear task 0.
        g.observe(&[(1, 1.0)]);
        assert!(matches!(g.check(&[(0, 5.0)], 1.0), Verdict::Diverged(_)));
        assert_eq!(g.skipped(), 2);
        // Skipping leaves the running mean as it was.
        assert!((g.mean(0).unwrap() - 0.1).abs() < 1e-12);
        // A state saved before `suspect` existed restores as no suspect.
        let mut old = serde_json::to_value(warmed(0.1).state()).unwrap();
        old.as_object_mut().unwrap().remove("suspect");
        old.as_object_mut().unwrap().remove("skipped");
        let mut h = DivergenceGuard::new(2, 5.0);
        h.restore(serde_json::from_value(old).unwrap()).unwrap();
        assert!(matches!(
            h.check(&[(0, 4.4)], 1.0),
            Verdict::Skip { ref tasks, .. } if tasks == &[0]
        ));
        h.skip(&[0]);
        assert!(matches!(h.check(&[(0, 4.4)], 1.0), Verdict::Diverged(_)));
        // Two tasks spiking in one step are both remembered.
        let mut g = DivergenceGuard::new(2, 5.0);
        for _ in 0..WARMUP_OBSERVATIONS {
            g.observe(&[(0, 0.1), (1, 0.1)]);
        }
        let Verdict::Skip { tasks, .. } = g.check(&[(0, 4.4), (1, 4.4)], 1.0) else {
            panic!("a spike of both tasks is a skip");
        };
        assert_eq!(tasks, vec![0, 1]);
        g.skip(&tasks);
        assert!(matches!(g.check(&[(1, 4.4)], 1.0), Verdict::Diverged(_)));
    }

    #[test]
    fn events_scale_the_learning_rate_and_state_round_trips() {
        let mut g = warmed(1.0);
        g.record_event(0.5);
        g.record_event(0.5);
        assert_eq!(g.events(), 2);
        assert_eq!(g.lr_scale(), 0.25);
        let saved = g.state().clone();
        let mut h = DivergenceGuard::new(2, 5.0);
        h.restore(saved.clone()).unwrap();
        assert_eq!(h.state(), &saved);
        assert!(DivergenceGuard::new(3, 5.0).restore(saved).is_err());
    }
}
