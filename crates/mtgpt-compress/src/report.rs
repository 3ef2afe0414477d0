//! Size, speed and score of a model before and after compression, as a table and as JSON.
//!
//! Speed is measured in-process with both models loaded, runs interleaved (before, after,
//! before, …) so that load on a shared machine hits both alike; medians are reported.
use crate::error::Result;
use mtgpt_core::TaskKind;
use mtgpt_model::perf::median;
use mtgpt_model::{GenerateConfig, generate};
use mtgpt_tasks::TaskData;
use mtgpt_tasks::{Evaluator, MultiTaskModel, TaskScores, aggregate};
use mtgpt_text::TextTokenizer;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;
use tch::Kind;

/// Size, speed and scores of one model.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ModelStats {
    /// Parameters of trunk and heads (a pruned weight still counts).
    pub parameters: usize,
    /// Non-zero parameters.
    pub nonzero_parameters: usize,
    /// Bytes of `model.safetensors` + `heads.safetensors`.
    pub file_bytes: u64,
    /// Greedy decoding, one prompt, KV cache: new tokens per second (median).
    pub decode_tokens_per_s: f64,
    /// `predict` throughput on a labelled task in batches of 16: examples per second (median).
    pub predict_examples_per_s: f64,
    /// `predict` latency of one example (batch of 1), milliseconds (median).
    pub predict_latency_ms: f64,
    /// Per-task scores.
    pub scores: Vec<TaskScores>,
    /// Mean primary score of the non-LM tasks.
    pub aggregate: Option<f64>,
}

/// What one compression did and measured.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CompressReport {
    /// `prune`, `prune-structured`, `int8` or `distill`.
    pub method: String,
    /// The input model folder.
    pub model: String,
    /// The compressed model folder.
    pub out: String,
    /// The split scores are on.
    pub split: String,
    /// The input model.
    pub before: ModelStats,
    /// The compressed model (as loaded back from `out`).
    pub after: ModelStats,
    /// Method-specific facts (sparsity reached, kept heads, student depth, losses).
    pub details: serde_json::Value,
    /// Wall-clock seconds of the whole compression, measurements included.
    pub seconds: f64,
    /// Seconds spent fine-tuning or distilling.
    pub train_seconds: f64,
    /// Whether the task data was read from an existing preprocessing folder (a run's `prep/`)
    /// rather than preprocessed again.
    #[serde(default)]
    pub prep_reused: bool,
}

/// Bytes of a model folder's weight files.
pub fn file_bytes(dir: &Path) -> u64 {
    ["model.safetensors", "heads.safetensors"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// (parameters, non-zero parameters) of a model.
pub fn count_parameters(model: &MultiTaskModel) -> (usize, usize) {
    model.vs.variables().values().fold((0, 0), |(n, nz), t| {
        (
            n + t.numel(),
            nz + t.ne(0.0).sum(Kind::Int64).int64_value(&[]) as usize,
        )
    })
}

/// Medians of (decode tokens/s, predict examples/s, predict latency ms) for each model,
/// measured interleaved over `runs` rounds after one warm-up round.
pub fn measure_speed(
    models: &[&MultiTaskModel],
    tok: &TextTokenizer,
    data: &TaskData,
    split: &str,
    runs: usize,
) -> Result<Vec<(f64, f64, f64)>> {
    // Decoding: a prompt from the first LM split (else the task token), greedy, no stop.
    let block = models
        .iter()
        .map(|m| m.gpt.config.block_size)
        .min()
        .unwrap_or(64);
    let mut prompt: Vec<i64> = Vec::new();
    let mut prompt_task = data.config.tasks.first().map(|t| t.name.clone());
    for (i, t) in data.config.tasks.iter().enumerate() {
        if t.kind == TaskKind::Lm
            && let Some(file) = data.split_file(i, split)
        {
            prompt_task = Some(t.name.clone());
            let toks = mtgpt_text::prep::read_token_file(&file)?;
            prompt.push(tok.task_id(&t.name).unwrap_or(0) as i64);
            prompt.extend(toks.iter().take(7).map(|&x| x as i64));
            break;
        }
    }
    if prompt.is_empty() {
        prompt.push(tok.special().endoftext as i64);
    }
    let new_tokens = 64.min(block.saturating_sub(prompt.len() + 1)).max(1);
    let cfg = GenerateConfig {
        max_new_tokens: new_tokens,
        greedy: true,
        ..Default::default()
    };
    // Predicting: the first classify task (else tagging, else QA), 64 examples.
    let mut labelled = None;
    for kind in [
        TaskKind::Classify,
        TaskKind::Tagging,
        TaskKind::ExtractiveQa,
    ] {
        if let Some((head, mut ex)) = data.examples_of(kind, split)? {
            ex.truncate(64);
            labelled = Some((head, ex));
            break;
        }
    }
    let mut samples: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); models.len()];
    for round in 0..=runs.max(1) {
        for (i, m) in models.iter().enumerate() {
            if let Some(t) = &prompt_task {
                m.select_task(t)?;
            }
            let t0 = Instant::now();
            let out = tch::no_grad(|| {
                generate(
                    &m.gpt,
                    std::slice::from_ref(&prompt),
                    tok.special().pad as i64,
                    &cfg,
                )
            })?;
            let decode = out.first().map_or(0, Vec::len) as f64 / t0.elapsed().as_secs_f64();
            let (mut eps, mut lat) = (f64::NAN, f64::NAN);
            if let Some((head, ex)) = &labelled {
                let max_len = data
                    .config
                    .task(&head.name)
                    .and_then(|t| t.max_len)
                    .unwrap_or(m.gpt.config.block_size);
                let mut ev = Evaluator::new(m, tok, head, max_len)?;
                ev.batch = 16;
                let t0 = Instant::now();
                ev.predict(ex)?;
                eps = ex.len() as f64 / t0.elapsed().as_secs_f64();
                ev.batch = 1;
                let few = &ex[..ex.len().min(16)];
                let t0 = Instant::now();
                ev.predict(few)?;
                lat = 1000.0 * t0.elapsed().as_secs_f64() / few.len().max(1) as f64;
            }
            if round > 0 {
                samples[i].0.push(decode);
                samples[i].1.push(eps);
                samples[i].2.push(lat);
            }
        }
    }
    Ok(samples
        .into_iter()
        .map(|(d, e, l)| (median(d), median(e), median(l)))
        .collect())
}

