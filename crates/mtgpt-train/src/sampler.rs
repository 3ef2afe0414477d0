//! Task mixture sampling: which task each training step (or each example of a mixed batch)
//! draws from.
//!
//! With `n_t = min(size_t, cap)` the capped size of task `t` (`cap = 0` means no cap; tasks
//! with no examples are never drawn):
//! - **proportional**: `p_t = n_t / Σ n_i`;
//! - **temperature** (T5, jiant): `p_t ∝ n_t^(1/T)`; `T = 1` is proportional, large `T`
//!   approaches uniform;
//! - **uniform**: deterministic round-robin over the non-empty tasks in task order (no
//!   randomness; the long-run share is `1/k` each);
//! - **annealed**: temperature mixing with `T(s) = T₀ + (T₁ − T₀) · min(s / (S − 1), 1)` at step
//!   `s` of `S` total steps: `temperature` at step 0, `end_temperature` at the last step and
//!   after it (with `S ≤ 1`, `T₀` throughout).
//!
//! Random draws use the [`STREAM`] stream of the run seed and one `f64` per draw (inverse
//! CDF), so a seed fixes the whole order, and [`TaskSampler::state`] (seed, the generator's
//! word position, counters) restores it exactly.
use mtgpt_core::config::{SamplingConfig, SamplingStrategy};
use mtgpt_core::seed::{self, Rng};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

/// Name of the random stream the sampler draws from (see [`mtgpt_core::seed::rng_for`]).
pub const STREAM: &str = "sampler";

/// What can go wrong building or restoring a [`TaskSampler`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplerError {
    /// No task sizes were given.
    #[error("task sampler: no tasks to sample from")]
    NoTasks,
    /// Every task has zero training examples.
    #[error("task sampler: every task has 0 training examples")]
    AllEmpty,
    /// A temperature the strategy uses is zero, negative or not finite.
    #[error("train.sampling.{field} must be a positive finite number, got {value}")]
    BadTemperature {
        /// The config key (`temperature` or `end_temperature`).
        field: &'static str,
        /// The value found.
        value: f64,
    },
    /// A saved state does not fit this sampler (different number of tasks).
    #[error("sampler state does not fit: {what} has {found} entries, expected {expected}")]
    StateMismatch {
        /// The state field at fault.
        what: &'static str,
        /// Entries this sampler has.
        expected: usize,
        /// Entries the state has.
        found: usize,
    },
}

/// Everything needed to continue a [`TaskSampler`] exactly where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerState {
    /// The run seed the [`STREAM`] generator derives from.
    pub seed: u64,
    /// Position of the generator in its stream, in 32-bit words (`ChaCha8Rng::get_word_pos`).
    pub word_pos: u128,
    /// Training steps drawn so far (calls of `next_task` plus calls of `mixed_batch`).
    pub step: usize,
    /// Per task: steps drawn by [`TaskSampler::next_task`].
    pub step_draws: Vec<usize>,
    /// Per task: examples drawn by [`TaskSampler::mixed_batch`].
    pub example_draws: Vec<usize>,
}

/// Draws the task of each training step (or of each example in mixed batches) from a
/// mixture of the tasks' dataset sizes; see the module docs for the formulas.
#[derive(Debug, Clone)]
pub struct TaskSampler {
    sizes: Vec<usize>,
    config: SamplingConfig,
    total_steps: usize,
    seed: u64,
    rng: Rng,
    step: usize,
    step_draws: Vec<usize>,
    example_draws: Vec<usize>,
}

