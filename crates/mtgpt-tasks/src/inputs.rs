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

/// An input read for prediction: the example (placeholder gold fields), normalized as
/// preprocessing normalizes training data, and what is needed to answer in terms of the input
/// as given.
#[derive(Debug, Clone)]
pub struct Input {
    /// The normalized example.
    pub example: Example,
    /// The context's character map (extractive QA only).
    pub context_map: Option<Normalized>,
    /// Tagging: which input tokens are in the example (false: normalized to nothing, e.g. a
    /// space, as preprocessing drops such tokens); `None` when all are.
    pub kept_tokens: Option<Vec<bool>>,
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
            // Each token normalized as preprocessing does; tokens left empty are dropped
            // there, so here too, and answered `O` (see `with_prediction`).
            let normed: Vec<String> = tokens.iter().map(|t| n(t)).collect();
            let kept: Vec<bool> = normed.iter().map(|t| !t.is_empty()).collect();
            let tokens: Vec<String> = normed.into_iter().filter(|t| !t.is_empty()).collect();
            if tokens.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}:{line}: field `tokens`: every token is empty after normalization",
                    source.display()
                )));
            }
            let ex = Example::Tagging {
                tags: vec![String::new(); tokens.len()],
                tokens,
            };
            let all = kept.iter().all(|&k| k);
            return Ok(Input {
                example: ex,
                context_map: None,
                kept_tokens: (!all).then_some(kept),
            });
        }
    };
    Ok(Input {
        example,
        context_map,
        kept_tokens: None,
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
        (Prediction::Tags(tags), _) if input.kept_tokens.is_some() => {
            let kept = input.kept_tokens.as_deref().unwrap_or_default();
            let mut it = tags.iter();
            let all: Vec<&str> = kept
                .iter()
                .map(|&k| {
                    if k {
                        it.next().map_or("O", |t| t.as_str())
                    } else {
                        "O"
                    }
                })
                .collect();
            json!(all)
        }
        _ => serde_json::to_value(p).map_err(|e| Error::Invalid(e.to_string()))?,
    };
    v["prediction"] = pred;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagging(tokens: Value) -> Result<Input> {
        let v = json!({ "tokens": tokens });
        parse_input(
            &v,
            TaskKind::Tagging,
            &Normalizer::default(),
            Path::new("in.jsonl"),
            3,
        )
    }

    #[test]
    fn tagging_tokens_are_normalized_as_preprocessing_does_and_answered_per_input_token() {
        // Full-width letters and digits as the training data never had them, a space token.
        let input = tagging(json!(["Ｊ", "１", " ", "京"])).unwrap();
        let Example::Tagging { tokens, tags } = &input.example else {
            panic!("{:?}", input.example)
        };
        assert_eq!(tokens, &["J", "1", "京"]);
        assert_eq!(tags.len(), 3);
        assert_eq!(input.kept_tokens, Some(vec![true, true, false, true]));
        let p = Prediction::Tags(vec!["B-ORG".into(), "I-ORG".into(), "B-LOC".into()]);
        let v = with_prediction(json!({"tokens": []}), &input, &p).unwrap();
        assert_eq!(v["prediction"], json!(["B-ORG", "I-ORG", "O", "B-LOC"]));
        // Nothing dropped: the prediction as it is.
        let plain = tagging(json!(["北", "京"])).unwrap();
        assert_eq!(plain.kept_tokens, None);
    }

    #[test]
    fn tagging_tokens_that_all_normalize_to_nothing_are_an_error_naming_the_field() {
        let err = tagging(json!([" ", "\u{200b}"])).unwrap_err().to_string();
        assert!(
            err.contains("in.jsonl:3") && err.contains("`tokens`"),
            "{err}"
        );
    }
}
