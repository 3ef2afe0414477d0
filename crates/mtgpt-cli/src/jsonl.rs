//! Reading JSONL inputs of the CLI verbs.
use anyhow::Context as _;
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// Every non-blank line of `path` parsed as JSON, with its 1-based line number; an
/// unreadable line is an error naming the file and line.
pub fn read_values(path: &Path) -> anyhow::Result<Vec<(usize, Value)>> {
    let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line =
            line.with_context(|| format!("{}:{}: not valid UTF-8", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not valid JSON", path.display(), i + 1))?;
        out.push((i + 1, v));
    }
    Ok(out)
}