impl TaskSampler {
    /// A sampler over tasks with `sizes[t]` training examples (in task order), for a run of
    /// `total_steps` steps, drawing from the [`STREAM`] stream of `seed`.
    ///
    /// Errors: no tasks, all sizes zero (after the cap), or a temperature the strategy uses
    /// (`temperature` for temperature and annealed, `end_temperature` for annealed) that is not
    /// positive and finite.
    pub fn new(
        sizes: &[usize],
        config: &SamplingConfig,
        total_steps: usize,
        seed: u64,
    ) -> Result<Self, SamplerError> {
        if sizes.is_empty() {
            return Err(SamplerError::NoTasks);
        }
        let temperatures: &[(&'static str, f64)] = match config.strategy {
            SamplingStrategy::Temperature => &[("temperature", config.temperature)],
            SamplingStrategy::Annealed => &[
                ("temperature", config.temperature),
                ("end_temperature", config.end_temperature),
            ],
            SamplingStrategy::Proportional | SamplingStrategy::Uniform => &[],
        };
        for &(field, value) in temperatures {
            if !(value.is_finite() && value > 0.0) {
                return Err(SamplerError::BadTemperature { field, value });
            }
        }
        let sampler = TaskSampler {
            sizes: sizes.to_vec(),
            config: config.clone(),
            total_steps,
            seed,
            rng: seed::rng_for(seed, STREAM),
            step: 0,
            step_draws: vec![0; sizes.len()],
            example_draws: vec![0; sizes.len()],
        };
        if sampler.capped_sizes().iter().all(|&n| n == 0) {
            return Err(SamplerError::AllEmpty);
        }
        Ok(sampler)
    }

    /// Number of tasks.
    pub fn num_tasks(&self) -> usize {
        self.sizes.len()
    }

    /// Training steps drawn so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The mixing temperature at `step`: 1 for proportional, `None` for uniform (round-robin).
    pub fn temperature(&self, step: usize) -> Option<f64> {
        match self.config.strategy {
            SamplingStrategy::Proportional => Some(1.0),
            SamplingStrategy::Temperature => Some(self.config.temperature),
            SamplingStrategy::Uniform => None,
            SamplingStrategy::Annealed => {
                let span = self.total_steps.saturating_sub(1).max(1) as f64;
                let frac = (step as f64 / span).min(1.0);
                let (t0, t1) = (self.config.temperature, self.config.end_temperature);
                Some(t0 + (t1 - t0) * frac)
            }
        }
    }

    /// The mixture at `step`: one probability per task, summing to 1 (for uniform, the
    /// long-run share `1/k` of each of the `k` non-empty tasks).
    pub fn probabilities(&self, step: usize) -> Vec<f64> {
        let sizes = self.capped_sizes();
        match self.temperature(step) {
            Some(t) => temperature_mixture(&sizes, t),
            None => {
                let k = sizes.iter().filter(|&&n| n > 0).count() as f64;
                sizes
                    .iter()
                    .map(|&n| if n > 0 { 1.0 / k } else { 0.0 })
                    .collect()
            }
        }
    }

    /// Draws the task of the next training step (one task per step).
    pub fn next_task(&mut self) -> usize {
        let task = self.draw(1)[0];
        self.step_draws[task] += 1;
        self.step += 1;
        task
    }

    /// Draws one task per example of the next step's mixed batch of `batch_size` examples.
    pub fn mixed_batch(&mut self, batch_size: usize) -> Vec<usize> {
        let tasks = self.draw(batch_size);
        for &task in &tasks {
            self.example_draws[task] += 1;
        }
        self.step += 1;
        tasks
    }

    /// Draws one task per example of the next step's mixed batch until `take` refuses the
    /// drawn task (a token budget is spent); the refused draw is not counted.
    pub fn mixed_until(&mut self, mut take: impl FnMut(usize) -> bool) -> Vec<usize> {
        let mut tasks = Vec::new();
        loop {
            let task = self.draw(1)[0];
            if !take(task) {
                break;
            }
            self.example_draws[task] += 1;
            tasks.push(task);
        }
        self.step += 1;
        tasks
    }

    /// How many times each task was drawn: steps from [`next_task`](Self::next_task) plus
    /// examples from [`mixed_batch`](Self::mixed_batch).
    pub fn counts(&self) -> Vec<usize> {
        self.step_draws
            .iter()
            .zip(&self.example_draws)
            .map(|(s, e)| s + e)
            .collect()
    }

    /// Epochs seen of each task's (uncapped) training set when one-task steps use batches of
    /// `batch_size`: `(steps_t · batch_size + mixed_examples_t) / size_t`; 0 for empty tasks.
    pub fn epochs(&self, batch_size: usize) -> Vec<f64> {
        self.sizes
            .iter()
            .zip(self.step_draws.iter().zip(&self.example_draws))
            .map(|(&size, (&steps, &examples))| {
                if size == 0 {
                    0.0
                } else {
                    (steps * batch_size + examples) as f64 / size as f64
                }
            })
            .collect()
    }

    /// The state to save in a checkpoint.
    pub fn state(&self) -> SamplerState {
        SamplerState {
            seed: self.seed,
            word_pos: self.rng.get_word_pos(),
            step: self.step,
            step_draws: self.step_draws.clone(),
            example_draws: self.example_draws.clone(),
        }
    }

    /// Continues from a saved `state`: the sizes, config and total steps stay this sampler's,
    /// the seed, generator position and counters become the state's.
    ///
    /// Errors when the state's counters are not one per task.
    pub fn restore(&mut self, state: &SamplerState) -> Result<(), SamplerError> {
        let n = self.num_tasks();
        for (what, found) in [
            ("step_draws", state.step_draws.len()),
            ("example_draws", state.example_draws.len()),
        ] {
            if found != n {
                return Err(SamplerError::StateMismatch {
                    what,
                    expected: n,
                    found,
                });
            }
        }
        let mut rng = seed::rng_for(state.seed, STREAM);
        rng.set_word_pos(state.word_pos);
        self.seed = state.seed;
        self.rng = rng;
        self.step = state.step;
        self.step_draws = state.step_draws.clone();
        self.example_draws = state.example_draws.clone();
        Ok(())
    }

    fn capped_sizes(&self) -> Vec<usize> {
        let cap = self.config.cap;
        self.sizes
            .iter()
            .map(|&n| if cap == 0 { n } else { n.min(cap) })
            .collect()
    }

    /// Draws `n` tasks at the current step: round-robin for uniform (its position is the
    /// number of draws so far), otherwise inverse-CDF sampling from the mixture.
    fn draw(&mut self, n: usize) -> Vec<usize> {
        let probs = self.probabilities(self.step);
        let active: Vec<usize> = (0..probs.len()).filter(|&t| probs[t] > 0.0).collect();
        if self.config.strategy == SamplingStrategy::Uniform {
            let start: usize = self.counts().iter().sum();
            return (start..start + n)
                .map(|i| active[i % active.len()])
                .collect();
        }
        (0..n)
            .map(|_| {
                let u: f64 = self.rng.random();
                let mut cumulative = 0.0;
                for &task in &active {
                    cumulative += probs[task];
                    if u < cumulative {
                        return task;
                    }
                }
                // Rounding can leave the total a hair under 1.
                active[active.len() - 1]
            })
            .collect()
    }
}

/// `p_t ∝ n_t^(1/t)` computed in log space (no overflow for small temperatures); empty tasks
/// get 0.
fn temperature_mixture(sizes: &[usize], temperature: f64) -> Vec<f64> {
    let logits: Vec<Option<f64>> = sizes
        .iter()
        .map(|&n| (n > 0).then(|| (n as f64).ln() / temperature))
        .collect();
    let max = logits
        .iter()
        .flatten()
        .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let weights: Vec<f64> = logits
        .iter()
        .map(|l| l.map_or(0.0, |l| (l - max).exp()))
        .collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(strategy: SamplingStrategy, temperature: f64, cap: usize) -> SamplingConfig {
        SamplingConfig {
            strategy,
            temperature,
            end_temperature: 1.0,
            cap,
            ..SamplingConfig::default()
        }
    }

    fn shares(tasks: &[usize], n_tasks: usize) -> Vec<f64> {
        let mut counts = vec![0usize; n_tasks];
        for &t in tasks {
            counts[t] += 1;
        }
        counts
            .iter()
            .map(|&c| c as f64 / tasks.len() as f64)
            .collect()
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= tol, "got {got:?}, want {want:?} (±{tol})");
        }
    }

    #[test]
    fn proportional_draws_match_sizes() {
        let cfg = config(SamplingStrategy::Proportional, 2.0, 0);
        let mut s = TaskSampler::new(&[1000, 3000, 6000], &cfg, 20_000, 1).unwrap();
        assert_close(&s.probabilities(0), &[0.1, 0.3, 0.6], 1e-12);
        let drawn: Vec<usize> = (0..20_000).map(|_| s.next_task()).collect();
        assert_close(&shares(&drawn, 3), &[0.1, 0.3, 0.6], 0.015);
    }

    #[test]
    fn temperature_draws_match_root_of_sizes() {
        // T = 2: sqrt(100, 400, 1600) = 10, 20, 40 → 1/7, 2/7, 4/7.
        let cfg = config(SamplingStrategy::Temperature, 2.0, 0);
        let mut s = TaskSampler::new(&[100, 400, 1600], &cfg, 20_000, 2).unwrap();
        let want = [1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0];
        assert_close(&s.probabilities(0), &want, 1e-12);
        let drawn: Vec<usize> = (0..20_000).map(|_| s.next_task()).collect();
        assert_close(&shares(&drawn, 3), &want, 0.015);
    }

    #[test]
    fn mixed_batches_follow_the_mixture() {
        let cfg = config(SamplingStrategy::Temperature, 2.0, 0);
        let mut s = TaskSampler::new(&[100, 400, 1600], &cfg, 1000, 3).unwrap();
        let drawn: Vec<usize> = (0..1000).flat_map(|_| s.mixed_batch(20)).collect();
        assert_eq!(s.step(), 1000);
        assert_close(
            &shares(&drawn, 3),
            &[1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0],
            0.015,
        );
    }

    #[test]
    fn uniform_is_exact_round_robin_over_non_empty_tasks() {
        let cfg = config(SamplingStrategy::Uniform, 2.0, 0);
        let mut s = TaskSampler::new(&[5, 0, 100, 7], &cfg, 100, 4).unwrap();
        let third = 1.0 / 3.0;
        assert_close(&s.probabilities(0), &[third, 0.0, third, third], 1e-12);
        let steps: Vec<usize> = (0..7).map(|_| s.next_task()).collect();
        assert_eq!(steps, [0, 2, 3, 0, 2, 3, 0]);
        // A mixed batch continues the cycle where the steps left it.
        assert_eq!(s.mixed_batch(4), [2, 3, 0, 2]);
        assert_eq!(s.counts(), [4, 0, 4, 3]);
    }

    #[test]
    fn cap_evens_out_large_tasks() {
        let uncapped = config(SamplingStrategy::Proportional, 1.0, 0);
        let s = TaskSampler::new(&[1000, 100_000], &uncapped, 10, 5).unwrap();
        assert_close(&s.probabilities(0), &[1.0 / 101.0, 100.0 / 101.0], 1e-12);

        let capped = config(SamplingStrategy::Proportional, 1.0, 1000);
        let mut s = TaskSampler::new(&[1000, 100_000], &capped, 10, 5).unwrap();
        assert_close(&s.probabilities(0), &[0.5, 0.5], 1e-12);
        let drawn: Vec<usize> = (0..20_000).map(|_| s.next_task()).collect();
        assert_close(&shares(&drawn, 2), &[0.5, 0.5], 0.015);
    }

    #[test]
    fn annealed_moves_from_start_to_end_mixture() {
        let cfg = SamplingConfig {
            end_temperature: 1.0,
            ..config(SamplingStrategy::Annealed, 4.0, 0)
        };
        let total = 20_001;
        let mut s = TaskSampler::new(&[100, 1600], &cfg, total, 6).unwrap();
        // T = 4: 100^¼ : 1600^¼ = 1 : 2. T = 1: 100 : 1600. Halfway, T = 2.5.
        assert_close(&s.probabilities(0), &[1.0 / 3.0, 2.0 / 3.0], 1e-12);
        assert_close(&s.probabilities(20_000), &[1.0 / 17.0, 16.0 / 17.0], 1e-12);
        assert_close(&s.probabilities(99_999), &[1.0 / 17.0, 16.0 / 17.0], 1e-12);
        assert_eq!(s.temperature(10_000), Some(2.5));
        let mid = temperature_mixture(&[100, 1600], 2.5);
        assert_close(&s.probabilities(10_000), &mid, 1e-12);

        let drawn: Vec<usize> = (0..total).map(|_| s.next_task()).collect();
        let window = 4000;
        let expected_share = |range: std::ops::Range<usize>| {
            range.map(|i| s.probabilities(i)[0]).sum::<f64>() / window as f64
        };
        let first = shares(&drawn[..window], 2)[0];
        let last = shares(&drawn[total - window..], 2)[0];
        assert!((first - expected_share(0..window)).abs() < 0.025, "{first}");
        assert!((last - expected_share(total - window..total)).abs() < 0.025);
        assert!(first > 0.28 && last < 0.1, "first {first}, last {last}");
    }

    #[test]
    fn same_seed_same_order_other_seed_other_order() {
        let cfg = SamplingConfig::default();
        let run = |seed| {
            let mut s = TaskSampler::new(&[300, 500, 200], &cfg, 100, seed).unwrap();
            (0..200).map(|_| s.next_task()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn restored_state_continues_identically() {
        let cfg = SamplingConfig {
            strategy: SamplingStrategy::Annealed,
            temperature: 3.0,
            ..SamplingConfig::default()
        };
        let sizes = [300, 5000, 40];
        let mut a = TaskSampler::new(&sizes, &cfg, 1000, 7).unwrap();
        for _ in 0..137 {
            a.next_task();
        }
        a.mixed_batch(5);
        let json = serde_json::to_string(&a.state()).unwrap();
        let saved: SamplerState = serde_json::from_str(&json).unwrap();
        assert_eq!(saved, a.state());
        let value = serde_json::to_value(a.state()).unwrap();
        assert_eq!(
            serde_json::from_value::<SamplerState>(value).unwrap(),
            saved
        );

        // Built with another seed: the state's seed must win.
        let mut b = TaskSampler::new(&sizes, &cfg, 1000, 999).unwrap();
        b.restore(&saved).unwrap();
        assert_eq!(b.step(), 138);
        assert_eq!(b.counts(), a.counts());
        let next_a: Vec<usize> = (0..300).map(|_| a.next_task()).collect();
        let next_b: Vec<usize> = (0..300).map(|_| b.next_task()).collect();
        assert_eq!(next_a, next_b);
        assert_eq!(a.mixed_batch(16), b.mixed_batch(16));
        assert_eq!(a.state(), b.state());
    }

    #[test]
    fn epochs_count_steps_and_mixed_examples() {
        let cfg = config(SamplingStrategy::Uniform, 1.0, 0);
        let mut s = TaskSampler::new(&[10, 20], &cfg, 10, 8).unwrap();
        for _ in 0..4 {
            s.next_task();
        }
        assert_close(&s.epochs(5), &[1.0, 0.5], 1e-12);
        assert_eq!(s.mixed_batch(3), [0, 1, 0]);
        assert_eq!(s.counts(), [4, 3]);
        assert_close(&s.epochs(5), &[1.2, 0.55], 1e-12);
    }

    #[test]
    fn rejects_bad_inputs() {
        let cfg = SamplingConfig::default();
        assert_eq!(
            TaskSampler::new(&[], &cfg, 10, 0).unwrap_err(),
            SamplerError::NoTasks
        );
        assert_eq!(
            TaskSampler::new(&[0, 0], &cfg, 10, 0).unwrap_err(),
            SamplerError::AllEmpty
        );
        let cold = config(SamplingStrategy::Temperature, 0.0, 0);
        assert!(matches!(
            TaskSampler::new(&[1], &cold, 10, 0),
            Err(SamplerError::BadTemperature {
                field: "temperature",
                ..
            })
        ));
        let annealed = SamplingConfig {
            end_temperature: -1.0,
            ..config(SamplingStrategy::Annealed, 2.0, 0)
        };
        assert!(matches!(
            TaskSampler::new(&[1], &annealed, 10, 0),
            Err(SamplerError::BadTemperature {
                field: "end_temperature",
                ..
            })
        ));
        // Proportional ignores the temperature.
        let prop = config(SamplingStrategy::Proportional, 0.0, 0);
        assert!(TaskSampler::new(&[1], &prop, 10, 0).is_ok());

        let mut s = TaskSampler::new(&[1, 2], &cfg, 10, 0).unwrap();
        let mut state = s.state();
        state.example_draws.push(0);
        assert_eq!(
            s.restore(&state).unwrap_err(),
            SamplerError::StateMismatch {
                what: "example_draws",
                expected: 2,
                found: 3
            }
        );
    }
}
