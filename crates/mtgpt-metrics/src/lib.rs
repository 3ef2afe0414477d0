//! Task metrics for mtgpt in pure Rust (no libtorch, fast to test): accuracy, macro-F1,
//! exact match and token F1, BLEU, ROUGE, perplexity and span F1.
//!
//! Each metric follows a reference implementation and is checked against numbers it produced
//! (`tests/fixtures/reference.json`): scikit-learn for classification, the SQuAD v1.1 and
//! CMRC 2018 scripts for QA, sacreBLEU for BLEU, `rouge-score` for ROUGE and seqeval for span
//! F1. Scores are on 0..=1 except BLEU, which is on 0..=100 like sacreBLEU. Predictions come
//! first in every signature, then references.
//!
//! ```
//! use mtgpt_metrics::{BleuTokenize, RougeTokenize};
//!
//! let acc = mtgpt_metrics::accuracy(&["pos", "neg", "pos"], &["pos", "pos", "pos"])?;
//! assert!((acc - 2.0 / 3.0).abs() < 1e-12);
//!
//! assert!(mtgpt_metrics::exact_match("The Eiffel Tower", "eiffel tower."));
//! assert_eq!(mtgpt_metrics::token_f1("北京大学", "北京"), 2.0 / 3.0);
//!
//! let bleu = mtgpt_metrics::corpus_bleu(
//!     &["the cat sat on the mat"], &["the cat sat on the mat"], BleuTokenize::Mteval13a)?;
//! assert!((bleu.score - 100.0).abs() < 1e-9);
//!
//! let rouge = mtgpt_metrics::rouge("the cat sat", "the cat sat down", RougeTokenize::Default);
//! assert!(rouge.rouge_l.fmeasure > 0.85);
//!
//! let f1 = mtgpt_metrics::span_f1(&[vec!["B-PER", "I-PER", "O"]], &[vec!["B-PER", "I-PER", "O"]])?;
//! assert_eq!(f1, 1.0);
//!
//! assert!((mtgpt_metrics::perplexity(2.0f64.ln()) - 2.0).abs() < 1e-12);
//! # Ok::<(), mtgpt_metrics::Error>(())
//! ```
#![warn(missing_docs)]

pub mod bleu;
pub mod classification;
pub mod error;
pub mod qa;
pub mod rouge;
pub mod tagging;
pub mod text;

pub use bleu::{BleuScore, BleuTokenize, corpus_bleu, corpus_bleu_multi, tokenize_bleu};
pub use classification::{
    ClassMetrics, ClassReport, accuracy, class_report, confusion_matrix, labels_of, macro_f1,
};
pub use error::{Error, Result};
pub use qa::{
    QaScores, cmrc_f1, exact_match, max_exact_match, max_token_f1, normalize_answer, qa_scores,
    token_f1,
};
pub use rouge::{PrecisionRecallF, RougeScores, RougeTokenize, rouge, rouge_corpus, rouge_multi};
pub use tagging::{Span, SpanReport, TypeCounts, extract_spans, span_f1, span_report};

/// Perplexity from a mean negative log-likelihood per token in nats: `exp(mean_nll)`.
///
/// Average the cross-entropy over *tokens* (not over batches of different sizes) before
/// calling this; a mean in bits needs `2^x` instead.
pub fn perplexity(mean_nll: f64) -> f64 {
    mean_nll.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perplexity_table() {
        let cases = [(0.0, 1.0), (1.0, std::f64::consts::E), (10.0f64.ln(), 10.0)];
        for (nll, want) in cases {
            assert!((perplexity(nll) - want).abs() < 1e-12, "{nll}");
        }
    }

    #[test]
    fn uniform_model_perplexity_is_the_vocabulary_size() {
        // Cross-entropy of a uniform distribution over V outcomes is ln V.
        for vocab in [2.0f64, 50257.0] {
            assert!((perplexity(vocab.ln()) - vocab).abs() < 1e-6 * vocab);
        }
    }
}
