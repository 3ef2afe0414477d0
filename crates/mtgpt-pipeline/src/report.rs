//! `OUT/report.md`: test scores of every task (beside single-task baselines and compressed
//! models when there are any), stage timings, generated examples, compression tables, sample
//! predictions, curves, versions and the resolved config.
use crate::stages::StageTiming;
use mtgpt_core::{Config, TaskKind};
use mtgpt_tasks::{Sample, TaskScores, aggregate};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Everything the report shows.
pub struct ReportInputs<'a> {
    /// The run's config.
    pub config: &'a Config,
    /// The output folder.
    pub out: &'a Path,
    /// The model the test scores are of.
    pub best: &'a Path,
    /// `train_summary.json`.
    pub summary: &'a serde_json::Value,
    /// Test scores of the jointly trained model.
    pub joint: &'a [TaskScores],
    /// Sample predictions.
    pub samples: &'a [Sample],
    /// Primary scores of the single-task baselines (may be empty).
    pub baselines: &'a BTreeMap<String, f64>,
    /// Test scores of the classic baselines (may be empty).
    pub classic: &'a [mtgpt_baselines::BaselineScores],
    /// Primary scores of the same joint run from a random trunk (may be empty).
    pub scratch: &'a BTreeMap<String, f64>,
    /// Compression reports (may be empty).
    pub compressed: &'a [mtgpt_compress::CompressReport],
    /// Curve images, relative to `out`.
    pub images: &'a [String],
    /// What each stage did.
    pub stages: &'a [StageTiming],
}

/// Every metric of `s` but its primary one, as `name 0.1234, …`.
fn other_metrics(s: &TaskScores) -> String {
    let others: Vec<String> = s
        .metrics
        .iter()
        .filter(|(k, _)| **k != s.primary)
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect();
    others.join(", ")
}

fn cell(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.4}"))
}

/// The best classic baseline of task `s` (lowest perplexity for `lm`, else highest primary
/// score) with its method, and whether the model's `primary` beats it.
fn classic_cell(
    classic: &[mtgpt_baselines::BaselineScores],
    s: &TaskScores,
    primary: Option<f64>,
) -> String {
    let lower = s.kind == TaskKind::Lm;
    let best = classic
        .iter()
        .filter(|b| b.scores.task == s.task)
        .filter_map(|b| Some((b.method.as_str(), *b.scores.metrics.get(&b.scores.primary)?)))
        .max_by(|a, b| {
            if lower {
                b.1.total_cmp(&a.1)
            } else {
                a.1.total_cmp(&b.1)
            }
        });
    match (best, primary) {
        (Some((method, v)), Some(p)) => {
            let wins = if lower { p < v } else { p > v };
            format!("{v:.4} ({method}) {}", if wins { "✓" } else { "✗" })
        }
        (Some((method, v)), None) => format!("{v:.4} ({method})"),
        (None, _) => "-".into(),
    }
}

