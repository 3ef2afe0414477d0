//! The data compression works on: the config's tasks preprocessed with the model's own
//! tokenizer (exactly as `mtgpt eval` does), batch streams over every task for fine-tuning and
//! distillation, and per-task scores on a held-out split.
use crate::error::{Error, Result};
use mtgpt_core::{Batch, Config, TaskKind};
use mtgpt_heads::{Evaluator, MultiTaskModel, TaskFormatter, TaskHead, TaskScores};
use mtgpt_text::TextTokenizer;
use mtgpt_text::prep::{PrepManifest, PrepOptions, prepare, read_split, read_token_file};
use mtgpt_train::sampler::TaskSampler;
use mtgpt_train::stream::TaskStream;
use std::path::{Path, PathBuf};

/// A config's tasks, preprocessed into a work folder with a model's tokenizer.
#[derive(Debug)]
pub struct TaskData {
    /// The config, reduced to the tasks the model serves (augmentation off).
    pub config: Config,
    /// The model's task heads, in the order of `config.tasks`.
    pub heads: Vec<TaskHead>,
    /// What `prep` wrote.
    pub manifest: PrepManifest,
    /// The work folder (`prep` output).
    pub dir: PathBuf,
}

impl TaskData {
    /// Preprocesses the tasks of `config` that `tasks` (a model folder's task list) serves into
    /// `dir`, with the tokenizer `tokenizer` (a `tokenizer.json`).
    pub fn prepare(
        config: &Config,
        tasks: &[TaskHead],
        tokenizer: &Path,
        dir: &Path,
    ) -> Result<Self> {
        let mut config = config.clone();
        config.tokenizer.path = tokenizer.to_string_lossy().into_owned();
        config
            .tasks
            .retain(|t| tasks.iter().any(|h| h.name == t.name));
        if config.tasks.is_empty() {
            let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
            return Err(Error::Invalid(format!(
                "the model serves none of the config's tasks (it serves {names:?})"
            )));
        }
        for t in &mut config.tasks {
            t.augment = None;
        }
        let heads = config
            .tasks
            .iter()
            .map(|t| {
                tasks
                    .iter()
                    .find(|h| h.name == t.name)
                    .cloned()
                    .ok_or_else(|| Error::Invalid(format!("no head for task `{}`", t.name)))
            })
            .collect::<Result<Vec<_>>>()?;
        let manifest = prepare(
            &config,
            dir,
            &PrepOptions {
                lexicons: Vec::new(),
                skip_bad: false,
            },
        )?;
        Ok(TaskData {
            config,
            heads,
            manifest,
            dir: dir.to_path_buf(),
        })
    }

    /// Endless training batches over every task (tasks drawn by the config's sampler), for
    /// `steps` steps of `block`-token sequences.
    pub fn batches<'a>(
        &self,
        tok: &'a TextTokenizer,
        block: usize,
        steps: usize,
    ) -> Result<Batches<'a>> {
        let mut formatters = Vec::new();
        let mut streams = Vec::new();
        for (t, head) in self.config.tasks.iter().zip(&self.heads) {
            let max_len = t.max_len.unwrap_or(block).min(block);
            let f = TaskFormatter::new(tok, &t.name, t.kind, &head.labels, max_len)?;
            let info = &self.manifest.tasks[&t.name];
            let train = info
                .splits
                .get("train")
                .ok_or_else(|| Error::Invalid(format!("task `{}` has no training data", t.name)))?;
            let seed =
                mtgpt_core::seed::derive_seed(self.config.seed, &format!("compress/{}", t.name));
            let path = self.dir.join(&train.file);
            let stream = if t.kind == TaskKind::Lm {
                let task_id = tok.task_id(&t.name).unwrap_or(0) as i64;
                TaskStream::tokens(read_token_file(&path)?, max_len - 1, task_id, seed)
            } else {
                let mut items = Vec::new();
                for (k, ex) in read_split(&path)?.iter().enumerate() {
                    items.extend(f.format(ex, k)?);
                }
                TaskStream::examples(items, seed)
            };
            if stream.is_empty() {
                return Err(Error::Invalid(format!(
                    "task `{}`: no training sequences",
                    t.name
                )));
            }
            formatters.push(f);
            streams.push(stream);
        }
        let sizes: Vec<usize> = streams.iter().map(TaskStream::len).collect();
        let sampler = TaskSampler::new(
            &sizes,
            &self.config.train.sampling,
            steps.max(1),
            mtgpt_core::seed::derive_seed(self.config.seed, "compress/sampler"),
        )?;
        Ok(Batches {
            formatters,
            streams,
            sampler,
            batch_size: self.config.train.batch_size,
            weights: self.config.tasks.iter().map(|t| t.weight).collect(),
        })
    }

    /// Scores `model` on `split` (`valid` or `test`; tasks without it are skipped): at most
    /// `max_examples` examples per labelled task (`None` = all) and `lm_tokens` per LM task.
    pub fn evaluate(
        &self,
        model: &MultiTaskModel,
        tok: &TextTokenizer,
        split: &str,
        max_examples: Option<usize>,
        lm_tokens: usize,
    ) -> Result<Vec<TaskScores>> {
        let mut scores = Vec::new();
        for (t, head) in self.config.tasks.iter().zip(&self.heads) {
            let Some(s) = self.manifest.tasks[&t.name].splits.get(split) else {
                tracing::warn!("task `{}` has no {split} split", t.name);
                continue;
            };
            let path = self.dir.join(&s.file);
            let max_len = t.max_len.unwrap_or(model.gpt.config.block_size);
            let eval = Evaluator::new(model, tok, head, max_len)?;
            scores.push(if t.kind == TaskKind::Lm {
                eval.evaluate_lm_tokens(&read_token_file(&path)?, lm_tokens)?
            } else {
                let mut ex = read_split(&path)?;
                if let Some(n) = max_examples {
                    ex.truncate(n);
                }
                eval.evaluate(&ex)?
            });
        }
        Ok(scores)
    }

    /// The examples of the first task of `kind` on `split`, with its head.
    pub fn examples_of(
        &self,
        kind: TaskKind,
        split: &str,
    ) -> Result<Option<(TaskHead, Vec<mtgpt_core::Example>)>> {
        for (t, head) in self.config.tasks.iter().zip(&self.heads) {
            if t.kind != kind {
                continue;
            }
            if let Some(s) = self.manifest.tasks[&t.name].splits.get(split) {
                return Ok(Some((head.clone(), read_split(&self.dir.join(&s.file))?)));
            }
        }
        Ok(None)
    }
}

/// Training batches over every task, drawn by a [`TaskSampler`].
pub struct Batches<'a> {
    formatters: Vec<TaskFormatter<'a>>,
    streams: Vec<TaskStream>,
    sampler: TaskSampler,
    batch_size: usize,
    weights: Vec<f64>,
}

impl Batches<'_> {
    /// The next batch and the index of its task.
    pub fn next_batch(&mut self) -> Result<(usize, Batch)> {
        let task = self.sampler.next_task();
        let items = self.streams[task].next_batch(self.batch_size);
        Ok((task, self.formatters[task].collate(&items)?))
    }

    /// The static loss weight of task `i` (`weight` in its `[[task]]`).
    pub fn weight(&self, task: usize) -> f64 {
        self.weights.get(task).copied().unwrap_or(1.0)
    }
}

/// A fresh work folder under the system's temporary folder.
pub fn work_dir(tag: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "mtgpt-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}
