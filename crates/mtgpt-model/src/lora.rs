//! Low-rank adapters (LoRA, Hu et al. 2021) on the trunk's linear layers: `y = x W + b +
//! scale · x A B`, with `A` `[in, r]`, `B` `[r, out]` and `scale = alpha / r`.
//!
//! A layer holds one or two [`LoraSet`]s (per task, shared), each a stack of `n` adapters
//! (`A` `[n, in, r]`, `B` `[n, r, out]`), and [`AdapterRows`] says which adapter of a set each
//! row of a batch goes through: one for all rows, or one per row, gathered so that a batch of
//! several tasks is still one pass. `B` starts at zero, so a fresh adapter leaves the model as
//! it was; `A` starts as PEFT's (Kaiming-uniform, bound `1/√in`).
use crate::dtype::compute;
use mtgpt_core::Precision;
use tch::{Kind, Tensor, nn};

/// A stack of `n` adapters on one layer.
#[derive(Debug)]
pub struct LoraSet {
    /// `[n, in, r]` down projections (PEFT's `lora_A.weight` is `a[k]ᵀ`).
    pub a: Tensor,
    /// `[n, r, out]` up projections (PEFT's `lora_B.weight` is `b[k]ᵀ`).
    pub b: Tensor,
    /// `alpha / r`.
    pub scale: f64,
    /// Dropout on the adapter's input while training.
    pub dropout: f64,
}

/// Which adapter of a set each row of a batch uses.
#[derive(Debug)]
pub enum AdapterRows {
    /// Every row uses adapter `k`.
    All(i64),
    /// Row `i` uses adapter `rows[i]` (`[batch]` i64).
    Rows(Tensor),
    /// Token `j` of row `i` uses adapter `tokens[i, j]` (`[batch, seq]` i64): packed rows that
    /// hold sequences of several tasks.
    Tokens(Tensor),
}

impl AdapterRows {
    /// A copy sharing the index tensor.
    pub fn shallow_clone(&self) -> Self {
        match self {
            AdapterRows::All(k) => AdapterRows::All(*k),
            AdapterRows::Rows(t) => AdapterRows::Rows(t.shallow_clone()),
            AdapterRows::Tokens(t) => AdapterRows::Tokens(t.shallow_clone()),
        }
    }
}

impl LoraSet {
    /// `n` adapters of rank `r` on a `[d_in, d_out]` layer under `p` (`lora_a`, `lora_b`).
    pub fn new(
        p: nn::Path,
        n: i64,
        d_in: i64,
        d_out: i64,
        r: i64,
        scale: f64,
        dropout: f64,
    ) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        LoraSet {
            a: p.var(
                "lora_a",
                &[n, d_in, r],
                nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            ),
            b: p.zeros("lora_b", &[n, r, d_out]),
            scale,
            dropout,
        }
    }

    /// Adapters in the stack.
    pub fn len(&self) -> i64 {
        self.a.size()[0]
    }

    /// Whether the stack is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rank.
    pub fn rank(&self) -> i64 {
        self.a.size()[2]
    }

    /// `scale · x A B` of each row's adapter.
    ///
    /// # Shapes: `x` `[batch, seq, in]` → `[batch, seq, out]` in the compute dtype
    pub fn delta(
        &self,
        x: &Tensor,
        rows: &AdapterRows,
        precision: Precision,
        train: bool,
    ) -> Tensor {
        let x = compute(x, precision);
        let x = if train && self.dropout > 0.0 {
            x.dropout(self.dropout, true)
        } else {
            x
        };
        let (a, b) = (compute(&self.a, precision), compute(&self.b, precision));
        let y = match rows {
            AdapterRows::All(k) => crate::invariant::matmul(&x, &a.get(*k)).matmul(&b.get(*k)),
            AdapterRows::Rows(idx) => {
                let idx = idx.to_device(x.device());
                let shape = x.size();
                // `[b, …, in]` as `[b, rest, in]` for one batched product per row.
                let rows = shape[0];
                let x3 = x.reshape([rows, -1, shape[shape.len() - 1]]);
                let y = crate::invariant::bmm(&x3, &a.index_select(0, &idx))
                    .bmm(&b.index_select(0, &idx));
                let mut out = shape.clone();
                if let Some(last) = out.last_mut() {
                    *last = y.size()[2];
                }
                y.view(out.as_slice())
            }
            AdapterRows::Tokens(idx) => {
                // Every adapter's down projection at once (`[in, n·r]`); each token keeps
                // only its own adapter's `r` columns, then one product with the stacked up
                // projections (`[n·r, out]`): the other adapters contribute exact zeros.
                let (n, r) = (self.len(), self.rank());
                let shape = x.size();
                let d_in = shape[shape.len() - 1];
                let idx = idx.to_device(x.device()).reshape([-1]);
                let keep = idx
                    .one_hot(n)
                    .to_kind(x.kind())
                    .unsqueeze(-1)
                    .expand([-1, n, r], false)
                    .reshape([-1, n * r]);
                let down = crate::invariant::matmul(
                    &x.reshape([-1, d_in]),
                    &a.permute([1, 0, 2]).reshape([d_in, n * r]),
                );
                let y = (down * keep).matmul(&b.reshape([n * r, -1]));
                let mut out = shape.clone();
                if let Some(last) = out.last_mut() {
                    *last = y.size()[1];
                }
                y.view(out.as_slice())
            }
        };
        y * self.scale
    }

    /// The full update `scale · A B` of adapter `k` in the layer's `[in, out]` layout, fp32.
    pub fn delta_weight(&self, k: i64) -> Tensor {
        tch::no_grad(|| {
            self.a
                .get(k)
                .to_kind(Kind::Float)
                .matmul(&self.b.get(k).to_kind(Kind::Float))
                * self.scale
        })
    }
}

