//! Argument groups shared by verbs: the config with its overrides, and the output folder.
use clap::Args;
use mtgpt_core::Config;
use std::path::PathBuf;

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
