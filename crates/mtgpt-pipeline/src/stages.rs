//! Stage bookkeeping: fingerprints of finished stages in `OUT/stages.json` (a stage whose
//! inputs and outputs are unchanged is reused), progress lines, and the seconds each stage took.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A digest of a stage's inputs (this crate's version included).
pub fn digest(parts: &[&str]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    for p in parts {
        p.hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// Reads a JSON file written by [`write_json`]; `None` when missing or unreadable.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(mtgpt_model::io::write_text_atomically(path, &text)?)
}

/// What one stage did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    /// The stage.
    pub stage: String,
    /// Wall-clock seconds in this run.
    pub seconds: f64,
    /// Whether its earlier output was reused.
    pub reused: bool,
    /// What it read or did (e.g. whether it preprocessed).
    pub note: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Done {
    #[serde(default)]
    done: BTreeMap<String, String>,
}

/// The stages of one run.
pub struct Stages {
    out: PathBuf,
    done: Done,
    fresh: bool,
    count: usize,
    at: usize,
    started: Instant,
    current: Option<(String, Instant)>,
    /// Finished stages, in order.
    pub timings: Vec<StageTiming>,
}

impl Stages {
    /// Bookkeeping in `out` for `count` stages; `fresh` reuses nothing.
    pub fn new(out: &Path, count: usize, fresh: bool) -> Self {
        Stages {
            out: out.to_path_buf(),
            done: read_json(&out.join("stages.json")).unwrap_or_default(),
            fresh,
            count,
            at: 0,
            started: Instant::now(),
            current: None,
            timings: Vec::new(),
        }
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Starts stage `what` (`[k/n] what` on stderr).
    pub fn begin(&mut self, what: &str) {
        self.at += 1;
        eprintln!(
            "[{}/{}] {what} ({:.0} s so far)",
            self.at,
            self.count,
            self.elapsed()
        );
        self.current = Some((what.to_string(), Instant::now()));
    }

    /// Ends the current stage with what it did.
    pub fn end(&mut self, reused: bool, note: impl Into<String>) {
        if let Some((stage, t0)) = self.current.take() {
            self.timings.push(StageTiming {
                stage,
                seconds: t0.elapsed().as_secs_f64(),
                reused,
                note: note.into(),
            });
        }
    }

    /// Whether `stage` finished earlier with fingerprint `fp` and its `outputs` exist.
    pub fn reusable(&self, stage: &str, fp: &str, outputs: &[&Path]) -> bool {
        !self.fresh
            && self.done.done.get(stage).is_some_and(|f| f == fp)
            && outputs.iter().all(|p| p.exists())
    }

    /// The fingerprint `stage` was last recorded with.
    pub fn recorded(&self, stage: &str) -> Option<&str> {
        self.done.done.get(stage).map(String::as_str)
    }

    /// Records that `stage` finished with fingerprint `fp`.
    pub fn record(&mut self, stage: &str, fp: &str) -> Result<()> {
        self.done.done.insert(stage.into(), fp.into());
        write_json(&self.out.join("stages.json"), &self.done)
    }
}
