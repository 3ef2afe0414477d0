//! Corpus BLEU as sacreBLEU computes it by default: BLEU-4, `exp` smoothing, brevity penalty
//! against the closest reference length, mixed case, and the `13a` (mteval-v13a) or `zh`
//! tokenizer.
//!
//! The tokenizers are ports of sacreBLEU's, quirks included: `zh` spaces out every character
//! of sacreBLEU's "Chinese" ranges, which (because some range bounds are written as
//! five-digit `\u` escapes) cover U+2001..=U+2A6D, CJK punctuation and full-width forms, but
//! not the supplementary-plane ideographs.

use std::collections::HashMap;

use crate::error::{Error, Result, check_pairs};
use crate::text::{is_python_space, python_split, python_strip};

/// Highest n-gram order (BLEU-4).
pub const MAX_ORDER: usize = 4;

/// How hypotheses and references are split into tokens before counting n-grams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BleuTokenize {
    /// sacreBLEU's default `13a`: splits off punctuation, keeps `3.5` and `1,000` whole.
    #[default]
    Mteval13a,
    /// sacreBLEU's `zh`: every Chinese character is a token; the rest is split as by `13a`.
    Zh,
    /// sacreBLEU's `none`: split on whitespace only.
    Whitespace,
}

/// A corpus BLEU score with the statistics behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    /// BLEU on 0..=100, unrounded (sacreBLEU's `.score`).
    pub score: f64,
    /// Smoothed n-gram precisions on 0..=100, for n = 1..=4.
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty, `exp(1 - ref_len / hyp_len)` when the hypotheses are shorter.
    pub brevity_penalty: f64,
    /// Clipped n-gram matches per order.
    pub matches: [usize; MAX_ORDER],
    /// Hypothesis n-grams per order.
    pub totals: [usize; MAX_ORDER],
    /// Total hypothesis length in tokens.
    pub hyp_len: usize,
    /// Total length of the closest reference for each hypothesis.
    pub ref_len: usize,
}

/// Corpus BLEU with one reference per hypothesis.
///
/// # Errors
/// [`Error::LengthMismatch`] or [`Error::Empty`].
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(
    hyps: &[H],
    refs: &[R],
    tokenize: BleuTokenize,
) -> Result<BleuScore> {
    let refs: Vec<[&str; 1]> = refs.iter().map(|r| [r.as_ref()]).collect();
    corpus_bleu_multi(hyps, &refs, tokenize)
}

/// Corpus BLEU where `refs[i]` holds one or more references for `hyps[i]`. N-gram matches are
/// clipped by the highest count in any reference; the reference length of a segment is the
/// one closest to the hypothesis length (the shorter on a tie).
///
/// # Errors
/// [`Error::LengthMismatch`], [`Error::Empty`], or [`Error::NoReference`] for a hypothesis
/// without references.
pub fn corpus_bleu_multi<H: AsRef<str>, R: AsRef<str>, S: AsRef<[R]>>(
    hyps: &[H],
    refs: &[S],
    tokenize: BleuTokenize,
) -> Result<BleuScore> {
    const METRIC: &str = "BLEU";
    check_pairs(METRIC, hyps.len(), refs.len())?;
    let (mut hyp_len, mut ref_len) = (0, 0);
    let (mut matches, mut totals) = ([0; MAX_ORDER], [0; MAX_ORDER]);
    for (index, (hyp, seg_refs)) in hyps.iter().zip(refs).enumerate() {
        let seg_refs = seg_refs.as_ref();
        if seg_refs.is_empty() {
            return Err(Error::NoReference {
                metric: METRIC,
                index,
            });
        }
        let ref_tokens: Vec<Vec<String>> = seg_refs
            .iter()
            .map(|r| bleu_tokens(r.as_ref(), tokenize))
            .collect();
        let mut ref_max: HashMap<&[String], usize> = HashMap::new();
        for tokens in &ref_tokens {
            for (ngram, count) in ngram_counts(tokens) {
                let best = ref_max.entry(ngram).or_default();
                *best = (*best).max(count);
            }
        }
        let hyp_tokens = bleu_tokens(hyp.as_ref(), tokenize);
        for (ngram, count) in ngram_counts(&hyp_tokens) {
            totals[ngram.len() - 1] += count;
            matches[ngram.len() - 1] += count.min(ref_max.get(ngram).copied().unwrap_or(0));
        }
        hyp_len += hyp_tokens.len();
        ref_len += closest_ref_len(hyp_tokens.len(), ref_tokens.iter().map(Vec::len));
    }
    Ok(compute_bleu(matches, totals, hyp_len, ref_len))
}

