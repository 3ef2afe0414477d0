//! Streaming, validating readers of task data (one JSONL line = one example; `.txt` raw text
//! for `lm`), and the seeded train/valid/test split.
//!
//! Every problem names the file, the 1-based line and the field. With `skip_bad`, bad
//! records are skipped and counted instead, and the first few messages are kept for the
//! report.
use crate::error::{Error, Result};
use mtgpt_core::{Answer, Example, TaskKind};
use rand::seq::SliceRandom;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The longest line a reader accepts as one record (4 MiB); longer ones are bad records, so
/// memory stays bounded whatever the file holds.
pub const MAX_RECORD_BYTES: usize = 4 << 20;

/// Reads past the rest of the current line without keeping it; returns the bytes skipped.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<usize> {
    let mut skipped = 0;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(skipped);
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(skipped + i + 1);
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
                skipped += n;
            }
        }
    }
}

/// How a reader treats a file.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Skip and count bad records instead of failing on the first.
    pub skip_bad: bool,
    /// The closed label set (`classify`: labels; `tagging`: tags); others are errors.
    pub labels: Option<Vec<String>>,
}

/// Counts from reading one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// The file.
    pub file: PathBuf,
    /// Examples read.
    pub read: usize,
    /// Bad records skipped (only with `skip_bad`).
    pub skipped: usize,
    /// Blank lines passed over.
    pub blank: usize,
    /// The first messages about skipped records (at most 10).
    pub first_errors: Vec<String>,
}

/// A streaming reader over one task file: yields examples one at a time, so a file of any
/// size is read in bounded memory.
pub struct ExampleReader<R> {
    reader: R,
    file: PathBuf,
    kind: TaskKind,
    jsonl: bool,
    opts: ReadOptions,
    label_set: Option<HashSet<String>>,
    line: usize,
    buf: Vec<u8>,
    report: ReadReport,
}

impl ExampleReader<BufReader<std::fs::File>> {
    /// Opens `path` for task kind `kind`. `.txt` files are raw text (only for `lm`: one
    /// example per non-blank line); anything else is JSONL.
    pub fn open(path: &Path, kind: TaskKind, opts: ReadOptions) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| mtgpt_core::Error::io(path, e))?;
        let jsonl = path.extension().is_none_or(|e| e != "txt");
        if !jsonl && kind != TaskKind::Lm {
            return Err(Error::Invalid(format!(
                "{}: a {kind} task reads JSONL (.jsonl); only lm tasks read raw .txt",
                path.display()
            )));
        }
        Ok(Self::new(
            BufReader::with_capacity(1 << 16, file),
            path,
            kind,
            jsonl,
            opts,
        ))
    }
}

impl<R: BufRead> ExampleReader<R> {
    /// A reader over any buffered source; `file` names it in errors.
    pub fn new(reader: R, file: &Path, kind: TaskKind, jsonl: bool, opts: ReadOptions) -> Self {
        let label_set = opts.labels.as_ref().map(|l| l.iter().cloned().collect());
        ExampleReader {
            reader,
            file: file.to_path_buf(),
            kind,
            jsonl,
            opts,
            label_set,
            line: 0,
            buf: Vec::new(),
            report: ReadReport {
                file: file.to_path_buf(),
                ..Default::default()
            },
        }
    }

    /// Counts so far.
    pub fn report(&self) -> &ReadReport {
        &self.report
    }

