//! Multi-task model folders: the trunk as a Hugging Face GPT-2 folder (`model.safetensors`,
//! `config.json`), the heads in `heads.safetensors`, the tasks (kind, labels) in `tasks.json`,
//! the resolved run config in `mtgpt.toml` when known, and `tokenizer.json`.
use crate::error::{Error, Result};
use crate::format::WordSplits;
use crate::heads::{HeadSpec, MultiTaskModel};
use mtgpt_core::{Attention, DecodeConfig, ModelConfig, Pool, TaskConfig, TaskKind};
use mtgpt_model::io::{load_weights, read_config, save_trunk, save_weights, write_text_atomically};
use mtgpt_text::TextTokenizer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
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
    /// How the task was trained to attend (folders written before the option are causal).
    #[serde(default, skip_serializing_if = "is_causal")]
    pub attention: Attention,
    /// How a `generate` task decodes (`None`: [`DecodeConfig::default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<DecodeConfig>,
    /// `tagging`: how many following tokens the tag head reads (folders written before the
    /// option read none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tag_context: usize,
    /// `tagging`: Chinese tokens tagged per jieba word (folders written before the option:
    /// per token).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tag_words: bool,
    /// `tagging` with `tag_words`: the words that the training tags cut, and where
    /// ([`crate::format::learn_word_splits`]); learnt when training starts.
    #[serde(default, skip_serializing_if = "WordSplits::is_empty")]
    pub word_splits: WordSplits,
    /// `tagging`: the head has a CRF layer (folders written before the option have none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub crf: bool,
    /// `classify`: how the head reads the trunk (folders written before the option: the last
    /// token).
    #[serde(default, skip_serializing_if = "is_last")]
    pub pool: Pool,
}

fn is_last(p: &Pool) -> bool {
    *p == Pool::Last
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_causal(a: &Attention) -> bool {
    *a == Attention::Causal
}

impl TaskHead {
    /// The head of config task `t` with its label set.
    pub fn from_config(t: &TaskConfig, labels: Vec<String>) -> Self {
        TaskHead {
            name: t.name.clone(),
            kind: t.kind,
            attention: t.attention(),
            decode: t.decode,
            tag_context: t.tag_context(),
            tag_words: t.tag_words(&labels),
            word_splits: WordSplits::new(),
            crf: t.kind == TaskKind::Tagging && t.crf,
            pool: t.pool(),
            labels,
        }
    }

    /// The decoding settings of a `generate` task.
    pub fn decode(&self) -> DecodeConfig {
        self.decode.unwrap_or_default()
    }

    /// The head shape of this task.
    pub fn spec(&self) -> HeadSpec {
        HeadSpec {
            name: self.name.clone(),
            kind: self.kind,
            num_labels: self.labels.len(),
            tag_context: if self.kind == TaskKind::Tagging {
                self.tag_context
            } else {
                0
            },
            crf: self.kind == TaskKind::Tagging && self.crf,
            pool: if self.kind == TaskKind::Classify {
                self.pool
            } else {
                Pool::Last
            },
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
        mtgpt_model::peft::save_adapters(&self.gpt, dir)?;
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
        mtgpt_model::peft::load_adapters(&mut model.gpt, &model.vs.root(), dir)?;
        Ok((model, tasks))
    }
}

/// A model folder given on the command line, resolved: a run folder (`mtgpt train`/`run`
/// output) stands for its `best/` model, else its `model/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir {
    /// The model folder.
    pub dir: PathBuf,
    /// Set when `dir` was picked inside a run folder: which one and why, for the user.
    pub picked: Option<String>,
}

/// Resolves `path` to a model folder: a folder with `config.json` as it is; a run folder to
/// its `best/` (the model that scored best on the validation splits), else its `model/`.
/// Anything else is an error that says what to pass.
pub fn resolve_model_dir(path: &Path) -> Result<ModelDir> {
    if path.join("config.json").exists() {
        return Ok(ModelDir {
            dir: path.to_path_buf(),
            picked: None,
        });
    }
    for (sub, why) in [
        (
            "best",
            "the model that scored best on the validation splits",
        ),
        ("model", "the last model of the run"),
    ] {
        let dir = path.join(sub);
        if dir.join("config.json").exists() {
            return Ok(ModelDir {
                picked: Some(format!(
                    "{} is a run folder; using {} ({why})",
                    path.display(),
                    dir.display()
                )),
                dir,
            });
        }
    }
    let what = if path.is_dir() {
        "has no config.json"
    } else {
        "does not exist"
    };
    Err(Error::Invalid(format!(
        "{}: not a model folder ({what}); pass a folder written by `mtgpt train`, `mtgpt run`, \
         `mtgpt model init`, `mtgpt import` or `mtgpt compress` — a run folder such as runs/demo \
         (its best/ or model/ is used) or the model folder itself",
        path.display()
    )))
}

/// Sets the trunk variables of `vs` from the model folder `dir`
/// ([`mtgpt_model::io::init_trunk`]) for a model whose tokenizer is `tok`, the folder's
/// tokenizer with tokens appended: the rows of the tokens `tok` has and the folder's
/// `tokenizer.json` lacks start as the mean of the pretrained rows.
pub fn init_trunk_for(
    vs: &tch::nn::VarStore,
    dir: &Path,
    tok: &TextTokenizer,
) -> Result<mtgpt_model::io::InitReport> {
    let fresh: Vec<i64> = tok
        .ids_not_in(&dir.join("tokenizer.json"))?
        .into_iter()
        .map(i64::from)
        .collect();
    Ok(mtgpt_model::io::init_trunk(vs, dir, &fresh)?)
}

/// The `tokenizer.json` of model folder `dir`, checked against the model's vocabulary of
/// `vocab_size` rows (a tokenizer with more tokens than the embedding has rows is refused).
pub fn load_tokenizer(dir: &Path, vocab_size: usize) -> Result<TextTokenizer> {
    let path = dir.join("tokenizer.json");
    if !path.exists() {
        return Err(Error::Invalid(format!(
            "{}: no tokenizer.json in the model folder",
            dir.display()
        )));
    }
    let tok = TextTokenizer::load(&path)?;
    if tok.vocab_size() > vocab_size {
        return Err(Error::Invalid(format!(
            "{}: {} tokens but the model's vocabulary is {vocab_size}",
            path.display(),
            tok.vocab_size()
        )));
    }
    Ok(tok)
}

impl MultiTaskModel {
    /// [`MultiTaskModel::load`] plus the folder's tokenizer ([`load_tokenizer`]).
    pub fn load_with_tokenizer(
        dir: &Path,
        device: Device,
    ) -> Result<(Self, Vec<TaskHead>, TextTokenizer)> {
        let (model, tasks) = MultiTaskModel::load(dir, device)?;
        let tok = load_tokenizer(dir, model.gpt.config.vocab_size)?;
        Ok((model, tasks, tok))
    }
}
