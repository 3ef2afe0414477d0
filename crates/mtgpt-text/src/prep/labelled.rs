//! Labelled tasks (all but `lm`): read whole, split, processed and augmented in memory.
use super::pipeline::Pipeline;
use crate::augment::Augmenter;
use crate::data::{ReadOptions, ReadReport, collect_labels, read_examples, split};
use crate::error::Result;
use mtgpt_core::{Config, Example, TaskConfig};
use rayon::prelude::*;
use std::path::PathBuf;

/// A labelled task after reading, splitting and processing.
pub(super) struct LoadedTask {
    pub(super) splits: Vec<(&'static str, Vec<Example>, usize)>, // (split, examples, augmented copies)
    pub(super) labels: Vec<String>,
    pub(super) reports: Vec<ReadReport>,
}

/// Reads, splits, processes and augments one labelled task; `skip_bad` is the caller's
/// (the options' or the config's), so this file needs nothing from `prep` itself.
pub(super) fn load_labelled(
    task: &TaskConfig,
    config: &Config,
    pipe: &Pipeline,
    skip_bad: bool,
) -> Result<LoadedTask> {
    let read_opts = ReadOptions {
        skip_bad,
        labels: task.labels.clone(),
    };
    let (train, r) = read_examples(&task.train, task.kind, read_opts.clone())?;
    let mut reports = vec![r];
    let mut read_split = |path: &Option<PathBuf>| -> Result<Option<Vec<Example>>> {
        match path {
            Some(p) => {
                let (ex, r) = read_examples(p, task.kind, read_opts.clone())?;
                reports.push(r);
                Ok(Some(ex))
            }
            None => Ok(None),
        }
    };
    let valid = read_split(&task.valid)?;
    let test = read_split(&task.test)?;
    let p = &config.preprocess;
    let (train, valid, test) = match (valid, test) {
        (Some(v), Some(t)) => (train, v, t),
        (v, t) => {
            let vf = if v.is_some() { 0.0 } else { p.valid_fraction };
            let tf = if t.is_some() { 0.0 } else { p.test_fraction };
            let (tr, va, te) = split(train, vf, tf, config.seed, &task.name);
            (tr, v.unwrap_or(va), t.unwrap_or(te))
        }
    };
    let labels = match &task.labels {
        Some(l) => l.clone(),
        None => collect_labels(&train),
    };
    let stemmer = task.stem.as_deref().map(crate::stem::stemmer).transpose()?;
    let process = |v: Vec<Example>| -> Vec<Example> {
        v.into_par_iter()
            .filter_map(|ex| pipe.process(ex, stemmer.as_ref()))
            .collect()
    };
    let train = process(train);
    let (valid, test) = (process(valid), process(test));
    let mut augmented = 0;
    let train = match &task.augment {
        Some(a) if a.n_aug > 0 => {
            let aug = Augmenter::new(pipe.lexicon.clone(), pipe.segmenter.clone(), a.clone());
            let copies: Vec<Vec<Example>> = train
                .par_iter()
                .enumerate()
                .map(|(i, ex)| {
                    aug.augment_copies(ex, config.seed, &format!("augment/{}/{i}", task.name))
                })
                .collect();
            let mut out = train.clone();
            for c in copies {
                augmented += c.len();
                out.extend(c);
            }
            out
        }
        _ => train,
    };
    Ok(LoadedTask {
        splits: vec![
            ("train", train, augmented),
            ("valid", valid, 0),
            ("test", test, 0),
        ],
        labels,
        reports,
    })
}
