//! The whole mtgpt pipeline as one call: data → preprocessing (tokenizer included) → LM
//! pretraining and joint training → test-split scores of every task → optional single-task
//! baselines → compression → `report.md`.
//!
//! Each stage records a fingerprint of its inputs in `OUT/stages.json` and is reused when a
//! second run finds the same fingerprint and its outputs in place; an interrupted training
//! stage resumes from its last checkpoint. Tasks are preprocessed once per run: every later
//! stage reads `OUT/prep`. The report lists the seconds of each stage.
//!
//! ```no_run
//! # fn main() -> mtgpt_pipeline::Result<()> {
//! let config = mtgpt_core::Config::load("configs/smoke.toml", &[])?;
//! let outcome = mtgpt_pipeline::run(&config, &mtgpt_pipeline::RunOptions::new("runs/smoke"))?;
//! println!("{}", outcome.report.display());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod report;
pub mod stages;

pub use error::{Error, Result};
pub use stages::StageTiming;

use mtgpt_baselines::BaselineScores;
use mtgpt_core::{Config, TaskKind};
use mtgpt_tasks::{MultiTaskModel, Sample, ScoreLimits, TaskData, TaskScores};
use mtgpt_text::prep::PrepOptions;
use mtgpt_train::report::{read_curves, write_curves};
use mtgpt_train::trainer::{RunData, TrainOptions, latest_checkpoint, load_data, train_on};
use serde::{Deserialize, Serialize};
use stages::{Stages, digest, read_json, write_json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Device;

/// How [`run`] runs beyond the config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output folder.
    pub out: PathBuf,
    /// Also train every task alone with the same budget (single-task baselines).
    pub baselines: bool,
    /// Fit the classic baselines of every task (TF-IDF + logistic regression, CRF, ...;
    /// seconds) and show them beside the model's scores.
    pub classic: bool,
    /// Run the compression stage for the config's `[compress] methods`.
    pub compress: bool,
    /// With `model.init`: also run the same config from a random trunk (its own tokenizer, the
    /// same budget) into `OUT/scratch/`, for the report's "from scratch" column.
    pub scratch: bool,
    /// Redo every stage even when its inputs are unchanged.
    pub fresh: bool,
    /// Predictions shown per task in the report.
    pub samples: usize,
    /// Synonym lexicons for augmentation in preprocessing.
    pub lexicons: Vec<PathBuf>,
    /// Device.
    pub device: Device,
    /// Draw a training progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Run when task files are missing (the project's data fetcher), if it exists.
    pub fetch_script: Option<PathBuf>,
    /// The config file, named in errors.
    pub config_path: Option<PathBuf>,
}

impl RunOptions {
    /// Defaults for an output folder: compression on, no baselines, 3 samples per task, CPU.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        RunOptions {
            out: out.into(),
            baselines: false,
            classic: true,
            compress: true,
            scratch: false,
            fresh: false,
            samples: 3,
            lexicons: Vec::new(),
            device: Device::Cpu,
            progress: false,
            fetch_script: Some(PathBuf::from("scripts/fetch-data.sh")),
            config_path: None,
        }
    }
}

/// Test-split results of one model (`OUT/test_scores.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scored {
    /// The model folder scored.
    pub model: String,
    /// Per-task scores.
    pub scores: Vec<TaskScores>,
    /// The first predictions of each labelled task.
    pub samples: Vec<Sample>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// `OUT/report.md`.
    pub report: PathBuf,
    /// The model the test scores are of (`best/`, else `model/`).
    pub model: PathBuf,
    /// Test-split scores of the jointly trained model.
    pub scores: Vec<TaskScores>,
    /// Primary test score of every task trained alone (with `baselines`).
    pub baselines: BTreeMap<String, f64>,
    /// Test scores of the classic baselines (with `classic`).
    pub classic: Vec<BaselineScores>,
    /// Primary test score of every task trained jointly from a random trunk (with `scratch`).
    pub scratch: BTreeMap<String, f64>,
    /// Compression reports, one per method.
    pub compressed: Vec<mtgpt_compress::CompressReport>,
    /// What each stage did and how long it took.
    pub stages: Vec<StageTiming>,
    /// Seconds of the whole run.
    pub seconds: f64,
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