    /// The next example with its 1-based line number; `None` at the end.
    pub fn next_example(&mut self) -> Option<Result<(usize, Example)>> {
        loop {
            self.buf.clear();
            // At most one byte past the limit is held; the rest of a longer line is skipped.
            let limit = MAX_RECORD_BYTES as u64 + 1;
            match (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.buf)
            {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(mtgpt_core::Error::io(&self.file, e).into())),
            }
            self.line += 1;
            let result = if self.buf.len() > MAX_RECORD_BYTES && !self.buf.ends_with(b"\n") {
                match skip_line(&mut self.reader) {
                    Ok(rest) => Err(self.bad(
                        "-",
                        format!(
                            "the line is {} bytes, over the limit of {} MiB per record",
                            self.buf.len() + rest,
                            MAX_RECORD_BYTES >> 20
                        ),
                    )),
                    Err(e) => return Some(Err(mtgpt_core::Error::io(&self.file, e).into())),
                }
            } else {
                self.parse_line()
            };
            match result {
                Ok(Some(ex)) => {
                    self.report.read += 1;
                    return Some(Ok((self.line, ex)));
                }
                Ok(None) => self.report.blank += 1,
                Err(e) if self.opts.skip_bad && e.is_bad_record() => {
                    self.report.skipped += 1;
                    if self.report.first_errors.len() < 10 {
                        self.report.first_errors.push(e.to_string());
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn bad(&self, field: &str, reason: impl Into<String>) -> Error {
        Error::bad_record(&self.file, self.line, field, reason)
    }

    fn parse_line(&self) -> Result<Option<Example>> {
        let text = std::str::from_utf8(&self.buf).map_err(|e| {
            self.bad(
                "-",
                format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
            )
        })?;
        let text = text.trim_end_matches(['\n', '\r']);
        // Excel and other Windows tools start UTF-8 files with a byte-order mark.
        let text = if self.line == 1 {
            crate::jsonl::strip_bom(text)
        } else {
            text
        };
        if text.trim().is_empty() {
            return Ok(None);
        }
        if !self.jsonl {
            return Ok(Some(Example::Lm {
                text: text.to_string(),
            }));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| self.bad("-", format!("not valid JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(self.bad("-", "expected a JSON object"));
        };
        self.example(&obj).map(Some)
    }

    fn string(&self, obj: &Map<String, Value>, field: &str) -> Result<String> {
        match obj.get(field) {
            None => Err(self.bad(field, format!("missing (a {} example needs it)", self.kind))),
            Some(Value::String(s)) if s.trim().is_empty() => Err(self.bad(field, "empty")),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(self.bad(
                field,
                format!("expected a string, found {}", type_name(other)),
            )),
        }
    }

    fn strings(&self, obj: &Map<String, Value>, field: &str) -> Result<Vec<String>> {
        match obj.get(field) {
            None => Err(self.bad(field, format!("missing (a {} example needs it)", self.kind))),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    Value::String(_) => Err(self.bad(&format!("{field}[{i}]"), "empty")),
                    other => Err(self.bad(
                        &format!("{field}[{i}]"),
                        format!("expected a string, found {}", type_name(other)),
                    )),
                })
                .collect(),
            Some(other) => Err(self.bad(
                field,
                format!("expected an array of strings, found {}", type_name(other)),
            )),
        }
    }

    fn check_label(&self, field: &str, label: &str) -> Result<()> {
        match &self.label_set {
            Some(set) if !set.contains(label) => {
                let mut known: Vec<&String> = set.iter().collect();
                known.sort();
                Err(self.bad(
                    field,
                    format!("unknown label `{label}`; the config allows {known:?}"),
                ))
            }
            _ => Ok(()),
        }
    }

    fn example(&self, obj: &Map<String, Value>) -> Result<Example> {
        Ok(match self.kind {
            TaskKind::Lm => Example::Lm {
                text: self.string(obj, "text")?,
            },
            TaskKind::Classify => {
                let text = self.string(obj, "text")?;
                let text_pair = match obj.get("text_pair") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(self.string(obj, "text_pair")?),
                };
                let label = match obj.get("label") {
                    // Integer labels are accepted and kept as their decimal text.
                    Some(Value::Number(n)) if n.is_u64() => n.to_string(),
                    _ => self.string(obj, "label")?,
                };
                self.check_label("label", &label)?;
                Example::Classify {
                    text,
                    text_pair,
                    label,
                }
            }
            TaskKind::ExtractiveQa => {
                let context = self.string(obj, "context")?;
                let question = self.string(obj, "question")?;
                let answer = match obj.get("answer") {
                    Some(Value::Object(a)) => a,
                    None => {
                        return Err(
                            self.bad("answer", "missing (an extractive_qa example needs it)")
                        );
                    }
                    Some(other) => {
                        return Err(self.bad(
                            "answer",
                            format!(
                                "expected an object {{text, start}}, found {}",
                                type_name(other)
                            ),
                        ));
                    }
                };
                let text = match answer.get("text") {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => return Err(self.bad("answer.text", "missing or not a non-empty string")),
                };
                let start = match answer.get("start") {
                    Some(Value::Number(n)) if n.is_u64() => n.as_u64().unwrap_or(0) as usize,
                    _ => return Err(self.bad("answer.start", "missing or not a whole number ≥ 0")),
                };
                let found: String = context
                    .chars()
                    .skip(start)
                    .take(text.chars().count())
                    .collect();
                if found != text {
                    let hint = match context.find(&text) {
                        Some(b) => format!(" (it occurs at char {})", context[..b].chars().count()),
                        None => " (it does not occur in the context at all)".to_string(),
                    };
                    return Err(self.bad("answer.start", format!("the context at char {start} is {found:?}, not the answer {text:?}{hint}")));
                }
                Example::ExtractiveQa {
                    context,
                    question,
                    answer: Answer { text, start },
                }
            }
            TaskKind::Tagging => {
                let tokens = self.strings(obj, "tokens")?;
                let tags = self.strings(obj, "tags")?;
                if tokens.is_empty() {
                    return Err(self.bad("tokens", "empty"));
                }
                if tokens.len() != tags.len() {
                    return Err(self.bad(
                        "tags",
                        format!("{} tags for {} tokens", tags.len(), tokens.len()),
                    ));
                }
                for (i, t) in tags.iter().enumerate() {
                    self.check_label(&format!("tags[{i}]"), t)?;
                }
                Example::Tagging { tokens, tags }
            }
            TaskKind::Generate => Example::Generate {
                source: self.string(obj, "source")?,
                target: self.string(obj, "target")?,
            },
        })
    }
}

impl<R: BufRead> Iterator for ExampleReader<R> {
    type Item = Result<(usize, Example)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_example()
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a whole task file into memory (labelled tasks are small; use [`ExampleReader`] to
/// stream large LM corpora).
pub fn read_examples(
    path: &Path,
    kind: TaskKind,
    opts: ReadOptions,
) -> Result<(Vec<Example>, ReadReport)> {
    let mut reader = ExampleReader::open(path, kind, opts)?;
    let mut out = Vec::new();
    while let Some(item) = reader.next_example() {
        out.push(item?.1);
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no usable examples ({} lines skipped as bad)",
            path.display(),
            reader.report().skipped
        )));
    }
    Ok((out, reader.report.clone()))
}

/// The task kind a JSONL file holds, guessed from the fields of its first non-blank line:
/// `context` → extractive_qa, `tokens` → tagging, `source` → generate, `label` → classify,
/// anything else → lm. Errors when that line is not JSON or the file has no such line.
pub fn guess_kind(path: &Path) -> Result<TaskKind> {
    let file = std::fs::File::open(path).map_err(|e| mtgpt_core::Error::io(path, e))?;
    let mut first = None;
    crate::jsonl::for_each_line(BufReader::new(file), path, |line, text| {
        if text.trim().is_empty() {
            return Ok(true);
        }
        first = Some(
            serde_json::from_str::<Value>(text)
                .map_err(|e| Error::bad_record(path, line, "-", format!("not valid JSON: {e}")))?,
        );
        Ok(false)
    })?;
    let Some(v) = first else {
        return Err(Error::Invalid(format!(
            "{}: no non-blank line to guess the task kind from",
            path.display()
        )));
    };
    let has = |k: &str| v.get(k).is_some();
    Ok(if has("context") {
        TaskKind::ExtractiveQa
    } else if has("tokens") {
        TaskKind::Tagging
    } else if has("source") {
        TaskKind::Generate
    } else if has("label") {
        TaskKind::Classify
    } else {
        TaskKind::Lm
    })
}

/// The labels seen in `examples`, sorted (classify labels or tagging tags).
pub fn collect_labels(examples: &[Example]) -> Vec<String> {
    let mut set = std::collections::BTreeSet::new();
    for ex in examples {
        match ex {
            Example::Classify { label, .. } => {
                set.insert(label.clone());
            }
            Example::Tagging { tags, .. } => set.extend(tags.iter().cloned()),
            _ => {}
        }
    }
    set.into_iter().collect()
}

/// Splits examples into (train, valid, test) with a seeded shuffle; `valid`/`test` get
/// `round(n × fraction)` examples each (at least one when the fraction is positive and there
/// are enough examples). The same seed and input always give the same split.
pub fn split<T>(
    mut items: Vec<T>,
    valid_fraction: f64,
    test_fraction: f64,
    seed: u64,
    name: &str,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut rng = mtgpt_core::seed::rng_for(seed, &format!("split/{name}"));
    items.shuffle(&mut rng);
    let n = items.len();
    let take = |f: f64| {
        if f > 0.0 && n >= 3 {
            ((n as f64 * f).round() as usize).max(1)
        } else {
            0
        }
    };
    let n_valid = take(valid_fraction);
    let n_test = take(test_fraction).min(n.saturating_sub(n_valid + 1));
    let test = items.split_off(n - n_test);
    let valid = items.split_off(items.len() - n_valid);
    (items, valid, test)
}

#[cfg(test)]
mod tests;