/// The adapters a trunk carries: their settings and, for the per-task stack, which task each
/// adapter belongs to (the order of the stack). Saved beside the adapters of a model folder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdapterLayout {
    /// Shared, per task, or both.
    pub mode: mtgpt_core::AdapterMode,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha (scale `alpha / rank`).
    pub alpha: f64,
    /// Adapter input dropout while training.
    pub dropout: f64,
    /// The layers with adapters (from [`mtgpt_core::ADAPTER_TARGETS`]).
    pub targets: Vec<String>,
    /// The per-task stack's adapters by task name, in stack order (empty without one).
    pub tasks: Vec<String>,
}

/// The name of the shared stack (and of its folder).
pub const SHARED: &str = "shared";

impl AdapterLayout {
    /// The layout `[adapters]` asks for over `tasks` (empty unless the mode is per task).
    pub fn new(c: &mtgpt_core::AdapterConfig, tasks: &[String]) -> Self {
        AdapterLayout {
            mode: c.mode,
            rank: c.rank,
            alpha: c.alpha,
            dropout: c.dropout,
            targets: c.targets.clone(),
            tasks: if c.mode.per_task() {
                tasks.to_vec()
            } else {
                Vec::new()
            },
        }
    }

    /// The settings as `[adapters]`.
    pub fn config(&self) -> mtgpt_core::AdapterConfig {
        mtgpt_core::AdapterConfig {
            mode: self.mode,
            rank: self.rank,
            alpha: self.alpha,
            dropout: self.dropout,
            targets: self.targets.clone(),
        }
    }

    /// The stacks in layer order: `(name, adapters)`, the shared one first.
    pub fn stacks(&self) -> Vec<(&str, i64)> {
        let mut out = Vec::new();
        if self.mode.shared() {
            out.push((SHARED, 1));
        }
        if self.mode.per_task() {
            out.push(("task", self.tasks.len() as i64));
        }
        out
    }

    /// The scale of every adapter, `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank.max(1) as f64
    }

    /// Where task `name`'s adapter sits in the per-task stack.
    pub fn task_index(&self, name: &str) -> Option<i64> {
        self.tasks.iter().position(|t| t == name).map(|i| i as i64)
    }

    /// One entry per stack: adapter 0 of the shared stack, `per_task()` for the per-task one.
    fn per_stack(
        &self,
        per_task: impl Fn() -> Result<AdapterRows, String>,
    ) -> Result<Vec<AdapterRows>, String> {
        self.stacks()
            .into_iter()
            .map(|(stack, _)| {
                if stack == SHARED {
                    Ok(AdapterRows::All(0))
                } else {
                    per_task()
                }
            })
            .collect()
    }

    /// The per-task adapter index of each of `names` (`None`: adapter 0).
    fn indices<'a>(
        &self,
        names: impl Iterator<Item = Option<&'a str>>,
    ) -> Result<Vec<i64>, String> {
        names
            .map(|n| match n {
                None => Ok(0),
                Some(n) => self
                    .task_index(n)
                    .ok_or_else(|| format!("no adapter for task `{n}`")),
            })
            .collect()
    }

    /// The rows of a batch that is all task `name` (one entry per stack). A task without an
    /// adapter of its own is an error when the layout has per-task adapters.
    pub fn rows_for(&self, name: &str) -> Result<Vec<AdapterRows>, String> {
        self.per_stack(|| {
            self.task_index(name).map(AdapterRows::All).ok_or_else(|| {
                format!(
                    "no adapter for task `{name}` (the model has adapters for {})",
                    self.tasks.join(", ")
                )
            })
        })
    }

    /// The rows of a batch whose row `i` is task `names[i]`: each row through its own task's
    /// adapter, gathered in one pass.
    pub fn rows_per_example(
        &self,
        names: &[&str],
        device: tch::Device,
    ) -> Result<Vec<AdapterRows>, String> {
        self.per_stack(|| {
            let idx = self.indices(names.iter().map(|&n| Some(n)))?;
            Ok(AdapterRows::Rows(
                Tensor::from_slice(&idx).to_device(device),
            ))
        })
    }

    /// The adapters of packed rows `[rows, cols]` whose token `i` (row-major) belongs to
    /// task `names[i]` (`None`: padding, which goes through the first adapter and is never
    /// read): each token through its own task's adapter, in one pass.
    pub fn rows_per_token(
        &self,
        names: &[Option<&str>],
        shape: [i64; 2],
        device: tch::Device,
    ) -> Result<Vec<AdapterRows>, String> {
        if names.len() as i64 != shape[0] * shape[1] {
            return Err(format!(
                "{} token tasks for {} × {} packed tokens",
                names.len(),
                shape[0],
                shape[1]
            ));
        }
        self.per_stack(|| {
            let idx = self.indices(names.iter().copied())?;
            Ok(AdapterRows::Tokens(
                Tensor::from_slice(&idx).view(shape).to_device(device),
            ))
        })
    }
}
