//! Prediction inputs as JSON, shared by `mtgpt predict` and `mtgpt serve` so both read an input
//! and write its prediction the same way: one JSON object per input with the task kind's input
//! fields (gold fields ignored), answered by the same object with a `prediction` field.
use crate::error::{Error, Result};
use crate::evaluate::Prediction;
use mtgpt_core::{Answer, Example, TaskKind};
use mtgpt_text::jsonl::required_str;
use mtgpt_text::{Normalized, Normalizer};
use serde_json::{Value, json};
use std::path::Path;

/// An input read for prediction: the example (placeholder gold fields) and, for extractive
/// QA, the normalizer's map of the context (to report the answer's start in the original).
#[derive(Debug, Clone)]
pub struct Input {
    /// The normalized example.
    pub example: Example,
    /// The context's character map (extractive QA only).
    pub context_map: Option<Normalized>,
}

/// Reads one input object of a `kind` task; errors name `source`, `line` and the field.
pub fn parse_input(
    v: &Value,
    kind: TaskKind,
    norm: &Normalizer,
    source: &Path,
    line: usize,
) -> Result<Input> {
    let field = |name: &str| -> Result<&str> { Ok(required_str(v, name, source, line)?) };
    let n = |s: &str| norm.normalize(s);
    if !v.is_object() {
        return Err(Error::Invalid(format!(
            "{}:{line}: expected a JSON object with the task's input fields",
            source.display()
        )));
    }
    let (example, context_map) = match kind {
        TaskKind::Lm => (
            Example::Lm {
                text: n(field("text")?),
            },
            None,
        ),
        TaskKind::Classify => {
            let text_pair = match v.get("text_pair") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(n(s)),
                Some(_) => {
                    return Err(Error::Invalid(format!(
                        "{}:{line}: field `text_pair`: expected a string",
                        source.display()
                    )));
                }
            };
            (
                Example::Classify {
                    text: n(field("text")?),
                    text_pair,
                    label: String::new(),
                },
                None,
            )
        }
        TaskKind::Generate => (
            Example::Generate {
                source: n(field("source")?),
                target: String::new(),
            },
            None,
        ),
        TaskKind::ExtractiveQa => {
            let ctx = norm.normalize_with_offsets(field("context")?);
            let ex = Example::ExtractiveQa {
                context: ctx.text.clone(),
                question: n(field("question")?),
                answer: Answer {
                    text: String::new(),
                    start: 0,
                },
            };
            (ex, Some(ctx))
        }
        TaskKind::Tagging => {
            let tokens: Vec<String> = match v.get("tokens") {
                Some(Value::Array(a)) if !a.is_empty() => a
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        t.as_str().map(str::to_string).ok_or_else(|| {
                            Error::Invalid(format!(
                                "{}:{line}: field `tokens[{i}]`: expected a string",
                                source.display()
                            ))
                        })
                    })
                    .collect::<Result<_>>()?,
                _ => {
                    return Err(Error::Invalid(format!(
                        "{}:{line}: field `tokens`: missing or not a non-empty array of strings",
                        source.display()
                    )));
                }
            };
            (
                Example::Tagging {
                    tags: vec![String::new(); tokens.len()],
                    tokens,
                },
                None,
            )
        }
    };
    Ok(Input {
        example,
        context_map,
    })
}

/// `v` with its `prediction` field set to `p` (a QA answer's start counted in the context as
/// given, not the normalized one).
pub fn with_prediction(mut v: Value, input: &Input, p: &Prediction) -> Result<Value> {
    let pred = match (p, &input.context_map) {
        (
            Prediction::Span {
                text,
                start: Some(s),
            },
            Some(m),
        ) => {
            let (orig, _) = m.original_range(*s, s + text.chars().count());
            json!({"text": text, "start": orig})
        }
        _ => serde_json::to_value(p).map_err(|e| Error::Invalid(e.to_string()))?,
    };
    v["prediction"] = pred;
    Ok(v)
}
