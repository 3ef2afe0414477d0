//! `mtgpt train`, `mtgpt lr-find`, `mtgpt transfer`.
use clap::Args;
use mtgpt_core::Config;
use mtgpt_train::lr_find::{LrFindOptions, lr_find as run_lr_find};
use mtgpt_train::transfer::{markdown, transfer as run_transfer};
use mtgpt_train::trainer::{TrainOptions, train as run_training};
use std::path::PathBuf;

/// `mtgpt train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The config.
    #[arg(long)]
    config: PathBuf,
    /// Output folder (default: runs/<name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the latest checkpoint in the output folder.
    #[arg(long)]
    resume: bool,
    /// Override a config key (`--set train.steps=50`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Steps between log lines.
    #[arg(long, default_value_t = 10)]
    log_every: usize,
    /// No progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long)]
    no_progress: bool,
    /// Fault injection for testing the divergence guard: make the loss of this (0-based)
    /// step NaN. Repeatable.
    #[arg(long, hide = true, value_name = "STEP")]
    inject_nan_at: Vec<usize>,
}

/// `mtgpt lr-find`.
#[derive(Args, Debug)]
pub struct LrFindArgs {
    /// The config.
    #[arg(long)]
    config: PathBuf,
    /// Output folder for lr_find.csv/png/json (default: runs/<name>-lr-find).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a config key.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// First learning rate.
    #[arg(long, default_value_t = 1e-7)]
    min_lr: f64,
    /// Last learning rate.
    #[arg(long, default_value_t = 1.0)]
    max_lr: f64,
    /// Steps of the ramp.
    #[arg(long, default_value_t = 100)]
    steps: usize,
}

/// `mtgpt transfer`.
#[derive(Args, Debug)]
pub struct TransferArgs {
    /// The config.
    #[arg(long)]
    config: PathBuf,
    /// Output folder (default: runs/<name>-transfer).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a config key.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

fn options(out: &std::path::Path) -> TrainOptions {
    let mut opts = TrainOptions::new(out);
    opts.lexicons = crate::text::default_lexicons();
    opts.device = crate::model::device();
    opts
}

/// Runs the learning-rate range test and prints the suggestion.
pub fn lr_find(a: &LrFindArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config, &a.sets)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-lr-find", config.name)));
    let r = run_lr_find(
        &config,
        &options(&out),
        &LrFindOptions {
            min_lr: a.min_lr,
            max_lr: a.max_lr,
            steps: a.steps,
            ..LrFindOptions::default()
        },
    )?;
    println!(
        "suggested_lr={:.3e} min_loss_lr={:.3e} points={} plot={} csv={}",
        r.suggested,
        r.min_loss_lr,
        r.points.len(),
        r.plot.display(),
        r.csv.display()
    );
    Ok(())
}

/// Trains jointly and per task, prints the comparison.
pub fn transfer(a: &TransferArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config, &a.sets)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-transfer", config.name)));
    let r = run_transfer(&config, &options(&out))?;
    print!("{}", markdown(&config, &r));
    println!("report={}", out.join("transfer.md").display());
    Ok(())
}

/// Trains and prints the final validation scores.
pub fn train(a: &TrainArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config, &a.sets)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&config.name));
    let mut opts = options(&out);
    opts.resume = a.resume;
    opts.log_every = a.log_every;
    opts.progress = !a.no_progress;
    opts.inject_nan_at = a.inject_nan_at.clone();
    let s = run_training(&config, &opts)?;
    for t in &s.final_scores {
        let m: Vec<String> = t
            .metrics
            .iter()
            .map(|(k, v)| format!("{k}={v:.4}"))
            .collect();
        println!("{:<16} {:<14} {}", t.task, t.kind.as_str(), m.join(" "));
    }
    println!(
        "steps={} best_aggregate={} seconds={:.1}{} model={}",
        s.steps,
        s.best_score.map_or("-".into(), |b| format!("{b:.4}")),
        s.seconds,
        if s.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        out.join("model").display()
    );
    if s.guard_events > 0 {
        println!(
            "divergence_guard_events={} lr_scale={}",
            s.guard_events, s.lr_scale
        );
    }
    for a in &s.augmented {
        println!(
            "generated_examples task={} generated={} kept={}",
            a.task, a.generated, a.kept
        );
    }
    println!("report={}", out.join("report.md").display());
    Ok(())
}