/// The tokenized line, space-separated, as sacreBLEU scores it (after its `rstrip`).
pub fn tokenize_bleu(line: &str, tokenize: BleuTokenize) -> String {
    bleu_tokens(line, tokenize).join(" ")
}

fn bleu_tokens(line: &str, tokenize: BleuTokenize) -> Vec<String> {
    let line = line.trim_end_matches(is_python_space);
    let prepared = match tokenize {
        BleuTokenize::Whitespace => return python_split(line).map(str::to_string).collect(),
        BleuTokenize::Mteval13a => {
            let mut line = line
                .replace("<skipped>", "")
                .replace("-\n", "")
                .replace('\n', " ");
            if line.contains('&') {
                line = line
                    .replace("&quot;", "\"")
                    .replace("&amp;", "&")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">");
            }
            format!(" {line} ")
        }
        BleuTokenize::Zh => {
            let mut spaced = String::new();
            for c in python_strip(line).chars() {
                if is_sacrebleu_zh_char(c) {
                    spaced.extend([' ', c, ' ']);
                } else {
                    spaced.push(c);
                }
            }
            spaced
        }
    };
    regexp_tokens(&prepared)
}

/// sacreBLEU's `TokenizerRegexp`: four regex substitutions, then whitespace split.
fn regexp_tokens(line: &str) -> Vec<String> {
    // r'([\{-\~\[-\` -\&\(-\+\:-\@\/])' -> r' \1 ': ASCII punctuation except ' , - .
    let mut chars = Vec::with_capacity(line.len() * 2);
    for c in line.chars() {
        if matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/') {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    let is_period_comma = |c: char| c == '.' || c == ',';
    let digit = |c: char| c.is_ascii_digit();
    // r'([^0-9])([\.,])' -> r'\1 \2 '
    let chars = substitute_pairs(
        &chars,
        |a, b| !digit(a) && is_period_comma(b),
        |a, b| vec![a, ' ', b, ' '],
    );
    // r'([\.,])([^0-9])' -> r' \1 \2'
    let chars = substitute_pairs(
        &chars,
        |a, b| is_period_comma(a) && !digit(b),
        |a, b| vec![' ', a, ' ', b],
    );
    // r'([0-9])(-)' -> r'\1 \2 '
    let chars = substitute_pairs(
        &chars,
        |a, b| digit(a) && b == '-',
        |a, b| vec![a, ' ', b, ' '],
    );
    let line: String = chars.into_iter().collect();
    python_split(&line).map(str::to_string).collect()
}

/// `re.sub` for a pattern matching exactly two characters: leftmost, non-overlapping matches.
fn substitute_pairs(
    chars: &[char],
    is_match: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && is_match(chars[i], chars[i + 1]) {
            out.extend(replace(chars[i], chars[i + 1]));
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// What sacreBLEU's `TokenizerZh._is_chinese_char` accepts. Python compares the one-character
/// string with the range bounds as strings, so the bounds written `'\u20000'` and `'\u2f800'`
/// (U+2000 / U+2F80 followed by a `0`) turn into these ranges.
pub fn is_sacrebleu_zh_char(c: char) -> bool {
    matches!(c as u32,
        0x2001..=0x2A6D | 0x2E80..=0x2FDF | 0x2FF0..=0x303F | 0x3100..=0x312F | 0x31A0..=0x31EF
        | 0x3200..=0x4DB5 | 0x4E00..=0x9FBB | 0xF900..=0xFA2D | 0xFA30..=0xFA6A | 0xFA70..=0xFAD9
        | 0xFE10..=0xFE1F | 0xFE30..=0xFE4F | 0xFF00..=0xFFEF)
}

fn ngram_counts(tokens: &[String]) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER {
        for ngram in tokens.windows(n) {
            *counts.entry(ngram).or_default() += 1;
        }
    }
    counts
}

fn closest_ref_len(hyp_len: usize, ref_lens: impl Iterator<Item = usize>) -> usize {
    ref_lens
        .min_by_key(|&r| (r.abs_diff(hyp_len), r))
        .unwrap_or(0)
}

/// sacreBLEU's `compute_bleu` with `smooth_method="exp"` and `effective_order=False`.
fn compute_bleu(
    matches: [usize; MAX_ORDER],
    totals: [usize; MAX_ORDER],
    hyp_len: usize,
    ref_len: usize,
) -> BleuScore {
    let brevity_penalty = if hyp_len >= ref_len {
        1.0
    } else if hyp_len > 0 {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    } else {
        0.0
    };
    let mut precisions = [0.0; MAX_ORDER];
    let mut score = 0.0;
    if matches.iter().any(|&m| m > 0) {
        let mut smooth = 1.0;
        for n in 0..MAX_ORDER {
            if totals[n] == 0 {
                break;
            }
            precisions[n] = if matches[n] == 0 {
                smooth *= 2.0;
                100.0 / (smooth * totals[n] as f64)
            } else {
                100.0 * matches[n] as f64 / totals[n] as f64
            };
        }
        // sacreBLEU floors log(0) at -9999999999, which makes the score exactly 0.
        let log_sum: f64 = precisions
            .iter()
            .map(|&p| if p == 0.0 { -9_999_999_999.0 } else { p.ln() })
            .sum();
        score = brevity_penalty * (log_sum / MAX_ORDER as f64).exp();
    }
    BleuScore {
        score,
        precisions,
        brevity_penalty,
        matches,
        totals,
        hyp_len,
        ref_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_table() {
        let cases = [
            ("Hello, world!", "Hello , world !"),
            (
                "It costs $3.50, or 1,000 yen.",
                "It costs $ 3.50 , or 1,000 yen .",
            ),
            ("don't stop-gap 1990-2000", "don't stop-gap 1990 - 2000"),
            ("a &amp; b &lt;i&gt; &quot;q&quot;", "a & b < i > \" q \""),
            ("end..", "end . ."),
            ("line<skipped> one-\ntwo\nthree  ", "line onetwo three"),
        ];
        for (input, want) in cases {
            assert_eq!(
                tokenize_bleu(input, BleuTokenize::Mteval13a),
                want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn tokenizer_zh_table() {
        let cases = [
            ("我爱北京。", "我 爱 北 京 。"),
            ("GPT-2模型，很好", "GPT-2 模 型 ， 很 好"),
            ("价格3.5元", "价 格 3.5 元"),
        ];
        for (input, want) in cases {
            assert_eq!(tokenize_bleu(input, BleuTokenize::Zh), want, "{input:?}");
        }
    }

    #[test]
    fn perfect_and_disjoint_corpora() {
        let s = ["the cat sat on the mat"];
        let perfect = corpus_bleu(&s, &s, BleuTokenize::default()).unwrap();
        assert!((perfect.score - 100.0).abs() < 1e-9);
        let none = corpus_bleu(&["a b c d"], &["w x y z"], BleuTokenize::default()).unwrap();
        assert_eq!((none.score, none.precisions), (0.0, [0.0; 4]));
    }

    #[test]
    fn short_hypothesis_pays_brevity_penalty() {
        let b = corpus_bleu(
            &["the cat sat on"],
            &["the cat sat on the mat"],
            BleuTokenize::default(),
        )
        .unwrap();
        assert!((b.brevity_penalty - (1.0f64 - 6.0 / 4.0).exp()).abs() < 1e-12);
        assert_eq!((b.hyp_len, b.ref_len), (4, 6));
    }

    #[test]
    fn closest_reference_prefers_shorter_on_tie() {
        assert_eq!(closest_ref_len(5, [3, 7, 9].into_iter()), 3);
        assert_eq!(closest_ref_len(8, [3, 7, 9].into_iter()), 7);
    }

    #[test]
    fn bad_inputs() {
        let empty: [&str; 0] = [];
        assert!(matches!(
            corpus_bleu(&empty, &empty, BleuTokenize::Zh),
            Err(Error::Empty { .. })
        ));
        let no_refs: [Vec<&str>; 1] = [vec![]];
        assert!(matches!(
            corpus_bleu_multi(&["x"], &no_refs, BleuTokenize::Zh),
            Err(Error::NoReference { index: 0, .. })
        ));
    }
}
