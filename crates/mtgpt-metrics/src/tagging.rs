//! Span F1 and token accuracy for sequence tagging, following seqeval's default mode (the
//! conlleval-compatible rules of `seqeval.metrics.f1_score` without `mode="strict"`).
//!
//! A tag is a one-letter prefix and a type: `B-PER` is prefix `B`, type `PER`; `O` has type
//! `_`. BIO, IOB1, BIOES and BMES are all read by the same rules, so an `I-` tag without a
//! `B-` still opens an entity and a change of type always closes one. BMES's `M-` is read as
//! `I-` (seqeval itself knows no `M`, so it would drop an entity ending in `M-` before a `B-`
//! of the same type). An empty tag counts as `O` (seqeval would fail on it).

use std::collections::{BTreeMap, HashSet};

use crate::error::{Error, Result, check_pairs};

/// An entity: its type and the tokens it covers, `start..end` (end exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Span {
    /// Entity type, e.g. `PER`.
    pub label: String,
    /// First token.
    pub start: usize,
    /// One past the last token.
    pub end: usize,
}

/// Entity counts of one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeCounts {
    /// Entity type.
    pub label: String,
    /// Predicted entities that match a gold entity exactly (type, start and end).
    pub true_positives: usize,
    /// Predicted entities.
    pub predicted: usize,
    /// Gold entities (seqeval's support).
    pub gold: usize,
}

impl TypeCounts {
    /// `true_positives / predicted`, 0 when nothing was predicted.
    pub fn precision(&self) -> f64 {
        ratio(self.true_positives, self.predicted)
    }

    /// `true_positives / gold`, 0 when there is no gold entity.
    pub fn recall(&self) -> f64 {
        ratio(self.true_positives, self.gold)
    }

    /// Harmonic mean of precision and recall, 0 when both are 0.
    pub fn f1(&self) -> f64 {
        f1(self.precision(), self.recall())
    }
}

/// Micro-averaged span scores, per-type counts and token accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanReport {
    /// Micro-averaged precision over all entity types (0..=1).
    pub precision: f64,
    /// Micro-averaged recall (0..=1).
    pub recall: f64,
    /// Micro-averaged F1 (0..=1), seqeval's default `f1_score`.
    pub f1: f64,
    /// Counts per entity type, sorted by type; types seen only in predictions are included.
    pub per_type: Vec<TypeCounts>,
    /// Fraction of tokens whose predicted tag equals the gold tag (seqeval's `accuracy_score`).
    pub token_accuracy: f64,
}

/// Entities in one tag sequence, in order of their end.
pub fn extract_spans<S: AsRef<str>>(tags: &[S]) -> Vec<Span> {
    let mut spans = Vec::new();
    let (mut prev_tag, mut prev_type) = ('O', "");
    let mut begin = 0;
    // seqeval appends a sentinel `O` so an entity at the end is closed.
    for (i, tag) in tags.iter().map(AsRef::as_ref).chain(["O"]).enumerate() {
        let (tag, type_) = split_tag(tag);
        if ends_chunk(prev_tag, tag, prev_type, type_) {
            spans.push(Span {
                label: prev_type.to_string(),
                start: begin,
                end: i,
            });
        }
        if starts_chunk(prev_tag, tag, prev_type, type_) {
            begin = i;
        }
        (prev_tag, prev_type) = (tag, type_);
    }
    spans
}

