//! `prep`: the whole preprocessing stage of a config — read and validate every task file,
//! split, normalize, stem, augment, train (or load) the tokenizer and write the cache the
//! trainer reads:
//!
//! ```text
//! OUT/tokenizer.json (+ tokenizer.mtgpt.json)
//! OUT/prep.json                   manifest: tasks, labels, counts, skipped records
//! OUT/<task>/<split>.jsonl        labelled tasks: processed examples, one per line
//! OUT/<task>/<split>.bin          lm tasks: token ids, flat little-endian u32, no header
//! ```
//! LM corpora are streamed in chunks (normalized and tokenized in parallel with rayon), so
//! their size is bounded by disk, not memory. Labelled tasks are held in memory.
mod labelled;
mod lm;
mod pipeline;

use crate::augment::Lexicon;
use crate::error::{Error, Result};
use crate::{Normalizer, Segmenter, TextTokenizer, TrainOptions};
use labelled::{LoadedTask, load_labelled};
use lm::{LmSource, for_each_lm_chunk, lm_sources};
use mtgpt_core::{Config, Example, TaskKind};
use pipeline::{Pipeline, example_texts};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The split names, in order.
pub const SPLITS: [&str; 3] = ["train", "valid", "test"];

/// What `prep` wrote for one split of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// File under the output folder.
    pub file: String,
    /// Examples (lines for lm).
    pub examples: usize,
    /// Tokens (lm only).
    pub tokens: usize,
    /// Augmented copies among `examples`.
    pub augmented: usize,
}

/// What `prep` wrote for one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Task kind.
    pub kind: TaskKind,
    /// Label set (classify: labels; tagging: tags), from the config or the training data.
    pub labels: Vec<String>,
    /// Splits present (train always; valid/test when given or split off).
    pub splits: BTreeMap<String, SplitInfo>,
    /// Bad records skipped (with `skip_bad`).
    pub skipped: usize,
    /// The first skip messages.
    pub skip_messages: Vec<String>,
}

/// `prep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepManifest {
    /// The tokenizer file, relative to the output folder.
    pub tokenizer: String,
    /// Its vocabulary size.
    pub vocab_size: usize,
    /// Per task, in config order of names.
    pub tasks: BTreeMap<String, TaskInfo>,
    /// What the inputs looked like (see [`prepare_cached`]); empty in old manifests.
    #[serde(default)]
    pub fingerprint: String,
}

/// A digest of everything [`prepare`] reads: the config sections it uses, the size and
/// modification time of every input file and lexicon, and this crate's version.
pub fn fingerprint(config: &Config, opts: &PrepOptions) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    config.seed.hash(&mut h);
    opts.skip_bad.hash(&mut h);
    let file = |p: &Path, h: &mut std::collections::hash_map::DefaultHasher| {
        p.hash(h);
        if let Ok(m) = std::fs::metadata(p) {
            m.len().hash(h);
            if let Ok(t) = m.modified()
                && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
            {
                d.as_nanos().hash(h);
            }
        }
    };
    for text in [
        serde_json::to_string(&config.preprocess).unwrap_or_default(),
        serde_json::to_string(&config.tokenizer).unwrap_or_default(),
    ] {
        text.hash(&mut h);
    }
    config.model.block_size.hash(&mut h);
    for t in &config.tasks {
        serde_json::to_string(t).unwrap_or_default().hash(&mut h);
        for p in [Some(&t.train), t.valid.as_ref(), t.test.as_ref()]
            .into_iter()
            .flatten()
        {
            file(p, &mut h);
        }
    }
    if let Some(p) = config.tokenizer.existing() {
        file(p, &mut h);
        file(&TextTokenizer::meta_path(p), &mut h);
    }
    for p in &opts.lexicons {
        file(p, &mut h);
    }
    format!("{:016x}", h.finish())
}

/// [`prepare`], unless `out/prep.json` already holds the output of the same inputs (same
/// [`fingerprint`], every file it lists present): then that manifest is returned as is.
/// The flag says whether the cache was used.
pub fn prepare_cached(
    config: &Config,
    out: &Path,
    opts: &PrepOptions,
) -> Result<(PrepManifest, bool)> {
    if let Some(m) = cached_manifest(config, out, opts) {
        return Ok((m, true));
    }
    Ok((prepare(config, out, opts)?, false))
}

