//! LM tasks: corpora streamed in chunks and split by record ranges, never loaded whole.
use super::pipeline::Pipeline;
use crate::data::{ExampleReader, ReadOptions, ReadReport};
use crate::error::Result;
use mtgpt_core::{Config, Example, TaskConfig, TaskKind};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Lines of an LM corpus processed together.
const LM_CHUNK: usize = 4096;

/// Non-blank lines of a raw-text or JSONL LM file (a first streaming pass, for splitting).
fn count_records(path: &Path, skip_bad: bool) -> Result<usize> {
    let mut r = ExampleReader::open(
        path,
        TaskKind::Lm,
        ReadOptions {
            skip_bad,
            labels: None,
        },
    )?;
    let mut n = 0;
    while let Some(item) = r.next_example() {
        item?;
        n += 1;
    }
    Ok(n)
}

/// An LM split source: a file and the record range of it that belongs to the split.
#[derive(Clone)]
pub(super) struct LmSource {
    pub(super) path: PathBuf,
    pub(super) range: std::ops::Range<usize>,
}

pub(super) fn lm_sources(
    task: &TaskConfig,
    config: &Config,
    skip_bad: bool,
) -> Result<Vec<(&'static str, LmSource)>> {
    let all = |p: &PathBuf| LmSource {
        path: p.clone(),
        range: 0..usize::MAX,
    };
    if let (Some(v), Some(t)) = (&task.valid, &task.test) {
        return Ok(vec![
            ("train", all(&task.train)),
            ("valid", all(v)),
            ("test", all(t)),
        ]);
    }
    // Held-out text is taken contiguously from the end of `train`, so LM context stays whole.
    let n = count_records(&task.train, skip_bad)?;
    let p = &config.preprocess;
    let take = |f: f64, given: bool| {
        if given || f <= 0.0 {
            0
        } else {
            ((n as f64 * f).round() as usize).max(1).min(n / 3)
        }
    };
    let n_test = take(p.test_fraction, task.test.is_some());
    let n_valid = take(p.valid_fraction, task.valid.is_some());
    let n_train = n - n_valid - n_test;
    let part = |r: std::ops::Range<usize>| LmSource {
        path: task.train.clone(),
        range: r,
    };
    let mut out = vec![("train", part(0..n_train))];
    out.push((
        "valid",
        match &task.valid {
            Some(v) => all(v),
            None => part(n_train..n_train + n_valid),
        },
    ));
    out.push((
        "test",
        match &task.test {
            Some(t) => all(t),
            None => part(n_train + n_valid..n),
        },
    ));
    Ok(out)
}

/// Streams the normalized lines of an LM source in chunks; `f` returns whether it wants more.
pub(super) fn for_each_lm_chunk(
    src: &LmSource,
    pipe: &Pipeline,
    stemmer: Option<&rust_stemmers::Stemmer>,
    skip_bad: bool,
    mut f: impl FnMut(Vec<String>) -> Result<bool>,
) -> Result<ReadReport> {
    let mut reader = ExampleReader::open(
        &src.path,
        TaskKind::Lm,
        ReadOptions {
            skip_bad,
            labels: None,
        },
    )?;
    let mut index = 0usize;
    loop {
        let mut chunk = Vec::with_capacity(LM_CHUNK);
        while chunk.len() < LM_CHUNK {
            let Some(item) = reader.next_example() else {
                break;
            };
            let (_, ex) = item?;
            if src.range.contains(&index) {
                chunk.push(ex);
            }
            index += 1;
            if index >= src.range.end {
                break;
            }
        }
        if chunk.is_empty() {
            break;
        }
        let lines: Vec<String> = chunk
            .into_par_iter()
            .filter_map(|ex| match pipe.process(ex, stemmer) {
                Some(Example::Lm { text }) => Some(text),
                _ => None,
            })
            .collect();
        let more = f(lines)?;
        if !more || index >= src.range.end {
            break;
        }
    }
    Ok(reader.report().clone())
}
