//! `mtgpt run`: the whole pipeline in one command — data → preprocessing (tokenizer
//! included) → LM pretraining and joint training → test-split evaluation of every task →
//! optional single-task baselines → compression → `report.md`. Each stage records a
//! fingerprint of its inputs in `OUT/stages.json` and is skipped when a second run finds the
//! same fingerprint and its outputs in place; an interrupted training stage resumes from its
//! last checkpoint.
use crate::tasks::{Sample, score_model};
use anyhow::{Context as _, bail};
use clap::Args;
use mtgpt_core::{Config, TaskKind};
use mtgpt_heads::{TaskScores, aggregate};
use mtgpt_train::report::{read_curves, write_curves};
use mtgpt_train::trainer::{TrainOptions, latest_checkpoint, load_data, train};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `mtgpt run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The config (e.g. configs/demo.toml).
    #[arg(long)]
    config: PathBuf,
    /// Output folder (default: runs/<name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a config key (`--set train.steps=50`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Also train every task alone with the same budget (single-task baselines).
    #[arg(long)]
    baselines: bool,
    /// Skip the compression stage even if the config lists methods.
    #[arg(long)]
    no_compress: bool,
    /// Redo every stage even when its inputs are unchanged.
    #[arg(long)]
    fresh: bool,
    /// Predictions shown per task in the report.
    #[arg(long, default_value_t = 3)]
    samples: usize,
}

/// Fingerprints of finished stages.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stages {
    #[serde(default)]
    done: BTreeMap<String, String>,
}

/// Test-split results of one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Scored {
    model: String,
    scores: serde_json::Value,
    samples: serde_json::Value,
}

fn digest(parts: &[&str]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    for p in parts {
        p.hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    mtgpt_model::io::write_text_atomically(path, &text).with_context(|| path.display().to_string())
}

struct Pipeline {
    out: PathBuf,
    stages: Stages,
    fresh: bool,
    n: usize,
    k: usize,
    started: Instant,
}

impl Pipeline {
    fn stage(&mut self, what: &str) {
        self.k += 1;
        eprintln!(
            "[{}/{}] {what} ({:.0} s so far)",
            self.k,
            self.n,
            self.started.elapsed().as_secs_f64()
        );
    }

    fn reusable(&self, stage: &str, fp: &str, outputs: &[&Path]) -> bool {
        !self.fresh
            && self.stages.done.get(stage).is_some_and(|f| f == fp)
            && outputs.iter().all(|p| p.exists())
    }

    fn finish(&mut self, stage: &str, fp: &str) -> anyhow::Result<()> {
        self.stages.done.insert(stage.into(), fp.into());
        write_json(&self.out.join("stages.json"), &self.stages)
    }
}

fn missing_inputs(config: &Config) -> Vec<PathBuf> {
    config
        .tasks
        .iter()
        .flat_map(|t| [Some(&t.train), t.valid.as_ref(), t.test.as_ref()])
        .flatten()
        .filter(|p| !p.exists())
        .cloned()
        .collect()
}

/// Runs the pipeline and writes `OUT/report.md`.
pub fn run(a: &RunArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config, &a.sets)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&config.name));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let methods: Vec<String> = if a.no_compress {
        Vec::new()
    } else {
        config.compress.methods.clone()
    };
    let mut p = Pipeline {
        stages: read_json(&out.join("stages.json")).unwrap_or_default(),
        out: out.clone(),
        fresh: a.fresh,
        n: 5 + usize::from(a.baselines) + usize::from(!methods.is_empty()),
        k: 0,
        started: Instant::now(),
    };

    // 1. Data: present, or fetched by the project's script.
    p.stage("data");
    let missing = missing_inputs(&config);
    if !missing.is_empty() {
        let script = Path::new("scripts/fetch-data.sh");
        if script.exists() {
            eprintln!(
                "      {} input file(s) missing ({}); running {}",
                missing.len(),
                missing[0].display(),
                script.display()
            );
            let status = std::process::Command::new("bash")
                .arg(script)
                .status()
                .with_context(|| format!("running {}", script.display()))?;
            if !status.success() {
                bail!("{} failed ({status})", script.display());
            }
        }
        let still = missing_inputs(&config);
        if !still.is_empty() {
            let list: Vec<String> = still.iter().map(|p| p.display().to_string()).collect();
            bail!(
                "{}: missing task data: {} (paths are relative to the working folder; the shipped data is fetched by scripts/fetch-data.sh)",
                a.config.display(),
                list.join(", ")
            );
        }
    }

    // 2. Preprocessing and tokenizer (cached by their own fingerprint).
    p.stage("preprocessing and tokenizer");
    let mut opts = TrainOptions::new(&out);
    opts.lexicons = crate::text::default_lexicons();
    opts.device = crate::model::device();
    opts.progress = true;
    opts.report = false;
    if a.fresh {
        // Without its manifest the preprocessing folder is never taken as a cache.
        let _ = std::fs::remove_file(out.join("prep/prep.json"));
    }
    let data = load_data(&config, &opts)?;
    let prep_fp = data.manifest.fingerprint.clone();
    drop(data);

    // 3. Training: LM pretraining, then joint training (resumes an interrupted run).
    p.stage("LM pretraining and joint training");
    let config_text = config.to_toml_string();
    let train_fp = digest(&[&config_text, &prep_fp]);
    let model_dir = out.join("model");
    let summary_path = out.join("train_summary.json");
    if p.reusable(
        "train",
        &train_fp,
        &[&model_dir.join("tasks.json"), &summary_path],
    ) {
        eprintln!("      inputs unchanged; reusing {}", model_dir.display());
    } else {
        let ckpts = out.join("checkpoints");
        let same_run = p
            .stages
            .done
            .get("train-started")
            .is_some_and(|f| *f == train_fp);
        opts.resume = !a.fresh && same_run && latest_checkpoint(&ckpts).is_some();
        if opts.resume {
            eprintln!("      resuming the interrupted training run");
        } else {
            let _ = std::fs::remove_dir_all(&ckpts);
            let _ = std::fs::remove_dir_all(out.join("best"));
            let _ = std::fs::remove_dir_all(out.join("augment"));
        }
        p.finish("train-started", &train_fp)?;
        let summary = train(&config, &opts)?;
        write_json(&summary_path, &summary)?;
        p.finish("train", &train_fp)?;
    }
    let summary: serde_json::Value =
        read_json(&summary_path).context("train_summary.json is unreadable")?;
    // The model that scored best on the validation splits (the last one if none did).
    let best = if out.join("best/tasks.json").exists() {
        out.join("best")
    } else {
        model_dir.clone()
    };

    // 4. Test-split evaluation.
    p.stage("test-split evaluation of every task");
    let test_path = out.join("test_scores.json");
    let test_fp = digest(&[&train_fp, "test", &a.samples.to_string()]);
    let joint: Scored = if p.reusable("test", &test_fp, &[&test_path]) {
        eprintln!("      reusing {}", test_path.display());
        read_json(&test_path).context("test_scores.json is unreadable")?
    } else {
        let (scores, samples) = score_model(&best, &config, "test", 20000, a.samples)?;
        let s = Scored {
            model: best.display().to_string(),
            scores: serde_json::to_value(&scores)?,
            samples: serde_json::to_value(&samples)?,
        };
        write_json(&test_path, &s)?;
        p.finish("test", &test_fp)?;
        s
    };
    let joint_scores: Vec<TaskScores> = serde_json::from_value(joint.scores.clone())
        .map_err(|e| anyhow::anyhow!("{}: {e}", test_path.display()))?;
    let samples: Vec<Sample> = serde_json::from_value(joint.samples.clone())
        .map_err(|e| anyhow::anyhow!("{}: {e}", test_path.display()))?;

    // 5. Single-task baselines (optional).
    let mut baselines: BTreeMap<String, f64> = BTreeMap::new();
    if a.baselines {
        p.stage("single-task baselines");
        let path = out.join("baselines.json");
        let fp = digest(&[&train_fp, "baselines"]);
        if p.reusable("baselines", &fp, &[&path]) {
            eprintln!("      reusing {}", path.display());
            baselines = read_json(&path).context("baselines.json is unreadable")?;
        } else {
            for t in &config.tasks {
                let dir = out.join("baselines").join(&t.name);
                let mut o = opts.clone();
                o.out = dir.clone();
                o.prep_dir = Some(out.join("prep"));
                o.resume = false;
                o.joint_tasks = Some(vec![t.name.clone()]);
                o.report = false;
                eprintln!("      training `{}` alone", t.name);
                train(&config, &o)?;
                let m = if dir.join("best/tasks.json").exists() && t.kind != TaskKind::Lm {
                    dir.join("best")
                } else {
                    dir.join("model")
                };
                let mut one = config.clone();
                one.tasks.retain(|x| x.name == t.name);
                let (scores, _) = score_model(&m, &one, "test", 20000, 0)?;
                if let Some(s) = scores.first()
                    && let Some(v) = s.metrics.get(&s.primary)
                {
                    baselines.insert(t.name.clone(), *v);
                }
            }
            write_json(&path, &baselines)?;
            p.finish("baselines", &fp)?;
        }
    }

    // 6. Compression.
    let mut compressed: Vec<mtgpt_compress::CompressReport> = Vec::new();
    if !methods.is_empty() {
        p.stage(&format!("compression ({})", methods.join(", ")));
        for m in &methods {
            let dir = out.join("compressed").join(m);
            let path = dir.join("compress.json");
            let fp = digest(&[&train_fp, m, &serde_json::to_string(&config.compress)?]);
            let key = format!("compress-{m}");
            if p.reusable(&key, &fp, &[&path]) {
                eprintln!("      {m}: reusing {}", dir.display());
                compressed.push(read_json(&path).context("compress.json is unreadable")?);
                continue;
            }
            let method: mtgpt_compress::Method = m.parse()?;
            // The uncompressed model scores the same on every method's test split: once.
            let before_scores = compressed.first().map(|r| r.before.scores.clone());
            if before_scores.is_some() {
                eprintln!("      {m}: reusing the uncompressed model's test scores");
            }
            let report = mtgpt_compress::compress(
                &best,
                &config,
                method,
                &dir,
                &mtgpt_compress::CompressOptions {
                    device: crate::model::device(),
                    before_scores,
                    ..Default::default()
                },
            )?;
            if !path.exists() {
                write_json(&path, &report)?;
            }
            p.finish(&key, &fp)?;
            compressed.push(report);
        }
    }

    // 7. Report.
    p.stage("report");
    let curves = read_curves(&out.join("metrics.jsonl"))?;
    let images = write_curves(&out, &curves)?;
    let md = report(
        &config,
        &out,
        &best,
        &summary,
        &joint_scores,
        &samples,
        &baselines,
        &compressed,
        &images,
    );
    let report_path = out.join("report.md");
    std::fs::write(&report_path, md).with_context(|| report_path.display().to_string())?;
    for s in &joint_scores {
        println!(
            "{:<16} {:<14} {}={:.4}",
            s.task,
            s.kind.as_str(),
            s.primary,
            s.metrics.get(&s.primary).copied().unwrap_or(f64::NAN)
        );
    }
    println!(
        "report={} ({:.0} s)",
        report_path.display(),
        p.started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn cell(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.4}"))
}

#[allow(clippy::too_many_arguments)]
fn report(
    config: &Config,
    out: &Path,
    best: &Path,
    summary: &serde_json::Value,
    joint: &[TaskScores],
    samples: &[Sample],
    baselines: &BTreeMap<String, f64>,
    compressed: &[mtgpt_compress::CompressReport],
    images: &[String],
) -> String {
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
    let _ = writeln!(md, "## Test scores\n");
    let mut head = "| task | kind | metric | ".to_string();
    let mut rule = "| --- | --- | --- | ".to_string();
    if !baselines.is_empty() {
        head += "single-task | ";
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
        if !baselines.is_empty() {
            let _ = write!(row, "{} | ", cell(baselines.get(&s.task).copied()));
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
        let others: Vec<String> = s
            .metrics
            .iter()
            .filter(|(k, _)| **k != s.primary)
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        let _ = writeln!(row, " {} |", others.join(", "));
        md.push_str(&row);
    }
    if let Some(agg) = aggregate(joint) {
        let _ = writeln!(
            md,
            "\nAggregate (mean primary score of the non-LM tasks): **{agg:.4}**."
        );
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
