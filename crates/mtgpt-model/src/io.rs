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
use tch::{Device, nn};

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
        let config = read_config(dir)?;
        let mut model = Model::new(&config, device)?;
        crate::compact::load_trunk(&mut model.gpt, &model.vs, dir)?;
        Ok(model)
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