/// Micro precision/recall/F1 over entities of all sentences, per-type counts and token
/// accuracy. `pred[i]` and `gold[i]` are the tags of sentence `i`.
///
/// # Errors
/// [`Error::LengthMismatch`] / [`Error::Empty`] for the sentence lists,
/// [`Error::SentenceLengthMismatch`] when a sentence's tag counts differ, and
/// [`Error::Empty`] when there are no tokens at all.
pub fn span_report<P, G, SP, SG>(pred: &[P], gold: &[G]) -> Result<SpanReport>
where
    P: AsRef<[SP]>,
    G: AsRef<[SG]>,
    SP: AsRef<str>,
    SG: AsRef<str>,
{
    const METRIC: &str = "span F1";
    check_pairs(METRIC, pred.len(), gold.len())?;
    // type -> (sentence, start, end) sets
    let mut gold_sets: BTreeMap<String, HashSet<(usize, usize, usize)>> = BTreeMap::new();
    let mut pred_sets = gold_sets.clone();
    let (mut tokens, mut correct_tokens) = (0, 0);
    for (index, (p, g)) in pred.iter().zip(gold).enumerate() {
        let (p, g) = (p.as_ref(), g.as_ref());
        if p.len() != g.len() {
            return Err(Error::SentenceLengthMismatch {
                metric: METRIC,
                index,
                pred: p.len(),
                gold: g.len(),
            });
        }
        tokens += p.len();
        correct_tokens += p
            .iter()
            .zip(g)
            .filter(|(a, b)| a.as_ref() == b.as_ref())
            .count();
        for (spans, sets) in [
            (extract_spans(p), &mut pred_sets),
            (extract_spans(g), &mut gold_sets),
        ] {
            for s in spans {
                sets.entry(s.label)
                    .or_default()
                    .insert((index, s.start, s.end));
            }
        }
    }
    if tokens == 0 {
        return Err(Error::Empty { metric: METRIC });
    }
    let labels: Vec<String> = pred_sets
        .keys()
        .chain(gold_sets.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let empty = HashSet::new();
    let per_type: Vec<TypeCounts> = labels
        .into_iter()
        .map(|label| {
            let p = pred_sets.get(&label).unwrap_or(&empty);
            let g = gold_sets.get(&label).unwrap_or(&empty);
            TypeCounts {
                true_positives: p.intersection(g).count(),
                predicted: p.len(),
                gold: g.len(),
                label,
            }
        })
        .collect();
    let sum = |f: fn(&TypeCounts) -> usize| per_type.iter().map(f).sum::<usize>();
    let tp = sum(|t| t.true_positives);
    let precision = ratio(tp, sum(|t| t.predicted));
    let recall = ratio(tp, sum(|t| t.gold));
    Ok(SpanReport {
        precision,
        recall,
        f1: f1(precision, recall),
        per_type,
        token_accuracy: correct_tokens as f64 / tokens as f64,
    })
}

/// Micro-averaged span F1 (seqeval's default `f1_score`).
///
/// # Errors
/// As [`span_report`].
pub fn span_f1<P, G, SP, SG>(pred: &[P], gold: &[G]) -> Result<f64>
where
    P: AsRef<[SP]>,
    G: AsRef<[SG]>,
    SP: AsRef<str>,
    SG: AsRef<str>,
{
    Ok(span_report(pred, gold)?.f1)
}

/// `(prefix, type)` the way seqeval splits a tag, with `M` read as `I`.
fn split_tag(tag: &str) -> (char, &str) {
    let mut chars = tag.chars();
    let Some(first) = chars.next() else {
        return ('O', "_");
    };
    let rest = chars.as_str();
    // `chunk[1:].split('-', maxsplit=1)[-1] or '_'`
    let type_ = rest.split_once('-').map_or(rest, |(_, t)| t);
    (
        if first == 'M' { 'I' } else { first },
        if type_.is_empty() { "_" } else { type_ },
    )
}

/// seqeval's `end_of_chunk`.
fn ends_chunk(prev_tag: char, tag: char, prev_type: &str, type_: &str) -> bool {
    matches!(prev_tag, 'E' | 'S')
        || (matches!(prev_tag, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev_tag != 'O' && prev_tag != '.' && prev_type != type_)
}

/// seqeval's `start_of_chunk`.
fn starts_chunk(prev_tag: char, tag: char, prev_type: &str, type_: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev_tag, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_type != type_)
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn f1(precision: f64, recall: f64) -> f64 {
    let denom = precision + recall;
    if denom == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / denom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(tags: &str) -> Vec<(String, usize, usize)> {
        let tags: Vec<&str> = tags.split_whitespace().collect();
        extract_spans(&tags)
            .into_iter()
            .map(|s| (s.label, s.start, s.end))
            .collect()
    }

    fn s(label: &str, start: usize, end: usize) -> (String, usize, usize) {
        (label.to_string(), start, end)
    }

    #[test]
    fn chunk_table() {
        let cases = [
            ("B-PER I-PER O B-LOC", vec![s("PER", 0, 2), s("LOC", 3, 4)]),
            ("I-PER I-PER O", vec![s("PER", 0, 2)]),
            ("B-PER B-PER", vec![s("PER", 0, 1), s("PER", 1, 2)]),
            ("B-PER I-LOC", vec![s("PER", 0, 1), s("LOC", 1, 2)]),
            (
                "S-LOC B-PER E-PER S-PER",
                vec![s("LOC", 0, 1), s("PER", 1, 3), s("PER", 3, 4)],
            ),
            ("B-ORG M-ORG M-ORG E-ORG O", vec![s("ORG", 0, 4)]),
            ("B-ORG M-ORG B-ORG", vec![s("ORG", 0, 2), s("ORG", 2, 3)]),
            ("O O", vec![]),
            ("", vec![]),
        ];
        for (tags, want) in cases {
            assert_eq!(spans(tags), want, "{tags}");
        }
    }

    #[test]
    fn report_by_hand() {
        let gold = [vec!["B-PER", "I-PER", "O", "B-LOC"], vec!["B-LOC", "O"]];
        let pred = [vec!["B-PER", "I-PER", "O", "O"], vec!["B-LOC", "B-PER"]];
        let r = span_report(&pred, &gold).unwrap();
        // gold: PER(0), LOC(0), LOC(1); pred: PER(0), LOC(1), PER(1). tp = 2.
        assert_eq!((r.precision, r.recall), (2.0 / 3.0, 2.0 / 3.0));
        assert_eq!(r.token_accuracy, 4.0 / 6.0);
        let per: Vec<_> = r
            .per_type
            .iter()
            .map(|t| (t.label.as_str(), t.true_positives, t.predicted, t.gold))
            .collect();
        assert_eq!(per, [("LOC", 1, 1, 2), ("PER", 1, 2, 1)]);
    }

    #[test]
    fn bad_inputs() {
        let short = [vec!["O"]];
        let long = [vec!["O", "O"]];
        assert!(matches!(
            span_f1(&short, &long),
            Err(Error::SentenceLengthMismatch { index: 0, .. })
        ));
        let empty: [Vec<&str>; 1] = [vec![]];
        assert!(matches!(span_f1(&empty, &empty), Err(Error::Empty { .. })));
    }
}
