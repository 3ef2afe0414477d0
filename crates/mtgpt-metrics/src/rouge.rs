//! ROUGE-1, ROUGE-2 and ROUGE-L as Google's `rouge-score` package computes them with
//! `RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)`.
//!
//! Its default tokenizer lower-cases, keeps only runs of `[a-z0-9]` and drops everything else,
//! so Chinese text yields no tokens at all. [`RougeTokenize::Chars`] is the Chinese option:
//! each CJK ideograph becomes a token and `[a-z0-9]` runs stay words. That is a common choice
//! for Chinese summarisation, but it is not something `rouge-score` does, so scores made with
//! it should be labelled character-level ROUGE.

use std::collections::HashMap;

use crate::error::{Error, Result, check_pairs};
use crate::text::is_cjk_ideograph;

/// How text is split into tokens before counting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RougeTokenize {
    /// `rouge-score`'s default tokenizer (no stemming): lower-cased `[a-z0-9]+` runs.
    #[default]
    Default,
    /// As `Default`, plus every CJK ideograph as its own token (not in `rouge-score`).
    Chars,
}

/// Precision, recall and F-measure of one ROUGE variant, each on 0..=1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PrecisionRecallF {
    /// Overlap divided by the prediction's size.
    pub precision: f64,
    /// Overlap divided by the reference's size.
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub fmeasure: f64,
}

/// ROUGE-1, ROUGE-2 and ROUGE-L of one pair, or their means over a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RougeScores {
    /// Unigram overlap.
    pub rouge1: PrecisionRecallF,
    /// Bigram overlap.
    pub rouge2: PrecisionRecallF,
    /// Longest common subsequence.
    pub rouge_l: PrecisionRecallF,
}

