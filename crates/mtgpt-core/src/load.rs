//! Reading configs: TOML parsing with file/line/key errors, `--set` overrides, validation.
mod init;
mod source;
mod validate;

pub use init::{init_folder, init_shape};

use crate::config::{Config, ConfigFile};
use crate::error::{Error, Result};
use serde::Deserialize;
use source::Source;
use std::path::Path;
use validate::validate;

impl Config {
    /// Reads, parses, overrides and validates the config at `path`.
    ///
    /// `overrides` are `key=value` strings as given to `--set` (`train.steps=50`,
    /// `task.sentiment_zh.weight=2`); values are TOML (`"text"`, `1e-4`, `[1, 2]`) and a bare
    /// word is taken as a string.
    pub fn load(path: impl AsRef<Path>, overrides: &[String]) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml_str(&text, path, overrides)
    }

    /// Reads a resolved config that a run saved (a model folder's `mtgpt.toml`): its shape
    /// and tokenizer are already written out, so `model.init` is kept as a record of where the
    /// trunk started and not read again (the model works without that folder).
    pub fn load_saved(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path, &[], false)
    }

    /// Like [`Config::load`] for config text already in memory; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &Path, overrides: &[String]) -> Result<Config> {
        Self::parse(text, file, overrides, true)
    }

    fn parse(text: &str, file: &Path, overrides: &[String], resolve_init: bool) -> Result<Config> {
        let source = Source { text, file };
        let parsed: ConfigFile = toml::from_str(text).map_err(|e| source.parse_error(&e))?;
        let (parsed, overridden) = if overrides.is_empty() {
            (parsed, Vec::new())
        } else {
            let mut table: toml::Table =
                toml::from_str(text).map_err(|e| source.parse_error(&e))?;
            let mut keys = Vec::new();
            for arg in overrides {
                keys.push(apply_override(&mut table, arg)?);
            }
            let parsed = ConfigFile::deserialize(toml::Value::Table(table)).map_err(|e| {
                Error::Override {
                    arg: overrides.join(" "),
                    reason: e.message().trim().to_string(),
                }
            })?;
            (parsed, keys)
        };
        let section = parsed.model.clone();
        let mut config = Config::from_file(parsed, Some(file.to_path_buf()));
        if resolve_init {
            init::apply_init(&mut config, &section, &source, &overridden)?;
        }
        validate(&config, &source, &overridden)?;
        Ok(config)
    }
}

/// Applies one `key=value` override to a parsed TOML table; returns the dotted key.
fn apply_override(table: &mut toml::Table, arg: &str) -> Result<String> {
    let bad = |reason: &str| Error::Override {
        arg: arg.to_string(),
        reason: reason.to_string(),
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected KEY=VALUE, e.g. train.steps=50"))?;
    let key = key.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("empty part in the key"));
    }
    let mut node = table;
    let mut i = 0;
    if parts[0] == "task" {
        // task.NAME.key: find the [[task]] whose name is NAME.
        let name = parts.get(1).ok_or_else(|| bad("expected task.NAME.KEY"))?;
        let tasks = node
            .get_mut("task")
            .and_then(|t| t.as_array_mut())
            .ok_or_else(|| bad("the config has no [[task]]"))?;
        let t = tasks
            .iter_mut()
            .filter_map(|t| t.as_table_mut())
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
            .ok_or_else(|| bad(&format!("no task is named `{name}`")))?;
        node = t;
        i = 2;
    }
    if i >= parts.len() {
        return Err(bad("expected a key after the task name"));
    }
    for part in &parts[i..parts.len() - 1] {
        node = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| bad(&format!("`{part}` is not a table")))?;
    }
    node.insert(parts[parts.len() - 1].to_string(), value);
    Ok(key.to_string())
}
