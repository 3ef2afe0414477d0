//! What the command line's values mean for every verb: the config with its overrides, the
//! output folder, a `--model` folder (a run folder stands for its model), the device.
use clap::Args;
use mtgpt_core::Config;
use mtgpt_tasks::resolve_model_dir;
use std::path::{Path, PathBuf};
use tch::Device;

/// `--config F [--set KEY=VALUE ...]`.
#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// The TOML config (e.g. configs/demo.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config key (`--set train.steps=50`, `--set task.NAME.weight=2`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl ConfigArgs {
    /// The config with the overrides applied.
    pub fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&self.config, &self.sets)?)
    }
}

/// [`ConfigArgs`] plus `--out DIR`.
#[derive(Args, Debug, Clone)]
pub struct ConfigOutArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Output folder (default: under runs/, named after the config's `name`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ConfigOutArgs {
    /// The config and the output folder: `--out`, else `runs/<name><suffix>`.
    pub fn load(&self, suffix: &str) -> anyhow::Result<(Config, PathBuf)> {
        let config = self.config.load()?;
        let out = self.out.clone().unwrap_or_else(|| config.run_dir(suffix));
        Ok((config, out))
    }
}

/// The device models run on: the first CUDA GPU when there is one.
pub fn device() -> Device {
    Device::cuda_if_available()
}

/// A model folder from the command line (a run folder stands for its `best/` or `model/`,
/// and the user is told which).
pub fn model_dir(path: &Path) -> anyhow::Result<PathBuf> {
    let m = resolve_model_dir(path)?;
    if let Some(note) = &m.picked {
        tracing::info!("{note}");
    }
    Ok(m.dir)
}

/// The preprocessing folder of the run a model folder belongs to (`RUN/prep` beside
/// `RUN/best` or `RUN/model`) with the options `mtgpt train` and `mtgpt run` make it with:
/// task data reads it instead of preprocessing again when it matches the config and the
/// model's tokenizer.
pub fn run_prep(model: &Path) -> Option<(PathBuf, mtgpt_text::prep::PrepOptions)> {
    let prep = model.parent()?.join("prep");
    prep.join("prep.json").exists().then(|| {
        (
            prep,
            mtgpt_text::prep::PrepOptions {
                lexicons: mtgpt_text::augment::default_lexicons(),
                skip_bad: false,
            },
        )
    })
}
