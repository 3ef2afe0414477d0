//! Task verbs: `predict` and `eval` on multi-task model folders.
use anyhow::{Context as _, bail};
use clap::Args;
use mtgpt_core::{Answer, Config, Example, TaskKind};
use mtgpt_heads::{Evaluator, MultiTaskModel, Prediction, TaskHead, TaskScores, aggregate};
use mtgpt_text::{Normalizer, TextTokenizer};
use serde_json::{Value, json};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Loads a multi-task model folder and its tokenizer.
pub fn load(dir: &Path) -> anyhow::Result<(MultiTaskModel, Vec<TaskHead>, TextTokenizer)> {
    let (model, tasks) = MultiTaskModel::load(dir, crate::model::device())?;
    let tpath = dir.join("tokenizer.json");
    let tok = TextTokenizer::load(&tpath)?;
    if tok.vocab_size() > model.gpt.config.vocab_size {
        bail!(
            "{}: {} tokens but the model's vocabulary is {}",
            tpath.display(),
            tok.vocab_size(),
            model.gpt.config.vocab_size
        );
    }
    Ok((model, tasks, tok))
}

/// The normalizer of the run that made the model (its `mtgpt.toml`), or the default one.
fn normalizer(dir: &Path) -> Normalizer {
    let path = dir.join("mtgpt.toml");
    Config::load(&path, &[])
        .map(|c| Normalizer::from_config(&c.preprocess))
        .unwrap_or_default()
}

/// `mtgpt predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Multi-task model folder.
    #[arg(long)]
    model: PathBuf,
    /// The task whose head predicts.
    #[arg(long)]
    task: String,
    /// JSONL input: the task kind's input fields (gold fields are ignored).
    #[arg(long)]
    input: PathBuf,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
}

fn field<'v>(v: &'v Value, name: &str, file: &Path, line: usize) -> anyhow::Result<&'v str> {
    match v.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => bail!("{}:{line}: field `{name}`: empty", file.display()),
        Some(_) => bail!(
            "{}:{line}: field `{name}`: expected a string",
            file.display()
        ),
        None => bail!("{}:{line}: field `{name}`: missing", file.display()),
    }
}

