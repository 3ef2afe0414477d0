//! Data-parallel training on real MPI processes (`--features mpi`; `mpirun` on the PATH, which
//! scripts/setup-mpi.sh installs; scripts/test-mpi.sh runs this).
//!
//! Two ranks with batch B must take the same steps as one process with batch 2B: every rank
//! draws the global batch from identically seeded streams and keeps its half, and gradients
//! are averaged before clipping. Only floating-point rounding differs (a mean over 2B
//! sequences against the mean of two means over B, SDPA over differently padded batches), so
//! losses must agree to [`LOSS_RTOL`] and every weight to [`WEIGHT_ATOL`] after the run. A
//! negative control (one process with batch B) shows these tolerances are far tighter than
//! the difference a wrong sharding makes.
#![cfg(feature = "mpi")]

use anyhow::{Context as _, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Relative tolerance on every logged step loss.
const LOSS_RTOL: f64 = 1e-4;
/// Absolute tolerance on every weight of the final model (weights are O(0.1–1)).
const WEIGHT_ATOL: f64 = 1e-4;
/// Steps of the runs (4 LM-only, then joint), checkpoints every 6.
const PRETRAIN: usize = 4;
const STEPS: usize = 8;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A small two-task config (LM windows and a classifier: losses that are means over equally
/// many positions per sequence, so the shard means average to the global mean exactly).
fn config(dir: &Path) -> Result<PathBuf> {
    let data = root().join("data");
    let text = format!(
        r#"name = "ddp-eq"
seed = 11
[model]
preset = "tiny"
precision = "fp32"
n_layer = 2
n_head = 2
d_model = 64
block_size = 64
dropout = 0.0
[tokenizer]
vocab_size = 600
[train]
steps = {STEPS}
pretrain_steps = {PRETRAIN}
batch_size = 8
lr = 3e-3
warmup_steps = 2
eval_every = 6
checkpoint_every = 6
keep_checkpoints = 3
sampling = {{ strategy = "temperature", temperature = 2.0, cap = 5000 }}
weighting = {{ strategy = "uncertainty" }}
[[task]]
name = "lm_en"
kind = "lm"
train = "{lm}/valid.txt"
valid = "{lm}/test.txt"
[[task]]
name = "spam_en"
kind = "classify"
train = "{spam}/valid.jsonl"
valid = "{spam}/test.jsonl"
labels = ["ham", "spam"]
max_len = 48
"#,
        lm = data.join("lm_en").display(),
        spam = data.join("spam_en").display(),
    );
    let path = dir.join("ddp.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn train_args(cfg: &Path, out: &Path, batch: usize, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "train",
        "--config",
        &cfg.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--no-progress",
        "--log-every",
        "1",
        "--set",
        &format!("train.batch_size={batch}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn check(out: Output, what: &str) -> Result<Output> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// One process, no MPI.
fn alone(args: &[String]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_mtgpt"))
        .args(args)
        .env("MTGPT_THREADS", "1")
        .output()?)
}

/// `mpirun --oversubscribe -np 2 mtgpt ... --distributed mpi` (root allowed: CI runs as root).
fn two_ranks(args: &[String]) -> Result<Output> {
    Command::new("mpirun")
        .args(["--oversubscribe", "--bind-to", "none", "-np", "2"])
        .args(["-x", "MTGPT_THREADS=1"])
        .arg(env!("CARGO_BIN_EXE_mtgpt"))
        .args(args)
        .args(["--distributed", "mpi"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .context("starting mpirun (scripts/setup-mpi.sh installs OpenMPI)")
}

/// `step → loss` of the training lines of `metrics.jsonl` (the last line of a step wins).
fn losses(out: &Path) -> Result<Vec<(u64, f64)>> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    let mut map = std::collections::BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if let (Some(step), Some(loss)) = (v["step"].as_u64(), v["loss"].as_f64()) {
            map.insert(step, loss);
        }
    }
    Ok(map.into_iter().collect())
}

fn line_count(out: &Path) -> Result<usize> {
    Ok(std::fs::read_to_string(out.join("metrics.jsonl"))?
        .lines()
        .count())
}

/// Largest absolute difference between the same-named tensors of two model folders.
fn weight_gap(a: &Path, b: &Path) -> Result<f64> {
    let mut gap = 0.0f64;
    for file in ["model.safetensors", "heads.safetensors"] {
        let x = mtgpt_model::io::read_safetensors(&a.join(file))?;
        let y: std::collections::HashMap<String, tch::Tensor> =
            mtgpt_model::io::read_safetensors(&b.join(file))?
                .into_iter()
                .collect();
        ensure!(x.len() == y.len(), "{file}: different tensor sets");
        for (name, t) in &x {
            let u = y.get(name).with_context(|| format!("{file}: no {name}"))?;
            let d = (t.to_kind(tch::Kind::Double) - u.to_kind(tch::Kind::Double))
                .abs()
                .max()
                .double_value(&[]);
            gap = gap.max(d);
        }
    }
    Ok(gap)
}

fn max_loss_rel_gap(a: &[(u64, f64)], b: &[(u64, f64)]) -> Result<f64> {
    ensure!(
        a.iter().map(|x| x.0).eq(b.iter().map(|x| x.0)),
        "different logged steps: {a:?} vs {b:?}"
    );
    Ok(a.iter()
        .zip(b)
        .map(|(x, y)| (x.1 - y.1).abs() / x.1.abs().max(1e-12))
        .fold(0.0, f64::max))
}

#[test]
fn two_ranks_with_batch_b_train_like_one_process_with_2b_and_resume_only_with_two() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path())?;
    let (reference, control, ddp) = (
        dir.path().join("one-2b"),
        dir.path().join("one-b"),
        dir.path().join("two-b"),
    );
    let total = (PRETRAIN + STEPS) as u64;

    check(
        alone(&train_args(&cfg, &reference, 8, &[]))?,
        "1 process, batch 8",
    )?;
    check(
        alone(&train_args(&cfg, &control, 4, &[]))?,
        "1 process, batch 4",
    )?;
    check(
        two_ranks(&train_args(&cfg, &ddp, 4, &[]))?,
        "2 ranks, batch 4",
    )?;

    let (l_ref, l_ddp) = (losses(&reference)?, losses(&ddp)?);
    ensure!(l_ref.len() as u64 == total, "logged steps: {l_ref:?}");
    let loss_gap = max_loss_rel_gap(&l_ref, &l_ddp)?;
    let weight = weight_gap(&reference.join("model"), &ddp.join("model"))?;
    let control_loss = max_loss_rel_gap(&l_ref, &losses(&control)?)?;
    let control_weight = weight_gap(&reference.join("model"), &control.join("model"))?;
    eprintln!(
        "2 ranks × 4 vs 1 × 8: loss rel gap {loss_gap:.2e}, weight gap {weight:.2e}; \
         1 × 4 vs 1 × 8: {control_loss:.2e}, {control_weight:.2e}"
    );
    ensure!(
        loss_gap <= LOSS_RTOL,
        "loss gap {loss_gap:.3e} > {LOSS_RTOL:e}"
    );
    ensure!(
        weight <= WEIGHT_ATOL,
        "weight gap {weight:.3e} > {WEIGHT_ATOL:e}"
    );
    ensure!(
        control_loss > 100.0 * LOSS_RTOL && control_weight > 100.0 * WEIGHT_ATOL,
        "the control should differ clearly: {control_loss:.2e}, {control_weight:.2e}"
    );
    // Rank 1 wrote nothing into the log: one line per step and one per evaluation.
    ensure!(
        line_count(&ddp)? == line_count(&reference)?,
        "metrics.jsonl of the 2-rank run has {} lines, the reference {}",
        line_count(&ddp)?,
        line_count(&reference)?
    );

    // Resume: drop the last checkpoint, continue from step 6 on two ranks; the result is the
    // uninterrupted run's.
    let ckpts = ddp.join("checkpoints");
    let last = ckpts.join(format!("step-{total:08}"));
    ensure!(last.is_dir(), "no final checkpoint in {}", ckpts.display());
    std::fs::remove_dir_all(&last)?;
    let finished = dir.path().join("two-b-model");
    std::fs::rename(ddp.join("model"), &finished)?;
    check(
        two_ranks(&train_args(&cfg, &ddp, 4, &["--resume"]))?,
        "2 ranks, resumed",
    )?;
    let resumed = weight_gap(&finished, &ddp.join("model"))?;
    ensure!(
        resumed <= WEIGHT_ATOL,
        "resumed 2-rank run ends {resumed:.3e} away from the uninterrupted one"
    );
    let l_resumed = losses(&ddp)?;
    ensure!(max_loss_rel_gap(&l_ddp, &l_resumed)? <= LOSS_RTOL);

    // A single process may not continue a 2-rank checkpoint (the data order depends on N).
    let out = alone(&train_args(&cfg, &ddp, 8, &["--resume"]))?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "a 1-process resume of a 2-rank run must fail"
    );
    ensure!(
        err.contains("written by a job of 2 rank(s), this one has 1"),
        "unexpected message: {err}"
    );
    Ok(())
}
