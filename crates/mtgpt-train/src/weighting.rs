//! Loss weighting for joint training: how a task's loss becomes the loss to backpropagate, and
//! PCGrad gradient surgery for steps whose gradients come from several tasks.
//!
//! With `L_t` the loss of task `t` and `N` tasks:
//! - **static**: `w_t · L_t`, `w_t` the task's configured `weight`.
//! - **uncertainty** (Kendall, Gal & Cipolla 2018): a learned log-variance `s_t = log σ_t²` per
//!   task; the loss is `exp(−s_t) · L_t + s_t`. This is the common form without the paper's
//!   ½ factors (`½ exp(−s_t) L_t + ½ s_t`): twice that loss, with the same optimum
//!   `s_t = ln L_t`. The effective weight reported is `exp(−s_t)`.
//! - **DWA** (Liu, Johns & Davison 2019): `w_t = N · exp(r_t / T) / Σ_i exp(r_i / T)` with
//!   `r_t = L̄_t(k−1) / L̄_t(k−2)`, where `L̄_t(k)` is the mean of task `t`'s losses over its
//!   `k`-th window of `window` observed steps (each task's windows count only the steps that
//!   drew it). Until a task has two full windows its `r_t` is 1, so all weights start at 1.
//!   The loss is `w_t · L_t`, weights fixed between window ends.
//! - **PCGrad** (Yu et al. 2020): losses weighted as static; the trainer combines per-task
//!   gradients with [`pcgrad`].
mod exact;

use mtgpt_core::config::{WeightingConfig, WeightingStrategy};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn};

/// A DWA window length to use when nothing better is known: 20 observed steps per task.
pub const DEFAULT_DWA_WINDOW: usize = 20;

/// What can go wrong building, using or restoring a loss weighting.
#[derive(Debug, thiserror::Error)]
pub enum WeightingError {
    /// No tasks (or, for [`pcgrad`], no gradients).
    #[error("loss weighting: no tasks")]
    NoTasks,
    /// A task index beyond the number of tasks.
    #[error("loss weighting: task {task} out of range ({n_tasks} tasks)")]
    UnknownTask {
        /// The index given.
        task: usize,
        /// Number of tasks.
        n_tasks: usize,
    },
    /// A static task weight that is negative or not finite.
    #[error("task {task}: weight must be finite and ≥ 0, got {weight}")]
    BadWeight {
        /// The task.
        task: usize,
        /// The weight found.
        weight: f64,
    },
    /// A DWA temperature that is not positive and finite.
    #[error("train.weighting.dwa_temperature must be a positive finite number, got {0}")]
    BadTemperature(f64),
    /// A DWA window of 0 steps.
    #[error("loss weighting: the DWA window must be at least 1 step")]
    BadWindow,
    /// A loss value that is NaN or infinite.
    #[error("task {task}: loss {value} is not finite")]
    NonFiniteLoss {
        /// The task.
        task: usize,
        /// The loss value.
        value: f64,
    },
    /// A saved state or gradient list that does not fit.
    #[error("loss weighting: {0}")]
    Mismatch(String),
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Tch(#[from] tch::TchError),
}

/// Uncertainty weighting: one learned log-variance `s_t` per task, loss `exp(−s_t)·L_t + s_t`.
#[derive(Debug)]
pub struct UncertaintyWeighting {
    log_var: Tensor,
}

impl UncertaintyWeighting {
    /// Creates the trainable `log_var` variable of shape `[n_tasks]`, initialised to 0, in `p`
    /// (with `p = root / "loss_weights"` its checkpoint key is `loss_weights.log_var`). Keep it
    /// out of weight decay.
    pub fn new(p: &nn::Path, n_tasks: usize) -> Result<Self, WeightingError> {
        if n_tasks == 0 {
            return Err(WeightingError::NoTasks);
        }
        let log_var = p.f_zeros("log_var", &[n_tasks as i64])?;
        Ok(UncertaintyWeighting { log_var })
    }

