//! The transfer report (`mtgpt transfer`): does joint training help? The config is trained
//! jointly, then once per task with only that task sampled in the joint phase (same LM
//! pretraining phase, same step and time budget), and every task's final validation score is
//! put side by side. When a task asks for `generate_augment`, the joint run is repeated
//! without it, so the report also shows what the generated examples did.
use crate::error::{Error, Result};
use crate::trainer::{TrainOptions, TrainSummary, train};
use mtgpt_core::{Config, TaskKind};
use serde::Serialize;
use std::fmt::Write as _;

/// One task's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct TransferRow {
    /// The task.
    pub task: String,
    /// Its kind.
    pub kind: TaskKind,
    /// The primary metric compared.
    pub metric: String,
    /// Whether a higher value is better (perplexity: lower).
    pub higher_is_better: bool,
    /// Score after joint training.
    pub joint: Option<f64>,
    /// Score after training the task alone.
    pub single: Option<f64>,
    /// Score after joint training without generated examples (only when the config uses them).
    pub joint_without_generated: Option<f64>,
}

impl TransferRow {
    /// Joint minus single, signed so that positive means joint training helped.
    pub fn gain(&self) -> Option<f64> {
        let d = self.joint? - self.single?;
        Some(if self.higher_is_better { d } else { -d })
    }
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    /// One row per task, in config order.
    pub rows: Vec<TransferRow>,
    /// Seconds of the joint run.
    pub joint_seconds: f64,
    /// Seconds of all single-task runs together.
    pub single_seconds: f64,
}

fn primary(summary: &TrainSummary, task: &str) -> Option<(String, f64)> {
    let s = summary.final_scores.iter().find(|s| s.task == task)?;
    Some((s.primary.clone(), *s.metrics.get(&s.primary)?))
}

/// Runs the comparison into `opts.out` (`joint/`, `single-<task>/`, `joint-no-generated/`,
/// one shared `prep/`) and writes `transfer.md` and `transfer.json` there.
pub fn transfer(config: &Config, opts: &TrainOptions) -> Result<TransferReport> {
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.clone(),
        source: e,
    })?;
    let run = |sub: &str, joint_tasks: Option<Vec<String>>, no_gen: bool, report: bool| {
        let mut o = opts.clone();
        o.out = out.join(sub);
        o.prep_dir = Some(opts.prep_dir.clone().unwrap_or_else(|| out.join("prep")));
        o.resume = false;
        o.joint_tasks = joint_tasks;
        o.no_generate_augment = no_gen;
        o.report = report;
        tracing::info!("transfer: training `{sub}`");
        train(config, &o)
    };
    let joint = run("joint", None, false, true)?;
    let no_gen = if config.tasks.iter().any(|t| t.generate_augment.is_some()) {
        Some(run("joint-no-generated", None, true, false)?)
    } else {
        None
    };
    let mut rows = Vec::new();
    let mut single_seconds = 0.0;
    for t in &config.tasks {
        let single = run(
            &format!("single-{}", t.name),
            Some(vec![t.name.clone()]),
            false,
            false,
        )?;
        single_seconds += single.seconds;
        let j = primary(&joint, &t.name);
        let s = primary(&single, &t.name);
        let metric = j
            .as_ref()
            .or(s.as_ref())
            .map_or("-".to_string(), |(m, _)| m.clone());
        rows.push(TransferRow {
            task: t.name.clone(),
            kind: t.kind,
            higher_is_better: t.kind != TaskKind::Lm,
            metric,
            joint: j.map(|x| x.1),
            single: s.map(|x| x.1),
            joint_without_generated: no_gen
                .as_ref()
                .and_then(|n| primary(n, &t.name))
                .map(|x| x.1),
        });
    }
    let report = TransferReport {
        rows,
        joint_seconds: joint.seconds,
        single_seconds,
    };
    let md_path = out.join("transfer.md");
    std::fs::write(&md_path, markdown(config, &report)).map_err(|e| Error::Io {
        path: md_path.clone(),
        source: e,
    })?;
    let json_path = out.join("transfer.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report).map_err(|e| Error::Invalid(e.to_string()))?,
    )
    .map_err(|e| Error::Io {
        path: json_path.clone(),
        source: e,
    })?;
    Ok(report)
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.4}"))
}

/// The report as a Markdown table.
pub fn markdown(config: &Config, r: &TransferReport) -> String {
    let with_gen = r.rows.iter().any(|x| x.joint_without_generated.is_some());
    let mut md = format!(
        "# Transfer report: `{}`\n\nEach task trained alone (`single`) against all tasks trained jointly (`joint`), same budget: {} LM pretraining steps, then {} steps{}. Every run's trunk starts {}. Scores on the validation split at the end of training. `gain` is joint − single, signed so that positive means joint training helped.\n\n",
        config.name,
        config.train.pretrain_steps,
        config.train.steps,
        if config.train.max_seconds > 0.0 {
            format!(" or {} s", config.train.max_seconds)
        } else {
            String::new()
        },
        config
            .init
            .as_ref()
            .map_or("random (no `model.init`)".to_string(), |d| format!(
                "from the pretrained `{}` (`model.init`)",
                d.display()
            ))
    );
    md.push_str("| task | kind | metric | single | joint | gain |");
    if with_gen {
        md.push_str(" joint without generated examples |");
    }
    md.push_str("\n| --- | --- | --- | --- | --- | --- |");
    if with_gen {
        md.push_str(" --- |");
    }
    md.push('\n');
    for x in &r.rows {
        let _ = write!(
            md,
            "| {} | {} | {}{} | {} | {} | {} |",
            x.task,
            x.kind,
            x.metric,
            if x.higher_is_better {
                ""
            } else {
                " (lower is better)"
            },
            fmt(x.single),
            fmt(x.joint),
            x.gain().map_or("-".into(), |g| format!("{g:+.4}"))
        );
        if with_gen {
            let _ = write!(md, " {} |", fmt(x.joint_without_generated));
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "\nJoint run {:.1} s; single-task runs {:.1} s together.",
        r.joint_seconds, r.single_seconds
    );
    md
}
