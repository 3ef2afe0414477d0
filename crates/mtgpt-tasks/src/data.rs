//! The one task-data and scoring service: a config's tasks as prepared splits on disk
//! (`mtgpt prep` output) → formatters → training streams → per-task scores.
//!
//! The trainer, compression, `mtgpt eval` and the `mtgpt run` pipeline all read task data
//! through [`TaskData`], so the sequence-length rule ([`max_len`]), which split file holds
//! what, and how a model is scored exist once.
use crate::error::{Error, Result};
use crate::evaluate::{Evaluator, TaskScores};
use crate::folder::TaskHead;
use crate::format::{Formatted, TaskFormatter};
use crate::heads::MultiTaskModel;
use crate::stream::TaskStream;
use mtgpt_core::{Config, Example, TaskConfig, TaskKind};
use mtgpt_text::TextTokenizer;
use mtgpt_text::prep::{PrepManifest, PrepOptions, cached_manifest, prepare, read_split};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The longest sequence of `task` in a model of context `block`: the task's `max_len`,
/// capped by the context (the rule every formatter and evaluator uses).
pub fn max_len(task: &TaskConfig, block: usize) -> usize {
    task.max_len.unwrap_or(block).min(block)
}

/// What to score: how much of each split, and how many predictions to keep for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreLimits {
    /// At most this many examples per labelled task (`None`: all).
    pub max_examples: Option<usize>,
    /// At most this many tokens per LM task.
    pub lm_tokens: usize,
    /// The first this many predictions of each labelled task are kept as [`Sample`]s.
    pub samples: usize,
}

impl Default for ScoreLimits {
    fn default() -> Self {
        ScoreLimits {
            max_examples: None,
            lm_tokens: 20_000,
            samples: 0,
        }
    }
}

/// One example with the model's prediction, for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The task.
    pub task: String,
    /// The input as JSON (gold fields included).
    pub input: serde_json::Value,
    /// The prediction as JSON.
    pub prediction: serde_json::Value,
}

/// Scores of a model on one split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitScores {
    /// One entry per task that has the split, in config order.
    pub scores: Vec<TaskScores>,
    /// The first predictions of each labelled task ([`ScoreLimits::samples`]).
    pub samples: Vec<Sample>,
    /// Tasks skipped because they have no such split.
    pub missing: Vec<String>,
}

/// A temporary folder removed when dropped.
#[derive(Debug)]
pub struct WorkDir(PathBuf);

impl WorkDir {
    /// A fresh, empty folder under the system's temporary folder, named after `tag`.
    pub fn new(tag: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "mtgpt-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| mtgpt_model::Error::Io {
            path: dir.clone(),
            source: e,
        })?;
        Ok(WorkDir(dir))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config's tasks, prepared on disk with one tokenizer.
#[derive(Debug)]
pub struct TaskData {
    /// The config, reduced to the tasks at hand.
    pub config: Config,
    /// One head per task, in the order of `config.tasks`.
    pub heads: Vec<TaskHead>,
    /// What `prep` wrote.
    pub manifest: PrepManifest,
    /// The preprocessing folder.
    pub dir: PathBuf,
    /// Set when `dir` is a temporary folder of this value (removed with it).
    _work: Option<WorkDir>,
}

