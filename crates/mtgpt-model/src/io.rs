//! Saving and loading models.
//!
//! A model folder is a Hugging Face GPT-2 folder: `model.safetensors` with GPT-2's tensor names
//! and Conv1D layout, and `config.json` with GPT-2's keys (plus an `mtgpt` block with settings
//! GPT-2 lacks, which transformers ignores). `transformers.GPT2LMHeadModel.from_pretrained`
//! loads it as is; `export`/`import` validate and copy. The tokenizer files sit beside.
//! Writes are atomic (temporary file, fsync, rename).
pub use crate::folder::{
    CONFIG, WEIGHTS, config_from_hf, hf_config, load_weights, read_safetensors, save_weights,
    write_atomically, write_safetensors, write_text_atomically,
};

use crate::error::{Error, Result};
use crate::gpt::Gpt;
use mtgpt_core::ModelConfig;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor, nn};

/// A model with the variable store that owns its weights.
#[derive(Debug)]
pub struct Model {
    /// Owns every weight (trainable).
    pub vs: nn::VarStore,
    /// The trunk.
    pub gpt: Gpt,
}

impl Model {
    /// A freshly initialised model on `device`.
    pub fn new(config: &ModelConfig, device: Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let gpt = Gpt::new(&vs.root(), config)?;
        Ok(Model { vs, gpt })
    }

    /// Writes `dir/model.safetensors` and `dir/config.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_trunk(&self.vs, &self.gpt.config, dir)
    }

    /// Loads a model folder (ours or a Hugging Face GPT-2 one; dense, sparse or int8, see
    /// [`crate::compact`]) onto `device`. Every weight must be present with its shape; GPT-2's attention-mask buffers and tied `lm_head.weight` are
    /// ignored; anything else unexpected is an error.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        if !dir.join(WEIGHTS).exists() && dir.join("pytorch_model.bin").exists() {
            return Err(Error::checkpoint(
                dir.join("pytorch_model.bin"),
                "a Python pickle, which mtgpt never unpickles; convert the folder once with \
                 Python: `GPT2LMHeadModel.from_pretrained(DIR).save_pretrained(DIR, \
                 safe_serialization=True)` (writes model.safetensors)",
            ));
        }
        let config = read_config(dir)?;
        let mut model = Model::new(&config, device)?;
        crate::compact::load_trunk(&mut model.gpt, &model.vs, dir)?;
        Ok(model)
    }
}

impl Model {
    /// [`Model::load`] plus the folder's adapters (see [`crate::peft`]), with task `task`'s
    /// selected. Without `task`, a shared adapter is selected; per-task adapters then need a
    /// task (an error says which there are). A folder without adapters ignores `task`.
    pub fn load_for_task(dir: &Path, device: Device, task: Option<&str>) -> Result<Self> {
        let mut m = Model::load(dir, device)?;
        if !crate::peft::load_adapters(&mut m.gpt, &m.vs.root(), dir)? {
            return Ok(m);
        }
        let layout = m.gpt.adapters.clone().expect("just loaded");
        match task {
            Some(t) => m.gpt.select_task(t)?,
            None if !layout.mode.per_task() => m.gpt.select_task(crate::lora::SHARED)?,
            None => {
                return Err(Error::Invalid(format!(
                    "{} has an adapter per task ({}): pass --task NAME to pick one",
                    dir.display(),
                    layout.tasks.join(", ")
                )));
            }
        }
        Ok(m)
    }
}

/// Writes the trunk (`transformer.*` variables of `vs`) as `dir/model.safetensors` and its
/// GPT-2 `config.json`.
pub fn save_trunk(vs: &nn::VarStore, config: &ModelConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    save_weights(vs, &dir.join(WEIGHTS), "transformer.")?;
    let text = serde_json::to_string_pretty(&hf_config(config)).unwrap_or_default();
    let path = dir.join(CONFIG);
    write_atomically(&path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .map_err(|e| Error::io(tmp, e))
    })
}