    /// The log-variances `s`, shape `[n_tasks]` (shares storage with the variable).
    pub fn log_var(&self) -> &Tensor {
        &self.log_var
    }

    /// `exp(−s_t) · loss + s_t`, differentiable in both `loss` and `s_t`.
    pub fn combine(&self, task: usize, loss: &Tensor) -> Result<Tensor, WeightingError> {
        let s = self.log_var.f_get(task as i64)?;
        Ok(loss.f_mul(&s.f_neg()?.f_exp()?)?.f_add(&s)?)
    }

    /// Current `s_t` of every task.
    pub fn log_vars(&self) -> Vec<f64> {
        let n = self.log_var.size()[0];
        (0..n).map(|t| self.log_var.double_value(&[t])).collect()
    }

    /// Overwrites the log-variances (outside autograd).
    fn set_log_vars(&mut self, values: &[f64]) -> Result<(), WeightingError> {
        let src = Tensor::f_from_slice(values)?
            .f_to_kind(self.log_var.kind())?
            .f_to_device(self.log_var.device())?;
        tch::no_grad(|| self.log_var.f_copy_(&src))?;
        Ok(())
    }
}

/// Per-task loss history of DWA: the running window and the two latest window means.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskLossHistory {
    /// Sum of the losses observed in the open window.
    #[serde(with = "exact")]
    pub sum: f64,
    /// Losses observed in the open window.
    pub count: usize,
    /// Mean loss of the window before the latest one, `L̄(k−2)`.
    #[serde(with = "exact::option")]
    pub previous: Option<f64>,
    /// Mean loss of the latest full window, `L̄(k−1)`.
    #[serde(with = "exact::option")]
    pub latest: Option<f64>,
}

impl TaskLossHistory {
    /// `L̄(k−1) / L̄(k−2)` once two windows are full (and the older mean is positive).
    pub fn ratio(&self) -> Option<f64> {
        match (self.previous, self.latest) {
            (Some(prev), Some(last)) if prev > 0.0 => Some(last / prev),
            _ => None,
        }
    }
}

/// Dynamic Weight Average over per-task windows of observed losses (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicWeightAverage {
    temperature: f64,
    window: usize,
    history: Vec<TaskLossHistory>,
}

impl DynamicWeightAverage {
    /// DWA over `n_tasks` tasks with softmax temperature `temperature` and windows of
    /// `window` observed steps per task.
    pub fn new(n_tasks: usize, temperature: f64, window: usize) -> Result<Self, WeightingError> {
        if n_tasks == 0 {
            return Err(WeightingError::NoTasks);
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(WeightingError::BadTemperature(temperature));
        }
        if window == 0 {
            return Err(WeightingError::BadWindow);
        }
        Ok(DynamicWeightAverage {
            temperature,
            window,
            history: vec![TaskLossHistory::default(); n_tasks],
        })
    }

    /// Records one observed (unweighted) loss of `task`; closes its window when full.
    /// The caller checks `task` and finiteness.
    fn observe(&mut self, task: usize, loss: f64) {
        let h = &mut self.history[task];
        h.sum += loss;
        h.count += 1;
        if h.count == self.window {
            h.previous = h.latest;
            h.latest = Some(h.sum / h.count as f64);
            h.sum = 0.0;
            h.count = 0;
        }
    }

    /// `w_t = N · softmax(r / T)_t`, `r_t = 1` for tasks without two full windows.
    pub fn weights(&self) -> Vec<f64> {
        let n = self.history.len() as f64;
        let logits: Vec<f64> = self
            .history
            .iter()
            .map(|h| h.ratio().unwrap_or(1.0) / self.temperature)
            .collect();
        let max = logits.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        exps.iter().map(|e| n * e / total).collect()
    }

    /// The loss history of every task.
    pub fn history(&self) -> &[TaskLossHistory] {
        &self.history
    }
}

