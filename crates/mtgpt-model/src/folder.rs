//! The files of a model folder at the lowest level: their names, atomic writes, safetensors
//! tensors, GPT-2 `config.json` and variable stores. Both [`crate::io`] (whole models) and
//! [`crate::compact`] (compact weight formats) build on this file, so neither needs the other.
use crate::error::{Error, Result};
use mtgpt_core::ModelConfig;
use safetensors::{Dtype, SafeTensors, View};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor, nn};

/// The weights file of a model folder.
pub const WEIGHTS: &str = "model.safetensors";
/// The config file of a model folder.
pub const CONFIG: &str = "config.json";

/// A tensor borrowed for writing to safetensors.
struct TensorBytes {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &TensorBytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn dtype_of(kind: Kind) -> Result<(Dtype, usize)> {
    Ok(match kind {
        Kind::Float => (Dtype::F32, 4),
        Kind::BFloat16 => (Dtype::BF16, 2),
        Kind::Half => (Dtype::F16, 2),
        Kind::Int8 => (Dtype::I8, 1),
        Kind::Uint8 => (Dtype::U8, 1),
        Kind::Int => (Dtype::I32, 4),
        Kind::Int64 => (Dtype::I64, 8),
        Kind::Double => (Dtype::F64, 8),
        k => {
            return Err(Error::Invalid(format!(
                "cannot store {k:?} tensors in safetensors"
            )));
        }
    })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// Writes `path` atomically: `write` fills a temporary file beside it, which is fsynced and
/// renamed over `path`, so a crash leaves the old file or the new one, never half of one.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = write(&tmp).and_then(|()| {
        let f = std::fs::File::open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `text` to `path` atomically (see [`write_atomically`]).
pub fn write_text_atomically(path: &Path, text: &str) -> Result<()> {
    write_atomically(path, |tmp| {
        std::fs::write(tmp, text).map_err(|e| Error::io(tmp, e))
    })
}

/// Writes named tensors (any device, contiguous or not) to a safetensors file with
/// `{"format": "pt"}` metadata, atomically.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(Device::Cpu).contiguous();
        let (dtype, size) = dtype_of(t.kind())?;
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * size];
        t.f_copy_data_u8(&mut bytes, numel)?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        owned.push((
            name.clone(),
            TensorBytes {
                dtype,
                shape,
                bytes,
            },
        ));
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_atomically(path, |tmp| {
        safetensors::serialize_to_file(owned.iter().map(|(n, t)| (n.as_str(), t)), Some(meta), tmp)
            .map_err(|e| Error::checkpoint(tmp, e.to_string()))
    })
}

/// Reads every tensor of a safetensors file (on the CPU). A truncated or malformed file is
/// an error naming it.
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::checkpoint(path, format!("not a readable safetensors file ({e})")))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            Error::checkpoint(
                path,
                format!("tensor `{name}` has unsupported dtype {:?}", view.dtype()),
            )
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// GPT-2 `config.json` for `c` (HF keys, plus an `mtgpt` block; per-block head counts and
/// MLP widths of a structurally pruned model go there too, which transformers cannot load).
pub fn hf_config(c: &ModelConfig) -> Value {
    let mut v = json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_ctx": c.block_size,
        "n_embd": c.d_model,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": c.d_ff,
        "activation_function": "gelu_new",
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "layer_norm_epsilon": c.layer_norm_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": true,
        "tie_word_embeddings": true,
        "torch_dtype": "float32",
        // mtgpt tokenizers put <|endoftext|> at id 0, not GPT-2's 50256; leave them unset.
        "bos_token_id": null,
        "eos_token_id": null,
        "mtgpt": { "precision": c.precision },
    });
    if !c.layer_heads.is_empty() {
        v["mtgpt"]["layer_heads"] = json!(c.layer_heads);
    }
    if !c.layer_d_ff.is_empty() {
        v["mtgpt"]["layer_d_ff"] = json!(c.layer_d_ff);
    }
    v
}

/// Reads a GPT-2 `config.json` (ours or Hugging Face's) into a model config; errors name
/// `path` and the key.
pub fn config_from_hf(v: &Value, path: &Path) -> Result<ModelConfig> {
    ModelConfig::from_hf_json(v).map_err(|e| Error::checkpoint(path, e))
}

/// Writes the variables of `vs` whose names start with `prefix` to a safetensors file.
pub fn save_weights(vs: &nn::VarStore, path: &Path, prefix: &str) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_safetensors(path, &tensors)
}

/// Loads a safetensors file into the variables of `vs` whose names start with `prefix`. Every
/// such variable must be in the file with its shape; for the trunk (`transformer.`), names
/// without the prefix (GPT2Model checkpoints) are accepted and GPT-2's `lm_head.weight` and
/// attention-mask buffers ignored; any other extra tensor is an error.
pub fn load_weights(vs: &nn::VarStore, path: &Path, prefix: &str) -> Result<()> {
    let trunk = prefix == "transformer.";
    let mut loaded: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in read_safetensors(path)? {
        let name = if trunk && !name.starts_with(prefix) && !name.starts_with("lm_head.") {
            format!("{prefix}{name}")
        } else {
            name
        };
        loaded.insert(name, t);
    }
    let mut vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vars.iter_mut() {
            let src = loaded.remove(name).ok_or_else(|| {
                Error::checkpoint(path, format!("missing tensor `{name}` {:?}", var.size()))
            })?;
            if src.size() != var.size() {
                return Err(Error::checkpoint(
                    path,
                    format!(
                        "tensor `{name}` is {:?}, the config needs {:?}",
                        src.size(),
                        var.size()
                    ),
                ));
            }
            var.f_copy_(&src.to_kind(var.kind()))?;
        }
        Ok(())
    })?;
    let mut unexpected: Vec<String> = loaded
        .into_keys()
        .filter(|k| {
            !(trunk
                && (k == "lm_head.weight"
                    || k.ends_with(".attn.bias")
                    || k.ends_with(".attn.masked_bias")))
        })
        .collect();
    unexpected.sort();
    if !unexpected.is_empty() {
        return Err(Error::checkpoint(
            path,
            format!("unexpected tensors {unexpected:?} (not a model of this shape?)"),
        ));
    }
    Ok(())
}
