//! Config text with its file name: locating keys and lines for error messages.
use crate::error::Error;
use std::path::{Path, PathBuf};

/// Config text plus its file name, for locating keys in error messages.
pub(super) struct Source<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a Path,
}

impl Source<'_> {
    pub(super) fn parse_error(&self, e: &toml::de::Error) -> Error {
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

    pub(super) fn value_error(
        &self,
        overridden: &[String],
        key: &str,
        value: String,
        reason: &str,
    ) -> Error {
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
