//! `tagging`: the most frequent training tag of each token, and a linear-chain CRF
//! ([`crfs`], a Rust port of CRFsuite; L-BFGS with L1 + L2 penalties) on a ±2-token window of
//! token identities.
use crate::error::{Result, fit_error};
use crate::scores::BaselineScores;
use crfs::train::{Lbfgs, Trainer};
use crfs::{Attribute, Model};
use mtgpt_core::Example;
use mtgpt_tasks::{Prediction, TaskHead, score_predictions};
use std::collections::HashMap;
use std::time::Instant;

fn pairs(ex: &[Example]) -> impl Iterator<Item = (&[String], &[String])> {
    ex.iter().filter_map(|e| match e {
        Example::Tagging { tokens, tags } => Some((tokens.as_slice(), tags.as_slice())),
        _ => None,
    })
}

/// Each token's most frequent training tag; unseen tokens get the most frequent tag overall.
pub struct MostFrequentTag {
    by_token: HashMap<String, String>,
    fallback: String,
}

impl MostFrequentTag {
    /// Counts tags per token over `train`.
    pub fn fit(train: &[Example]) -> Self {
        let mut counts: HashMap<&str, HashMap<&str, usize>> = HashMap::new();
        let mut overall: HashMap<&str, usize> = HashMap::new();
        for (tokens, tags) in pairs(train) {
            for (w, t) in tokens.iter().zip(tags) {
                *counts.entry(w).or_default().entry(t).or_default() += 1;
                *overall.entry(t).or_default() += 1;
            }
        }
        // Ties break by tag name, so the result does not depend on hash order.
        let best = |m: &HashMap<&str, usize>| {
            m.iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(t, _)| t.to_string())
                .unwrap_or_else(|| "O".into())
        };
        MostFrequentTag {
            by_token: counts
                .iter()
                .map(|(w, m)| (w.to_string(), best(m)))
                .collect(),
            fallback: best(&overall),
        }
    }

    /// One tag per token.
    pub fn tag(&self, tokens: &[String]) -> Vec<String> {
        tokens
            .iter()
            .map(|w| self.by_token.get(w).unwrap_or(&self.fallback).clone())
            .collect()
    }
}

/// CRF features of position `i`: the token itself, its neighbours up to two away, and the
/// two bigrams around it (with sentence-boundary markers).
fn features(tokens: &[String], i: usize) -> Vec<Attribute> {
    let at = |k: isize| -> &str {
        let j = i as isize + k;
        if j < 0 {
            "<s>"
        } else {
            tokens.get(j as usize).map_or("</s>", String::as_str)
        }
    };
    let mut f = vec![Attribute::new("bias", 1.0)];
    for k in -2..=2isize {
        f.push(Attribute::new(
            format!("w[{k}]={}", at(k).to_lowercase()),
            1.0,
        ));
    }
    f.push(Attribute::new(format!("w[-1:0]={}|{}", at(-1), at(0)), 1.0));
    f.push(Attribute::new(format!("w[0:1]={}|{}", at(0), at(1)), 1.0));
    if at(0).chars().all(char::is_numeric) {
        f.push(Attribute::new("digit", 1.0));
    }
    f
}

fn sequence(tokens: &[String]) -> Vec<Vec<Attribute>> {
    (0..tokens.len()).map(|i| features(tokens, i)).collect()
}

/// A linear-chain CRF tagger trained by crfs.
pub struct CrfTagger {
    /// The model file crfs wrote (its `Model` borrows these bytes).
    model: Vec<u8>,
}

impl CrfTagger {
    /// Trains on `train` (L-BFGS, c1 = c2 = 0.1, at most 100 iterations).
    pub fn fit(train: &[Example]) -> Result<Self> {
        let err = |e: std::io::Error| fit_error("crf", e);
        let mut trainer = Trainer::<Lbfgs>::new();
        let p = trainer.params_mut();
        p.set_c1(0.1).map_err(err)?;
        p.set_c2(0.1).map_err(err)?;
        p.set_max_iterations(100).map_err(err)?;
        for (tokens, tags) in pairs(train) {
            if !tokens.is_empty() {
                trainer.append(&sequence(tokens), tags).map_err(err)?;
            }
        }
        let dir = tempfile::tempdir().map_err(err)?;
        let path = dir.path().join("crf.model");
        trainer.train(&path).map_err(err)?;
        let model = std::fs::read(&path).map_err(err)?;
        Model::new(&model).map_err(err)?;
        Ok(CrfTagger { model })
    }