/// The model config of a folder's `config.json`.
pub fn read_config(dir: &Path) -> Result<ModelConfig> {
    let cpath = dir.join(CONFIG);
    let text = std::fs::read_to_string(&cpath).map_err(|e| Error::io(&cpath, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint(&cpath, format!("not valid JSON: {e}")))?;
    config_from_hf(&v, &cpath)
}

/// Copies the tokenizer files (`tokenizer.json`, `tokenizer.mtgpt.json`) from `from` to `to`
/// when present; returns whether a tokenizer was copied.
pub fn copy_tokenizer(from: &Path, to: &Path) -> Result<bool> {
    let mut copied = false;
    for name in ["tokenizer.json", "tokenizer.mtgpt.json"] {
        let src = from.join(name);
        if src.exists() {
            let dst: PathBuf = to.join(name);
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&dst, e))?;
            copied = true;
        }
    }
    Ok(copied)
}

/// What [`init_trunk`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct InitReport {
    /// Tensors copied from the folder.
    pub tensors: usize,
    /// Token-embedding rows the folder lacked (new special and task tokens), set to the mean
    /// of its rows.
    pub new_rows: usize,
}

/// Sets the trunk variables (`transformer.*`) of `vs` to the weights of the model folder
/// `dir` (any form [`Model::load`] reads). Every shape must agree except the token
/// embedding, which may have more rows than the folder's. The token rows in `fresh` (ids of
/// tokens appended to the folder's tokenizer) and every row beyond the folder's start as the
/// mean of the folder's other rows, so a new token begins as an average token rather than as
/// noise or as an untrained padding row of a checkpoint whose vocabulary was padded; the
/// rest is copied. The LM head stays tied.
pub fn init_trunk(vs: &nn::VarStore, dir: &Path, fresh: &[i64]) -> Result<InitReport> {
    let src = Model::load(dir, Device::Cpu)?;
    let mut from: std::collections::HashMap<String, tch::Tensor> =
        src.vs.variables().into_iter().collect();
    let mut vars: Vec<(String, tch::Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with("transformer."))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut report = InitReport {
        tensors: 0,
        new_rows: 0,
    };
    let weights = dir.join(WEIGHTS);
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vars.iter_mut() {
            let t = from
                .remove(name.as_str())
                .ok_or_else(|| Error::checkpoint(&weights, format!("has no tensor `{name}`")))?;
            let (want, have) = (var.size(), t.size());
            let t = t.to_device(var.device()).to_kind(var.kind());
            let embedding = name == "transformer.wte.weight";
            if embedding && want.len() == 2 && want[1] == have[1] && want[0] >= have[0] {
                let rows = have[0];
                let fresh: Vec<i64> = fresh.iter().copied().filter(|&i| i < rows).collect();
                let mut keep = Tensor::ones([rows], (tch::Kind::Bool, Device::Cpu));
                if !fresh.is_empty() {
                    let _ = keep.index_fill_(0, &Tensor::from_slice(&fresh), 0);
                }
                let keep = keep.to_device(t.device());
                let mean =
                    t.index_select(0, &keep.nonzero().squeeze_dim(1))
                        .mean_dim(0, true, t.kind());
                var.narrow(0, 0, rows).f_copy_(&t)?;
                for &i in &fresh {
                    var.narrow(0, i, 1).f_copy_(&mean)?;
                }
                if want[0] > rows {
                    var.narrow(0, rows, want[0] - rows)
                        .f_copy_(&mean.expand([want[0] - rows, want[1]], false))?;
                }
                report.new_rows = fresh.len() + (want[0] - rows) as usize;
            } else if want == have {
                var.f_copy_(&t)?;
            } else {
                return Err(Error::checkpoint(
                    &weights,
                    format!("tensor `{name}` is {have:?}, the model needs {want:?}"),
                ));
            }
            report.tensors += 1;
        }
        Ok(())
    })?;
    Ok(report)
}
