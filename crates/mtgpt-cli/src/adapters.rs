//! `mtgpt adapters`: list, import (a PEFT LoRA folder), merge (linear, TIES, DARE) and fold
//! (into the trunk) the LoRA adapters of a multi-task model folder.
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use mtgpt_core::{AdapterConfig, AdapterMode};
use mtgpt_model::merge::{MergeMethod, MergeOptions, merge_adapters};
use mtgpt_model::peft;
use mtgpt_tasks::{MultiTaskModel, TaskHead};
use std::path::{Path, PathBuf};

/// `mtgpt adapters …`.
#[derive(Subcommand, Debug)]
pub enum AdaptersCommand {
    /// Print a model folder's adapters: layout, size, and each task's update norm.
    List(ListArgs),
    /// Set one task's adapter to a PEFT LoRA folder (e.g. one Python `peft` trained).
    Import(ImportArgs),
    /// Combine task adapters (linear, TIES or DARE) into one task's adapter.
    Merge(MergeArgs),
    /// Fold one task's adapter into the trunk: a plain model folder, as fast as the base.
    Fold(FoldArgs),
}

/// `mtgpt adapters list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Model folder, or a run folder (its best/, else model/).
    #[arg(long)]
    model: PathBuf,
}

/// `mtgpt adapters import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Model folder, or a run folder.
    #[arg(long)]
    model: PathBuf,
    /// The task whose adapter it becomes.
    #[arg(long)]
    task: String,
    /// A PEFT LoRA folder (`adapter_config.json` + `adapter_model.safetensors`).
    #[arg(long)]
    peft: PathBuf,
    /// Output model folder.
    #[arg(long)]
    out: PathBuf,
}

/// `mtgpt adapters merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Model folder, or a run folder.
    #[arg(long)]
    model: PathBuf,
    /// The tasks whose adapters are combined (comma-separated, at least two).
    #[arg(long, value_delimiter = ',', required = true)]
    from: Vec<String>,
    /// One weight per adapter (default: equal weights summing to 1).
    #[arg(long, value_delimiter = ',')]
    weights: Vec<f64>,
    /// linear, ties or dare.
    #[arg(long, default_value = "linear")]
    method: MergeMethod,
    /// TIES and DARE: the share of each update's entries kept.
    #[arg(long, default_value_t = 0.5)]
    density: f64,
    /// DARE's random drops.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The task whose adapter the merge replaces (its head reads the merged trunk).
    #[arg(long)]
    into: String,
    /// Output model folder.
    #[arg(long)]
    out: PathBuf,
}

/// `mtgpt adapters fold`.
#[derive(Args, Debug)]
pub struct FoldArgs {
    /// Model folder, or a run folder.
    #[arg(long)]
    model: PathBuf,
    /// The task whose adapter goes into the trunk (every head then reads that trunk).
    #[arg(long)]
    task: String,
    /// Output model folder (no adapters).
    #[arg(long)]
    out: PathBuf,
}

/// Runs an `adapters` subcommand.
pub fn adapters(cmd: &AdaptersCommand) -> anyhow::Result<()> {
    match cmd {
        AdaptersCommand::List(a) => list(a),
        AdaptersCommand::Import(a) => import(a),
        AdaptersCommand::Merge(a) => merge(a),
        AdaptersCommand::Fold(a) => fold(a),
    }
}

fn open(path: &Path) -> anyhow::Result<(PathBuf, MultiTaskModel, Vec<TaskHead>)> {
    let dir = crate::args::model_dir(path)?;
    let (m, tasks) = MultiTaskModel::load(&dir, crate::args::device())
        .with_context(|| format!("loading {}", dir.display()))?;
    Ok((dir, m, tasks))
}

/// Writes `m` as a model folder at `out` with the source folder's run config and tokenizer.
fn write(m: &MultiTaskModel, tasks: &[TaskHead], from: &Path, out: &Path) -> anyhow::Result<()> {
    if out == from {
        bail!(
            "--out {} is the input folder; write to a new one",
            out.display()
        );
    }
    let run_config = std::fs::read_to_string(from.join("mtgpt.toml")).ok();
    m.save(out, tasks, run_config.as_deref())?;
    mtgpt_model::io::copy_tokenizer(from, out)?;
    Ok(())
}

