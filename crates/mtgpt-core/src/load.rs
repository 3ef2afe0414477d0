//! Reading configs: TOML parsing with file/line/key errors, `--set` overrides, validation.
use crate::config::{COMPRESS_METHODS, Config, ConfigFile};
use crate::error::{Error, Result};
use crate::task::TaskKind;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

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

    /// Like [`Config::load`] for config text already in memory; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &Path, overrides: &[String]) -> Result<Config> {
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
        let config = Config::from_file(parsed, Some(file.to_path_buf()));
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

/// Config text plus its file name, for locating keys in error messages.
struct Source<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Source<'_> {
    fn parse_error(&self, e: &toml::de::Error) -> Error {
        let (line, column) = e
            .span()
            .map(|s| line_col(self.text, s.start))
            .unwrap_or((0, 0));
        let message = e.message().trim().to_string();
        let key = if line > 0 {
            key_at_line(self.text, line)
        } else {
            None
        }
        .or_else(|| backticked(&message))
        .unwrap_or_else(|| "?".to_string());
        Error::ConfigParse {
            file: self.file.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    }

    fn value_error(&self, overridden: &[String], key: &str, value: String, reason: &str) -> Error {
        let by_override = overridden
            .iter()
            .any(|k| k == key || key.starts_with(&format!("{k}.")));
        Error::ConfigValue {
            file: if by_override {
                PathBuf::from("--set")
            } else {
                self.file.to_path_buf()
            },
            line: if by_override {
                None
            } else {
                line_of_key(self.text, key)
            },
            key: key.to_string(),
            value,
            reason: reason.to_string(),
        }
    }
}

fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The table header a line opens (`[train]` → `train`, `[[task]]` → `task[N]`), tracking
/// how many `[[task]]` tables came before.
fn header(line: &str, counts: &mut std::collections::HashMap<String, usize>) -> Option<String> {
    let l = line.trim();
    if let Some(inner) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
        let name = inner.trim().to_string();
        let n = counts.entry(name.clone()).or_insert(0);
        let path = format!("{name}[{n}]");
        *n += 1;
        return Some(path);
    }
    l.strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .map(|inner| inner.trim().to_string())
}

fn key_of_line(line: &str) -> Option<&str> {
    let l = line.trim_start();
    if l.starts_with('#') || l.starts_with('[') {
        return None;
    }
    let (k, _) = l.split_once('=')?;
    let k = k.trim().trim_matches('"');
    (!k.is_empty()).then_some(k)
}