/// The strategy-specific part of a checkpoint's trainer state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum WeightingState {
    /// Static weights keep no state (they come from the config).
    Static,
    /// The log-variances `s_t` (also saved with the model as `…log_var`).
    Uncertainty {
        /// `s_t` per task.
        #[serde(with = "exact::vec")]
        log_var: Vec<f64>,
    },
    /// The DWA loss history.
    Dwa {
        /// One history per task.
        history: Vec<TaskLossHistory>,
    },
    /// PCGrad keeps no state (its shuffles use the trainer's seeded generator).
    Pcgrad,
}

/// How per-task losses are weighted, one variant per [`WeightingStrategy`].
#[derive(Debug)]
pub enum LossWeighting {
    /// Fixed per-task weights.
    Static(Vec<f64>),
    /// Learned log-variances.
    Uncertainty(UncertaintyWeighting),
    /// Dynamic Weight Average.
    Dwa(DynamicWeightAverage),
    /// Static weights on the losses; gradients of several tasks are combined by [`pcgrad`].
    Pcgrad(Vec<f64>),
}

impl LossWeighting {
    /// The weighting `config` asks for over tasks with static `task_weights` (one per task, in
    /// task order, checked finite and ≥ 0 whatever the strategy). Uncertainty weighting
    /// creates its variable in `p`; DWA uses windows of [`DEFAULT_DWA_WINDOW`] steps.
    pub fn new(
        p: &nn::Path,
        config: &WeightingConfig,
        task_weights: &[f64],
    ) -> Result<Self, WeightingError> {
        Self::with_dwa_window(p, config, task_weights, DEFAULT_DWA_WINDOW)
    }

