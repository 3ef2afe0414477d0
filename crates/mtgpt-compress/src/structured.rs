//! Structured pruning: whole attention heads and MLP neurons are ranked by importance and the
//! least important removed for real — the matrices shrink and the per-block head counts and
//! widths go into the model config (`layer_heads`, `layer_d_ff`) — so the model gets faster,
//! not only sparser.
//!
//! Removing head `h` of a block is the same as zeroing its rows of `attn.c_proj` (every path
//! from the head to the residual stream goes through them); removing neuron `i` is zeroing row
//! `i` of `mlp.c_proj`. Importance is measured on those rows: their L2 norm (`norm`), or the
//! first-order Taylor estimate of the loss change, |Σ w · ∂L/∂w| over the rows, summed over
//! training batches of every task (`taylor`). Scores are normalised per block (L2) before one
//! global ranking; every block keeps at least one head and one neuron.
use crate::data::Batches;
use crate::error::{Error, Result};
use mtgpt_model::Gpt;
use mtgpt_tasks::{HeadSpec, MultiTaskModel};
use tch::{Device, Kind, Tensor};

/// Importance of every head and neuron, per block.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitScores {
    /// `heads[block][head]`.
    pub heads: Vec<Vec<f64>>,
    /// `neurons[block][neuron]`.
    pub neurons: Vec<Vec<f64>>,
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::try_from(&t.to_kind(Kind::Double).to_device(Device::Cpu)).unwrap_or_default()
}

/// Per-head sums `[heads]` of a per-row quantity `[heads · head_dim]`.
fn per_head(rows: &Tensor, heads: i64) -> Tensor {
    rows.view([heads, -1])
        .sum_dim_intlist(1, false, Kind::Float)
}

/// L2 norms of each head's and neuron's output rows.
pub fn norm_importance(gpt: &Gpt) -> UnitScores {
    tch::no_grad(|| {
        let mut heads = Vec::new();
        let mut neurons = Vec::new();
        for b in &gpt.blocks {
            let rows = b
                .attn
                .c_proj
                .weight
                .square()
                .sum_dim_intlist(1, false, Kind::Float);
            heads.push(to_vec(&per_head(&rows, b.attn.n_head()).sqrt()));
            neurons.push(to_vec(
                &b.mlp
                    .c_proj
                    .weight
                    .square()
                    .sum_dim_intlist(1, false, Kind::Float)
                    .sqrt(),
            ));
        }
        UnitScores { heads, neurons }
    })
}

/// First-order Taylor importance over `n_batches` training batches (dropout off); leaves the
/// model's gradients cleared.
pub fn taylor_importance(
    model: &MultiTaskModel,
    batches: &mut Batches<'_>,
    n_batches: usize,
) -> Result<UnitScores> {
    let blocks = &model.gpt.blocks;
    let mut heads: Vec<Tensor> = blocks
        .iter()
        .map(|b| Tensor::zeros([b.attn.n_head()], (Kind::Float, Device::Cpu)))
        .collect();
    let mut neurons: Vec<Tensor> = blocks
        .iter()
        .map(|b| Tensor::zeros([b.mlp.c_proj.weight.size()[0]], (Kind::Float, Device::Cpu)))
        .collect();
    let clear = || {
        for (_, mut v) in model.vs.variables() {
            v.zero_grad();
        }
    };
    for _ in 0..n_batches.max(1) {
        clear();
        let (_, batch) = batches.next_batch()?;
        model.forward(&batch, false)?.loss.backward();
        tch::no_grad(|| {
            for (i, b) in blocks.iter().enumerate() {
                let (w, g) = (&b.attn.c_proj.weight, b.attn.c_proj.weight.grad());
                if g.defined() {
                    let rows = (w * &g).sum_dim_intlist(1, false, Kind::Float);
                    heads[i] = &heads[i]
                        + per_head(&rows, b.attn.n_head())
                            .abs()
                            .to_device(Device::Cpu);
                }
                let (w, g) = (&b.mlp.c_proj.weight, b.mlp.c_proj.weight.grad());
                if g.defined() {
                    let rows = (w * &g).sum_dim_intlist(1, false, Kind::Float);
                    neurons[i] = &neurons[i] + rows.abs().to_device(Device::Cpu);
                }
            }
        });
    }
    clear();
    Ok(UnitScores {
        heads: heads.iter().map(to_vec).collect(),
        neurons: neurons.iter().map(to_vec).collect(),
    })
}