/// One input line → (the JSON as given, a normalized example with placeholder gold fields,
/// the normalizer's char map of a QA context).
fn parse_input(
    v: &Value,
    kind: TaskKind,
    norm: &Normalizer,
    file: &Path,
    line: usize,
) -> anyhow::Result<(Example, Option<mtgpt_text::Normalized>)> {
    let n = |s: &str| norm.normalize(s);
    Ok(match kind {
        TaskKind::Lm => (
            Example::Lm {
                text: n(field(v, "text", file, line)?),
            },
            None,
        ),
        TaskKind::Classify => {
            let text_pair = v.get("text_pair").and_then(Value::as_str).map(n);
            (
                Example::Classify {
                    text: n(field(v, "text", file, line)?),
                    text_pair,
                    label: String::new(),
                },
                None,
            )
        }
        TaskKind::Generate => (
            Example::Generate {
                source: n(field(v, "source", file, line)?),
                target: String::new(),
            },
            None,
        ),
        TaskKind::ExtractiveQa => {
            let ctx = norm.normalize_with_offsets(field(v, "context", file, line)?);
            let ex = Example::ExtractiveQa {
                context: ctx.text.clone(),
                question: n(field(v, "question", file, line)?),
                answer: Answer {
                    text: String::new(),
                    start: 0,
                },
            };
            (ex, Some(ctx))
        }
        TaskKind::Tagging => {
            let tokens: Vec<String> = match v.get("tokens") {
                Some(Value::Array(a)) if !a.is_empty() => a
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        t.as_str().map(str::to_string).with_context(|| {
                            format!(
                                "{}:{line}: field `tokens[{i}]`: expected a string",
                                file.display()
                            )
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
                _ => bail!(
                    "{}:{line}: field `tokens`: missing or not a non-empty array of strings",
                    file.display()
                ),
            };
            (
                Example::Tagging {
                    tags: vec![String::new(); tokens.len()],
                    tokens,
                },
                None,
            )
        }
    })
}

/// Writes the input lines with a `prediction` field added.
pub fn predict(a: &PredictArgs) -> anyhow::Result<()> {
    let (model, tasks, tok) = load(&a.model)?;
    let Some(task) = tasks.iter().find(|t| t.name == a.task) else {
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        bail!(
            "{}: no task `{}`; it serves {names:?}",
            a.model.display(),
            a.task
        );
    };
    let norm = normalizer(&a.model);
    let mut eval = Evaluator::new(&model, &tok, task, model.gpt.config.block_size)?;
    eval.batch = a.batch;
    let mut rows = Vec::new();
    for (line, v) in crate::jsonl::read_values(&a.input)? {
        let (ex, map) = parse_input(&v, task.kind, &norm, &a.input, line)?;
        rows.push((v, ex, map));
    }
    let examples: Vec<Example> = rows.iter().map(|r| r.1.clone()).collect();
    let preds = eval.predict(&examples)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for ((mut v, _, map), p) in rows.into_iter().zip(preds) {
        let pred = match (&p, map) {
            // Report the answer's start in the context as given, not the normalized one.
            (
                Prediction::Span {
                    text,
                    start: Some(s),
                },
                Some(m),
            ) => {
                let (orig, _) = m.original_range(*s, s + text.chars().count());
                json!({"text": text, "start": orig})
            }
            _ => serde_json::to_value(&p)?,
        };
        v["prediction"] = pred;
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// `mtgpt eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Multi-task model folder.
    #[arg(long)]
    model: PathBuf,
    /// The config whose tasks (and their data) to score.
    #[arg(long)]
    config: PathBuf,
    /// Which split.
    #[arg(long, default_value = "valid", value_parser = ["valid", "test"])]
    split: String,
    /// Override a config key.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// At most this many LM tokens per lm task.
    #[arg(long, default_value_t = 20000)]
    lm_tokens: usize,
}

/// One test example with the model's prediction, for reports.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// The task.
    pub task: String,
    /// The input as JSON (gold fields included).
    pub input: serde_json::Value,
    /// The prediction as JSON.
    pub prediction: serde_json::Value,
}

/// Scores every task of `config` that the model in `model_dir` serves on `split`, and keeps
/// the first `samples` predictions of each labelled task.
pub fn score_model(
    model_dir: &std::path::Path,
    config: &Config,
    split: &str,
    lm_tokens: usize,
    samples: usize,
) -> anyhow::Result<(Vec<TaskScores>, Vec<Sample>)> {
    let (model, tasks, tok) = load(model_dir)?;
    let mut config = config.clone();
    // Preprocess exactly as training did, with the model's own tokenizer.
    config.tokenizer.path = model_dir
        .join("tokenizer.json")
        .to_string_lossy()
        .into_owned();
    config
        .tasks
        .retain(|t| tasks.iter().any(|h| h.name == t.name));
    if config.tasks.is_empty() {
        bail!(
            "{}: the model serves none of the config's tasks",
            model_dir.display()
        );
    }
    for t in &mut config.tasks {
        t.augment = None;
        t.generate_augment = None;
    }
    let tmp = tempfile_dir()?;
    let opts = mtgpt_text::prep::PrepOptions {
        lexicons: Vec::new(),
        skip_bad: false,
    };
    let result = (|| -> anyhow::Result<(Vec<TaskScores>, Vec<Sample>)> {
        let manifest = mtgpt_text::prep::prepare(&config, &tmp, &opts)?;
        let mut scores: Vec<TaskScores> = Vec::new();
        let mut picked = Vec::new();
        for t in &config.tasks {
            let head = tasks
                .iter()
                .find(|h| h.name == t.name)
                .context("task list")?;
            let info = &manifest.tasks[&t.name];
            let Some(split_info) = info.splits.get(split) else {
                tracing::warn!("task `{}` has no {split} split", t.name);
                continue;
            };
            let path = tmp.join(&split_info.file);
            let max_len = t.max_len.unwrap_or(model.gpt.config.block_size);
            let eval = Evaluator::new(&model, &tok, head, max_len)?;
            let s = if t.kind == TaskKind::Lm {
                eval.evaluate_lm_tokens(&mtgpt_text::prep::read_token_file(&path)?, lm_tokens)?
            } else {
                let examples = mtgpt_text::prep::read_split(&path)?;
                let first = &examples[..samples.min(examples.len())];
                if !first.is_empty() {
                    for (ex, p) in first.iter().zip(eval.predict(first)?) {
                        picked.push(Sample {
                            task: t.name.clone(),
                            input: serde_json::to_value(ex)?,
                            prediction: serde_json::to_value(&p)?,
                        });
                    }
                }
                eval.evaluate(&examples)?
            };
            scores.push(s);
        }
        Ok((scores, picked))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Scores every task of the config that the model serves on one split.
pub fn eval(a: &EvalArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config, &a.sets)?;
    let (scores, _) = score_model(&a.model, &config, &a.split, a.lm_tokens, 0)
        .with_context(|| format!("scoring {} on {}", a.model.display(), a.config.display()))?;
    let agg = aggregate(&scores);
    if a.json {
        println!(
            "{}",
            json!({"split": a.split, "tasks": scores, "aggregate": agg})
        );
        return Ok(());
    }
    println!(
        "{:<16} {:<14} {:>8}  metrics ({} split)",
        "task", "kind", "examples", a.split
    );
    for s in &scores {
        let m: Vec<String> = s
            .metrics
            .iter()
            .map(|(k, v)| format!("{k}={v:.4}"))
            .collect();
        println!(
            "{:<16} {:<14} {:>8}  {}",
            s.task,
            s.kind.as_str(),
            s.examples,
            m.join(" ")
        );
    }
    if let Some(x) = agg {
        println!("aggregate (mean primary score of non-lm tasks): {x:.4}");
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "mtgpt-eval-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    Ok(dir)
}