/// The dotted key written on 1-based `line` (`model.n_layer`, `task[1].kind`).
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let mut counts = Default::default();
    let mut table = String::new();
    for (i, l) in text.lines().enumerate() {
        if let Some(h) = header(l, &mut counts) {
            table = h;
        }
        if i + 1 == line {
            let key = key_of_line(l)?;
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

/// The 1-based line where the dotted `key` is written: the longest table-path prefix is
/// matched against headers, the next part against `key =` lines (inline tables resolve to
/// the line of their outer key).
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let mut counts = Default::default();
    let mut table = String::new();
    let mut best: Option<(usize, usize)> = None; // (matched length, line)
    for (i, l) in text.lines().enumerate() {
        if let Some(h) = header(l, &mut counts) {
            table = h;
            if key == table && best.is_none_or(|(n, _)| n < key.len()) {
                best = Some((key.len(), i + 1));
            }
            continue;
        }
        let Some(k) = key_of_line(l) else { continue };
        let full = if table.is_empty() {
            k.to_string()
        } else {
            format!("{table}.{k}")
        };
        let matches = key == full || key.starts_with(&format!("{full}."));
        if matches && best.is_none_or(|(n, _)| n < full.len()) {
            best = Some((full.len(), i + 1));
        }
    }
    best.map(|(_, line)| line)
}

fn validate(c: &Config, src: &Source<'_>, overridden: &[String]) -> Result<()> {
    let err =
        |key: &str, value: String, reason: &str| src.value_error(overridden, key, value, reason);
    let positive = |key: &str, v: usize| {
        if v == 0 {
            Err(err(key, v.to_string(), "must be at least 1"))
        } else {
            Ok(())
        }
    };
    let finite_in = |key: &str, v: f64, lo: f64, hi: f64, what: &str| {
        if v.is_finite() && v >= lo && v <= hi {
            Ok(())
        } else {
            Err(err(key, v.to_string(), &format!("must be a number {what}")))
        }
    };

    if c.name.trim().is_empty() || !is_safe_name(&c.name) {
        return Err(err(
            "name",
            format!("{:?}", c.name),
            "use letters, digits, `_`, `-` or `.` (it names the output folder)",
        ));
    }

    let m = &c.model;
    positive("model.n_layer", m.n_layer)?;
    positive("model.n_head", m.n_head)?;
    positive("model.d_model", m.d_model)?;
    positive("model.d_ff", m.d_ff)?;
    positive("model.block_size", m.block_size)?;
    if m.d_model % m.n_head != 0 {
        return Err(err(
            "model.n_head",
            m.n_head.to_string(),
            &format!("must divide model.d_model = {}", m.d_model),
        ));
    }
    finite_in("model.dropout", m.dropout, 0.0, 0.999, "in [0, 1)")?;
    if let Err(reason) = m.check_layer_shapes() {
        let (key, v) = if reason.starts_with("model.layer_heads") {
            ("model.layer_heads", &m.layer_heads)
        } else {
            ("model.layer_d_ff", &m.layer_d_ff)
        };
        return Err(err(key, format!("{v:?}"), &reason));
    }
    if !(m.layer_norm_eps.is_finite() && m.layer_norm_eps > 0.0) {
        return Err(err(
            "model.layer_norm_eps",
            m.layer_norm_eps.to_string(),
            "must be a positive number",
        ));
    }

    let tok = &c.tokenizer;
    if tok.existing().is_none()
        && tok.kind == crate::config::TokenizerKind::Bpe
        && tok.vocab_size < 260
    {
        return Err(err(
            "tokenizer.vocab_size",
            tok.vocab_size.to_string(),
            "byte-level BPE needs at least 260 (256 bytes + special tokens)",
        ));
    }

    let p = &c.preprocess;
    finite_in(
        "preprocess.valid_fraction",
        p.valid_fraction,
        0.0,
        0.5,
        "in [0, 0.5]",
    )?;
    finite_in(
        "preprocess.test_fraction",
        p.test_fraction,
        0.0,
        0.5,
        "in [0, 0.5]",
    )?;

    let t = &c.train;
    positive("train.batch_size", t.batch_size)?;
    positive("train.grad_accum", t.grad_accum)?;
    if t.steps == 0 && t.pretrain_steps == 0 {
        return Err(err(
            "train.steps",
            "0".into(),
            "train.steps or train.pretrain_steps must be at least 1",
        ));
    }
    if !(t.lr.is_finite() && t.lr > 0.0 && t.lr < 10.0) {
        return Err(err(
            "train.lr",
            t.lr.to_string(),
            "must be a positive number below 10 (3e-4 is typical)",
        ));
    }
    finite_in("train.max_seconds", t.max_seconds, 0.0, f64::MAX, "≥ 0")?;
    finite_in("train.min_lr_ratio", t.min_lr_ratio, 0.0, 1.0, "in [0, 1]")?;
    finite_in(
        "train.weight_decay",
        t.weight_decay,
        0.0,
        10.0,
        "in [0, 10]",
    )?;
    finite_in("train.beta1", t.beta1, 0.0, 0.999_999, "in [0, 1)")?;
    finite_in("train.beta2", t.beta2, 0.0, 0.999_999, "in [0, 1)")?;
    if !(t.eps.is_finite() && t.eps > 0.0) {
        return Err(err(
            "train.eps",
            t.eps.to_string(),
            "must be a positive number",
        ));
    }
    finite_in(
        "train.grad_clip",
        t.grad_clip,
        0.0,
        f64::MAX,
        "≥ 0 (0 turns clipping off)",
    )?;
    if !(t.spike_factor.is_finite() && t.spike_factor > 1.0) {
        return Err(err(
            "train.spike_factor",
            t.spike_factor.to_string(),
            "must be a number above 1",
        ));
    }
    if !(t.guard_lr_factor.is_finite() && t.guard_lr_factor > 0.0 && t.guard_lr_factor < 1.0) {
        return Err(err(
            "train.guard_lr_factor",
            t.guard_lr_factor.to_string(),
            "must be a number in (0, 1)",
        ));
    }
    positive("train.guard_snapshot_every", t.guard_snapshot_every)?;
    let s = &t.sampling;
    if t.weighting.strategy == crate::config::WeightingStrategy::Pcgrad && !s.mixed_batches {
        return Err(err(
            "train.weighting.strategy",
            "\"pcgrad\"".into(),
            "PCGrad combines the gradients of several tasks in one step; set train.sampling.mixed_batches = true",
        ));
    }
    if !(s.temperature.is_finite() && s.temperature > 0.0) {
        return Err(err(
            "train.sampling.temperature",
            s.temperature.to_string(),
            "must be a positive number",
        ));
    }
    if !(s.end_temperature.is_finite() && s.end_temperature > 0.0) {
        return Err(err(
            "train.sampling.end_temperature",
            s.end_temperature.to_string(),
            "must be a positive number",
        ));
    }
    positive("train.sampling.cap", s.cap)?;
    if !(t.weighting.dwa_temperature.is_finite() && t.weighting.dwa_temperature > 0.0) {
        return Err(err(
            "train.weighting.dwa_temperature",
            t.weighting.dwa_temperature.to_string(),
            "must be a positive number",
        ));
    }

    let k = &c.compress;
    for (i, method) in k.methods.iter().enumerate() {
        if !COMPRESS_METHODS.contains(&method.as_str()) {
            return Err(err(
                &format!("compress.methods[{i}]"),
                format!("{method:?}"),
                &format!(
                    "unknown method; expected one of {}",
                    COMPRESS_METHODS.join(", ")
                ),
            ));
        }
    }
    finite_in("compress.sparsity", k.sparsity, 0.0, 0.99, "in [0, 0.99]")?;
    finite_in(
        "compress.head_fraction",
        k.head_fraction,
        0.0,
        0.95,
        "in [0, 0.95]",
    )?;
    finite_in(
        "compress.neuron_fraction",
        k.neuron_fraction,
        0.0,
        0.95,
        "in [0, 0.95]",
    )?;
    finite_in("compress.alpha", k.alpha, 0.0, 1.0, "in [0, 1]")?;
    finite_in(
        "compress.hidden_weight",
        k.hidden_weight,
        0.0,
        f64::MAX,
        "≥ 0",
    )?;
    if !(k.temperature.is_finite() && k.temperature > 0.0) {
        return Err(err(
            "compress.temperature",
            k.temperature.to_string(),
            "must be a positive number",
        ));
    }

    if c.tasks.is_empty() {
        return Err(err("task", "[]".into(), "add at least one [[task]] table"));
    }
    let mut seen = HashSet::new();
    for (i, task) in c.tasks.iter().enumerate() {
        let key = |field: &str| format!("task[{i}].{field}");
        if !is_safe_name(&task.name) || task.name.contains('|') {
            return Err(err(
                &key("name"),
                format!("{:?}", task.name),
                "use letters, digits, `_`, `-` or `.`",
            ));
        }
        if !seen.insert(task.name.as_str()) {
            return Err(err(
                &key("name"),
                format!("{:?}", task.name),
                "another task has this name",
            ));
        }
        if task.train.as_os_str().is_empty() {
            return Err(err(&key("train"), "\"\"".into(), "give the training file"));
        }
        if !(task.weight.is_finite() && task.weight >= 0.0) {
            return Err(err(
                &key("weight"),
                task.weight.to_string(),
                "must be a number ≥ 0",
            ));
        }
        if let Some(labels) = &task.labels {
            if !task.kind.has_label_set() {
                return Err(err(
                    &key("labels"),
                    format!("{labels:?}"),
                    &format!(
                        "only classify and tagging tasks take labels, this one is {}",
                        task.kind
                    ),
                ));
            }
            let mut uniq = HashSet::new();
            if labels.is_empty() || labels.iter().any(|l| l.is_empty() || !uniq.insert(l)) {
                return Err(err(
                    &key("labels"),
                    format!("{labels:?}"),
                    "must be non-empty, distinct, non-empty strings",
                ));
            }
        }
        if let Some(lang) = &task.stem
            && matches!(task.kind, TaskKind::ExtractiveQa | TaskKind::Tagging)
        {
            return Err(err(
                &key("stem"),
                format!("{lang:?}"),
                &format!(
                    "stemming would break the {} spans; only lm, classify and generate tasks take it",
                    task.kind
                ),
            ));
        }
        if let Some(lang) = &task.stem
            && !crate::STEMMER_LANGUAGES.contains(&lang.as_str())
        {
            return Err(err(
                &key("stem"),
                format!("{lang:?}"),
                &format!(
                    "unknown language; expected one of {}",
                    crate::STEMMER_LANGUAGES.join(", ")
                ),
            ));
        }
        if task.max_len == Some(0) {
            return Err(err(&key("max_len"), "0".into(), "must be at least 1"));
        }
        if let Some(a) = &task.augment {
            finite_in(
                &key("augment.eda_alpha"),
                a.eda_alpha,
                0.0,
                1.0,
                "in [0, 1]",
            )?;
            finite_in(
                &key("augment.char_noise"),
                a.char_noise,
                0.0,
                1.0,
                "in [0, 1]",
            )?;
            finite_in(
                &key("augment.token_noise"),
                a.token_noise,
                0.0,
                1.0,
                "in [0, 1]",
            )?;
        }
        if let Some(g) = &task.generate_augment {
            if task.kind != TaskKind::Classify {
                return Err(err(
                    &key("generate_augment"),
                    "{ .. }".into(),
                    &format!("only classify tasks take it, this one is {}", task.kind),
                ));
            }
            positive(&key("generate_augment.n"), g.n)?;
            positive(&key("generate_augment.max_new_tokens"), g.max_new_tokens)?;
            finite_in(
                &key("generate_augment.min_confidence"),
                g.min_confidence,
                0.0,
                1.0,
                "in [0, 1]",
            )?;
            finite_in(
                &key("generate_augment.at_fraction"),
                g.at_fraction,
                0.0,
                0.95,
                "in [0, 0.95]",
            )?;
            finite_in(
                &key("generate_augment.temperature"),
                g.temperature,
                0.01,
                10.0,
                "in [0.01, 10]",
            )?;
        }
    }
    for (i, name) in c.tokenizer.train_on.iter().enumerate() {
        if !seen.contains(name.as_str()) {
            return Err(err(
                &format!("tokenizer.train_on[{i}]"),
                format!("{name:?}"),
                "no task has this name",
            ));
        }
    }
    if t.pretrain_steps > 0 && !c.tasks.iter().any(|t| t.kind == TaskKind::Lm) {
        return Err(err(
            "train.pretrain_steps",
            t.pretrain_steps.to_string(),
            "LM pretraining needs at least one task of kind \"lm\"",
        ));
    }
    Ok(())
}

fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
