//! Classic baselines beside every task, so a report shows at once whether the GPT earns its
//! cost. Each baseline trains on the task's prepared training split (the same normalized text
//! the GPT reads) in seconds and is scored by the same metrics ([`score_predictions`]):
//!
//! | kind | baselines |
//! | --- | --- |
//! | `classify` | TF-IDF (words + Han characters, 1–2-grams, 1–3 for Chinese) + logistic regression ([`linfa_logistic`]), its L2 strength picked on the validation split |
//! | `tagging` | the most frequent training tag of each token; a linear-chain CRF on a ±2-token window ([`crfs`]) |
//! | `generate` | the target of the most similar training source (TF-IDF cosine) |
//! | `lm` | an interpolated absolute-discounting trigram model on the same tokens (perplexity) |
//!
//! `extractive_qa` has none yet.
mod classify;
mod error;
mod ngram;
mod retrieval;
mod scores;
mod tagging;
mod text;

pub use error::{Error, Result};
pub use ngram::TrigramLm;
pub use scores::BaselineScores;
pub use tagging::{CrfTagger, MostFrequentTag};
pub use text::{TfIdf, analyze};

use mtgpt_core::TaskKind;
use mtgpt_tasks::TaskData;
use std::time::Instant;

/// Runs every baseline of every task of `data` that has `split`, in config order (tasks of
/// kinds without a baseline are skipped). LM tasks are scored on their first `lm_tokens`
/// tokens, as the model is.
pub fn run_all(data: &TaskData, split: &str, lm_tokens: usize) -> Result<Vec<BaselineScores>> {
    let mut out = Vec::new();
    for (i, t) in data.config.tasks.iter().enumerate() {
        let head = &data.heads[i];
        if t.kind == TaskKind::Lm {
            let (Some(train), Some(test)) =
                (data.split_file(i, "train"), data.split_file(i, split))
            else {
                continue;
            };
            let start = Instant::now();
            let train = mtgpt_text::prep::read_token_file(&train)?;
            let test = mtgpt_text::prep::read_token_file(&test)?;
            let lm = TrigramLm::fit(&train);
            let scores = lm.scores(&t.name, &test[..test.len().min(lm_tokens)]);
            out.push(BaselineScores {
                method: "trigram".into(),
                seconds: start.elapsed().as_secs_f64(),
                scores,
            });
            continue;
        }
        let (Some(train), Some(test)) = (
            data.examples(i, "train", false)?,
            data.examples(i, split, false)?,
        ) else {
            continue;
        };
        let valid = data.examples(i, "valid", false)?;
        let found = match t.kind {
            TaskKind::Classify => vec![classify::tfidf_logreg(
                head,
                &train,
                valid.as_deref(),
                &test,
            )?],
            TaskKind::Tagging => tagging::baselines(head, &train, &test)?,
            TaskKind::Generate => vec![retrieval::nearest_target(head, &train, &test)?],
            TaskKind::Lm | TaskKind::ExtractiveQa => Vec::new(),
        };
        for b in &found {
            tracing::info!(
                "baseline {} on {}: {} {:.4} ({:.1} s)",
                b.method,
                t.name,
                b.scores.primary,
                b.scores
                    .metrics
                    .get(&b.scores.primary)
                    .copied()
                    .unwrap_or(f64::NAN),
                b.seconds
            );
        }
        out.extend(found);
    }
    Ok(out)
}
