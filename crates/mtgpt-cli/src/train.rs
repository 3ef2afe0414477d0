//! `mtgpt train`.
use clap::Args;
use mtgpt_core::Config;
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
}

/// Trains and prints the final validation scores.
pub fn train(a: &TrainArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config, &a.sets)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&config.name));
    let mut opts = TrainOptions::new(&out);
    opts.resume = a.resume;
    opts.lexicons = crate::text::default_lexicons();
    opts.log_every = a.log_every;
    opts.device = crate::model::device();
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
    Ok(())
}