/// The pipeline's state between stages.
struct Pipeline<'a> {
    config: &'a Config,
    opts: &'a RunOptions,
    stages: Stages,
    train_opts: TrainOptions,
}

/// Runs the pipeline for `config` into `opts.out` and writes `OUT/report.md`.
pub fn run(config: &Config, opts: &RunOptions) -> Result<RunOutcome> {
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let methods: Vec<String> = if opts.compress {
        config.compress.methods.clone()
    } else {
        Vec::new()
    };
    if opts.scratch && config.init.is_none() {
        return Err(Error::Invalid(
            "--scratch compares a run from `model.init` with one from a random trunk, but the \
             config has no model.init"
                .into(),
        ));
    }
    let count = 5
        + usize::from(opts.classic)
        + usize::from(opts.baselines)
        + usize::from(opts.scratch)
        + usize::from(!methods.is_empty());
    let mut train_opts = TrainOptions::new(out);
    train_opts.lexicons = opts.lexicons.clone();
    train_opts.device = opts.device;
    train_opts.progress = opts.progress;
    train_opts.report = false;
    let mut p = Pipeline {
        config,
        opts,
        stages: Stages::new(out, count, opts.fresh),
        train_opts,
    };
    p.stages.begin("data");
    p.data()?;
    p.stages.end(false, "task files present");
    p.stages.begin("preprocessing and tokenizer");
    let data = p.prep()?;
    p.stages.begin("LM pretraining and joint training");
    let (train_fp, summary) = p.train(&data)?;
    // The model that scored best on the validation splits (the last one if none did).
    let best = if out.join("best/tasks.json").exists() {
        out.join("best")
    } else {
        out.join("model")
    };
    p.stages.begin("test-split evaluation of every task");
    let joint = p.test(&train_fp, &best)?;
    let classic = if opts.classic {
        p.stages
            .begin("classic baselines (TF-IDF + logistic regression, CRF, retrieval, n-gram)");
        p.classic(&train_fp, &data)?
    } else {
        Vec::new()
    };
    let baselines = if opts.baselines {
        p.stages.begin("single-task baselines");
        p.baselines(&train_fp, &data)?
    } else {
        BTreeMap::new()
    };
    drop(data);
    let scratch = if opts.scratch {
        p.stages
            .begin("the same budget from a random trunk (scratch/)");
        p.scratch()?
    } else {
        BTreeMap::new()
    };
    let compressed = if methods.is_empty() {
        Vec::new()
    } else {
        p.stages
            .begin(&format!("compression ({})", methods.join(", ")));
        p.compress(&train_fp, &best, &methods)?
    };
    p.stages.begin("report");
    let curves = read_curves(&out.join("metrics.jsonl"))?;
    let images = write_curves(out, &curves)?;
    p.stages.end(false, "report.md and curves written");
    let report_path = out.join("report.md");
    let md = report::markdown(&report::ReportInputs {
        config,
        out,
        best: &best,
        summary: &summary,
        joint: &joint.scores,
        samples: &joint.samples,
        baselines: &baselines,
        classic: &classic,
        scratch: &scratch,
        compressed: &compressed,
        images: &images,
        stages: &p.stages.timings,
    });
    std::fs::write(&report_path, md).map_err(|e| Error::io(&report_path, e))?;
    write_json(&out.join("stage_timings.json"), &p.stages.timings)?;
    Ok(RunOutcome {
        report: report_path,
        model: best,
        scores: joint.scores,
        baselines,
        classic,
        scratch,
        compressed,
        seconds: p.stages.elapsed(),
        stages: p.stages.timings,
    })
}