    /// As [`new`](Self::new), with DWA windows of `dwa_window` observed steps per task.
    pub fn with_dwa_window(
        p: &nn::Path,
        config: &WeightingConfig,
        task_weights: &[f64],
        dwa_window: usize,
    ) -> Result<Self, WeightingError> {
        if task_weights.is_empty() {
            return Err(WeightingError::NoTasks);
        }
        for (task, &weight) in task_weights.iter().enumerate() {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(WeightingError::BadWeight { task, weight });
            }
        }
        let n = task_weights.len();
        Ok(match config.strategy {
            WeightingStrategy::Static => LossWeighting::Static(task_weights.to_vec()),
            WeightingStrategy::Uncertainty => {
                LossWeighting::Uncertainty(UncertaintyWeighting::new(p, n)?)
            }
            WeightingStrategy::Dwa => LossWeighting::Dwa(DynamicWeightAverage::new(
                n,
                config.dwa_temperature,
                dwa_window,
            )?),
            WeightingStrategy::Pcgrad => LossWeighting::Pcgrad(task_weights.to_vec()),
        })
    }

    /// Number of tasks.
    pub fn num_tasks(&self) -> usize {
        match self {
            LossWeighting::Static(w) | LossWeighting::Pcgrad(w) => w.len(),
            LossWeighting::Uncertainty(u) => u.log_var.size()[0] as usize,
            LossWeighting::Dwa(d) => d.history.len(),
        }
    }

    /// Whether the trainer should combine per-task gradients with [`pcgrad`].
    pub fn uses_pcgrad(&self) -> bool {
        matches!(self, LossWeighting::Pcgrad(_))
    }

    /// The loss to backpropagate for `task`'s (unweighted) `loss`: `w_t · L_t` for static,
    /// PCGrad and DWA, `exp(−s_t)·L_t + s_t` for uncertainty.
    pub fn combine(&self, task: usize, loss: &Tensor) -> Result<Tensor, WeightingError> {
        self.check_task(task)?;
        match self {
            LossWeighting::Uncertainty(u) => u.combine(task, loss),
            _ => Ok(loss.f_mul_scalar(self.weights()[task])?),
        }
    }

    /// Records `task`'s unweighted loss of a step (only DWA uses it).
    pub fn observe(&mut self, task: usize, loss_value: f64) -> Result<(), WeightingError> {
        self.check_task(task)?;
        if !loss_value.is_finite() {
            return Err(WeightingError::NonFiniteLoss {
                task,
                value: loss_value,
            });
        }
        if let LossWeighting::Dwa(d) = self {
            d.observe(task, loss_value);
        }
        Ok(())
    }

    /// The current effective weight of each task (`exp(−s_t)` for uncertainty).
    pub fn weights(&self) -> Vec<f64> {
        match self {
            LossWeighting::Static(w) | LossWeighting::Pcgrad(w) => w.clone(),
            LossWeighting::Uncertainty(u) => u.log_vars().iter().map(|s| (-s).exp()).collect(),
            LossWeighting::Dwa(d) => d.weights(),
        }
    }

    /// The state to save in a checkpoint.
    pub fn state(&self) -> WeightingState {
        match self {
            LossWeighting::Static(_) => WeightingState::Static,
            LossWeighting::Uncertainty(u) => WeightingState::Uncertainty {
                log_var: u.log_vars(),
            },
            LossWeighting::Dwa(d) => WeightingState::Dwa {
                history: d.history.clone(),
            },
            LossWeighting::Pcgrad(_) => WeightingState::Pcgrad,
        }
    }

    /// Continues from a saved `state` of the same strategy and number of tasks. For
    /// uncertainty this writes `s` into the variable, exactly as loading it from the model
    /// checkpoint would.
    pub fn restore(&mut self, state: &WeightingState) -> Result<(), WeightingError> {
        let n = self.num_tasks();
        let fits = |len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(WeightingError::Mismatch(format!(
                    "state has {len} tasks, the weighting {n}"
                )))
            }
        };
        match (self, state) {
            (LossWeighting::Static(_), WeightingState::Static)
            | (LossWeighting::Pcgrad(_), WeightingState::Pcgrad) => Ok(()),
            (LossWeighting::Uncertainty(u), WeightingState::Uncertainty { log_var }) => {
                fits(log_var.len())?;
                u.set_log_vars(log_var)
            }
            (LossWeighting::Dwa(d), WeightingState::Dwa { history }) => {
                fits(history.len())?;
                d.history = history.clone();
                Ok(())
            }
            (this, state) => Err(WeightingError::Mismatch(format!(
                "state is for {:?}, the weighting is {:?}",
                strategy_of_state(state),
                this.strategy()
            ))),
        }
    }

    /// The strategy this weighting implements.
    pub fn strategy(&self) -> WeightingStrategy {
        match self {
            LossWeighting::Static(_) => WeightingStrategy::Static,
            LossWeighting::Uncertainty(_) => WeightingStrategy::Uncertainty,
            LossWeighting::Dwa(_) => WeightingStrategy::Dwa,
            LossWeighting::Pcgrad(_) => WeightingStrategy::Pcgrad,
        }
    }

    fn check_task(&self, task: usize) -> Result<(), WeightingError> {
        let n_tasks = self.num_tasks();
        if task < n_tasks {
            Ok(())
        } else {
            Err(WeightingError::UnknownTask { task, n_tasks })
        }
    }
}

fn strategy_of_state(state: &WeightingState) -> WeightingStrategy {
    match state {
        WeightingState::Static => WeightingStrategy::Static,
        WeightingState::Uncertainty { .. } => WeightingStrategy::Uncertainty,
        WeightingState::Dwa { .. } => WeightingStrategy::Dwa,
        WeightingState::Pcgrad => WeightingStrategy::Pcgrad,
    }
}

