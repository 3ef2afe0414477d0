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

/// Serde adapters writing `f64`s as their shortest round-trip decimal strings (`"1.9"`), so
/// a state reloads bit-for-bit in any format: serde_json's default float parser may be one
/// ULP off, and DWA weights must not drift on resume.
mod exact {
    use serde::{Deserialize, Deserializer, Serializer};

    fn parse<E: serde::de::Error>(text: &str) -> Result<f64, E> {
        text.parse()
            .map_err(|_| E::custom(format!("not a number: {text:?}")))
    }

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{x:?}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        parse(&String::deserialize(d)?)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            match x {
                Some(v) => s.serialize_some(&format!("{v:?}")),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|t| parse(&t))
                .transpose()
        }
    }

    pub mod vec {
        use super::*;

        pub fn serialize<S: Serializer>(x: &[f64], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(x.iter().map(|v| format!("{v:?}")))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
            Vec::<String>::deserialize(d)?
                .iter()
                .map(|t| parse(t))
                .collect()
        }
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
mod tests {
    use super::*;
    use mtgpt_core::seed::rng_for;
    use tch::Device;

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap()
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= tol, "got {got:?}, want {want:?} (±{tol})");
        }
    }

    fn config(strategy: WeightingStrategy) -> WeightingConfig {
        WeightingConfig {
            strategy,
            dwa_temperature: 2.0,
        }
    }

    fn vec2(x: f64, y: f64) -> Vec<Tensor> {
        vec![Tensor::from_slice(&[x, y])]
    }

    #[test]
    fn static_weighting_multiplies_by_the_task_weight() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = LossWeighting::new(&vs.root(), &config(WeightingStrategy::Static), &[0.5, 2.0])
            .unwrap();
        let loss = Tensor::from(3.0f64);
        assert_close(&values(&w.combine(1, &loss).unwrap()), &[6.0], 1e-12);
        assert_close(&values(&w.combine(0, &loss).unwrap()), &[1.5], 1e-12);
        assert_eq!(w.weights(), [0.5, 2.0]);
        assert!(matches!(
            w.combine(2, &loss),
            Err(WeightingError::UnknownTask {
                task: 2,
                n_tasks: 2
            })
        ));
    }

    #[test]
    fn uncertainty_loss_and_gradient_match_hand_values() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut w = LossWeighting::new(
            &(vs.root() / "loss_weights"),
            &config(WeightingStrategy::Uncertainty),
            &[1.0, 1.0],
        )
        .unwrap();
        assert!(vs.variables().contains_key("loss_weights.log_var"));
        assert_eq!(w.weights(), [1.0, 1.0]);
        w.restore(&WeightingState::Uncertainty {
            log_var: vec![0.0, 0.5],
        })
        .unwrap();
        let (s, l) = (0.5f64, 2.0f64);
        let loss = Tensor::from(l as f32).set_requires_grad(true);
        let combined = w.combine(1, &loss).unwrap();
        // e^{-s} L + s
        assert_close(&values(&combined), &[(-s).exp() * l + s], 1e-6);
        combined.backward();
        let LossWeighting::Uncertainty(u) = &w else {
            panic!("not uncertainty")
        };
        // d/ds = 1 − e^{-s} L; the other task's s gets no gradient; d/dL = e^{-s}.
        assert_close(
            &values(&u.log_var().grad()),
            &[0.0, 1.0 - (-s).exp() * l],
            1e-6,
        );
        assert_close(&values(&loss.grad()), &[(-s).exp()], 1e-6);
        assert_close(&w.weights(), &[1.0, (-s).exp()], 1e-7);
    }

    #[test]
    fn dwa_weights_follow_the_hand_made_history() {
        let mut w = LossWeighting::Dwa(DynamicWeightAverage::new(2, 2.0, 2).unwrap());
        let softmax2 = |r0: f64, r1: f64| {
            let (e0, e1) = ((r0 / 2.0).exp(), (r1 / 2.0).exp());
            [2.0 * e0 / (e0 + e1), 2.0 * e1 / (e0 + e1)]
        };
        // Window means: task 0 goes 4 → 2 (r = 0.5), task 1 goes 4 → 3 (r = 0.75).
        for (task, loss) in [(0, 5.0), (1, 4.0), (0, 3.0), (1, 4.0), (0, 2.0), (1, 3.5)] {
            w.observe(task, loss).unwrap();
        }
        // One full window each (plus an open one): all weights 1.
        assert_eq!(w.weights(), [1.0, 1.0]);
        w.observe(0, 2.0).unwrap(); // closes task 0's second window: r = 0.5; task 1 r = 1.
        assert_close(&w.weights(), &softmax2(0.5, 1.0), 1e-12);
        w.observe(1, 2.5).unwrap(); // closes task 1's second window: mean 3, r = 0.75.
        let want = softmax2(0.5, 0.75);
        assert_close(&want, &[0.937_581_3, 1.062_418_7], 1e-6);
        let got = w.weights();
        assert_close(&got, &want, 1e-12);
        assert!((got.iter().sum::<f64>() - 2.0).abs() < 1e-12);
        assert!(got[1] > got[0], "the task whose loss fell less weighs more");
        // An open window does not move the weights.
        w.observe(0, 100.0).unwrap();
        assert_close(&w.weights(), &want, 1e-12);
        let loss = Tensor::from(2.0f64);
        assert_close(
            &values(&w.combine(1, &loss).unwrap()),
            &[2.0 * want[1]],
            1e-12,
        );
        assert!(matches!(
            w.observe(0, f64::NAN),
            Err(WeightingError::NonFiniteLoss { task: 0, .. })
        ));
    }

    #[test]
    fn state_round_trips_through_json() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = config(WeightingStrategy::Dwa);
        let mut a = LossWeighting::with_dwa_window(&vs.root(), &cfg, &[1.0; 3], 2).unwrap();
        for (i, loss) in [3.0, 2.7, 1.9, 2.2, 1.1, 0.9, 2.05, 1.3, 0.7]
            .iter()
            .enumerate()
        {
            a.observe(i % 3, *loss).unwrap();
        }
        let json = serde_json::to_string(&a.state()).unwrap();
        let state: WeightingState = serde_json::from_str(&json).unwrap();
        let mut b = LossWeighting::with_dwa_window(&vs.root(), &cfg, &[1.0; 3], 2).unwrap();
        b.restore(&state).unwrap();
        assert_eq!(a.state(), b.state());
        for w in [&mut a, &mut b] {
            w.observe(0, 0.5).unwrap();
            w.observe(1, 1.7).unwrap();
            w.observe(2, 0.2).unwrap();
        }
        assert_eq!(a.weights(), b.weights());
        assert_ne!(a.weights(), [1.0; 3]);

        let mut u = LossWeighting::new(
            &(vs.root() / "u"),
            &config(WeightingStrategy::Uncertainty),
            &[1.0; 3],
        )
        .unwrap();
        let log_var = vec![0.1, -0.25, 1.5];
        let json = serde_json::to_string(&WeightingState::Uncertainty {
            log_var: log_var.clone(),
        })
        .unwrap();
        u.restore(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_close(&values(&vs.variables()["u.log_var"]), &log_var, 1e-7);
        assert!(matches!(
            u.restore(&state),
            Err(WeightingError::Mismatch(_))
        ));
    }

    #[test]
    fn state_floats_survive_json_bit_for_bit() {
        let awkward = [0.1 + 0.2, 1.9000000000000001, 5e-324, 1.0e300, -2.5e-7];
        let history: Vec<TaskLossHistory> = awkward
            .iter()
            .map(|&x| TaskLossHistory {
                sum: x,
                count: 3,
                previous: Some(x / 3.0),
                latest: None,
            })
            .collect();
        let states = [
            WeightingState::Dwa { history },
            WeightingState::Uncertainty {
                log_var: awkward.to_vec(),
            },
        ];
        for state in states {
            let json = serde_json::to_string(&state).unwrap();
            let back: WeightingState = serde_json::from_str(&json).unwrap();
            assert_eq!(back, state, "{json}");
        }
    }

    #[test]
    fn rejects_bad_configs() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let dwa = config(WeightingStrategy::Dwa);
        assert!(matches!(
            LossWeighting::with_dwa_window(&root, &dwa, &[], 2),
            Err(WeightingError::NoTasks)
        ));
        assert!(matches!(
            LossWeighting::with_dwa_window(&root, &dwa, &[1.0, -1.0], 2),
            Err(WeightingError::BadWeight { task: 1, .. })
        ));
        assert!(matches!(
            LossWeighting::with_dwa_window(&root, &dwa, &[1.0], 0),
            Err(WeightingError::BadWindow)
        ));
        let cold = WeightingConfig {
            dwa_temperature: 0.0,
            ..dwa
        };
        assert!(matches!(
            LossWeighting::with_dwa_window(&root, &cold, &[1.0], 2),
            Err(WeightingError::BadTemperature(_))
        ));
    }

    #[test]
    fn pcgrad_projects_conflicting_gradients() {
        // g1 = (1, 0), g2 = (−1, 1): g1·g2 = −1.
        // g1' = g1 − (−1/2) g2 = (0.5, 0.5); g2' = g2 − (−1/1) g1 = (0, 1); sum (0.5, 1.5).
        let grads = [vec2(1.0, 0.0), vec2(-1.0, 1.0)];
        let out = pcgrad(&grads, &mut rng_for(0, "pcgrad")).unwrap();
        assert_eq!(out.len(), 1);
        assert_close(&values(&out[0]), &[0.5, 1.5], 1e-12);
    }

    #[test]
    fn pcgrad_leaves_agreeing_gradients_alone() {
        let grads = [vec2(1.0, 0.0), vec2(1.0, 1.0)];
        let out = pcgrad(&grads, &mut rng_for(0, "pcgrad")).unwrap();
        assert_close(&values(&out[0]), &[2.0, 1.0], 1e-12);
        let single = pcgrad(&[vec2(-3.0, 4.0)], &mut rng_for(0, "pcgrad")).unwrap();
        assert_close(&values(&single[0]), &[-3.0, 4.0], 1e-12);
    }

    #[test]
    fn pcgrad_uses_global_dot_products_and_keeps_shapes() {
        // The same vectors split over two parameters: per-parameter dot products would see
        // no conflict in the second parameter; the global one does.
        let split = |x: f64, y: f64| vec![Tensor::from_slice(&[x]), Tensor::from_slice(&[y])];
        let out = pcgrad(
            &[split(1.0, 0.0), split(-1.0, 1.0)],
            &mut rng_for(0, "pcgrad"),
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_close(&values(&out[0]), &[0.5], 1e-12);
        assert_close(&values(&out[1]), &[1.5], 1e-12);

        // Shapes survive, and a parameter one task does not reach counts as zeros.
        let a = vec![
            Tensor::from_slice(&[1.0f64, 0.0]).reshape([1, 2]),
            Tensor::new(),
        ];
        let b = vec![
            Tensor::from_slice(&[-1.0f64, 0.0]).reshape([1, 2]),
            Tensor::from_slice(&[1.0f64]),
        ];
        let out = pcgrad(&[a, b], &mut rng_for(0, "pcgrad")).unwrap();
        assert_eq!(out[0].size(), [1, 2]);
        // g_a = (1,0,0), g_b = (−1,0,1): dot −1. g_a' = g_a + g_b/2 = (0.5,0,0.5);
        // g_b' = g_b + g_a = (0,0,1); sum (0.5,0,1.5).
        assert_close(&values(&out[0]), &[0.5, 0.0], 1e-12);
        assert_close(&values(&out[1]), &[1.5], 1e-12);
    }

    #[test]
    fn pcgrad_is_deterministic_per_seed() {
        let grads = [vec2(1.0, 0.0), vec2(-1.0, 1.0), vec2(-0.5, -1.0)];
        let run = |seed| {
            let out = pcgrad(&grads, &mut rng_for(seed, "pcgrad")).unwrap();
            values(&out[0])
        };
        assert_eq!(run(1), run(1));
        // With three conflicting tasks the visiting order matters; some seed must differ.
        assert!((2..40).any(|seed| run(seed) != run(1)));
    }

    #[test]
    fn pcgrad_rejects_mismatched_lists() {
        let mut rng = rng_for(0, "pcgrad");
        assert!(matches!(
            pcgrad(&[], &mut rng),
            Err(WeightingError::NoTasks)
        ));
        let two = vec![Tensor::from_slice(&[1.0f64]), Tensor::from_slice(&[1.0f64])];
        assert!(matches!(
            pcgrad(&[vec2(1.0, 0.0), two], &mut rng),
            Err(WeightingError::Mismatch(_))
        ));
        let wide = vec![Tensor::from_slice(&[1.0f64, 2.0, 3.0])];
        assert!(matches!(
            pcgrad(&[vec2(1.0, 0.0), wide], &mut rng),
            Err(WeightingError::Mismatch(_))
        ));
    }
}
