//! `classify`: TF-IDF + multinomial logistic regression ([`linfa_logistic`]).
use crate::error::{Result, fit_error};
use crate::scores::BaselineScores;
use crate::text::TfIdf;
use linfa::DatasetBase;
use linfa::traits::{Fit, Predict};
use linfa_logistic::MultiLogisticRegression;
use mtgpt_core::Example;
use mtgpt_tasks::{Prediction, TaskHead, score_predictions};
use ndarray::Array1;
use std::time::Instant;

/// Features kept (the most frequent n-grams of the training split).
const MAX_FEATURES: usize = 10_000;
/// L2 strengths tried (scikit-learn's `C` = 1 / alpha: 10, 4, 1); the validation split picks.
const ALPHAS: [f32; 3] = [0.1, 0.25, 1.0];

fn text_of(ex: &Example) -> String {
    match ex {
        Example::Classify {
            text, text_pair, ..
        } => match text_pair {
            Some(p) => format!("{text} {p}"),
            None => text.clone(),
        },
        _ => String::new(),
    }
}

fn label_of(ex: &Example) -> &str {
    match ex {
        Example::Classify { label, .. } => label,
        _ => "",
    }
}

/// Fits on `train` (L2 strength picked on `valid` when given) and scores on `test`.
pub(crate) fn tfidf_logreg(
    head: &TaskHead,
    train: &[Example],
    valid: Option<&[Example]>,
    test: &[Example],
) -> Result<BaselineScores> {
    let start = Instant::now();
    let texts = |ex: &[Example]| ex.iter().map(text_of).collect::<Vec<_>>();
    let ids = |ex: &[Example]| -> Array1<usize> {
        ex.iter()
            .map(|e| {
                head.labels
                    .iter()
                    .position(|l| l == label_of(e))
                    .unwrap_or(0)
            })
            .collect()
    };
    let f = TfIdf::fit(&texts(train), MAX_FEATURES)?;
    let x = f.transform(&texts(train))?;
    let y = ids(train);
    let fit = |alpha: f32| {
        MultiLogisticRegression::default()
            .alpha(alpha)
            .max_iterations(100)
            .fit(&DatasetBase::new(x.view(), y.view()))
            .map_err(|e| fit_error("tfidf+logreg", e))
    };
    let model = match valid.filter(|v| !v.is_empty()) {
        None => fit(ALPHAS[1])?,
        Some(valid) => {
            let (xv, yv) = (f.transform(&texts(valid))?, ids(valid));
            let mut best = None;
            for alpha in ALPHAS {
                let m = fit(alpha)?;
                let p = m.predict(&xv);
                let acc = p.iter().zip(&yv).filter(|(a, b)| a == b).count();
                if best.as_ref().is_none_or(|(b, _)| acc > *b) {
                    best = Some((acc, m));
                }
            }
            best.map(|(_, m)| m).unwrap_or(fit(ALPHAS[1])?)
        }
    };
    let xt = f.transform(&texts(test))?;
    let probs = model.predict_probabilities(&xt);
    // The model's classes are the label ids seen in training, in sorted order.
    let classes = model.classes().to_vec();
    let preds: Vec<Prediction> = probs
        .rows()
        .into_iter()
        .map(|row| {
            let mut p = vec![0.0f64; head.labels.len()];
            for (k, &c) in classes.iter().enumerate() {
                p[c] = f64::from(row[k]);
            }
            let best = (0..p.len())
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap_or(0);
            Prediction::Class {
                label: head.labels[best].clone(),
                probs: p,
            }
        })
        .collect();
    let scores = score_predictions(&head.name, head.kind, test, &preds)?;
    Ok(BaselineScores {
        method: "tfidf+logreg".into(),
        seconds: start.elapsed().as_secs_f64(),
        scores,
    })
}
