//! Task verbs: `predict` and `eval` on multi-task model folders.
use crate::args::ConfigArgs;
use anyhow::{Context as _, bail};
use clap::Args;
use mtgpt_core::{Config, Example};
use mtgpt_tasks::{
    Evaluator, MultiTaskModel, ScoreLimits, TaskData, TaskHead, aggregate, parse_input,
    with_prediction,
};
use mtgpt_text::{Normalizer, TextTokenizer};
use serde_json::json;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Loads a multi-task model folder and its tokenizer (checked against the vocabulary).
pub fn load(dir: &Path) -> anyhow::Result<(MultiTaskModel, Vec<TaskHead>, TextTokenizer)> {
    Ok(MultiTaskModel::load_with_tokenizer(
        dir,
        crate::args::device(),
    )?)
}

/// The run config saved in a model folder (`mtgpt.toml`), if it has a readable one.
fn run_config(dir: &Path) -> Option<Config> {
    Config::load_saved(dir.join("mtgpt.toml")).ok()
}

/// The normalizer of the run that made the model (its `mtgpt.toml`), or the default one.
fn normalizer(dir: &Path) -> Normalizer {
    run_config(dir)
        .map(|c| Normalizer::from_config(&c.preprocess))
        .unwrap_or_default()
}

/// `mtgpt predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Multi-task model folder, or a run folder (its best/, else model/).
    #[arg(long)]
    model: PathBuf,
    /// The task whose head predicts.
    #[arg(long)]
    task: String,
    /// JSONL input: the task kind's input fields (gold fields are ignored); `-` reads stdin.
    #[arg(long)]
    input: PathBuf,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// `generate` tasks: no n-gram of this size twice in an output (0 = off; default: the
    /// task's `decode.no_repeat_ngram_size`, 3 unless set).
    #[arg(long)]
    no_repeat_ngram_size: Option<usize>,
    /// `generate` tasks: penalty (≥ 1) for tokens already in the prompt or output (default:
    /// the task's `decode.repetition_penalty`, 1 unless set).
    #[arg(long)]
    repetition_penalty: Option<f64>,
    /// `generate` tasks: most new tokens (default: the task's `decode.max_new_tokens`).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// `generate` tasks: no end of text before this many new tokens (default: the task's
    /// `decode.min_new_tokens`, 0 unless set).
    #[arg(long)]
    min_new_tokens: Option<usize>,
    /// `generate` tasks: beam search with this many beams (default: the task's
    /// `decode.num_beams`, 1 = greedy, unless set).
    #[arg(long)]
    num_beams: Option<usize>,
}

