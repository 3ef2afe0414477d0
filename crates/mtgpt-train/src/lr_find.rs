//! `mtgpt lr-find`: the learning-rate range test (Smith 2017, popularised by fastai). The
//! learning rate grows exponentially from `min_lr` to `max_lr` over `steps` steps while
//! the model trains on the joint mixture; the smoothed loss is recorded until it blows up.
//!
//! Every step sees every joint task (`batch_size / n_tasks` examples each, at least one), so
//! the curve is not a zig-zag between tasks with different loss scales. The suggestion is
//! the rate where the smoothed loss falls fastest against log(lr).
use crate::error::{Error, Result};
use crate::optim::AdamW;
use crate::report::{Series, line_chart};
use crate::trainer::{TrainOptions, load_data, run_step, sorted_vars, streams};
use crate::weighting::LossWeighting;
use mtgpt_core::{Config, WeightingConfig, WeightingStrategy};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use tch::Tensor;

/// Range-test settings.
#[derive(Debug, Clone)]
pub struct LrFindOptions {
    /// First learning rate.
    pub min_lr: f64,
    /// Last learning rate.
    pub max_lr: f64,
    /// Steps between them.
    pub steps: usize,
    /// Stop once the smoothed loss exceeds this many times its minimum.
    pub stop_factor: f64,
}

impl Default for LrFindOptions {
    fn default() -> Self {
        LrFindOptions {
            min_lr: 1e-7,
            max_lr: 1.0,
            steps: 100,
            stop_factor: 4.0,
        }
    }
}

