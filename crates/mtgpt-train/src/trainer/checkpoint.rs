//! Checkpoints: `checkpoints/step-N/` (weights, optimizer moments, trainer state, the resolved
//! config) written atomically, found again for `--resume`, and model folders (`model/`,
//! `best/`).
use crate::error::{Error, Result};
use crate::guard::GuardState;
use crate::optim::AdamW;
use mtgpt_model::io::{load_weights, read_safetensors, save_weights, write_safetensors};
use mtgpt_tasks::{MultiTaskModel, StreamState, TaskHead};
use mtgpt_text::TextTokenizer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything besides weights and moments that a checkpoint must hold for exact resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TrainerState {
    pub(crate) step: usize,
    pub(crate) pretrain_sampler: Option<serde_json::Value>,
    pub(crate) sampler: serde_json::Value,
    pub(crate) weighting: serde_json::Value,
    pub(crate) streams: Vec<StreamState>,
    pub(crate) best_score: Option<f64>,
    pub(crate) evals_without_improvement: usize,
    #[serde(default)]
    pub(crate) guard: Option<GuardState>,
    /// Tasks whose generated examples (in `out/augment/<task>.jsonl`) joined their stream.
    #[serde(default)]
    pub(crate) augmented: Vec<String>,
    /// Ranks of the data-parallel job that wrote it (absent: 1); a resume needs the same.
    #[serde(default)]
    pub(crate) world_size: Option<usize>,
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// The latest checkpoint folder in `dir`, if any.
pub fn latest_checkpoint(dir: &Path) -> Option<PathBuf> {
    let mut steps: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("step-")?.parse::<usize>().ok()?;
            e.path()
                .join("trainer.json")
                .exists()
                .then_some((n, e.path()))
        })
        .collect();
    steps.sort();
    steps.pop().map(|(_, p)| p)
}

/// Loads the weights, optimizer moments and trainer state of checkpoint `dir` into `model`
/// and `opt`, and returns the state.
pub(crate) fn read_checkpoint(
    dir: &Path,
    model: &MultiTaskModel,
    opt: &mut AdamW,
) -> Result<TrainerState> {
    load_weights(&model.vs, &dir.join("weights.safetensors"), "")?;
    opt.load_state(&read_safetensors(&dir.join("optimizer.safetensors"))?)
        .map_err(|e| {
            Error::Invalid(format!(
                "{}: {e}",
                dir.join("optimizer.safetensors").display()
            ))
        })?;
    let path = dir.join("trainer.json");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// A checkpoint's weight average (`train.ema_decay`), beside the optimizer moments.
pub(crate) const EMA_FILE: &str = "ema.safetensors";

pub(crate) fn save_model(
    model: &MultiTaskModel,
    tok: &TextTokenizer,
    heads: &[TaskHead],
    run_config: &str,
    dir: &Path,
) -> Result<()> {
    model.save(dir, heads, Some(run_config))?;
    tok.save(&dir.join("tokenizer.json"))?;
    Ok(())
}

/// Writes `dir/step-N/` (weights, optimizer moments, trainer state, the resolved config)
/// atomically — built as `step-N.tmp`, every file fsynced, then renamed — and keeps the
/// newest `keep` checkpoints. A failed write (disk full, read-only folder) removes its
/// half-written `.tmp` folder and leaves every earlier checkpoint as it was.
pub(crate) fn write_checkpoint(
    dir: &Path,
    model: &MultiTaskModel,
    opt: &AdamW,
    ema: Option<&super::ema::Ema>,
    state: &TrainerState,
    run_config: &str,
    keep: usize,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = format!("step-{:08}", state.step);
    let tmp = dir.join(format!("{name}.tmp"));
    let written = fill_checkpoint(&tmp, model, opt, ema, state, run_config);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Error::Invalid(format!(
            "writing checkpoint {}: {e}; the earlier checkpoints are untouched",
            dir.join(&name).display()
        )));
    }
    let final_dir = dir.join(&name);
    if final_dir.exists() {
        // A same-step folder left by an earlier, interrupted run: move it aside first so a
        // crash at any moment leaves either it or the new one whole.
        retire(&final_dir);
    }
    std::fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("step-"))
                .is_some_and(|n| n.parse::<usize>().is_ok())
        })
        .collect();
    all.sort();
    let excess = all.len().saturating_sub(keep.max(1));
    for old in &all[..excess] {
        retire(old);
    }
    Ok(())
}

/// Builds a checkpoint's files in `tmp`, each fsynced before the caller's rename makes it
/// visible.
fn fill_checkpoint(
    tmp: &Path,
    model: &MultiTaskModel,
    opt: &AdamW,
    ema: Option<&super::ema::Ema>,
    state: &TrainerState,
    run_config: &str,
) -> Result<()> {
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(io_err(tmp))?;
    }
    std::fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    save_weights(&model.vs, &tmp.join("weights.safetensors"), "")?;
    write_safetensors(&tmp.join("optimizer.safetensors"), &opt.state())?;
    let mut files = vec![
        "weights.safetensors",
        "optimizer.safetensors",
        "trainer.json",
        "config.toml",
    ];
    if let Some(e) = ema {
        write_safetensors(&tmp.join(EMA_FILE), &e.state())?;
        files.push(EMA_FILE);
    }
    let text = serde_json::to_string_pretty(state).map_err(|e| Error::Invalid(e.to_string()))?;
    let path = tmp.join("trainer.json");
    std::fs::write(&path, text).map_err(io_err(&path))?;
    let path = tmp.join("config.toml");
    std::fs::write(&path, run_config).map_err(io_err(&path))?;
    for f in files {
        let p = tmp.join(f);
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&p))?;
    }
    Ok(())
}

/// Cuts a line that a killed run left half written off the end of a log, so appending goes on
/// from a whole line.
pub(crate) fn drop_partial_line(path: &Path) -> Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path)(e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(keep as u64))
        .map_err(io_err(path))
}

/// Removes a checkpoint folder so that no crash leaves it half deleted under its own name:
/// it is first renamed to `NAME.old` (which [`latest_checkpoint`] never picks), then deleted.
fn retire(path: &Path) {
    let mut old = path.as_os_str().to_owned();
    old.push(".old");
    let old = PathBuf::from(old);
    let _ = std::fs::remove_dir_all(&old);
    if std::fs::rename(path, &old).is_ok() {
        let _ = std::fs::remove_dir_all(&old);
    }
}
