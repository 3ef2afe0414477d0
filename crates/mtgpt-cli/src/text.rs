//! Text verbs: `normalize`, `segment`, `stem`, `tokenizer train|encode|decode`, `augment`.
//! Line-oriented filters read stdin and write stdout, one line out per line in.
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use mtgpt_core::{AugmentConfig, Example, TokenizerKind};
use mtgpt_text::augment::{Augmenter, Lexicon};
use mtgpt_text::data::{ExampleReader, ReadOptions};
use mtgpt_text::{Normalizer, Segmenter, TextTokenizer, TrainOptions};
use rayon::prelude::*;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Lines processed together by the parallel filters: bounded memory for any input size.
const CHUNK: usize = 2048;

/// Reads stdin in chunks of lines, maps each chunk in parallel and writes the results in order.
/// Reading the next chunk and writing the previous one overlap with the mapping, so the
/// serial I/O does not cap the speed-up from more threads.
fn filter_lines(f: impl Fn(&str) -> anyhow::Result<String> + Sync) -> anyhow::Result<()> {
    // Unlocked handles: they move between rayon's threads.
    let mut lines = std::io::BufReader::with_capacity(1 << 16, std::io::stdin()).lines();
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout());
    let mut line_no = 0usize;
    let mut read_chunk = |line_no: &mut usize| -> anyhow::Result<Vec<String>> {
        let mut chunk = Vec::with_capacity(CHUNK);
        for line in lines.by_ref().take(CHUNK) {
            *line_no += 1;
            chunk.push(line.with_context(|| format!("<stdin>:{line_no}: not valid UTF-8 text"))?);
        }
        Ok(chunk)
    };
    let write = |out: &mut BufWriter<_>,
                 first: usize,
                 done: Vec<anyhow::Result<String>>|
     -> anyhow::Result<()> {
        for (i, r) in done.into_iter().enumerate() {
            let text = r.with_context(|| format!("<stdin>:{}", first + i))?;
            writeln!(out, "{text}")?;
        }
        Ok(())
    };
    let mut chunk = read_chunk(&mut line_no)?;
    let mut pending: Option<(usize, Vec<anyhow::Result<String>>)> = None;
    while !chunk.is_empty() {
        let first = line_no - chunk.len() + 1;
        let (done, next) = rayon::join(
            || chunk.par_iter().map(|l| f(l)).collect::<Vec<_>>(),
            || -> anyhow::Result<Vec<String>> {
                if let Some((start, results)) = pending.take() {
                    write(&mut out, start, results)?;
                }
                read_chunk(&mut line_no)
            },
        );
        pending = Some((first, done));
        chunk = next?;
    }
    if let Some((start, results)) = pending {
        write(&mut out, start, results)?;
    }
    out.flush()?;
    Ok(())
}

/// `mtgpt normalize`.
#[derive(Args, Debug)]
pub struct NormalizeArgs {
    /// Skip Unicode NFKC.
    #[arg(long)]
    no_nfkc: bool,
    /// Keep full-width characters.
    #[arg(long)]
    no_halfwidth: bool,
    /// Lower-case.
    #[arg(long)]
    lowercase: bool,
}

/// Normalizes stdin line by line.
pub fn normalize(a: &NormalizeArgs) -> anyhow::Result<()> {
    let n = Normalizer {
        nfkc: !a.no_nfkc,
        halfwidth: !a.no_halfwidth,
        lowercase: a.lowercase,
    };
    filter_lines(|l| Ok(n.normalize(l)))
}

/// `mtgpt segment`.
#[derive(Args, Debug)]
pub struct SegmentArgs {
    /// Use jieba's HMM for words missing from the dictionary.
    #[arg(long)]
    hmm: bool,
    /// Extra jieba dictionary (`word [freq] [tag]` per line).
    #[arg(long, value_name = "FILE")]
    user_dict: Option<PathBuf>,
}

/// Segments stdin line by line: words separated by single spaces.
pub fn segment(a: &SegmentArgs) -> anyhow::Result<()> {
    let s = match &a.user_dict {
        Some(p) => Segmenter::with_user_dict(a.hmm, p)?,
        None => Segmenter::new(a.hmm),
    };
    filter_lines(|l| Ok(s.segment_line(l)))
}

/// `mtgpt stem`.
#[derive(Args, Debug)]
pub struct StemArgs {
    /// Snowball language: english, french, german, russian, ... (18 in all).
    #[arg(long, default_value = "english")]
    lang: String,
}

/// Stems every word of stdin, line by line.
pub fn stem(a: &StemArgs) -> anyhow::Result<()> {
    let stemmer = mtgpt_text::stem::stemmer(&a.lang)?;
    let seg = Segmenter::new(true);
    filter_lines(|l| Ok(mtgpt_text::stem::stem_text(&stemmer, &seg, l)))
}