/// One point of the test.
#[derive(Debug, Clone, Serialize)]
pub struct LrPoint {
    /// Learning rate of the step.
    pub lr: f64,
    /// Mean task loss of the step.
    pub loss: f64,
    /// Bias-corrected exponential moving average of the loss (β = 0.9).
    pub smoothed: f64,
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct LrFindResult {
    /// Points in order.
    pub points: Vec<LrPoint>,
    /// The suggested learning rate (steepest descent of the smoothed loss).
    pub suggested: f64,
    /// The rate of the lowest smoothed loss (a common rule takes a tenth of it).
    pub min_loss_lr: f64,
    /// `lr_find.png`.
    pub plot: PathBuf,
    /// `lr_find.csv`.
    pub csv: PathBuf,
}

/// The learning rate of step `i` of `n` on the exponential ramp.
pub fn ramp(min_lr: f64, max_lr: f64, i: usize, n: usize) -> f64 {
    if n <= 1 {
        return min_lr;
    }
    min_lr * (max_lr / min_lr).powf(i as f64 / (n - 1) as f64)
}

/// The rate where `smoothed` falls fastest per unit of ln(lr), skipping the first tenth of
/// the points (the average is still settling); `None` with fewer than 5 points.
pub fn steepest(points: &[LrPoint]) -> Option<f64> {
    if points.len() < 5 {
        return None;
    }
    let skip = points.len() / 10;
    let mut best: Option<(f64, f64)> = None;
    for w in points[skip..].windows(2) {
        let slope = (w[1].smoothed - w[0].smoothed) / (w[1].lr.ln() - w[0].lr.ln());
        if slope.is_finite() && best.is_none_or(|(s, _)| slope < s) {
            best = Some((slope, w[0].lr));
        }
    }
    best.map(|(_, lr)| lr)
}

/// Runs the range test for `config` and writes `lr_find.csv`, `lr_find.png` and
/// `lr_find.json` into `opts.out`.
pub fn lr_find(config: &Config, opts: &TrainOptions, lf: &LrFindOptions) -> Result<LrFindResult> {
    if !(lf.min_lr > 0.0 && lf.max_lr > lf.min_lr && lf.max_lr.is_finite()) {
        return Err(Error::Invalid(format!(
            "lr-find: need 0 < --min-lr < --max-lr, got {} and {}",
            lf.min_lr, lf.max_lr
        )));
    }
    if lf.steps < 5 {
        return Err(Error::Invalid("lr-find: --steps must be at least 5".into()));
    }
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.clone(),
        source: e,
    })?;
    let data = load_data(config, opts)?;
    let fmts = data.formatters()?;
    let mut runs = streams(&data, &fmts)?;
    tch::manual_seed(config.seed as i64);
    let model = crate::trainer::data::new_model(config, &data, opts.device, false)?;
    // Static weights: a learned weighting would move the loss scale during the test.
    let weights: Vec<f64> = config.tasks.iter().map(|t| t.weight).collect();
    let weighting = LossWeighting::new(
        &(model.vs.root() / "loss_weights"),
        &WeightingConfig {
            strategy: WeightingStrategy::Static,
            ..config.train.weighting.clone()
        },
        &weights,
    )?;
    let mut opt = AdamW::from_config(&model.vs, &config.train);
    let trainable: Vec<Tensor> = sorted_vars(&model)
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| t.requires_grad())
        .collect();
    let n = runs.len();
    let plan: Vec<(usize, usize)> = (0..n)
        .map(|t| (t, (config.train.batch_size / n).max(1)))
        .collect();
    let mut points: Vec<LrPoint> = Vec::new();
    let (mut avg, beta) = (0.0, 0.9);
    let mut best = f64::INFINITY;
    for i in 0..lf.steps {
        let lr = ramp(lf.min_lr, lf.max_lr, i, lf.steps);
        tch::manual_seed(
            mtgpt_core::seed::derive_seed(config.seed, &format!("lr-find/{i}")) as i64,
        );
        let so = run_step(
            &model,
            &fmts,
            &mut runs,
            &weighting,
            &mut opt,
            &trainable,
            &config.train,
            &plan,
            false,
            0,
            None,
            None,
        )?;
        let loss = so.task_losses.iter().map(|x| x.1).sum::<f64>() / n as f64;
        if !loss.is_finite() || !so.norm.is_finite() {
            tracing::info!("lr-find: loss {loss} at lr {lr:.2e}; stopping");
            break;
        }
        opt.step(lr);
        opt.zero_grad();
        avg = beta * avg + (1.0 - beta) * loss;
        let smoothed = avg / (1.0 - beta.powi(i as i32 + 1));
        points.push(LrPoint { lr, loss, smoothed });
        best = best.min(smoothed);
        if i > 5 && smoothed > lf.stop_factor * best {
            tracing::info!(
                "lr-find: loss rose above {}× its minimum at lr {lr:.2e}; stopping",
                lf.stop_factor
            );
            break;
        }
    }
    let suggested = steepest(&points).ok_or_else(|| {
        Error::Invalid(format!(
            "lr-find: the loss diverged after {} steps, too few to suggest a rate; lower --min-lr",
            points.len()
        ))
    })?;
    let min_loss_lr = points
        .iter()
        .min_by(|a, b| a.smoothed.total_cmp(&b.smoothed))
        .map_or(suggested, |p| p.lr);
    let csv = out.join("lr_find.csv");
    let mut text = String::from("lr,loss,smoothed\n");
    for p in &points {
        let _ = writeln!(text, "{:e},{},{}", p.lr, p.loss, p.smoothed);
    }
    std::fs::write(&csv, text).map_err(|e| Error::Io {
        path: csv.clone(),
        source: e,
    })?;
    let plot = out.join("lr_find.png");
    line_chart(
        &plot,
        &format!("learning-rate range test (suggested {suggested:.2e})"),
        "learning rate",
        "loss",
        &[
            Series {
                label: "loss".into(),
                points: points.iter().map(|p| (p.lr, p.loss)).collect(),
            },
            Series {
                label: "smoothed".into(),
                points: points.iter().map(|p| (p.lr, p.smoothed)).collect(),
            },
        ],
        true,
    )?;
    let result = LrFindResult {
        points,
        suggested,
        min_loss_lr,
        plot,
        csv,
    };
    let json = out.join("lr_find.json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&result).map_err(|e| Error::Invalid(e.to_string()))?,
    )
    .map_err(|e| Error::Io {
        path: json.clone(),
        source: e,
    })?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_is_exponential_between_its_ends() {
        assert_eq!(ramp(1e-6, 1.0, 0, 7), 1e-6);
        assert!((ramp(1e-6, 1.0, 6, 7) - 1.0).abs() < 1e-12);
        assert!((ramp(1e-6, 1.0, 3, 7) - 1e-3).abs() < 1e-15);
    }

    #[test]
    fn steepest_finds_the_fastest_fall() {
        let lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0];
        let losses = [5.0, 4.9, 4.0, 2.0, 1.9, 3.0, 9.0];
        let points: Vec<LrPoint> = lrs
            .iter()
            .zip(losses)
            .map(|(&lr, l)| LrPoint {
                lr,
                loss: l,
                smoothed: l,
            })
            .collect();
        // The biggest drop per decade is 4.0 → 2.0, starting at 1e-3.
        assert_eq!(steepest(&points), Some(1e-3));
        assert_eq!(steepest(&points[..3]), None);
    }
}