/// The manifest of `out` when it holds an up-to-date preprocessing of `config` (the check
/// [`prepare_cached`] makes), without writing anything: `None` when it is missing or stale.
pub fn cached_manifest(config: &Config, out: &Path, opts: &PrepOptions) -> Option<PrepManifest> {
    let want = fingerprint(config, opts);
    let text = std::fs::read_to_string(out.join("prep.json")).ok()?;
    let m = serde_json::from_str::<PrepManifest>(&text).ok()?;
    let whole = m.fingerprint == want
        && out.join(&m.tokenizer).exists()
        && m.tasks
            .values()
            .flat_map(|t| t.splits.values())
            .all(|s| out.join(&s.file).exists());
    whole.then_some(m)
}

/// Options of [`prepare`] beyond the config.
#[derive(Debug, Clone, Default)]
pub struct PrepOptions {
    /// Synonym lexicons for augmentation (files that do not exist are skipped).
    pub lexicons: Vec<PathBuf>,
    /// Skip bad records even if the config does not say so.
    pub skip_bad: bool,
}

fn write_jsonl(path: &Path, examples: &[Example]) -> Result<()> {
    let io = |e| Error::from(mtgpt_core::Error::io(path, e));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    for ex in examples {
        serde_json::to_writer(&mut w, ex).map_err(|e| Error::Invalid(e.to_string()))?;
        w.write_all(b"\n").map_err(io)?;
    }
    w.flush().map_err(io)
}

/// How much LM text (bytes after normalization) trains a tokenizer: the first this many of
/// each run's LM tasks together. It keeps preprocessing of any corpus size in bounded memory;
/// BPE merges learned from 64 MiB hardly change with more text.
pub const TOKENIZER_LM_BYTES: usize = 64 << 20;

