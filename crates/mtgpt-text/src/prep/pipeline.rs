//! The text processing every task of a config shares: normalization and stemming.
use crate::augment::Lexicon;
use crate::{Normalizer, Segmenter};
use mtgpt_core::{Answer, Example};

/// Text processing shared by every task of a config.
pub(super) struct Pipeline {
    pub(super) normalizer: Normalizer,
    pub(super) segmenter: Segmenter,
    pub(super) lexicon: std::sync::Arc<Lexicon>,
}

impl Pipeline {
    fn norm(&self, s: &str) -> String {
        self.normalizer.normalize(s)
    }

    /// Normalizes (and stems, where the task asks) one example, keeping spans aligned.
    /// `None` when normalization leaves nothing.
    pub(super) fn process(
        &self,
        ex: Example,
        stemmer: Option<&rust_stemmers::Stemmer>,
    ) -> Option<Example> {
        let stem = |s: String| match stemmer {
            Some(st) => crate::stem::stem_text(st, &self.segmenter, &s),
            None => s,
        };
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        Some(match ex {
            Example::Lm { text } => Example::Lm {
                text: nonempty(stem(self.norm(&text)))?,
            },
            Example::Classify {
                text,
                text_pair,
                label,
            } => Example::Classify {
                text: nonempty(stem(self.norm(&text)))?,
                text_pair: text_pair
                    .map(|t| stem(self.norm(&t)))
                    .filter(|t| !t.is_empty()),
                label,
            },
            Example::Generate { source, target } => Example::Generate {
                source: nonempty(stem(self.norm(&source)))?,
                target: nonempty(self.norm(&target))?,
            },
            Example::Tagging { tokens, tags } => {
                let (tokens, tags): (Vec<String>, Vec<String>) = tokens
                    .iter()
                    .map(|t| self.norm(t))
                    .zip(tags)
                    .filter(|(t, _)| !t.is_empty())
                    .unzip();
                if tokens.is_empty() {
                    return None;
                }
                Example::Tagging { tokens, tags }
            }
            Example::ExtractiveQa {
                context,
                question,
                answer,
            } => {
                let n = self.normalizer.normalize_with_offsets(&context);
                let (s, e) =
                    n.normalized_range(answer.start, answer.start + answer.text.chars().count());
                let text: String = n.text.chars().skip(s).take(e - s).collect();
                Example::ExtractiveQa {
                    context: nonempty(n.text)?,
                    question: nonempty(self.norm(&question))?,
                    answer: Answer {
                        text: nonempty(text)?,
                        start: s,
                    },
                }
            }
        })
    }
}

/// The texts of an example that train the tokenizer.
pub(super) fn example_texts(ex: &Example) -> Vec<&str> {
    match ex {
        Example::Lm { text } => vec![text],
        Example::Classify {
            text, text_pair, ..
        } => {
            let mut v = vec![text.as_str()];
            v.extend(text_pair.as_deref());
            v
        }
        Example::Generate { source, target } => vec![source, target],
        Example::ExtractiveQa {
            context, question, ..
        } => vec![context, question],
        Example::Tagging { tokens, .. } => tokens.iter().map(String::as_str).collect(),
    }
}
