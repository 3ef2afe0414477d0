//! The data compression works on: the task data of the model (`mtgpt_tasks::TaskData`, the
//! one service every stage scores with) and training batches over every task, drawn by the
//! config's sampler, for fine-tuning and distillation.
use crate::error::Result;
use mtgpt_core::Batch;
use mtgpt_tasks::{TaskData, TaskFormatter, TaskStream};
use mtgpt_text::TextTokenizer;
use mtgpt_train::sampler::TaskSampler;

/// Endless training batches over every task of `data` (tasks drawn by the config's sampler),
/// for `steps` steps of `block`-token sequences. The training splits are read without their
/// augmented copies.
pub fn batches<'a>(
    data: &TaskData,
    tok: &'a TextTokenizer,
    block: usize,
    steps: usize,
) -> Result<Batches<'a>> {
    let formatters = data.formatters(tok, block)?;
    let streams = data.train_streams(tok, &formatters, "compress", false)?;
    let config = &data.config;
    let sizes: Vec<usize> = streams.iter().map(TaskStream::len).collect();
    let sampler = TaskSampler::new(
        &sizes,
        &config.train.sampling,
        steps.max(1),
        mtgpt_core::seed::derive_seed(config.seed, "compress/sampler"),
    )?;
    Ok(Batches {
        formatters,
        streams,
        sampler,
        batch_size: config.train.batch_size,
        weights: config.tasks.iter().map(|t| t.weight).collect(),
    })
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
