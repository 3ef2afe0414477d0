//! Exact match and token F1 for question answering.
//!
//! English follows the SQuAD v1.1 evaluation script: lower-case, drop ASCII punctuation, drop
//! the articles `a`/`an`/`the`, collapse whitespace, then compare the whitespace tokens.
//!
//! When the prediction or the gold answer holds a CJK ideograph, both are compared at
//! character level the way the CMRC 2018 script segments them: every ideograph is one token,
//! punctuation is dropped, and the text between ideographs is lower-cased and split on
//! whitespace. Articles are kept there (the `a` of `维生素a` is not an article). Where this
//! differs from CMRC, on purpose:
//! - the punctuation dropped is CMRC's list widened to all ASCII punctuation, full-width
//!   forms, CJK brackets and General Punctuation quotes/dashes/ellipsis; CMRC keeps other
//!   punctuation, and NLTK (which CMRC uses on non-Chinese runs) makes tokens of it;
//! - exact match compares the token lists, so spaces inside a Chinese answer do not matter;
//!   CMRC compares the strings with only its own punctuation list removed;
//! - every CJK ideograph counts, not only CMRC's `[\u4e00-\u9fa5]`.
//!
//! For Chinese answers whose punctuation is on CMRC's list and that have no inner spaces or
//! Latin punctuation, the results are CMRC's (the reference fixtures check such cases).
//!
//! [`token_f1`] is SQuAD's bag-of-tokens F1 on those tokens; [`cmrc_f1`] is CMRC 2018's F1,
//! which uses the longest common *substring* of the token lists instead.

use std::collections::HashMap;

use crate::error::{Error, Result, check_pairs};
use crate::text::{has_cjk, is_cjk_ideograph, python_split, python_strip};

/// Mean exact match and F1 over a set of questions, each on 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QaScores {
    /// Mean of the best exact match (0 or 1) over each question's gold answers.
    pub exact_match: f64,
    /// Mean of the best [`token_f1`] over each question's gold answers.
    pub f1: f64,
    /// Number of questions.
    pub count: usize,
}

/// SQuAD v1.1 answer normalisation: lower-case, remove ASCII punctuation, remove the words
/// `a`, `an` and `the`, and collapse whitespace to single spaces.
pub fn normalize_answer(s: &str) -> String {
    let no_punct: String = s
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // `re.sub(r"\b(a|an|the)\b", " ", text)`: a match is exactly a whole run of word
    // characters that spells an article. (`is_alphanumeric` stands in for Python's `\w`; they
    // differ only on some combining marks.)
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(no_punct.len());
    let mut rest = no_punct.as_str();
    while let Some(c) = rest.chars().next() {
        let want_word = is_word(c);
        let len = rest
            .find(|c: char| is_word(c) != want_word)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(len);
        out.push_str(if want_word && matches!(run, "a" | "an" | "the") {
            " "
        } else {
            run
        });
        rest = tail;
    }
    python_split(&out).collect::<Vec<_>>().join(" ")
}

/// The tokens that EM and F1 compare: SQuAD tokens, or character-level tokens when
/// `chinese` is set (see the module docs).
pub fn answer_tokens(s: &str, chinese: bool) -> Vec<String> {
    if !chinese {
        return python_split(&normalize_answer(s))
            .map(str::to_string)
            .collect();
    }
    let mut tokens = Vec::new();
    let mut run = String::new();
    let lower = s.to_lowercase();
    for c in python_strip(&lower).chars() {
        if is_answer_punctuation(c) {
            // CMRC skips punctuation without ending the current run.
            continue;
        }
        if is_cjk_ideograph(c) {
            tokens.extend(python_split(&run).map(str::to_string));
            run.clear();
            tokens.push(c.to_string());
        } else {
            run.push(c);
        }
    }
    tokens.extend(python_split(&run).map(str::to_string));
    tokens
}

/// Whether a prediction/gold pair is scored at character level.
fn is_chinese_pair(pred: &str, gold: &str) -> bool {
    has_cjk(pred) || has_cjk(gold)
}

