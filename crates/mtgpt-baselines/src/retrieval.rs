//! `generate`: answer with the target of the training example whose source is most similar
//! (TF-IDF cosine) — what a model that only memorised its training pairs would say.
use crate::error::Result;
use crate::scores::BaselineScores;
use crate::text::TfIdf;
use mtgpt_core::Example;
use mtgpt_tasks::{Prediction, TaskHead, score_predictions};
use std::time::Instant;

const MAX_FEATURES: usize = 20_000;

fn parts(e: &Example) -> (String, String) {
    match e {
        Example::Generate { source, target } => (source.clone(), target.clone()),
        _ => (String::new(), String::new()),
    }
}

/// Fits on the sources of `train` and scores the nearest targets on `test`.
pub(crate) fn nearest_target(
    head: &TaskHead,
    train: &[Example],
    test: &[Example],
) -> Result<BaselineScores> {
    let start = Instant::now();
    let (sources, targets): (Vec<String>, Vec<String>) = train.iter().map(parts).unzip();
    let f = TfIdf::fit(&sources, MAX_FEATURES)?;
    let x = f.transform(&sources)?;
    let queries: Vec<String> = test.iter().map(|e| parts(e).0).collect();
    let q = f.transform(&queries)?;
    // Rows are unit length, so the products are cosines.
    let sim = q.dot(&x.t());
    let preds: Vec<Prediction> = sim
        .rows()
        .into_iter()
        .map(|row| {
            let best = (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            Prediction::Text(targets.get(best).cloned().unwrap_or_default())
        })
        .collect();
    Ok(BaselineScores {
        method: "nearest-source".into(),
        scores: score_predictions(&head.name, head.kind, test, &preds)?,
        seconds: start.elapsed().as_secs_f64(),
    })
}
