//! Sentence vectors from a model's hidden states: the per-token states of one layer pooled
//! into one vector per sequence.
use crate::error::{Error, Result};
use crate::gpt::Gpt;
use tch::{Kind, Tensor};

/// How per-token hidden states become one vector per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// The mean over the real (unpadded) tokens.
    #[default]
    Mean,
    /// The state at the last real token, the only one that has seen the whole text.
    Last,
}

impl Pooling {
    /// The name used on the command line (`mean`, `last`).
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Last => "last",
        }
    }
}

impl std::str::FromStr for Pooling {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "last" => Ok(Pooling::Last),
            _ => Err(Error::Invalid(format!(
                "pooling `{s}`: expected `mean` or `last`"
            ))),
        }
    }
}

/// Pools `hidden` over the real tokens of each row: `attention_mask` is 1 at real tokens and 0
/// at padding, which must come after them (right padding, as [`embed`]'s callers build it).
/// Every row needs at least one real token.
///
/// # Shapes: `hidden` `[batch, seq, d]`, `attention_mask` `[batch, seq]` → `[batch, d]` fp32
pub fn pool(hidden: &Tensor, attention_mask: &Tensor, pooling: Pooling) -> Result<Tensor> {
    let size = hidden.size();
    if size.len() != 3 || attention_mask.size() != size[..2] {
        return Err(Error::Invalid(format!(
            "pooling: hidden is {size:?} and attention_mask {:?}; expected [batch, seq, d] and [batch, seq]",
            attention_mask.size()
        )));
    }
    let real = attention_mask.sum_dim_intlist(1, false, Kind::Int64);
    if size[0] > 0 && real.min().int64_value(&[]) < 1 {
        return Err(Error::Invalid(
            "pooling: a row of attention_mask has no real token".into(),
        ));
    }
    Ok(match pooling {
        Pooling::Mean => {
            let mf = attention_mask.to_kind(Kind::Float).unsqueeze(-1);
            (hidden * &mf).sum_dim_intlist(1, false, Kind::Float)
                / mf.sum_dim_intlist(1, false, Kind::Float)
        }
        Pooling::Last => {
            let last = (real - 1).view([-1, 1, 1]).expand([-1, 1, size[2]], false);
            hidden.gather(1, &last, false).squeeze_dim(1)
        }
    })
}

/// Sentence vectors of a right-padded batch: runs `gpt` (no dropout) and [`pool`]s the final
/// normed hidden states, or with `layer` the residual stream after block `layer` (0 = the
/// embeddings). Gradients flow unless the caller runs it under `tch::no_grad`.
///
/// # Shapes: `input_ids`, `attention_mask` `[batch, seq]` i64 → `[batch, d_model]` fp32
pub fn embed(
    gpt: &Gpt,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    layer: Option<usize>,
    pooling: Pooling,
) -> Result<Tensor> {
    let n_layer = gpt.config.n_layer;
    if let Some(l) = layer
        && l > n_layer
    {
        return Err(Error::Invalid(format!(
            "layer {l} but the model has {n_layer} blocks (0..={n_layer})"
        )));
    }
    let out = gpt.forward_t(
        input_ids,
        Some(attention_mask),
        None,
        false,
        layer.is_some(),
    )?;
    let hidden = match layer {
        Some(l) => out.layers[l].shallow_clone(),
        None => out.hidden,
    };
    pool(&hidden, attention_mask, pooling)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtgpt_core::{ModelConfig, Precision};
    use tch::{Device, nn};

    fn tiny() -> (nn::VarStore, Gpt) {
        let config = ModelConfig {
            n_layer: 2,
            n_head: 2,
            d_model: 8,
            d_ff: 16,
            block_size: 16,
            vocab_size: 30,
            dropout: 0.0,
            layer_norm_eps: 1e-5,
            precision: Precision::Fp32,
            layer_heads: Vec::new(),
            layer_d_ff: Vec::new(),
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let gpt = Gpt::new(&vs.root(), &config).unwrap();
        (vs, gpt)
    }

    /// `[batch][seq][d]` of a hidden-state tensor.
    fn rows(t: &Tensor) -> Vec<Vec<Vec<f32>>> {
        let (b, s, _) = t.size3().unwrap();
        (0..b)
            .map(|i| {
                (0..s)
                    .map(|j| Vec::try_from(&t.get(i).get(j)).unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn pooled_vectors_match_a_hand_computation_from_the_hidden_states() {
        let (_vs, gpt) = tiny();
        // Row 0 has 5 real tokens, row 1 has 3 and 2 of padding (id 0) after them.
        let ids = Tensor::from_slice2(&[[3i64, 7, 1, 9, 4], [5, 2, 8, 0, 0]]);
        let mask = Tensor::from_slice2(&[[1i64, 1, 1, 1, 1], [1, 1, 1, 0, 0]]);
        let real = [5usize, 3];
        for layer in [None, Some(0), Some(1), Some(2)] {
            let out = gpt.forward_t(&ids, Some(&mask), None, false, true).unwrap();
            let states = rows(&match layer {
                Some(l) => out.layers[l].shallow_clone(),
                None => out.hidden,
            });
            for pooling in [Pooling::Mean, Pooling::Last] {
                let got = embed(&gpt, &ids, &mask, layer, pooling).unwrap();
                assert_eq!(got.size(), [2, 8]);
                for (r, &n) in real.iter().enumerate() {
                    let want: Vec<f32> = match pooling {
                        Pooling::Mean => (0..8)
                            .map(|k| (0..n).map(|j| states[r][j][k]).sum::<f32>() / n as f32)
                            .collect(),
                        Pooling::Last => states[r][n - 1].clone(),
                    };
                    let got: Vec<f32> = Vec::try_from(&got.get(r as i64)).unwrap();
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                            "{layer:?} {pooling:?} row {r}: got {got:?}, want {want:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let (_vs, gpt) = tiny();
        let ids = Tensor::from_slice2(&[[3i64, 7], [5, 2]]);
        let mask = Tensor::from_slice2(&[[1i64, 1], [1, 1]]);
        let hidden = Tensor::zeros([2, 2, 8], (Kind::Float, Device::Cpu));
        let empty_row = Tensor::from_slice2(&[[1i64, 1], [0, 0]]);
        let cases = [
            (pool(&hidden, &empty_row, Pooling::Last), "no real token"),
            (
                pool(&hidden, &mask.narrow(1, 0, 1), Pooling::Mean),
                "expected [batch",
            ),
            (
                embed(&gpt, &ids, &mask, Some(3), Pooling::Mean),
                "has 2 blocks",
            ),
        ];
        for (got, want) in cases {
            let e = got.unwrap_err().to_string();
            assert!(e.contains(want), "got {e:?}, want {want:?}");
        }
        for p in [Pooling::Mean, Pooling::Last] {
            assert_eq!(p.as_str().parse::<Pooling>().unwrap(), p);
        }
        assert!("max".parse::<Pooling>().is_err());
    }
}