/// Stats of a model folder's model: sizes, the given speed figures, and its scores.
pub fn stats(
    model: &MultiTaskModel,
    dir: &Path,
    speed: (f64, f64, f64),
    scores: Vec<TaskScores>,
) -> ModelStats {
    let (parameters, nonzero_parameters) = count_parameters(model);
    ModelStats {
        parameters,
        nonzero_parameters,
        file_bytes: file_bytes(dir),
        decode_tokens_per_s: speed.0,
        predict_examples_per_s: speed.1,
        predict_latency_ms: speed.2,
        aggregate: aggregate(&scores),
        scores,
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b != 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "-".into()
    }
}

impl CompressReport {
    /// The report as a plain-text table.
    pub fn table(&self) -> String {
        let (b, a) = (&self.before, &self.after);
        let mut s = format!(
            "{} : {} → {} ({} split, {:.0} s, {:.0} s of it training)\n",
            self.method, self.model, self.out, self.split, self.seconds, self.train_seconds
        );
        s += &format!(
            "{:<28} {:>14} {:>14} {:>10}\n",
            "", "before", "after", "after/before"
        );
        let rows: [(&str, f64, f64, usize); 6] = [
            ("parameters", b.parameters as f64, a.parameters as f64, 0),
            (
                "non-zero parameters",
                b.nonzero_parameters as f64,
                a.nonzero_parameters as f64,
                0,
            ),
            (
                "weight files (MB)",
                b.file_bytes as f64 / 1e6,
                a.file_bytes as f64 / 1e6,
                2,
            ),
            (
                "decode (tokens/s)",
                b.decode_tokens_per_s,
                a.decode_tokens_per_s,
                1,
            ),
            (
                "predict (examples/s)",
                b.predict_examples_per_s,
                a.predict_examples_per_s,
                1,
            ),
            (
                "predict latency (ms)",
                b.predict_latency_ms,
                a.predict_latency_ms,
                2,
            ),
        ];
        for (name, x, y, p) in rows {
            s += &format!("{name:<28} {x:>14.p$} {y:>14.p$} {:>10}\n", ratio(y, x));
        }
        s += &format!(
            "{:<16} {:<12} {:>10} {:>10} {:>10}\n",
            "task", "metric", "before", "after", "change"
        );
        for sb in &b.scores {
            let Some(sa) = a.scores.iter().find(|x| x.task == sb.task) else {
                continue;
            };
            let (x, y) = (
                sb.metrics.get(&sb.primary).copied().unwrap_or(f64::NAN),
                sa.metrics.get(&sa.primary).copied().unwrap_or(f64::NAN),
            );
            s += &format!(
                "{:<16} {:<12} {x:>10.4} {y:>10.4} {:>+10.4}\n",
                sb.task,
                sb.primary,
                y - x
            );
        }
        if let (Some(x), Some(y)) = (b.aggregate, a.aggregate) {
            s += &format!(
                "{:<16} {:<12} {x:>10.4} {y:>10.4} {:>+10.4}\n",
                "aggregate",
                "mean",
                y - x
            );
        }
        s
    }
}