/// Writes the input lines with a `prediction` field added.
pub fn predict(a: &PredictArgs) -> anyhow::Result<()> {
    let dir = crate::args::model_dir(&a.model)?;
    let (model, tasks, tok) = load(&dir)?;
    let Some(task) = tasks.iter().find(|t| t.name == a.task) else {
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        bail!(
            "{}: no task `{}`; it serves {names:?}",
            dir.display(),
            a.task
        );
    };
    let norm = normalizer(&dir);
    // The task's sequence length as in training (the run config's `max_len`, capped by the
    // context), the model's context when the folder has no run config.
    let block = model.gpt.config.block_size;
    let max_len = run_config(&dir)
        .and_then(|c| c.task(&a.task).map(|t| mtgpt_tasks::max_len(t, block)))
        .unwrap_or(block);
    let mut eval = Evaluator::new(&model, &tok, task, max_len)?;
    eval.batch = a.batch;
    // An input's answer does not depend on the rest of the file (nor on a server's batch).
    eval.invariant = true;
    if let Some(n) = a.no_repeat_ngram_size {
        eval.decode.no_repeat_ngram_size = n;
    }
    if let Some(n) = a.min_new_tokens {
        eval.decode.min_new_tokens = n;
    }
    if let Some(n) = a.num_beams {
        if n == 0 {
            bail!("--num-beams 0: must be at least 1");
        }
        eval.decode.num_beams = n;
    }
    if let Some(p) = a.repetition_penalty {
        if !(p.is_finite() && p >= 1.0) {
            bail!("--repetition-penalty {p}: must be at least 1");
        }
        eval.decode.repetition_penalty = p;
    }
    if let Some(n) = a.max_new_tokens {
        if n == 0 {
            bail!("--max-new-tokens must be at least 1");
        }
        eval.decode.max_new_tokens = n;
    }
    let mut rows = Vec::new();
    for (line, v) in mtgpt_text::jsonl::read_values(&a.input)? {
        let input = parse_input(&v, task.kind, &norm, &a.input, line)?;
        rows.push((v, input));
    }
    let examples: Vec<Example> = rows.iter().map(|r| r.1.example.clone()).collect();
    let preds = eval.predict(&examples)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for ((v, input), p) in rows.into_iter().zip(preds) {
        serde_json::to_writer(&mut out, &with_prediction(v, &input, &p)?)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Every metric of `s` as `name=0.1234 …`.
fn metrics_line(s: &mtgpt_tasks::TaskScores) -> String {
    let m: Vec<String> = s
        .metrics
        .iter()
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect();
    m.join(" ")
}

/// `mtgpt eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Multi-task model folder, or a run folder (its best/, else model/).
    #[arg(long)]
    model: PathBuf,
    /// The config whose tasks (and their data) to score, with overrides.
    #[command(flatten)]
    config: ConfigArgs,
    /// Which split.
    #[arg(long, default_value = "valid", value_parser = ["valid", "test"])]
    split: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// At most this many LM tokens per lm task.
    #[arg(long, default_value_t = 20000)]
    lm_tokens: usize,
    /// Also fit the classic baselines of every task on its training split (TF-IDF + logistic
    /// regression, most frequent tag, CRF, nearest-source retrieval, trigram LM; seconds) and
    /// print their scores on the same split.
    #[arg(long)]
    classic: bool,
}

/// Scores every task of the config that the model serves on one split.
pub fn eval(a: &EvalArgs) -> anyhow::Result<()> {
    let config = a.config.load()?;
    let dir = crate::args::model_dir(&a.model)?;
    let (model, mut heads, tok) = load(&dir)?;
    // A `decode` the config sets (e.g. `--set task.NAME.decode.num_beams=4`) is how the
    // user asks this run to decode; the one saved with the model applies otherwise.
    for h in &mut heads {
        if let Some(d) = config.task(&h.name).and_then(|t| t.decode) {
            h.decode = Some(d);
        }
    }
    let run_prep = crate::args::run_prep(&dir);
    let prepared = run_prep.as_ref().map(|(p, o)| (p.as_path(), o));
    let context = || format!("scoring {} on {}", dir.display(), a.config.config.display());
    let data = TaskData::for_model(&config, &heads, &dir.join("tokenizer.json"), prepared)
        .with_context(context)?;
    let limits = ScoreLimits {
        max_examples: None,
        lm_tokens: a.lm_tokens,
        samples: 0,
    };
    let scored = data
        .score(&model, &tok, &a.split, &limits)
        .with_context(context)?;
    let classic = if a.classic {
        mtgpt_baselines::run_all(&data, &a.split, a.lm_tokens)
            .context("fitting the classic baselines")?
    } else {
        Vec::new()
    };
    for t in &scored.missing {
        tracing::warn!("task `{t}` has no {} split", a.split);
    }
    let scores = scored.scores;
    let agg = aggregate(&scores);
    if a.json {
        let mut v = json!({"split": a.split, "tasks": scores, "aggregate": agg});
        if a.classic {
            v["classic"] = serde_json::to_value(&classic)?;
        }
        println!("{v}");
        return Ok(());
    }
    println!(
        "{:<16} {:<14} {:>8}  metrics ({} split)",
        "task", "kind", "examples", a.split
    );
    for s in &scores {
        println!(
            "{:<16} {:<14} {:>8}  {}",
            s.task,
            s.kind.as_str(),
            s.examples,
            metrics_line(s)
        );
    }
    if let Some(x) = agg {
        println!("aggregate (mean primary score of non-lm tasks): {x:.4}");
    }
    if a.classic {
        println!(
            "\nclassic baselines (fitted on the train split, scored on {}):",
            a.split
        );
        for b in &classic {
            println!(
                "{:<16} {:<18} {:>6.1} s  {}",
                b.scores.task,
                b.method,
                b.seconds,
                metrics_line(&b.scores)
            );
        }
    }
    Ok(())
}