/// `mtgpt tokenizer ...`.
#[derive(Subcommand, Debug)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE (or char) tokenizer on text files.
    Train(TrainArgs),
    /// Encode stdin: one line of space-separated ids per input line.
    Encode(EncodeArgs),
    /// Decode stdin: one line of space-separated ids per output line.
    Decode(EncodeArgs),
}

/// `mtgpt tokenizer train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training text: `.txt` (every line) or `.jsonl` (every string field).
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Vocabulary size, special tokens included.
    #[arg(long, default_value_t = 8000)]
    vocab_size: usize,
    /// `bpe` or `char`.
    #[arg(long, default_value = "bpe", value_parser = ["bpe", "char"])]
    kind: String,
    /// Task names that get a `<|task:NAME|>` token.
    #[arg(long = "task", value_name = "NAME")]
    tasks: Vec<String>,
    /// Do not pre-segment Chinese with jieba.
    #[arg(long)]
    no_presegment: bool,
    /// Minimum pair count for a merge.
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    /// Output `tokenizer.json` (a `*.mtgpt.json` sidecar is written beside it).
    #[arg(long)]
    out: PathBuf,
}

/// `mtgpt tokenizer encode|decode`.
#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// The `tokenizer.json`.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Normalize each line first (NFKC, half-width, whitespace), as `prep` does (encode only).
    #[arg(long)]
    normalize: bool,
    /// Print lines, bytes, tokens and throughput (after loading) to stderr.
    #[arg(long)]
    stats: bool,
}

/// Runs a tokenizer verb.
pub fn tokenizer(cmd: &TokenizerCommand) -> anyhow::Result<()> {
    match cmd {
        TokenizerCommand::Train(a) => {
            let texts = mtgpt_text::jsonl::training_texts(&a.input)?;
            if texts.is_empty() {
                bail!("no training text in {:?}", a.input);
            }
            let opts = TrainOptions {
                kind: if a.kind == "char" {
                    TokenizerKind::Char
                } else {
                    TokenizerKind::Bpe
                },
                vocab_size: a.vocab_size,
                min_frequency: a.min_frequency,
                tasks: a.tasks.clone(),
                presegment: (!a.no_presegment).then(Segmenter::default),
            };
            let started = std::time::Instant::now();
            let tok = TextTokenizer::train(texts.iter(), &opts)?;
            if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            tok.save(&a.out)?;
            tracing::info!(
                "trained a {} tokenizer with {} tokens on {} texts in {:.1}s → {}",
                a.kind,
                tok.vocab_size(),
                texts.len(),
                started.elapsed().as_secs_f64(),
                a.out.display()
            );
            Ok(())
        }
        TokenizerCommand::Encode(a) => {
            let tok = TextTokenizer::load(&a.tokenizer)?;
            let norm = Normalizer::default();
            let started = std::time::Instant::now();
            let (bytes, tokens, lines) = (
                AtomicUsize::new(0),
                AtomicUsize::new(0),
                AtomicUsize::new(0),
            );
            filter_lines(|l| {
                let ids = if a.normalize {
                    tok.encode_ids(&norm.normalize(l))?
                } else {
                    tok.encode_ids(l)?
                };
                bytes.fetch_add(l.len() + 1, Relaxed);
                tokens.fetch_add(ids.len(), Relaxed);
                lines.fetch_add(1, Relaxed);
                let mut s = String::with_capacity(ids.len() * 6);
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    s.push_str(&id.to_string());
                }
                Ok(s)
            })?;
            if a.stats {
                let secs = started.elapsed().as_secs_f64();
                let n = bytes.load(Relaxed);
                eprintln!(
                    "lines={} bytes={n} tokens={} seconds={secs:.3} mb_per_s={:.2}",
                    lines.load(Relaxed),
                    tokens.load(Relaxed),
                    n as f64 / 1e6 / secs
                );
            }
            Ok(())
        }
        TokenizerCommand::Decode(a) => {
            let tok = TextTokenizer::load(&a.tokenizer)?;
            let vocab = tok.vocab_size() as u32;
            filter_lines(|l| {
                let ids = l
                    .split_whitespace()
                    .map(|t| match t.parse::<u32>() {
                        Ok(id) if id < vocab => Ok(id),
                        _ => bail!("`{t}` is not a token id below {vocab}"),
                    })
                    .collect::<anyhow::Result<Vec<u32>>>()?;
                Ok(tok.decode(&ids, false)?.replace('\n', "\\n"))
            })
        }
    }
}