/// The tokens ROUGE compares.
pub fn rouge_tokens(text: &str, tokenize: RougeTokenize) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            tokens.push(std::mem::take(&mut word));
        }
        if tokenize == RougeTokenize::Chars && is_cjk_ideograph(c) {
            tokens.push(c.to_string());
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

/// ROUGE-1, ROUGE-2 and ROUGE-L of one prediction against one reference.
pub fn rouge(pred: &str, gold: &str, tokenize: RougeTokenize) -> RougeScores {
    let (p, g) = (rouge_tokens(pred, tokenize), rouge_tokens(gold, tokenize));
    RougeScores {
        rouge1: ngram_overlap(&p, &g, 1),
        rouge2: ngram_overlap(&p, &g, 2),
        rouge_l: lcs_overlap(&p, &g),
    }
}

/// Scores against several references, keeping for each variant the reference with the best
/// F-measure (the first on a tie), as `RougeScorer.score_multi` does.
///
/// # Errors
/// [`Error::NoReference`] when `golds` is empty.
pub fn rouge_multi<G: AsRef<str>>(
    pred: &str,
    golds: &[G],
    tokenize: RougeTokenize,
) -> Result<RougeScores> {
    let mut all = golds.iter().map(|g| rouge(pred, g.as_ref(), tokenize));
    let mut best = all.next().ok_or(Error::NoReference {
        metric: "ROUGE",
        index: 0,
    })?;
    for s in all {
        for (b, c) in [
            (&mut best.rouge1, s.rouge1),
            (&mut best.rouge2, s.rouge2),
            (&mut best.rouge_l, s.rouge_l),
        ] {
            if c.fmeasure > b.fmeasure {
                *b = c;
            }
        }
    }
    Ok(best)
}

/// Mean precision, recall and F-measure over prediction/reference pairs.
///
/// # Errors
/// [`Error::LengthMismatch`] or [`Error::Empty`].
pub fn rouge_corpus<P: AsRef<str>, G: AsRef<str>>(
    pred: &[P],
    gold: &[G],
    tokenize: RougeTokenize,
) -> Result<RougeScores> {
    check_pairs("ROUGE", pred.len(), gold.len())?;
    let mut sum = RougeScores::default();
    for (p, g) in pred.iter().zip(gold) {
        let s = rouge(p.as_ref(), g.as_ref(), tokenize);
        for (acc, x) in [
            (&mut sum.rouge1, s.rouge1),
            (&mut sum.rouge2, s.rouge2),
            (&mut sum.rouge_l, s.rouge_l),
        ] {
            acc.precision += x.precision;
            acc.recall += x.recall;
            acc.fmeasure += x.fmeasure;
        }
    }
    let n = pred.len() as f64;
    for acc in [&mut sum.rouge1, &mut sum.rouge2, &mut sum.rouge_l] {
        acc.precision /= n;
        acc.recall /= n;
        acc.fmeasure /= n;
    }
    Ok(sum)
}

fn prf(precision: f64, recall: f64) -> PrecisionRecallF {
    let fmeasure = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    PrecisionRecallF {
        precision,
        recall,
        fmeasure,
    }
}

/// `rouge_scorer._score_ngrams`: clipped n-gram overlap, sizes floored at 1.
fn ngram_overlap(pred: &[String], gold: &[String], n: usize) -> PrecisionRecallF {
    let count = |tokens| {
        let mut counts: HashMap<&[String], usize> = HashMap::new();
        for w in <[String]>::windows(tokens, n) {
            *counts.entry(w).or_default() += 1;
        }
        counts
    };
    let (p, g) = (count(pred), count(gold));
    let overlap: usize = g
        .iter()
        .map(|(k, &c)| c.min(p.get(k).copied().unwrap_or(0)))
        .sum();
    let (p_total, g_total): (usize, usize) = (p.values().sum(), g.values().sum());
    prf(
        overlap as f64 / p_total.max(1) as f64,
        overlap as f64 / g_total.max(1) as f64,
    )
}

/// `rouge_scorer._score_lcs`: longest common subsequence over the token lists.
fn lcs_overlap(pred: &[String], gold: &[String]) -> PrecisionRecallF {
    if pred.is_empty() || gold.is_empty() {
        return PrecisionRecallF::default();
    }
    let mut prev = vec![0usize; pred.len() + 1];
    for g in gold {
        let mut row = vec![0usize; pred.len() + 1];
        for (j, p) in pred.iter().enumerate() {
            row[j + 1] = if g == p {
                prev[j] + 1
            } else {
                prev[j + 1].max(row[j])
            };
        }
        prev = row;
    }
    let lcs = prev[pred.len()] as f64;
    prf(lcs / pred.len() as f64, lcs / gold.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_table() {
        let cases: [(&str, RougeTokenize, &[&str]); 5] = [
            (
                "The quick-brown fox's 2nd jump!",
                RougeTokenize::Default,
                &["the", "quick", "brown", "fox", "s", "2nd", "jump"],
            ),
            ("Café naïve", RougeTokenize::Default, &["caf", "na", "ve"]),
            ("我爱北京", RougeTokenize::Default, &[]),
            (
                "我爱北京GPT2。",
                RougeTokenize::Chars,
                &["我", "爱", "北", "京", "gpt2"],
            ),
            ("", RougeTokenize::Chars, &[]),
        ];
        for (text, tok, want) in cases {
            assert_eq!(rouge_tokens(text, tok), want, "{text:?}");
        }
    }

    #[test]
    fn pair_scores_by_hand() {
        // pred: a b c d, gold: a c b d e. unigrams 4/4 and 4/5; bigrams none shared; LCS 3.
        let s = rouge("a b c d", "a c b d e", RougeTokenize::Default);
        assert_eq!((s.rouge1.precision, s.rouge1.recall), (1.0, 0.8));
        assert_eq!(s.rouge2.fmeasure, 0.0);
        assert_eq!((s.rouge_l.precision, s.rouge_l.recall), (0.75, 0.6));
    }

    #[test]
    fn empty_prediction_scores_zero() {
        let s = rouge("", "some reference", RougeTokenize::Default);
        assert_eq!(s, RougeScores::default());
    }

    #[test]
    fn multi_keeps_the_best_reference_per_variant() {
        let s = rouge_multi("a b c", &["x y", "a b c"], RougeTokenize::Default).unwrap();
        assert_eq!(s.rouge_l.fmeasure, 1.0);
        let none: [&str; 0] = [];
        assert!(rouge_multi("a", &none, RougeTokenize::Default).is_err());
    }

    #[test]
    fn corpus_is_the_mean_of_pairs() {
        let s = rouge_corpus(&["a b", "x"], &["a b", "y"], RougeTokenize::Default).unwrap();
        assert_eq!(s.rouge1.fmeasure, 0.5);
        assert!(rouge_corpus(&["a"], &["a", "b"], RougeTokenize::Default).is_err());
    }
}