fn list(a: &ListArgs) -> anyhow::Result<()> {
    let (dir, m, _) = open(&a.model)?;
    let Some(layout) = m.gpt.adapters.clone() else {
        println!("{}: no adapters", dir.display());
        return Ok(());
    };
    let n: i64 =
        m.vs.variables()
            .iter()
            .filter(|(k, _)| k.starts_with("adapters."))
            .map(|(_, v)| v.numel() as i64)
            .sum();
    let (_, all) = m.parameter_counts();
    println!(
        "{}: {:?} adapters, rank {}, alpha {}, on {}; {n} adapter parameters ({:.2} % of {all})",
        dir.display(),
        layout.mode,
        layout.rank,
        layout.alpha,
        layout.targets.join(", "),
        100.0 * n as f64 / all.max(1) as f64
    );
    let names: Vec<String> = if layout.mode.per_task() {
        layout.tasks.clone()
    } else {
        vec![mtgpt_model::lora::SHARED.to_string()]
    };
    for t in names {
        let ad = peft::task_adapter(&m.gpt, &t)?;
        let norm: f64 = ad
            .layers
            .keys()
            .filter_map(|l| ad.delta_weight(l))
            .map(|d| d.square().sum(tch::Kind::Double).double_value(&[]))
            .sum::<f64>()
            .sqrt();
        println!("  {t}: rank {}, ‖update‖ = {norm:.4}", ad.rank);
    }
    Ok(())
}

fn import(a: &ImportArgs) -> anyhow::Result<()> {
    let (dir, mut m, tasks) = open(&a.model)?;
    let ad = peft::read_peft(&a.peft)?;
    if !tasks.iter().any(|t| t.name == a.task) {
        bail!(
            "--task {}: the model has no such task ({})",
            a.task,
            tasks
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if m.gpt.adapters.is_none() {
        // A model without adapters gets per-task ones shaped like the imported adapter; the
        // other tasks' start at zero (the base trunk).
        let config = AdapterConfig {
            mode: AdapterMode::PerTask,
            rank: ad.rank as usize,
            alpha: ad.alpha,
            dropout: 0.0,
            targets: ad.targets(),
        };
        m.add_adapters(&config)?;
    }
    peft::set_task_adapter(&m.gpt, &a.task, &ad, &a.peft)?;
    write(&m, &tasks, &dir, &a.out)?;
    tracing::info!(
        "{} → task {} of {} (rank {}, {} layers)",
        a.peft.display(),
        a.task,
        a.out.display(),
        ad.rank,
        ad.layers.len()
    );
    Ok(())
}

fn merge(a: &MergeArgs) -> anyhow::Result<()> {
    let (dir, m, tasks) = open(&a.model)?;
    let weights = if a.weights.is_empty() {
        vec![1.0 / a.from.len() as f64; a.from.len()]
    } else {
        a.weights.clone()
    };
    let from: Vec<&str> = a.from.iter().map(String::as_str).collect();
    let opts = MergeOptions {
        method: a.method,
        weights,
        density: a.density,
        seed: a.seed,
    };
    let (ad, err) = merge_adapters(&m.gpt, &from, &opts)?;
    peft::set_task_adapter(&m.gpt, &a.into, &ad, &dir)?;
    write(&m, &tasks, &dir, &a.out)?;
    println!(
        "merged {} ({:?}, weights {:?}) into task {} of {}; rank-{} truncation keeps all but {:.2} % of the merged update (worst layer)",
        a.from.join(" + "),
        a.method,
        opts.weights,
        a.into,
        a.out.display(),
        ad.rank,
        100.0 * err
    );
    Ok(())
}

fn fold(a: &FoldArgs) -> anyhow::Result<()> {
    let (dir, mut m, tasks) = open(&a.model)?;
    m.gpt.fold_adapters(&a.task)?;
    write(&m, &tasks, &dir, &a.out)?;
    tracing::info!(
        "task {}'s adapter folded into the trunk of {} (no adapters left)",
        a.task,
        a.out.display()
    );
    Ok(())
}