impl Pipeline<'_> {
    /// Stage 1, data: present, or fetched by the project's script.
    fn data(&self) -> Result<()> {
        let missing = missing_inputs(self.config);
        if missing.is_empty() {
            return Ok(());
        }
        if let Some(script) = self.opts.fetch_script.as_ref().filter(|s| s.exists()) {
            eprintln!(
                "      {} input file(s) missing ({}); running {}",
                missing.len(),
                missing[0].display(),
                script.display()
            );
            let status = std::process::Command::new("bash")
                .arg(script)
                .status()
                .map_err(|e| Error::io(script, e))?;
            if !status.success() {
                return Err(Error::Invalid(format!(
                    "{} failed ({status})",
                    script.display()
                )));
            }
        }
        let still = missing_inputs(self.config);
        if still.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = still.iter().map(|p| p.display().to_string()).collect();
        let config = self
            .opts
            .config_path
            .as_ref()
            .map_or("the config".into(), |p| p.display().to_string());
        Err(Error::Invalid(format!(
            "{config}: missing task data: {} (paths are relative to the working folder; the shipped data is fetched by scripts/fetch-data.sh)",
            list.join(", ")
        )))
    }

    /// Stage 2, preprocessing and tokenizer (cached by their own fingerprint); the data is kept
    /// for the stages after it.
    fn prep(&mut self) -> Result<RunData> {
        if self.opts.fresh {
            // Without its manifest the preprocessing folder is never taken as a cache.
            let _ = std::fs::remove_file(self.prepared().0.join("prep.json"));
        }
        let data = load_data(self.config, &self.train_opts)?;
        let reused = data.prep_reused;
        let n = data.tasks.config.tasks.len();
        self.stages.end(
            reused,
            if reused {
                format!("inputs unchanged: read prep/ ({n} tasks)")
            } else {
                format!("preprocessed {n} tasks into prep/")
            },
        );
        Ok(data)
    }

    /// Stage 3, training: LM pretraining, then joint training (resumes an interrupted run).
    fn train(&mut self, data: &RunData) -> Result<(String, serde_json::Value)> {
        let out = &self.opts.out;
        let init = self.config.init.as_ref().map_or(String::new(), |d| {
            let w = d.join("model.safetensors");
            let m = std::fs::metadata(&w).ok();
            format!(
                "{} {:?} {:?}",
                w.display(),
                m.as_ref().map(|m| m.len()),
                m.and_then(|m| m.modified().ok())
            )
        });
        let train_fp = digest(&[&self.config.to_toml_string(), data.fingerprint(), &init]);
        let model_dir = out.join("model");
        let summary_path = out.join("train_summary.json");
        let outputs = [&model_dir.join("tasks.json"), &summary_path];
        let outputs: Vec<&Path> = outputs.iter().map(|p| p.as_path()).collect();
        if self.stages.reusable("train", &train_fp, &outputs) {
            eprintln!("      inputs unchanged; reusing {}", model_dir.display());
            self.stages.end(true, "inputs unchanged: model/ reused");
        } else {
            let ckpts = out.join("checkpoints");
            let same_run = self.stages.recorded("train-started") == Some(train_fp.as_str());
            let mut opts = self.train_opts.clone();
            opts.resume = !self.opts.fresh && same_run && latest_checkpoint(&ckpts).is_some();
            if opts.resume {
                eprintln!("      resuming the interrupted training run");
            } else {
                for d in ["checkpoints", "best", "augment"] {
                    let _ = std::fs::remove_dir_all(out.join(d));
                }
            }
            self.stages.record("train-started", &train_fp)?;
            let summary = train_on(self.config, &opts, data)?;
            write_json(&summary_path, &summary)?;
            self.stages.record("train", &train_fp)?;
            self.stages.end(
                false,
                if opts.resume {
                    "resumed from the last checkpoint; read prep/"
                } else {
                    "trained on prep/"
                },
            );
        }
        let summary = read_json(&summary_path)
            .ok_or_else(|| Error::Invalid(format!("{}: unreadable", summary_path.display())))?;
        Ok((train_fp, summary))
    }

    /// This run's preprocessing folder and the options it is made with.
    fn prepared(&self) -> (PathBuf, PrepOptions) {
        (
            mtgpt_train::trainer::data::prep_dir(&self.train_opts),
            mtgpt_train::trainer::data::prep_options(&self.train_opts),
        )
    }

    /// Scores `model` (a model folder this run trained, so `OUT/prep` is read as it is) on the
    /// test splits of the tasks `keep` accepts.
    fn score(&self, model: &Path, keep: impl Fn(&str) -> bool) -> Result<(Scored, bool)> {
        let (m, heads, tok) = MultiTaskModel::load_with_tokenizer(model, self.opts.device)?;
        let (prep, popts) = self.prepared();
        let tokenizer = model.join("tokenizer.json");
        let mut data = TaskData::for_model(self.config, &heads, &tokenizer, Some((&prep, &popts)))?;
        data.retain_tasks(keep);
        let limits = ScoreLimits {
            max_examples: None,
            lm_tokens: 20_000,
            samples: self.opts.samples,
        };
        let s = data.score(&m, &tok, "test", &limits)?;
        for t in &s.missing {
            tracing::warn!("task `{t}` has no test split");
        }
        Ok((
            Scored {
                model: model.display().to_string(),
                scores: s.scores,
                samples: s.samples,
            },
            data.reused(),
        ))
    }

    /// Stage 4, test-split evaluation.
    fn test(&mut self, train_fp: &str, best: &Path) -> Result<Scored> {
        let path = self.opts.out.join("test_scores.json");
        let fp = digest(&[train_fp, "test", &self.opts.samples.to_string()]);
        if self.stages.reusable("test", &fp, &[&path])
            && let Some(s) = read_json::<Scored>(&path)
        {
            eprintln!("      reusing {}", path.display());
            self.stages
                .end(true, "inputs unchanged: test_scores.json reused");
            return Ok(s);
        }
        let (s, reused) = self.score(best, |_| true)?;
        write_json(&path, &s)?;
        self.stages.record("test", &fp)?;
        self.stages.end(false, prep_note(reused));
        Ok(s)
    }

    /// The classic baselines of every task, fitted on the prepared training splits and
    /// scored on the test splits (`OUT/classic_baselines.json`).
    fn classic(&mut self, train_fp: &str, data: &RunData) -> Result<Vec<BaselineScores>> {
        let path = self.opts.out.join("classic_baselines.json");
        let fp = digest(&[train_fp, "classic"]);
        if self.stages.reusable("classic", &fp, &[&path])
            && let Some(b) = read_json(&path)
        {
            eprintln!("      reusing {}", path.display());
            self.stages
                .end(true, "inputs unchanged: classic_baselines.json reused");
            return Ok(b);
        }
        let found = mtgpt_baselines::run_all(&data.tasks, "test", 20_000)?;
        let seconds: f64 = found.iter().map(|b| b.seconds).sum();
        write_json(&path, &found)?;
        self.stages.record("classic", &fp)?;
        self.stages.end(
            false,
            format!(
                "{} baselines fitted and scored in {seconds:.1} s",
                found.len()
            ),
        );
        Ok(found)
    }

    /// Stage 5, single-task baselines: every task trained alone on the same prepared data.
    fn baselines(&mut self, train_fp: &str, data: &RunData) -> Result<BTreeMap<String, f64>> {
        let out = &self.opts.out;
        let path = out.join("baselines.json");
        let fp = digest(&[train_fp, "baselines"]);
        if self.stages.reusable("baselines", &fp, &[&path])
            && let Some(b) = read_json(&path)
        {
            eprintln!("      reusing {}", path.display());
            self.stages
                .end(true, "inputs unchanged: baselines.json reused");
            return Ok(b);
        }
        let mut baselines = BTreeMap::new();
        let mut all_reused = true;
        for t in &self.config.tasks {
            let dir = out.join("baselines").join(&t.name);
            let mut o = self.train_opts.clone();
            o.out = dir.clone();
            o.resume = false;
            o.joint_tasks = Some(vec![t.name.clone()]);
            eprintln!("      training `{}` alone", t.name);
            train_on(self.config, &o, data)?;
            let m = if dir.join("best/tasks.json").exists() && t.kind != TaskKind::Lm {
                dir.join("best")
            } else {
                dir.join("model")
            };
            let (s, reused) = self.score(&m, |name| name == t.name)?;
            all_reused &= reused;
            if let Some(s) = s.scores.first()
                && let Some(v) = s.metrics.get(&s.primary)
            {
                baselines.insert(t.name.clone(), *v);
            }
        }
        write_json(&path, &baselines)?;
        self.stages.record("baselines", &fp)?;
        self.stages.end(false, prep_note(all_reused));
        Ok(baselines)
    }

    /// The "from scratch" stage: the whole pipeline (no baselines, no compression) for the
    /// config without `model.init`, in `OUT/scratch/`; its own stages are cached there.
    fn scratch(&mut self) -> Result<BTreeMap<String, f64>> {
        let sub = RunOptions {
            out: self.opts.out.join("scratch"),
            baselines: false,
            compress: false,
            scratch: false,
            ..self.opts.clone()
        };
        let outcome = run(&self.config.without_init(), &sub)?;
        let reused = outcome
            .stages
            .iter()
            .filter(|s| s.stage.contains("training") || s.stage.contains("test-split"))
            .all(|s| s.reused);
        self.stages.end(
            reused,
            format!("scratch/report.md ({:.0} s)", outcome.seconds),
        );
        Ok(outcome
            .scores
            .iter()
            .filter_map(|s| Some((s.task.clone(), *s.metrics.get(&s.primary)?)))
            .collect())
    }

    /// Stage 6, compression, one method after the other.
    fn compress(
        &mut self,
        train_fp: &str,
        best: &Path,
        methods: &[String],
    ) -> Result<Vec<mtgpt_compress::CompressReport>> {
        let out = &self.opts.out;
        let mut compressed: Vec<mtgpt_compress::CompressReport> = Vec::new();
        let (mut reused_all, mut prep_all) = (true, true);
        for m in methods {
            let dir = out.join("compressed").join(m);
            let path = dir.join("compress.json");
            let settings = serde_json::to_string(&self.config.compress)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let fp = digest(&[train_fp, m, &settings]);
            let key = format!("compress-{m}");
            if self.stages.reusable(&key, &fp, &[&path])
                && let Some(r) = read_json(&path)
            {
                eprintln!("      {m}: reusing {}", dir.display());
                compressed.push(r);
                continue;
            }
            reused_all = false;
            let method: mtgpt_compress::Method = m.parse()?;
            // The uncompressed model scores the same on every method's test split: once.
            let before_scores = compressed.first().map(|r| r.before.scores.clone());
            if before_scores.is_some() {
                eprintln!("      {m}: reusing the uncompressed model's test scores");
            }
            let report = mtgpt_compress::compress(
                best,
                self.config,
                method,
                &dir,
                &mtgpt_compress::CompressOptions {
                    device: self.opts.device,
                    before_scores,
                    prepared: Some(self.prepared()),
                    ..Default::default()
                },
            )?;
            prep_all &= report.prep_reused;
            if !path.exists() {
                write_json(&path, &report)?;
            }
            self.stages.record(&key, &fp)?;
            compressed.push(report);
        }
        self.stages.end(
            reused_all,
            if reused_all {
                "inputs unchanged: compressed/ reused".to_string()
            } else {
                prep_note(prep_all)
            },
        );
        Ok(compressed)
    }
}

fn prep_note(reused: bool) -> String {
    if reused {
        "read prep/ (no preprocessing)".into()
    } else {
        "preprocessed again with the model's tokenizer (prep/ did not match)".into()
    }
}