/// Whether the normalised prediction equals the normalised gold answer.
pub fn exact_match(pred: &str, gold: &str) -> bool {
    let chinese = is_chinese_pair(pred, gold);
    answer_tokens(pred, chinese) == answer_tokens(gold, chinese)
}

/// SQuAD v1.1 token F1: harmonic mean of the precision and recall of the multiset of shared
/// tokens (0..=1). 0 when nothing is shared, including when either side is empty.
pub fn token_f1(pred: &str, gold: &str) -> f64 {
    let chinese = is_chinese_pair(pred, gold);
    let (p, g) = (answer_tokens(pred, chinese), answer_tokens(gold, chinese));
    let mut gold_counts: HashMap<&str, usize> = HashMap::new();
    for t in &g {
        *gold_counts.entry(t).or_default() += 1;
    }
    let mut same = 0;
    for t in &p {
        if let Some(n) = gold_counts.get_mut(t.as_str()).filter(|n| **n > 0) {
            *n -= 1;
            same += 1;
        }
    }
    f1_from_overlap(same, p.len(), g.len())
}

/// CMRC 2018 F1: precision and recall of the longest common run of character-level tokens
/// (always Chinese-mode tokens, whatever the script of the text).
pub fn cmrc_f1(pred: &str, gold: &str) -> f64 {
    let (p, g) = (answer_tokens(pred, true), answer_tokens(gold, true));
    // Longest common substring, one DP row at a time.
    let mut best = 0;
    let mut prev = vec![0usize; p.len() + 1];
    for gt in &g {
        let mut row = vec![0usize; p.len() + 1];
        for (j, pt) in p.iter().enumerate() {
            if gt == pt {
                row[j + 1] = prev[j] + 1;
                best = best.max(row[j + 1]);
            }
        }
        prev = row;
    }
    f1_from_overlap(best, p.len(), g.len())
}

/// Best [`exact_match`] over several gold answers, as 0 or 1 (0 when `golds` is empty).
pub fn max_exact_match<G: AsRef<str>>(pred: &str, golds: &[G]) -> f64 {
    let hit = golds.iter().any(|g| exact_match(pred, g.as_ref()));
    if hit { 1.0 } else { 0.0 }
}

/// Best [`token_f1`] over several gold answers (0 when `golds` is empty).
pub fn max_token_f1<G: AsRef<str>>(pred: &str, golds: &[G]) -> f64 {
    golds
        .iter()
        .map(|g| token_f1(pred, g.as_ref()))
        .fold(0.0, f64::max)
}

/// Mean best exact match and best token F1 over questions; `golds[i]` are the accepted
/// answers to question `i`.
///
/// # Errors
/// [`Error::LengthMismatch`], [`Error::Empty`], or [`Error::NoReference`] for a question
/// without any gold answer.
pub fn qa_scores<P: AsRef<str>, G: AsRef<str>, A: AsRef<[G]>>(
    pred: &[P],
    golds: &[A],
) -> Result<QaScores> {
    const METRIC: &str = "QA scores";
    check_pairs(METRIC, pred.len(), golds.len())?;
    let (mut em, mut f1) = (0.0, 0.0);
    for (index, (p, g)) in pred.iter().zip(golds).enumerate() {
        let g = g.as_ref();
        if g.is_empty() {
            return Err(Error::NoReference {
                metric: METRIC,
                index,
            });
        }
        em += max_exact_match(p.as_ref(), g);
        f1 += max_token_f1(p.as_ref(), g);
    }
    let n = pred.len() as f64;
    Ok(QaScores {
        exact_match: em / n,
        f1: f1 / n,
        count: pred.len(),
    })
}