    /// One tag per token.
    pub fn tag(&self, tokens: &[String]) -> Result<Vec<String>> {
        Ok(self.tag_all(&[tokens.to_vec()])?.pop().unwrap_or_default())
    }

    /// One tag per token of each sentence.
    pub fn tag_all(&self, sentences: &[Vec<String>]) -> Result<Vec<Vec<String>>> {
        let err = |e: std::io::Error| fit_error("crf", e);
        let model = Model::new(&self.model).map_err(err)?;
        let tagger = model.tagger().map_err(err)?;
        sentences
            .iter()
            .map(|s| {
                Ok(tagger
                    .tag(&sequence(s))
                    .map_err(err)?
                    .into_iter()
                    .map(str::to_string)
                    .collect())
            })
            .collect()
    }
}

/// Both tagging baselines of `head`, fitted on `train` and scored on `test`.
pub(crate) fn baselines(
    head: &TaskHead,
    train: &[Example],
    test: &[Example],
) -> Result<Vec<BaselineScores>> {
    let tokens = |e: &Example| match e {
        Example::Tagging { tokens, .. } => tokens.clone(),
        _ => Vec::new(),
    };
    let start = Instant::now();
    let mft = MostFrequentTag::fit(train);
    let preds: Vec<Prediction> = test
        .iter()
        .map(|e| Prediction::Tags(mft.tag(&tokens(e))))
        .collect();
    let mut out = vec![BaselineScores {
        method: "most-frequent-tag".into(),
        scores: score_predictions(&head.name, head.kind, test, &preds)?,
        seconds: start.elapsed().as_secs_f64(),
    }];
    let start = Instant::now();
    let crf = CrfTagger::fit(train)?;
    let sentences: Vec<Vec<String>> = test.iter().map(tokens).collect();
    let preds: Vec<Prediction> = crf
        .tag_all(&sentences)?
        .into_iter()
        .map(Prediction::Tags)
        .collect();
    out.push(BaselineScores {
        method: "crf".into(),
        scores: score_predictions(&head.name, head.kind, test, &preds)?,
        seconds: start.elapsed().as_secs_f64(),
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(tokens: &[&str], tags: &[&str]) -> Example {
        Example::Tagging {
            tokens: tokens.iter().map(|s| s.to_string()).collect(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn most_frequent_tag_counts_and_falls_back() {
        let train = vec![
            ex(&["北", "京", "好"], &["B-LOC", "I-LOC", "O"]),
            ex(&["北", "方"], &["O", "O"]),
            ex(&["北", "京"], &["B-LOC", "I-LOC"]),
        ];
        let m = MostFrequentTag::fit(&train);
        assert_eq!(m.tag(&words(&["北", "京", "新"])), ["B-LOC", "I-LOC", "O"]);
    }

    #[test]
    fn crf_learns_context_a_token_alone_cannot_give() {
        // "A" is a name after "Mr" and a plain word after "the": only the window tells.
        let mut train = Vec::new();
        for _ in 0..10 {
            for next in ["came", "team", "went"] {
                train.push(ex(&["Mr", "A", next], &["O", "B-PER", "O"]));
                train.push(ex(&["the", "A", next], &["O", "O", "O"]));
            }
        }
        let crf = CrfTagger::fit(&train).unwrap();
        assert_eq!(
            crf.tag(&words(&["Mr", "A", "went"])).unwrap(),
            ["O", "B-PER", "O"]
        );
        assert_eq!(
            crf.tag(&words(&["the", "A", "came"])).unwrap(),
            ["O", "O", "O"]
        );
        assert!(crf.tag(&[]).unwrap().is_empty());
    }
}