/// `mtgpt augment`.
#[derive(Args, Debug)]
pub struct AugmentArgs {
    /// Task JSONL file to augment.
    #[arg(long)]
    input: PathBuf,
    /// Its task kind (default: guessed from the first line's fields).
    #[arg(long, value_parser = ["lm", "classify", "extractive_qa", "tagging", "generate"])]
    kind: Option<String>,
    /// Augmented copies per example.
    #[arg(long, default_value_t = 4)]
    n_aug: usize,
    /// EDA α: share of words each operation changes.
    #[arg(long, default_value_t = 0.1)]
    alpha: f64,
    /// Typo probability per character.
    #[arg(long, default_value_t = 0.0)]
    char_noise: f64,
    /// Mask probability per word.
    #[arg(long, default_value_t = 0.0)]
    token_noise: f64,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Synonym lexicons (tab-separated groups); default: the shipped English and Chinese ones.
    #[arg(long = "lexicon")]
    lexicons: Vec<PathBuf>,
    /// Also print the original examples.
    #[arg(long)]
    keep_original: bool,
    /// Skip malformed lines (counted on stderr) instead of stopping.
    #[arg(long)]
    skip_bad: bool,
}

/// Writes augmented copies of a JSONL file to stdout.
pub fn augment(a: &AugmentArgs) -> anyhow::Result<()> {
    for (flag, p) in [
        ("--alpha", a.alpha),
        ("--char-noise", a.char_noise),
        ("--token-noise", a.token_noise),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&p),
            "{flag} {p}: must be a probability in [0, 1]"
        );
    }
    let kind = match &a.kind {
        Some(k) => serde_json::from_value(serde_json::Value::String(k.clone()))?,
        None => mtgpt_text::data::guess_kind(&a.input).map_err(|e| match e {
            mtgpt_text::Error::Core(mtgpt_core::Error::Io { .. }) => anyhow::Error::from(e),
            _ => anyhow::anyhow!("{e}; pass --kind"),
        })?,
    };
    let paths = if a.lexicons.is_empty() {
        mtgpt_text::augment::default_lexicons()
    } else {
        a.lexicons.clone()
    };
    let mut lexicon = Lexicon::default();
    for p in &paths {
        lexicon.extend(Lexicon::load(p)?);
    }
    tracing::info!("{} synonym groups from {:?}", lexicon.len(), paths);
    let aug = Augmenter::new(
        lexicon,
        Segmenter::default(),
        AugmentConfig {
            eda_alpha: a.alpha,
            n_aug: a.n_aug,
            char_noise: a.char_noise,
            token_noise: a.token_noise,
        },
    );
    let mut reader = ExampleReader::open(
        &a.input,
        kind,
        ReadOptions {
            skip_bad: a.skip_bad,
            labels: None,
        },
    )?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    loop {
        let mut chunk: Vec<(usize, Example)> = Vec::with_capacity(CHUNK);
        for item in reader.by_ref().take(CHUNK) {
            chunk.push(item?);
        }
        if chunk.is_empty() {
            break;
        }
        let copies: Vec<Vec<Example>> = chunk
            .par_iter()
            .map(|(line, ex)| aug.augment_copies(ex, a.seed, &format!("augment/{line}")))
            .collect();
        for ((_, ex), copies) in chunk.iter().zip(copies) {
            if a.keep_original {
                writeln!(out, "{}", serde_json::to_string(ex)?)?;
            }
            for c in copies {
                writeln!(out, "{}", serde_json::to_string(&c)?)?;
            }
        }
    }
    out.flush()?;
    let r = reader.report();
    if r.skipped > 0 {
        tracing::warn!(
            "{}: skipped {} bad lines; first: {}",
            r.file.display(),
            r.skipped,
            r.first_errors.join(" | ")
        );
    }
    Ok(())
}

/// `mtgpt prep`.
#[derive(Args, Debug)]
pub struct PrepArgs {
    /// The config; the cache goes to --out (default: runs/<name>/prep).
    #[command(flatten)]
    target: crate::args::ConfigOutArgs,
    /// Skip and count bad records instead of stopping at the first.
    #[arg(long)]
    skip_bad: bool,
}

/// Runs the preprocessing stage and prints a summary per task.
pub fn prep(a: &PrepArgs) -> anyhow::Result<()> {
    let (config, out) = a.target.load("")?;
    let out = match &a.target.out {
        Some(_) => out,
        None => out.join("prep"),
    };
    let started = std::time::Instant::now();
    let opts = mtgpt_text::prep::PrepOptions {
        lexicons: mtgpt_text::augment::default_lexicons(),
        skip_bad: a.skip_bad,
    };
    let m = mtgpt_text::prep::prepare(&config, &out, &opts)?;
    println!(
        "{:<16} {:<14} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "task", "kind", "train", "valid", "test", "lm tokens", "skipped"
    );
    for (name, t) in &m.tasks {
        let n = |s: &str| t.splits.get(s).map_or(0, |x| x.examples);
        let tokens: usize = t.splits.values().map(|x| x.tokens).sum();
        println!(
            "{:<16} {:<14} {:>8} {:>8} {:>8} {:>10} {:>8}",
            name,
            t.kind.as_str(),
            n("train"),
            n("valid"),
            n("test"),
            tokens,
            t.skipped
        );
        for msg in &t.skip_messages {
            tracing::warn!("{name}: skipped: {msg}");
        }
    }
    tracing::info!(
        "vocabulary {} tokens; wrote {} in {:.1}s",
        m.vocab_size,
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
