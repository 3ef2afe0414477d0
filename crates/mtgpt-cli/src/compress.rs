//! `mtgpt compress`: one compression method on a model folder, with its report.
use crate::args::ConfigArgs;
use clap::Args;
use mtgpt_compress::{CompressOptions, Method, compress as run_compress};
use std::path::PathBuf;

/// `mtgpt compress`.
#[derive(Args, Debug)]
pub struct CompressArgs {
    /// The multi-task model folder to compress, or a run folder (its best/, else model/).
    #[arg(long)]
    model: PathBuf,
    /// The config: its `[compress]` settings, its tasks (fine-tuning data and scores) and its
    /// `[train]` optimizer settings (`--set compress.sparsity=0.7`).
    #[command(flatten)]
    config: ConfigArgs,
    /// The method.
    #[arg(long, value_parser = ["prune", "prune-structured", "int8", "distill"])]
    method: String,
    /// Output model folder (also gets `compress.json`, the report).
    #[arg(long)]
    out: PathBuf,
    /// Split scored before and after.
    #[arg(long, default_value = "test", value_parser = ["valid", "test"])]
    split: String,
    /// Score at most this many examples per labelled task (default: all).
    #[arg(long)]
    eval_examples: Option<usize>,
    /// Timed rounds of the speed measurement (0 skips it).
    #[arg(long, default_value_t = 5)]
    speed_runs: usize,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Compresses, writes the folder and prints the report.
pub fn compress(a: &CompressArgs) -> anyhow::Result<()> {
    let config = a.config.load()?;
    let model = crate::args::model_dir(&a.model)?;
    let method: Method = a.method.parse()?;
    let opts = CompressOptions {
        device: crate::args::device(),
        split: a.split.clone(),
        eval_examples: a.eval_examples,
        speed_runs: a.speed_runs,
        prepared: crate::args::run_prep(&model),
        ..CompressOptions::default()
    };
    let report = run_compress(&model, &config, method, &a.out, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    tracing::info!(
        "{} → {} (report: {})",
        model.display(),
        a.out.display(),
        a.out.join("compress.json").display()
    );
    Ok(())
}