/// Runs the preprocessing stage of `config` into `out`.
pub fn prepare(config: &Config, out: &Path, opts: &PrepOptions) -> Result<PrepManifest> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::from(mtgpt_core::Error::io(p, e))
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    // The manifest goes last; without it a half-written folder is never taken as a cache.
    let _ = std::fs::remove_file(out.join("prep.json"));
    let skip_bad = opts.skip_bad || config.preprocess.skip_bad;
    let mut lexicon = Lexicon::default();
    for p in opts.lexicons.iter().filter(|p| p.exists()) {
        lexicon.extend(Lexicon::load(p)?);
    }
    let pipe = Pipeline {
        normalizer: Normalizer::from_config(&config.preprocess),
        segmenter: Segmenter::from_config(&config.preprocess)?,
        lexicon: std::sync::Arc::new(lexicon),
    };

    // 1. Labelled tasks in memory; LM tasks as split sources to stream.
    let mut labelled: BTreeMap<String, LoadedTask> = BTreeMap::new();
    let mut lm: BTreeMap<String, Vec<(&'static str, LmSource)>> = BTreeMap::new();
    for task in &config.tasks {
        if task.kind == TaskKind::Lm {
            lm.insert(task.name.clone(), lm_sources(task, config, skip_bad)?);
        } else {
            labelled.insert(
                task.name.clone(),
                load_labelled(task, config, &pipe, skip_bad)?,
            );
        }
    }

    // 2. The tokenizer: reuse one, or train it on the training text of the chosen tasks.
    let tok_path = out.join("tokenizer.json");
    let tokenizer = match config.tokenizer.existing() {
        Some(path) => {
            let names: Vec<String> = config.tasks.iter().map(|t| t.name.clone()).collect();
            let (tok, added) = TextTokenizer::load_with_tokens(path, &names)?;
            if !added.is_empty() {
                tracing::info!(
                    "tokenizer {}: appended {} token(s) it lacked: {}",
                    path.display(),
                    added.len(),
                    added.join(" ")
                );
            }
            tok
        }
        None => {
            let wanted = |name: &str| {
                config.tokenizer.train_on.is_empty()
                    || config.tokenizer.train_on.iter().any(|t| t == name)
            };
            let mut texts: Vec<String> = Vec::new();
            let mut lm_bytes = 0usize;
            for (name, t) in &labelled {
                if wanted(name) {
                    for ex in &t.splits[0].1 {
                        texts.extend(example_texts(ex).into_iter().map(str::to_string));
                    }
                }
            }
            for task in config
                .tasks
                .iter()
                .filter(|t| t.kind == TaskKind::Lm && wanted(&t.name))
            {
                let stemmer = task.stem.as_deref().map(crate::stem::stemmer).transpose()?;
                let src = &lm[&task.name][0].1;
                for_each_lm_chunk(src, &pipe, stemmer.as_ref(), skip_bad, |lines| {
                    if lm_bytes >= TOKENIZER_LM_BYTES {
                        return Ok(false);
                    }
                    lm_bytes += lines.iter().map(String::len).sum::<usize>();
                    texts.extend(lines);
                    Ok(true)
                })?;
            }
            let train_opts = TrainOptions {
                kind: config.tokenizer.kind,
                vocab_size: config.tokenizer.vocab_size,
                min_frequency: config.tokenizer.min_frequency,
                tasks: config.tasks.iter().map(|t| t.name.clone()).collect(),
                presegment: config.tokenizer.presegment.then(|| pipe.segmenter.clone()),
            };
            TextTokenizer::train(texts.iter(), &train_opts)?
        }
    };
    tokenizer.save(&tok_path)?;

    // 3. Write the cache.
    let mut manifest = PrepManifest {
        tokenizer: "tokenizer.json".into(),
        vocab_size: tokenizer.vocab_size(),
        tasks: BTreeMap::new(),
        fingerprint: fingerprint(config, opts),
    };
    for task in &config.tasks {
        let dir = out.join(&task.name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut info = TaskInfo {
            kind: task.kind,
            labels: Vec::new(),
            splits: BTreeMap::new(),
            skipped: 0,
            skip_messages: Vec::new(),
        };
        if let Some(t) = labelled.remove(&task.name) {
            for (split, examples, augmented) in &t.splits {
                if examples.is_empty() {
                    continue;
                }
                let file = format!("{}/{split}.jsonl", task.name);
                write_jsonl(&out.join(&file), examples)?;
                info.splits.insert(
                    split.to_string(),
                    SplitInfo {
                        file,
                        examples: examples.len(),
                        tokens: 0,
                        augmented: *augmented,
                    },
                );
            }
            info.labels = t.labels;
            for r in t.reports {
                info.skipped += r.skipped;
                info.skip_messages.extend(r.first_errors);
            }
        } else {
            let stemmer = task.stem.as_deref().map(crate::stem::stemmer).transpose()?;
            for (split, src) in &lm[&task.name] {
                if src.range.is_empty() {
                    continue;
                }
                let file = format!("{}/{split}.bin", task.name);
                // Written beside and renamed over: a trainer that has the old file mapped
                // keeps reading the old inode, never a truncated one.
                let final_path = out.join(&file);
                let path = out.join(format!("{}/.{split}.bin.tmp", task.name));
                let mut w =
                    std::io::BufWriter::new(std::fs::File::create(&path).map_err(io(&path))?);
                let (mut examples, mut tokens) = (0, 0);
                let report = for_each_lm_chunk(src, &pipe, stemmer.as_ref(), skip_bad, |lines| {
                    let encoded: Vec<Vec<u32>> = lines
                        .par_iter()
                        .map(|l| tokenizer.encode_ids(&format!("{l}\n")))
                        .collect::<Result<_>>()?;
                    for ids in encoded {
                        examples += 1;
                        tokens += ids.len();
                        for id in ids {
                            w.write_all(&id.to_le_bytes()).map_err(io(&path))?;
                        }
                    }
                    Ok(true)
                })?;
                w.flush().map_err(io(&path))?;
                drop(w);
                std::fs::rename(&path, &final_path).map_err(io(&final_path))?;
                info.skipped += report.skipped;
                info.skip_messages.extend(report.first_errors);
                info.splits.insert(
                    split.to_string(),
                    SplitInfo {
                        file,
                        examples,
                        tokens,
                        augmented: 0,
                    },
                );
            }
        }
        manifest.tasks.insert(task.name.clone(), info);
    }
    let path = out.join("prep.json");
    let text =
        serde_json::to_string_pretty(&manifest).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(io(&path))?;
    Ok(manifest)
}

/// Reads a labelled-task `.jsonl` split written by [`prepare`]; a malformed line is an error
/// naming the file and line.
pub fn read_split(path: &Path) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).map_err(|e| mtgpt_core::Error::io(path, e))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                Error::bad_record(path, i + 1, "-", format!("not a prepared example: {e}"))
            })
        })
        .collect()
}

/// Reads the token ids of an LM `.bin` file written by [`prepare`].
pub fn read_token_file(path: &Path) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path).map_err(|e| mtgpt_core::Error::io(path, e))?;
    if bytes.len() % 4 != 0 {
        return Err(Error::Invalid(format!(
            "{}: {} bytes is not a whole number of u32 tokens (truncated file?)",
            path.display(),
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}