impl TaskData {
    /// Task data over a preprocessing folder that holds `manifest`; the heads (labels) come from
    /// the manifest, as training makes them.
    pub fn from_manifest(config: &Config, dir: &Path, manifest: PrepManifest) -> Result<Self> {
        let heads = config
            .tasks
            .iter()
            .map(|t| {
                let info = manifest.tasks.get(&t.name).ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: no task `{}` in the preprocessing manifest",
                        dir.display(),
                        t.name
                    ))
                })?;
                Ok(TaskHead::from_config(t, info.labels.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TaskData {
            config: config.clone(),
            heads,
            manifest,
            dir: dir.to_path_buf(),
            _work: None,
        })
    }

    /// The tasks of `config` that a model serves (`served`: its task list), with its
    /// tokenizer (`tokenizer`, a `tokenizer.json`), for scoring and compression.
    ///
    /// `prepared` names a preprocessing folder made from `config` with `opts` (a run's
    /// `prep/`): it is read as it is when it is up to date and was made with the same
    /// tokenizer. Otherwise the tasks are preprocessed with that tokenizer into a temporary
    /// folder that goes away with the value. Either way the training splits are read without
    /// their augmented copies, and generated examples are not made.
    pub fn for_model(
        config: &Config,
        served: &[TaskHead],
        tokenizer: &Path,
        prepared: Option<(&Path, &PrepOptions)>,
    ) -> Result<Self> {
        let reuse = prepared.and_then(|(dir, opts)| {
            reusable(config, dir, opts, tokenizer).map(|m| (dir.to_path_buf(), m))
        });
        let mut config = config.clone();
        config
            .tasks
            .retain(|t| served.iter().any(|h| h.name == t.name));
        if config.tasks.is_empty() {
            let names: Vec<&str> = served.iter().map(|t| t.name.as_str()).collect();
            return Err(Error::Invalid(format!(
                "the model serves none of the config's tasks (it serves {names:?})"
            )));
        }
        // Every task left has a head (the retain above), in config order.
        let heads: Vec<TaskHead> = config
            .tasks
            .iter()
            .filter_map(|t| served.iter().find(|h| h.name == t.name).cloned())
            .collect();
        if let Some((dir, manifest)) = reuse {
            return Ok(TaskData {
                config,
                heads,
                manifest,
                dir,
                _work: None,
            });
        }
        config.tokenizer.path = tokenizer.to_string_lossy().into_owned();
        for t in &mut config.tasks {
            t.augment = None;
            t.generate_augment = None;
        }
        let work = WorkDir::new("tasks")?;
        let manifest = prepare(
            &config,
            work.path(),
            &PrepOptions {
                lexicons: Vec::new(),
                skip_bad: false,
            },
        )?;
        Ok(TaskData {
            config,
            heads,
            manifest,
            dir: work.path().to_path_buf(),
            _work: Some(work),
        })
    }

    /// Learns the word splits of every tagging task that tags words
    /// ([`crate::format::learn_word_splits`]) from its training split, augmented copies
    /// included, with the segmenter `tok` groups by; the heads keep them, so the model folder
    /// carries them to prediction.
    pub fn learn_word_splits(&mut self, tok: &TextTokenizer) -> Result<()> {
        let seg = crate::format::group_segmenter(tok);
        for i in 0..self.heads.len() {
            if self.heads[i].kind != TaskKind::Tagging || !self.heads[i].tag_words {
                continue;
            }
            let examples = self.examples(i, "train", true)?.unwrap_or_default();
            let pairs = examples.iter().filter_map(|e| match e {
                Example::Tagging { tokens, tags } => Some((tokens.as_slice(), tags.as_slice())),
                _ => None,
            });
            self.heads[i].word_splits = crate::format::learn_word_splits(&seg, pairs);
        }
        Ok(())
    }

    /// Keeps only the tasks whose name `keep` accepts (config and heads alike).
    pub fn retain_tasks(&mut self, keep: impl Fn(&str) -> bool) {
        let (tasks, heads): (Vec<_>, Vec<_>) = std::mem::take(&mut self.config.tasks)
            .into_iter()
            .zip(std::mem::take(&mut self.heads))
            .filter(|(t, _)| keep(&t.name))
            .unzip();
        self.config.tasks = tasks;
        self.heads = heads;
    }

    /// Whether this data was read from an existing preprocessing folder (not made anew).
    pub fn reused(&self) -> bool {
        self._work.is_none()
    }

    /// The sequence length of task `i` in a model of context `block` ([`max_len`]).
    pub fn max_len(&self, i: usize, block: usize) -> usize {
        max_len(&self.config.tasks[i], block)
    }

    /// One formatter per task, in config order, for a model of context `block`.
    pub fn formatters<'a>(
        &self,
        tok: &'a TextTokenizer,
        block: usize,
    ) -> Result<Vec<TaskFormatter<'a>>> {
        self.config
            .tasks
            .iter()
            .zip(&self.heads)
            .enumerate()
            .map(|(i, (t, h))| {
                TaskFormatter::new(tok, &t.name, t.kind, &h.labels, self.max_len(i, block))?
                    .with_options(t.attention(), t.lm_aux_weight)
                    .with_word_groups(h.tag_words, &h.word_splits)
            })
            .collect()
    }

    /// The file of task `i`'s `split`, if it has one.
    pub fn split_file(&self, i: usize, split: &str) -> Option<PathBuf> {
        let name = &self.config.tasks[i].name;
        let info = self.manifest.tasks.get(name)?.splits.get(split)?;
        Some(self.dir.join(&info.file))
    }

    /// The examples of labelled task `i` on `split` (`None` when it has no such split). For
    /// `train`, `with_augmented` says whether the augmented copies `prep` appended are kept.
    pub fn examples(
        &self,
        i: usize,
        split: &str,
        with_augmented: bool,
    ) -> Result<Option<Vec<Example>>> {
        let Some(path) = self.split_file(i, split) else {
            return Ok(None);
        };
        let mut examples = read_split(&path)?;
        if !with_augmented {
            let info = &self.manifest.tasks[&self.config.tasks[i].name].splits[split];
            let original = info.examples.saturating_sub(info.augmented);
            examples.truncate(original);
        }
        Ok(Some(examples))
    }

    /// The examples of the first task of `kind` that has `split`, with its head.
    pub fn examples_of(
        &self,
        kind: TaskKind,
        split: &str,
    ) -> Result<Option<(TaskHead, Vec<Example>)>> {
        for (i, t) in self.config.tasks.iter().enumerate() {
            if t.kind != kind {
                continue;
            }
            if let Some(ex) = self.examples(i, split, false)? {
                return Ok(Some((self.heads[i].clone(), ex)));
            }
        }
        Ok(None)
    }

    /// The training stream of every task, in config order: LM corpora cut into windows, other
    /// tasks' training examples formatted (augmented copies included when `with_augmented`).
    /// Each stream's seed is derived from the config seed and `"{seed_tag}/{task}"`.
    pub fn train_streams(
        &self,
        tok: &TextTokenizer,
        formatters: &[TaskFormatter],
        seed_tag: &str,
        with_augmented: bool,
    ) -> Result<Vec<TaskStream>> {
        let mut streams = Vec::new();
        for (i, (t, f)) in self.config.tasks.iter().zip(formatters).enumerate() {
            let path = self
                .split_file(i, "train")
                .ok_or_else(|| Error::Invalid(format!("task `{}` has no training data", t.name)))?;
            let seed =
                mtgpt_core::seed::derive_seed(self.config.seed, &format!("{seed_tag}/{}", t.name));
            let stream = if t.kind == TaskKind::Lm {
                let task_id = tok.task_id(&t.name).unwrap_or(0) as i64;
                let buf = crate::stream::TokenBuf::map(&path)?;
                TaskStream::token_buf(buf, f.max_len() - 1, task_id, seed)
            } else {
                let examples = self
                    .examples(i, "train", with_augmented)?
                    .unwrap_or_default();
                TaskStream::examples(format_all(f, &examples)?, seed)
            };
            if stream.is_empty() {
                return Err(Error::Invalid(format!(
                    "task `{}`: no training sequences",
                    t.name
                )));
            }
            streams.push(stream);
        }
        Ok(streams)
    }

    /// Scores `model` (with tokenizer `tok`) on `split` of every task that has it.
    pub fn score(
        &self,
        model: &MultiTaskModel,
        tok: &TextTokenizer,
        split: &str,
        limits: &ScoreLimits,
    ) -> Result<SplitScores> {
        let block = model.gpt.config.block_size;
        let mut out = SplitScores::default();
        for (i, t) in self.config.tasks.iter().enumerate() {
            let Some(path) = self.split_file(i, split) else {
                out.missing.push(t.name.clone());
                continue;
            };
            let eval = Evaluator::new(model, tok, &self.heads[i], self.max_len(i, block))?;
            let scores = if t.kind == TaskKind::Lm {
                let buf = crate::stream::TokenBuf::map(&path)?;
                eval.evaluate_lm_tokens(buf.as_slice(), limits.lm_tokens)?
            } else {
                let mut examples = read_split(&path)?;
                if let Some(n) = limits.max_examples {
                    examples.truncate(n);
                }
                let first = &examples[..limits.samples.min(examples.len())];
                if !first.is_empty() {
                    for (ex, p) in first.iter().zip(eval.predict(first)?) {
                        let js = |e: serde_json::Error| Error::Invalid(e.to_string());
                        out.samples.push(Sample {
                            task: t.name.clone(),
                            input: serde_json::to_value(ex).map_err(js)?,
                            prediction: serde_json::to_value(&p).map_err(js)?,
                        });
                    }
                }
                eval.evaluate(&examples)?
            };
            out.scores.push(scores);
        }
        Ok(out)
    }
}

/// Every training sequence of `examples` (QA contexts may give several windows each).
pub fn format_all(f: &TaskFormatter, examples: &[Example]) -> Result<Vec<Formatted>> {
    let mut items = Vec::new();
    for (k, ex) in examples.iter().enumerate() {
        items.extend(f.format(ex, k)?);
    }
    Ok(items)
}

/// The manifest of `dir` when it is an up-to-date preprocessing of `config` with `opts` made
/// with the tokenizer file `tokenizer` (same bytes).
fn reusable(
    config: &Config,
    dir: &Path,
    opts: &PrepOptions,
    tokenizer: &Path,
) -> Option<PrepManifest> {
    let manifest = cached_manifest(config, dir, opts)?;
    let same =
        std::fs::read(dir.join(&manifest.tokenizer)).ok()? == std::fs::read(tokenizer).ok()?;
    same.then_some(manifest)
}
