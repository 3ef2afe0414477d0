//! Combining task adapters into one: linear (a weighted sum of the updates), TIES (Yadav et
//! al. 2023: keep each update's largest entries, elect a sign per entry, average the updates
//! that agree with it) and DARE (Yu et al. 2023: drop entries at random, rescale the rest,
//! then sum). Each works on the layers' full updates `scale · A B`; the result is factored
//! back into an adapter of the model's rank by a truncated SVD, and the share of the merged
//! update the truncation loses is reported.
use crate::error::{Error, Result};
use crate::gpt::Gpt;
use crate::peft::{PeftAdapter, task_adapter};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// How updates are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMethod {
    /// `Σ wᵢ Δᵢ`.
    Linear,
    /// Trim to `density`, elect signs, disjoint weighted mean.
    Ties,
    /// Drop with probability `1 − density`, rescale by `1 / density`, `Σ wᵢ Δᵢ`.
    Dare,
}

impl std::str::FromStr for MergeMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "linear" => Ok(MergeMethod::Linear),
            "ties" => Ok(MergeMethod::Ties),
            "dare" => Ok(MergeMethod::Dare),
            _ => Err(format!("`{s}` is not a merge method (linear, ties, dare)")),
        }
    }
}

/// A merge's settings.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// The combination.
    pub method: MergeMethod,
    /// One weight per source adapter.
    pub weights: Vec<f64>,
    /// Share of entries TIES keeps / DARE keeps, in (0, 1].
    pub density: f64,
    /// DARE's random drops.
    pub seed: u64,
}

/// `Δ` with all but its `density` share of largest-magnitude entries set to zero.
fn trim(delta: &Tensor, density: f64) -> Tensor {
    let n = delta.numel() as i64;
    let keep = ((n as f64) * density).round().clamp(1.0, n as f64) as i64;
    if keep >= n {
        return delta.shallow_clone();
    }
    let flat = delta.abs().reshape([-1]);
    // The `keep`-th largest magnitude is the threshold.
    let (vals, _) = flat.topk(keep, 0, true, true);
    let thr = vals.get(keep - 1);
    delta * delta.abs().ge_tensor(&thr).to_kind(delta.kind())
}

/// Combines same-shaped updates as `opts` says.
pub fn merge_deltas(deltas: &[Tensor], opts: &MergeOptions) -> Tensor {
    let w: Vec<f64> = opts.weights.clone();
    match opts.method {
        MergeMethod::Linear => deltas
            .iter()
            .zip(&w)
            .map(|(d, w)| d * *w)
            .reduce(|a, b| a + b)
            .unwrap_or_else(Tensor::new),
        MergeMethod::Dare => deltas
            .iter()
            .zip(&w)
            .map(|(d, w)| {
                let keep = d.rand_like().lt(opts.density).to_kind(d.kind());
                d * keep * (*w / opts.density)
            })
            .reduce(|a, b| a + b)
            .unwrap_or_else(Tensor::new),
        MergeMethod::Ties => {
            let trimmed: Vec<Tensor> = deltas.iter().map(|d| trim(d, opts.density)).collect();
            let stacked = Tensor::stack(&trimmed, 0);
            let sign = stacked.sum_dim_intlist(0, false, Kind::Float).sign();
            let agree = stacked
                .sign()
                .eq_tensor(&sign.unsqueeze(0))
                .logical_and(&stacked.ne(0.0));
            let agree = agree.to_kind(Kind::Float);
            let wt = Tensor::from_slice(&w)
                .to_kind(Kind::Float)
                .view([w.len() as i64, 1, 1]);
            let sum = (&stacked * &wt * &agree).sum_dim_intlist(0, false, Kind::Float);
            let count = agree.sum_dim_intlist(0, false, Kind::Float).clamp_min(1.0);
            sum / count
        }
    }
}

/// `Δ ≈ scale · A B` with `A` `[in, r]`, `B` `[r, out]` from the SVD; also `‖Δ − scale·AB‖ /
/// ‖Δ‖` (0 when `Δ` is 0).
pub fn factor(delta: &Tensor, rank: i64, scale: f64) -> (Tensor, Tensor, f64) {
    let (u, s, v) = delta.to_kind(Kind::Double).svd(true, true);
    let vh = v.tr();
    let r = rank.min(s.size()[0]);
    let root = s.narrow(0, 0, r).sqrt();
    let mut a = u.narrow(1, 0, r) * root.unsqueeze(0);
    let mut b = (vh.narrow(0, 0, r) * root.unsqueeze(1)) / scale;
    if r < rank {
        let (d_in, d_out) = (delta.size()[0], delta.size()[1]);
        a = Tensor::cat(
            &[
                a,
                Tensor::zeros([d_in, rank - r], (Kind::Double, delta.device())),
            ],
            1,
        );
        b = Tensor::cat(
            &[
                b,
                Tensor::zeros([rank - r, d_out], (Kind::Double, delta.device())),
            ],
            0,
        );
    }
    let back = a.matmul(&b) * scale;
    let norm = delta.to_kind(Kind::Double).norm().double_value(&[]);
    let err = if norm > 0.0 {
        (back - delta.to_kind(Kind::Double))
            .norm()
            .double_value(&[])
            / norm
    } else {
        0.0
    };
    (a.to_kind(Kind::Float), b.to_kind(Kind::Float), err)
}

/// Merges the adapters of tasks `from` into one adapter of the model's rank and scale, and
/// the largest relative truncation error over its layers.
pub fn merge_adapters(gpt: &Gpt, from: &[&str], opts: &MergeOptions) -> Result<(PeftAdapter, f64)> {
    let layout = gpt
        .adapters
        .as_ref()
        .ok_or_else(|| Error::Invalid("the model has no adapters to merge".into()))?;
    if from.len() < 2 {
        return Err(Error::Invalid("name at least two adapters to merge".into()));
    }
    if opts.weights.len() != from.len() {
        return Err(Error::Invalid(format!(
            "{} weights for {} adapters; give one weight per adapter",
            opts.weights.len(),
            from.len()
        )));
    }
    if !(opts.density > 0.0 && opts.density <= 1.0) {
        return Err(Error::Invalid(format!(
            "density {} must be in (0, 1]",
            opts.density
        )));
    }
    let sources: Vec<PeftAdapter> = from
        .iter()
        .map(|t| task_adapter(gpt, t))
        .collect::<Result<_>>()?;
    tch::manual_seed(opts.seed as i64);
    let (rank, scale) = (layout.rank as i64, layout.scale());
    let mut layers = BTreeMap::new();
    let mut worst = 0.0f64;
    tch::no_grad(|| {
        for layer in sources[0].layers.keys() {
            let deltas: Vec<Tensor> = sources
                .iter()
                .filter_map(|s| s.delta_weight(layer))
                .collect();
            let merged = merge_deltas(&deltas, opts);
            let (a, b, err) = factor(&merged, rank, scale);
            worst = worst.max(err);
            layers.insert(layer.clone(), (a, b));
        }
    });
    Ok((
        PeftAdapter {
            rank,
            alpha: layout.alpha,
            scale,
            layers,
        },
        worst,
    ))
}