fn f1_from_overlap(same: usize, pred_len: usize, gold_len: usize) -> f64 {
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pred_len as f64;
    let recall = same as f64 / gold_len as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Punctuation dropped in Chinese mode: CMRC 2018's list (`-:_*^/\~`+=` and
/// `，。：？！“”；’《》·、「」（）－～『』`) widened to all ASCII punctuation, full-width
/// ASCII punctuation, CJK brackets and marks, and the General Punctuation dashes, quotes
/// and ellipsis.
fn is_answer_punctuation(c: char) -> bool {
    let full_width_ascii = ('\u{FF01}'..='\u{FF5E}').contains(&c)
        && char::from_u32(c as u32 - 0xFEE0).is_some_and(|a| a.is_ascii_punctuation());
    c.is_ascii_punctuation()
        || full_width_ascii
        || matches!(c, '\u{B7}' | '\u{2010}'..='\u{2027}' | '\u{3001}'..='\u{3003}'
            | '\u{3008}'..='\u{3011}' | '\u{3014}'..='\u{301F}' | '\u{FF61}'..='\u{FF65}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_normalisation_table() {
        let cases = [
            ("The  Cat!", "cat"),
            ("an apple, a pear", "apple pear"),
            ("theater and Anna", "theater and anna"),
            ("the_the", "thethe"),
            ("thé the", "thé"),
            ("A", ""),
            ("don't", "dont"),
            ("\tx\u{1c}y ", "x y"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_answer(input), want, "{input:?}");
        }
    }

    #[test]
    fn chinese_tokens_table() {
        let cases: [(&str, &[&str]); 5] = [
            ("北京大学", &["北", "京", "大", "学"]),
            ("《红楼梦》。", &["红", "楼", "梦"]),
            ("1998年", &["1998", "年"]),
            ("维生素A", &["维", "生", "素", "a"]),
            ("GPT-2 模型", &["gpt2", "模", "型"]),
        ];
        for (input, want) in cases {
            assert_eq!(answer_tokens(input, true), want, "{input:?}");
        }
    }

    #[test]
    fn em_and_f1_table() {
        let cases = [
            ("the Eiffel Tower", "Eiffel tower.", true, 1.0),
            ("Eiffel", "the Eiffel Tower", false, 2.0 / 3.0),
            ("", "Paris", false, 0.0),
            ("", "", true, 0.0),
            ("北京大学", "北京", false, 2.0 / 3.0),
            ("北京。", "北京", true, 1.0),
        ];
        for (pred, gold, em, f1) in cases {
            assert_eq!(exact_match(pred, gold), em, "{pred:?} vs {gold:?}");
            assert!(
                (token_f1(pred, gold) - f1).abs() < 1e-12,
                "{pred:?} vs {gold:?}"
            );
        }
    }

    #[test]
    fn cmrc_f1_needs_a_contiguous_match() {
        // Same characters, different order: bag F1 is 1, CMRC's substring F1 is 0.5.
        assert_eq!(token_f1("京北", "北京"), 1.0);
        assert!((cmrc_f1("大学北京", "北京大学") - 0.5).abs() < 1e-12);
    }

    #[test]
    fn best_over_gold_answers() {
        let golds = ["Paris", "the city of Paris"];
        assert_eq!(max_exact_match("paris", &golds), 1.0);
        assert_eq!(max_token_f1("city", &golds), 2.0 / (1.0 + 3.0));
        let none: [&str; 0] = [];
        assert_eq!(max_token_f1("x", &none), 0.0);
        let scores = qa_scores(&["paris", "x"], &[vec!["Paris"], vec!["y"]]).unwrap();
        assert_eq!((scores.exact_match, scores.f1, scores.count), (0.5, 0.5, 2));
        let missing: [Vec<&str>; 1] = [vec![]];
        assert!(matches!(
            qa_scores(&["x"], &missing),
            Err(Error::NoReference { index: 0, .. })
        ));
    }

    #[test]
    fn chinese_punctuation_class() {
        for c in "，。：？！“”；’《》·、「」（）－～『』【】…—-".chars()
        {
            assert!(is_answer_punctuation(c), "{c}");
        }
        for c in "中a1 〇".chars() {
            assert!(!is_answer_punctuation(c), "{c}");
        }
    }
}