/// Where the trunk started: a random initialisation, or the `model.init` folder (with what
/// its `pretrain.json` says when `mtgpt pretrain` made it).
fn trunk_line(config: &Config) -> String {
    let Some(dir) = &config.init else {
        return "Trunk: **random initialisation** (no `model.init`).".into();
    };
    let record: Option<serde_json::Value> = std::fs::read_to_string(dir.join("pretrain.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    match record {
        Some(r) => format!(
            "Trunk: **pretrained**, from `{}` (`mtgpt pretrain` base `{}`: {} steps, {} tokens of {}); new heads, the task tokens appended to its tokenizer.",
            dir.display(),
            r["name"].as_str().unwrap_or("?"),
            r["steps"],
            r["tokens_seen"],
            r["corpora"]
                .as_array()
                .map(|c| c
                    .iter()
                    .filter_map(|x| x["task"].as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        None => format!(
            "Trunk: **pretrained**, from `{}` (weights and tokenizer of that folder); new heads.",
            dir.display()
        ),
    }
}

/// The report as Markdown.
pub fn markdown(r: &ReportInputs) -> String {
    let (config, out, best, summary, joint, samples, baselines, compressed, images) = (
        r.config,
        r.out,
        r.best,
        r.summary,
        r.joint,
        r.samples,
        r.baselines,
        r.compressed,
        r.images,
    );
    let mut md = String::new();
    let _ = writeln!(md, "# mtgpt run: `{}`\n", config.name);
    let m = &config.model;
    let _ = writeln!(
        md,
        "One GPT trunk ({} layers, {} heads, d_model {}, context {}, {} parameters) was {}jointly trained on {} tasks for {} steps in {:.0} s; the model that scored best on the validation splits (`{}`) was then scored on the **test** splits.\n",
        m.n_layer,
        m.n_head,
        m.d_model,
        m.block_size,
        summary["parameters"],
        if config.train.pretrain_steps > 0 {
            format!(
                "pretrained on the LM corpora ({} steps), then ",
                config.train.pretrain_steps
            )
        } else {
            String::new()
        },
        config.tasks.len(),
        summary["steps"],
        summary["seconds"].as_f64().unwrap_or(0.0),
        best.strip_prefix(out).unwrap_or(best).display()
    );
    let _ = writeln!(md, "{}\n", trunk_line(config));
    if let (Some(tokens), Some(secs), Some(useful)) = (
        summary["tokens"].as_f64(),
        summary["train_seconds"].as_f64(),
        summary["useful_fraction"].as_f64(),
    ) {
        let examples = summary["examples"].as_f64().unwrap_or(0.0);
        let _ = writeln!(
            md,
            "Training throughput: {:.0} real tokens/s and {:.1} examples/s over {secs:.0} s of optimizer steps; useful-token fraction {useful:.3} (packing {}, {}, precision {}).\n",
            tokens / secs.max(1e-9),
            examples / secs.max(1e-9),
            if config.train.packing { "on" } else { "off" },
            if config.train.batch_tokens > 0 {
                format!("{} tokens per step", config.train.batch_tokens)
            } else {
                format!("{} examples per step", config.train.batch_size)
            },
            m.precision.as_str()
        );
    }
    let _ = writeln!(md, "## Test scores\n");
    let mut head = "| task | kind | metric | ".to_string();
    let mut rule = "| --- | --- | --- | ".to_string();
    if !r.classic.is_empty() {
        head += "best classic baseline | ";
        rule += "--- | ";
    }
    if !baselines.is_empty() {
        head += "single-task | ";
        rule += "--- | ";
    }
    if !r.scratch.is_empty() {
        head += "from scratch | ";
        rule += "--- | ";
    }
    head += "joint |";
    rule += "--- |";
    for c in compressed {
        let _ = write!(head, " {} |", c.method);
        rule += " --- |";
    }
    let _ = writeln!(md, "{head} other metrics (joint) |\n{rule} --- |");
    for s in joint {
        let primary = s.metrics.get(&s.primary).copied();
        let mut row = format!(
            "| {} | {} | {}{} | ",
            s.task,
            s.kind,
            s.primary,
            if s.kind == TaskKind::Lm {
                " (lower is better)"
            } else {
                ""
            }
        );
        if !r.classic.is_empty() {
            let _ = write!(row, "{} | ", classic_cell(r.classic, s, primary));
        }
        if !baselines.is_empty() {
            let _ = write!(row, "{} | ", cell(baselines.get(&s.task).copied()));
        }
        if !r.scratch.is_empty() {
            let _ = write!(row, "{} | ", cell(r.scratch.get(&s.task).copied()));
        }
        let _ = write!(row, "{} |", cell(primary));
        for c in compressed {
            let v = c
                .after
                .scores
                .iter()
                .find(|x| x.task == s.task)
                .and_then(|x| x.metrics.get(&x.primary).copied());
            let _ = write!(row, " {} |", cell(v));
        }
        let _ = writeln!(row, " {} |", other_metrics(s));
        md.push_str(&row);
    }
    if let Some(agg) = aggregate(joint) {
        let _ = writeln!(
            md,
            "\nAggregate (mean primary score of the non-LM tasks): **{agg:.4}**."
        );
    }
    if !r.classic.is_empty() {
        let _ = writeln!(
            md,
            "\n✓ / ✗: the joint model beats / does not beat the best classic baseline of its task \
             (fitted on the same prepared training split; seconds each in the table below).\n\n## Classic baselines (test split)\n\n\
             | task | baseline | metric | score | other metrics | seconds |\n| --- | --- | --- | --- | --- | --- |"
        );
        for b in r.classic {
            let s = &b.scores;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.1} |",
                s.task,
                b.method,
                s.primary,
                cell(s.metrics.get(&s.primary).copied()),
                other_metrics(s),
                b.seconds
            );
        }
    }
    if summary["guard_events"].as_u64().unwrap_or(0) > 0 {
        let _ = writeln!(
            md,
            "\nThe divergence guard restored the last good state {} time(s).",
            summary["guard_events"]
        );
    }
    if let Some(aug) = summary["augmented"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(md, "\n## Generated training examples\n");
        for x in aug {
            let _ = writeln!(
                md,
                "- `{}`: the model wrote {} examples, the classifier kept {}.",
                x["task"].as_str().unwrap_or("-"),
                x["generated"],
                x["kept"]
            );
        }
    }
    if !compressed.is_empty() {
        let _ = writeln!(md, "\n## Compression\n");
        for c in compressed {
            let _ = writeln!(md, "```text\n{}```\n", c.table());
        }
    }
    if !samples.is_empty() {
        let _ = writeln!(md, "\n## Sample predictions (test split)\n");
        let _ = writeln!(md, "| task | input | prediction |\n| --- | --- | --- |");
        for s in samples {
            let esc = |v: &serde_json::Value| {
                let t = v.to_string();
                let t: String = t.chars().take(160).collect();
                t.replace('|', "\\|")
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                s.task,
                esc(&s.input),
                esc(&s.prediction)
            );
        }
    }
    if !r.stages.is_empty() {
        let _ = writeln!(md, "\n## Stages\n");
        let _ = writeln!(
            md,
            "| stage | seconds | reused | what it did |\n| --- | --- | --- | --- |"
        );
        for s in r.stages {
            let _ = writeln!(
                md,
                "| {} | {:.1} | {} | {} |",
                s.stage,
                s.seconds,
                if s.reused { "yes" } else { "no" },
                s.note
            );
        }
    }
    if !images.is_empty() {
        let _ = writeln!(md, "\n## Curves (training loss and validation metrics)\n");
        for img in images {
            let _ = writeln!(md, "![{img}]({img})");
        }
    }
    let _ = writeln!(
        md,
        "\n## Versions and config\n\nmtgpt {}, libtorch {}, {} threads.\n\n```toml\n{}```",
        env!("CARGO_PKG_VERSION"),
        env!("MTGPT_LIBTORCH_VERSION"),
        tch::get_num_threads(),
        config.to_toml_string()
    );
    md
}
