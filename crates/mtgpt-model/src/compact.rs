//! Compact weight formats of a model folder, written by compression and read by every loader.
//!
//! `config.json` says which one `model.safetensors` holds in `mtgpt.weights`:
//! - `dense` (or absent): plain GPT-2 tensors, fp32;
//! - `sparse`: each pruned block `Linear` weight as a bitmask of its non-zeros
//!   (`<layer>.weight_bits`, u8, bit `j` of byte `k` = element `8k + j` of the row-major
//!   `[in, out]` weight) and their values (`<layer>.weight_values`, f32); other tensors dense;
//! - `int8`: every block `Linear` and the token embedding as per-row symmetric int8
//!   (`<layer>.weight_int8` `[out, in]` i8 — the token embedding `[vocab, d]` — and
//!   `<layer>.weight_scale` `[out]` f32); other tensors (norms, biases, positions) fp32.
//!
//! Loading any of them gives a [`Gpt`] whose fp32 variables hold the densified or dequantized
//! weights; an int8 folder also sets each layer's [`Int8Weight`], so inference runs on
//! libtorch's int8 kernels.
use crate::error::{Error, Result};
use crate::folder::{
    CONFIG, WEIGHTS, hf_config, load_weights, read_safetensors, write_safetensors,
    write_text_atomically,
};
use crate::gpt::Gpt;
use crate::layers::Int8Weight;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor, nn};

/// How a folder's trunk weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// fp32 GPT-2 tensors.
    Dense,
    /// Bitmask + non-zero values for pruned `Linear` weights.
    Sparse,
    /// Per-row int8 + scales for every block `Linear` and the token embedding.
    Int8,
}

impl WeightFormat {
    /// The name written in `config.json` (`dense`, `sparse`, `int8`).
    pub fn as_str(self) -> &'static str {
        match self {
            WeightFormat::Dense => "dense",
            WeightFormat::Sparse => "sparse",
            WeightFormat::Int8 => "int8",
        }
    }
}

/// The weight format a model folder's `config.json` declares (`dense` when it says nothing).
pub fn weight_format(dir: &Path) -> Result<WeightFormat> {
    let path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint(&path, format!("not valid JSON: {e}")))?;
    match v.pointer("/mtgpt/weights") {
        None => Ok(WeightFormat::Dense),
        Some(Value::String(s)) if s == "dense" => Ok(WeightFormat::Dense),
        Some(Value::String(s)) if s == "sparse" => Ok(WeightFormat::Sparse),
        Some(Value::String(s)) if s == "int8" => Ok(WeightFormat::Int8),
        Some(other) => Err(Error::checkpoint(
            &path,
            format!("key `mtgpt.weights`: {other} is not one of \"dense\", \"sparse\", \"int8\""),
        )),
    }
}

/// Packs booleans 8 to a byte (element `8k + j` is bit `j` of byte `k`).
pub fn pack_bits(bits: &[u8]) -> Vec<u8> {
    bits.chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |acc, (j, &b)| acc | (u8::from(b != 0) << j))
        })
        .collect()
}

/// Unpacks `n` booleans (as 0/1 bytes) from [`pack_bits`] output.
pub fn unpack_bits(bytes: &[u8], n: usize) -> Vec<u8> {
    (0..n).map(|i| (bytes[i / 8] >> (i % 8)) & 1).collect()
}

/// Writes `gpt`'s trunk to `dir/model.safetensors` in `format`, and `dir/config.json` saying so.
/// `Int8` uses each layer's [`Int8Weight`] (quantizing on the fly where a layer has none).
pub fn save_trunk_as(gpt: &Gpt, vs: &nn::VarStore, dir: &Path, format: WeightFormat) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with("transformer."))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(String, Tensor)> = Vec::new();
    let linears: HashMap<String, &crate::layers::Linear> = gpt
        .linears()
        .into_iter()
        .map(|(n, l)| (format!("{n}.weight"), l))
        .collect();
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vars {
            let stem = name.trim_end_matches(".weight");
            match (format, linears.get(&name)) {
                (WeightFormat::Sparse, Some(_)) => {
                    let w = var.to_device(tch::Device::Cpu).contiguous();
                    let mask = w.ne(0.0);
                    let numel = w.numel();
                    let kept = mask.sum(Kind::Int64).int64_value(&[]) as usize;
                    // A bitmask costs 1/32 of the dense size: worth it below ~97 % density.
                    if (kept as f64) < 0.96 * numel as f64 {
                        let bits: Vec<u8> = Vec::try_from(&mask.to_kind(Kind::Uint8).view([-1]))?;
                        let packed = pack_bits(&bits);
                        out.push((format!("{stem}.weight_bits"), Tensor::from_slice(&packed)));
                        out.push((format!("{stem}.weight_values"), w.masked_select(&mask)));
                    } else {
                        out.push((name, var));
                    }
                }
                (WeightFormat::Int8, Some(l)) => {
                    let q = match &l.int8 {
                        Some(q) => Int8Weight::from_parts(
                            q.weight.shallow_clone(),
                            q.scales.shallow_clone(),
                        ),
                        None => Int8Weight::quantize(&l.weight.tr()),
                    };
                    out.push((format!("{stem}.weight_int8"), q.weight));
                    out.push((format!("{stem}.weight_scale"), q.scales));
                }
                (WeightFormat::Int8, None) if name == "transformer.wte.weight" => {
                    let q = match &gpt.wte.int8 {
                        Some(q) => Int8Weight::from_parts(
                            q.weight.shallow_clone(),
                            q.scales.shallow_clone(),
                        ),
                        None => Int8Weight::quantize(&gpt.wte.weight),
                    };
                    out.push((format!("{stem}.weight_int8"), q.weight));
                    out.push((format!("{stem}.weight_scale"), q.scales));
                }
                _ => out.push((name, var)),
            }
        }
        Ok(())
    })?;
    write_safetensors(&dir.join(WEIGHTS), &out)?;
    let mut cfg = hf_config(&gpt.config);
    cfg["mtgpt"]["weights"] = Value::String(format.as_str().into());
    let text = serde_json::to_string_pretty(&cfg).unwrap_or_default();
    let path = dir.join(CONFIG);
    write_text_atomically(&path, &format!("{text}\n"))
}

