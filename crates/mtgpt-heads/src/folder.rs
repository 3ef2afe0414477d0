//! Multi-task model folders: the trunk as a Hugging Face GPT-2 folder (`model.safetensors`,
//! `config.json`), the heads in `heads.safetensors`, the tasks (kind, labels) in `tasks.json`,
//! the resolved run config in `mtgpt.toml` when known, and `tokenizer.json`.
use crate::error::{Error, Result};
use crate::heads::{HeadSpec, MultiTaskModel};
use mtgpt_core::{ModelConfig, TaskKind};
use mtgpt_model::io::{load_weights, read_config, save_trunk, save_weights, write_text_atomically};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::Device;

/// The head weights file of a model folder.
pub const HEADS: &str = "heads.safetensors";
/// The task list of a model folder.
pub const TASKS: &str = "tasks.json";

/// One task served by a model folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskHead {
    /// Task name.
    pub name: String,
    /// Task kind.
    pub kind: TaskKind,
    /// Labels (classify) or tags (tagging), in id order; empty for other kinds.
    #[serde(default)]
    pub labels: Vec<String>,
}

impl TaskHead {
    /// The head shape of this task.
    pub fn spec(&self) -> HeadSpec {
        HeadSpec {
            name: self.name.clone(),
            kind: self.kind,
            num_labels: self.labels.len(),
        }
    }
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    Ok(write_text_atomically(path, text)?)
}

impl MultiTaskModel {
    /// Writes the folder; `run_config` (resolved TOML) is saved as `mtgpt.toml` when given.
    pub fn save(&self, dir: &Path, tasks: &[TaskHead], run_config: Option<&str>) -> Result<()> {
        save_trunk(&self.vs, &self.gpt.config, dir)?;
        save_weights(&self.vs, &dir.join(HEADS), "heads.")?;
        let text =
            serde_json::to_string_pretty(tasks).map_err(|e| Error::Invalid(e.to_string()))?;
        write_text(&dir.join(TASKS), &(text + "\n"))?;
        if let Some(cfg) = run_config {
            write_text(&dir.join("mtgpt.toml"), cfg)?;
        }
        Ok(())
    }

    /// Loads a folder written by [`MultiTaskModel::save`] (or a compressed one, see
    /// [`mtgpt_model::compact`]) onto `device`, with its tasks.
    pub fn load(dir: &Path, device: Device) -> Result<(Self, Vec<TaskHead>)> {
        let config: ModelConfig = read_config(dir)?;
        let tpath = dir.join(TASKS);
        let text = std::fs::read_to_string(&tpath).map_err(|e| mtgpt_model::Error::Io {
            path: tpath.clone(),
            source: e,
        })?;
        let tasks: Vec<TaskHead> = serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!("{}: not a valid task list: {e}", tpath.display()))
        })?;
        let specs: Vec<HeadSpec> = tasks.iter().map(TaskHead::spec).collect();
        let mut model = MultiTaskModel::new(&config, &specs, device)?;
        // Dense, sparse (pruned) or int8 trunks alike.
        mtgpt_model::compact::load_trunk(&mut model.gpt, &model.vs, dir)?;
        load_weights(&model.vs, &dir.join(HEADS), "heads.")?;
        Ok((model, tasks))
    }
}