/// PCGrad (Yu et al. 2020): combines per-task gradients after projecting away conflicts.
///
/// `grads[t][k]` is task `t`'s gradient of parameter `k` (same parameter order for every
/// task); an undefined tensor (a parameter the task does not reach, e.g. another task's head)
/// counts as zeros. Each task's gradients are flattened into one vector `g_t` over all
/// parameters. For each task `i`, starting from `g_i' = g_i`, the other tasks `j` are visited
/// in a fresh random order drawn from `rng`, and whenever `g_i' · g_j < 0`,
/// `g_i' ← g_i' − (g_i' · g_j / |g_j|²) g_j` (projections are onto the *original* `g_j`, as in
/// the paper). The result is `Σ_i g_i'`, split back into the parameters' shapes; a parameter
/// no task reaches gets an undefined tensor.
///
/// Errors when `grads` is empty, tasks list different numbers of parameters, or shapes differ.
pub fn pcgrad<R: rand::Rng + ?Sized>(
    grads: &[Vec<Tensor>],
    rng: &mut R,
) -> Result<Vec<Tensor>, WeightingError> {
    let Some(first) = grads.first() else {
        return Err(WeightingError::NoTasks);
    };
    let n_params = first.len();
    if let Some(bad) = grads.iter().position(|g| g.len() != n_params) {
        return Err(WeightingError::Mismatch(format!(
            "pcgrad: task {bad} has {} gradients, task 0 has {n_params}",
            grads[bad].len()
        )));
    }
    // The first defined gradient of each parameter fixes its shape, dtype and device.
    let templates: Vec<Option<&Tensor>> = (0..n_params)
        .map(|k| grads.iter().map(|g| &g[k]).find(|t| t.defined()))
        .collect();
    if templates.iter().all(Option::is_none) {
        return Ok((0..n_params).map(|_| Tensor::new()).collect());
    }
    tch::no_grad(|| {
        let flat = grads
            .iter()
            .map(|task| flatten(task, &templates))
            .collect::<Result<Vec<_>, _>>()?;
        let projected = project_conflicting(&flat, rng)?;
        let mut total = projected[0].shallow_clone();
        for g in &projected[1..] {
            total = total.f_add(g)?;
        }
        let mut offset = 0;
        let mut out = Vec::with_capacity(n_params);
        for template in &templates {
            match template {
                Some(t) => {
                    let numel = t.numel() as i64;
                    out.push(total.f_narrow(0, offset, numel)?.f_reshape(t.size())?);
                    offset += numel;
                }
                None => out.push(Tensor::new()),
            }
        }
        Ok(out)
    })
}

/// One task's gradients as a single vector, zeros where the task has none.
fn flatten(task: &[Tensor], templates: &[Option<&Tensor>]) -> Result<Tensor, WeightingError> {
    let mut parts = Vec::with_capacity(task.len());
    for (k, (g, template)) in task.iter().zip(templates).enumerate() {
        let Some(t) = template else { continue };
        if !g.defined() {
            parts.push(Tensor::f_zeros([t.numel() as i64], (t.kind(), t.device()))?);
        } else if g.size() != t.size() {
            return Err(WeightingError::Mismatch(format!(
                "pcgrad: parameter {k} has shape {:?} in one task and {:?} in another",
                g.size(),
                t.size()
            )));
        } else {
            parts.push(g.f_reshape([-1])?);
        }
    }
    Ok(Tensor::f_cat(&parts, 0)?)
}

/// `g_i'` for every task (see [`pcgrad`]).
fn project_conflicting<R: rand::Rng + ?Sized>(
    flat: &[Tensor],
    rng: &mut R,
) -> Result<Vec<Tensor>, WeightingError> {
    let dot = |a: &Tensor, b: &Tensor| -> Result<f64, WeightingError> {
        Ok(a.f_dot(b)?.f_to_kind(Kind::Double)?.f_double_value(&[])?)
    };
    let sq_norms = flat
        .iter()
        .map(|g| dot(g, g))
        .collect::<Result<Vec<_>, _>>()?;
    let mut projected = Vec::with_capacity(flat.len());
    for i in 0..flat.len() {
        let mut g = flat[i].shallow_clone();
        let mut others: Vec<usize> = (0..flat.len()).filter(|&j| j != i).collect();
        others.shuffle(rng);
        for j in others {
            let d = dot(&g, &flat[j])?;
            // d < 0 implies |g_j|² > 0.
            if d < 0.0 {
                g = g.f_sub(&flat[j].f_mul_scalar(d / sq_norms[j])?)?;
            }
        }
        projected.push(g);
    }
    Ok(projected)
}

#[cfg(test)]
mod tests;