/// Loads `dir/model.safetensors` into `gpt` (built from `dir/config.json`, its variables in
/// `vs`), whatever its [`WeightFormat`]. Every weight must be present with its shape; an
/// unexpected tensor is an error naming the file.
pub fn load_trunk(gpt: &mut Gpt, vs: &nn::VarStore, dir: &Path) -> Result<()> {
    let path = dir.join(WEIGHTS);
    if weight_format(dir)? == WeightFormat::Dense {
        return load_weights(vs, &path, "transformer.");
    }
    let mut file: HashMap<String, Tensor> = read_safetensors(&path)?.into_iter().collect();
    let mut vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with("transformer."))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let bad = |reason: String| Error::checkpoint(&path, reason);
    let mut int8: HashMap<String, Int8Weight> = HashMap::new();
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vars.iter_mut() {
            let dev = var.device();
            let shape = var.size();
            let stem = name.trim_end_matches(".weight").to_string();
            let dense = if let Some(t) = file.remove(name.as_str()) {
                t
            } else if let (Some(bits), Some(values)) = (
                file.remove(&format!("{stem}.weight_bits")),
                file.remove(&format!("{stem}.weight_values")),
            ) {
                let numel = var.numel();
                let bytes: Vec<u8> = Vec::try_from(&bits.to_kind(Kind::Uint8).view([-1]))?;
                if bytes.len() != numel.div_ceil(8) {
                    return Err(bad(format!(
                        "`{stem}.weight_bits` has {} bytes, {name} {shape:?} needs {}",
                        bytes.len(),
                        numel.div_ceil(8)
                    )));
                }
                let flags = unpack_bits(&bytes, numel);
                let kept = flags.iter().filter(|&&b| b == 1).count();
                if values.numel() != kept || values.dim() != 1 {
                    return Err(bad(format!(
                        "`{stem}.weight_values` holds {:?} values, its bitmask marks {kept}",
                        values.size()
                    )));
                }
                let mask = Tensor::from_slice(&flags)
                    .to_kind(Kind::Bool)
                    .view(shape.as_slice());
                Tensor::zeros(shape.as_slice(), (Kind::Float, tch::Device::Cpu))
                    .f_masked_scatter(&mask, &values.to_kind(Kind::Float))?
            } else if let (Some(q), Some(s)) = (
                file.remove(&format!("{stem}.weight_int8")),
                file.remove(&format!("{stem}.weight_scale")),
            ) {
                // Linear weights are [in, out], their int8 rows [out, in]; the table is [n, d].
                let is_table = stem == "transformer.wte";
                let want: Vec<i64> = if is_table {
                    shape.clone()
                } else {
                    vec![shape[1], shape[0]]
                };
                if q.kind() != Kind::Int8 || q.size() != want || s.size() != [want[0]] {
                    return Err(bad(format!(
                        "`{stem}.weight_int8` is {:?} {:?} with scales {:?}; {name} needs int8 {want:?} and [{}]",
                        q.kind(),
                        q.size(),
                        s.size(),
                        want[0]
                    )));
                }
                let w = Int8Weight::from_parts(q.to_device(dev), s.to_device(dev));
                let deq = w.dequantize();
                int8.insert(stem.clone(), w);
                if is_table { deq } else { deq.tr() }
            } else {
                return Err(bad(format!("missing tensor `{name}` {shape:?}")));
            };
            if dense.size() != shape {
                return Err(bad(format!(
                    "tensor `{name}` is {:?}, the config needs {shape:?}",
                    dense.size()
                )));
            }
            var.f_copy_(&dense.to_kind(var.kind()))?;
        }
        Ok(())
    })?;
    let mut unexpected: Vec<String> = file.into_keys().collect();
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(bad(format!(
            "unexpected tensors {unexpected:?} (not a model of this shape?)"
        )));
    }
    for (name, l) in gpt.linears_mut() {
        if let Some(q) = int8.remove(&name) {
            l.int8 = Some(q);
        }
    }
    if let Some(q) = int8.remove("transformer.wte") {
        gpt.wte.int8 = Some(q);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        let bits: Vec<u8> = (0..21).map(|i| u8::from(i % 3 == 0)).collect();
        let packed = pack_bits(&bits);
        assert_eq!(packed.len(), 3);
        assert_eq!(unpack_bits(&packed, bits.len()), bits);
    }
}