/// The units kept per block (sorted indices) when a share `fraction` of all units is removed:
/// the lowest scores after per-block L2 normalisation, every block keeping at least one.
pub fn select(scores: &[Vec<f64>], fraction: f64) -> Vec<Vec<usize>> {
    let total: usize = scores.iter().map(Vec::len).sum();
    let mut remove = ((fraction * total as f64).round() as usize).min(total);
    let mut ranked: Vec<(f64, usize, usize)> = Vec::with_capacity(total);
    for (b, s) in scores.iter().enumerate() {
        let norm = s.iter().map(|x| x * x).sum::<f64>().sqrt();
        for (u, &x) in s.iter().enumerate() {
            let v = if norm > 0.0 { x / norm } else { 0.0 };
            ranked.push((if v.is_finite() { v } else { 0.0 }, b, u));
        }
    }
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut left: Vec<usize> = scores.iter().map(Vec::len).collect();
    let mut removed: Vec<Vec<bool>> = scores.iter().map(|s| vec![false; s.len()]).collect();
    for (_, b, u) in ranked {
        if remove == 0 {
            break;
        }
        if left[b] > 1 {
            removed[b][u] = true;
            left[b] -= 1;
            remove -= 1;
        }
    }
    removed
        .iter()
        .map(|r| (0..r.len()).filter(|&u| !r[u]).collect())
        .collect()
}

/// A new, smaller model holding only the kept heads and neurons of `model` (everything else
/// copied), its config recording the per-block head counts and widths.
pub fn shrink(
    model: &MultiTaskModel,
    specs: &[HeadSpec],
    keep_heads: &[Vec<usize>],
    keep_neurons: &[Vec<usize>],
) -> Result<MultiTaskModel> {
    let old = &model.gpt.config;
    let n = old.n_layer;
    if keep_heads.len() != n || keep_neurons.len() != n {
        return Err(Error::Invalid(format!(
            "structured pruning: {n} blocks, got {} head lists and {} neuron lists",
            keep_heads.len(),
            keep_neurons.len()
        )));
    }
    let mut config = old.clone();
    config.layer_heads = keep_heads.iter().map(Vec::len).collect();
    config.layer_d_ff = keep_neurons.iter().map(Vec::len).collect();
    let dev = model.gpt.device();
    let small = MultiTaskModel::new(&config, specs, dev)?;
    let hd = old.head_dim() as i64;
    let src: std::collections::HashMap<String, Tensor> = model.vs.variables().into_iter().collect();
    let index = |v: Vec<i64>| Tensor::from_slice(&v).to_device(dev);
    tch::no_grad(|| -> Result<()> {
        for (name, var) in small.vs.variables() {
            let t = src
                .get(&name)
                .ok_or_else(|| Error::Invalid(format!("no `{name}` in the model being pruned")))?;
            let block = name
                .strip_prefix("transformer.h.")
                .and_then(|r| r.split_once('.'))
                .and_then(|(i, tail)| Some((i.parse::<usize>().ok()?, tail)));
            let cut = match block {
                Some((i, tail)) => {
                    let nh = old.heads_in(i) as i64;
                    let heads: Vec<i64> = keep_heads[i]
                        .iter()
                        .flat_map(|&h| (h as i64 * hd)..(h as i64 + 1) * hd)
                        .collect();
                    let qkv: Vec<i64> = (0..3)
                        .flat_map(|p| heads.iter().map(move |&c| p * nh * hd + c))
                        .collect();
                    let neurons: Vec<i64> = keep_neurons[i].iter().map(|&u| u as i64).collect();
                    match tail {
                        "attn.c_attn.weight" => t.index_select(1, &index(qkv)),
                        "attn.c_attn.bias" => t.index_select(0, &index(qkv)),
                        "attn.c_proj.weight" => t.index_select(0, &index(heads)),
                        "mlp.c_fc.weight" => t.index_select(1, &index(neurons)),
                        "mlp.c_fc.bias" => t.index_select(0, &index(neurons)),
                        "mlp.c_proj.weight" => t.index_select(0, &index(neurons)),
                        _ => t.shallow_clone(),
                    }
                }
                None => t.shallow_clone(),
            };
            if cut.size() != var.size() {
                return Err(Error::Invalid(format!(
                    "structured pruning: `{name}` came out {:?}, the smaller config needs {:?}",
                    cut.size(),
                    var.size()
                )));
            }
            var.shallow_clone().f_copy_(&cut)?;
        }
        Ok(())
    })?;
    Ok(small)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_removes_the_lowest_normalised_scores_and_keeps_one_per_block() {
        let scores = vec![vec![1.0, 0.1, 0.9, 0.8], vec![0.0, 0.0]];
        // 3 of 6 removed: block 1's zeros first (one must stay), then block 0's 0.1, then the
        // next lowest of block 0.
        let keep = select(&scores, 0.5);
        assert_eq!(keep[1].len(), 1);
        assert_eq!(keep[0], vec![0, 2]);
        assert_eq!(select(&scores, 0.0), vec![vec![0, 1, 2, 3], vec![0, 1]]);
        assert!(select(&scores, 0.95).iter().all(|k| k.len() == 1));
    }
}
