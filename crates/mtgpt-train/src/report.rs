//! Seeing a run afterwards: curves from `metrics.jsonl` as PNG files (plotters) and a Markdown
//! report that a person can read on its own.
use crate::error::{Error, Result};
use crate::trainer::summary::TrainSummary;
use mtgpt_core::Config;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Once;

/// The font every chart uses (DejaVu Sans Mono, Bitstream Vera licence, see
/// `assets/DejaVuSansMono.LICENSE`), built in so charts need no fonts on the machine.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
const FAMILY: &str = "mtgpt-mono";

fn font(size: u32) -> FontDesc<'static> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
    FontDesc::new(FontFamily::Name(FAMILY), size as f64, FontStyle::Normal)
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// `(x, y)` points; non-finite ones are dropped.
    pub points: Vec<(f64, f64)>,
}

/// Draws `series` as lines into a `width × height` PNG at `path`. `log_x` puts x on a log
/// scale (x must then be > 0).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> Result<()> {
    let plot_err =
        |e: String| Error::Invalid(format!("{}: drawing the chart: {e}", path.display()));
    let pts: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_x || *x > 0.0))
                .collect()
        })
        .collect();
    let all: Vec<(f64, f64)> = pts.iter().flatten().copied().collect();
    if all.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: nothing to plot for `{title}`",
            path.display()
        )));
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let root = BitMapBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(e.to_string()))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, font(20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64);
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .label_style(font(13))
                .axis_desc_style(font(14))
                .draw()
                .map_err(|e| plot_err(e.to_string()))?;
            for (i, (s, p)) in series.iter().zip(&pts).enumerate() {
                let color = colors[i % colors.len()];
                chart
                    .draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))
                    .map_err(|e| plot_err(e.to_string()))?
                    .label(s.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            if series.len() > 1 {
                chart
                    .configure_series_labels()
                    .label_font(font(13))
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| plot_err(e.to_string()))?;
            }
        }};
    }
    if log_x {
        draw!(
            builder
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(|e| plot_err(e.to_string()))?
        );
    } else {
        draw!(
            builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| plot_err(e.to_string()))?
        );
    }
    root.present().map_err(|e| plot_err(e.to_string()))?;
    Ok(())
}

/// What `metrics.jsonl` says, per task.
#[derive(Debug, Default, Clone)]
pub struct Curves {
    /// Training loss per task: `(step, mean loss since the previous log line)`.
    pub loss: BTreeMap<String, Vec<(f64, f64)>>,
    /// Validation primary metric per task: name and `(step, value)`.
    pub metric: BTreeMap<String, (String, Vec<(f64, f64)>)>,
    /// Aggregate validation score.
    pub aggregate: Vec<(f64, f64)>,
    /// Steps of divergence-guard events.
    pub guard_events: Vec<usize>,
}

/// Reads the curves of `metrics.jsonl`. A step logged twice (a resumed run repeats the steps
/// after its checkpoint) keeps its last value. Lines that are not JSON are errors naming the
/// line.
pub fn read_curves(path: &Path) -> Result<Curves> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut loss: BTreeMap<String, BTreeMap<usize, f64>> = BTreeMap::new();
    let mut metric: BTreeMap<String, (String, BTreeMap<usize, f64>)> = BTreeMap::new();
    let mut agg: BTreeMap<usize, f64> = BTreeMap::new();
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            Error::Invalid(format!(
                "{}:{}: not a JSON line: {e}",
                path.display(),
                i + 1
            ))
        })?;
        let Some(step) = v.get("step").and_then(|s| s.as_u64()).map(|s| s as usize) else {
            continue;
        };
        if let Some(losses) = v.get("losses").and_then(|l| l.as_object()) {
            for (task, l) in losses {
                if let Some(l) = l.as_f64() {
                    loss.entry(task.clone()).or_default().insert(step, l);
                }
            }
        }
        if let Some(scores) = v.get("eval").and_then(|e| e.as_array()) {
            for s in scores {
                let (Some(task), Some(primary)) = (
                    s.get("task").and_then(|t| t.as_str()),
                    s.get("primary").and_then(|p| p.as_str()),
                ) else {
                    continue;
                };
                if let Some(x) = s
                    .get("metrics")
                    .and_then(|m| m.get(primary))
                    .and_then(|x| x.as_f64())
                {
                    let e = metric
                        .entry(task.to_string())
                        .or_insert_with(|| (primary.to_string(), BTreeMap::new()));
                    e.1.insert(step, x);
                }
            }
            if let Some(a) = v.get("aggregate").and_then(|a| a.as_f64()) {
                agg.insert(step, a);
            }
        }
        if v.get("guard_event").is_some() {
            events.push(step);
        }
    }
    let pts = |m: BTreeMap<usize, f64>| m.into_iter().map(|(s, v)| (s as f64, v)).collect();
    Ok(Curves {
        loss: loss.into_iter().map(|(k, m)| (k, pts(m))).collect(),
        metric: metric
            .into_iter()
            .map(|(k, (name, m))| (k, (name, pts(m))))
            .collect(),
        aggregate: pts(agg),
        guard_events: events,
    })
}

/// Writes `curves/<task>-loss.png`, `curves/<task>-<metric>.png` and `curves/aggregate.png`
/// under `out`; returns the files written (relative to `out`).
pub fn write_curves(out: &Path, curves: &Curves) -> Result<Vec<String>> {
    let dir = out.join("curves");
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.clone(),
        source: e,
    })?;
    let mut files = Vec::new();
    for (task, points) in &curves.loss {
        if points.is_empty() {
            continue;
        }
        let name = format!("curves/{task}-loss.png");
        line_chart(
            &out.join(&name),
            &format!("{task}: training loss"),
            "step",
            "loss",
            &[Series {
                label: task.clone(),
                points: points.clone(),
            }],
            false,
        )?;
        files.push(name);
    }
    for (task, (metric, points)) in &curves.metric {
        if points.is_empty() {
            continue;
        }
        let name = format!("curves/{task}-{metric}.png");
        line_chart(
            &out.join(&name),
            &format!("{task}: validation {metric}"),
            "step",
            metric,
            &[Series {
                label: task.clone(),
                points: points.clone(),
            }],
            false,
        )?;
        files.push(name);
    }
    if !curves.aggregate.is_empty() {
        let name = "curves/aggregate.png".to_string();
        line_chart(
            &out.join(&name),
            "aggregate validation score",
            "step",
            "score",
            &[Series {
                label: "aggregate".into(),
                points: curves.aggregate.clone(),
            }],
            false,
        )?;
        files.push(name);
    }
    Ok(files)
}

/// Writes `out/report.md` (and the curves) for a finished training run.
pub fn write_report(out: &Path, config: &Config, summary: &TrainSummary) -> Result<()> {
    let curves = read_curves(&out.join("metrics.jsonl"))?;
    let images = write_curves(out, &curves)?;
    let mut md = String::new();
    let _ = writeln!(md, "# Training report: `{}`\n", config.name);
    let _ = writeln!(
        md,
        "mtgpt {}, libtorch {}. Output folder: `{}`.\n",
        env!("CARGO_PKG_VERSION"),
        env!("MTGPT_LIBTORCH_VERSION"),
        out.display()
    );
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(md, "| | |\n| --- | --- |");
    let m = &config.model;
    let _ = writeln!(
        md,
        "| model | {} layers, {} heads, d_model {}, context {}, {} parameters{} ({:?}) |",
        m.n_layer,
        m.n_head,
        m.d_model,
        m.block_size,
        summary.all_parameters.max(summary.parameters),
        if summary.parameters < summary.all_parameters {
            format!(
                ", {} trained ({:.2} %; optimizer state {:.1} MB)",
                summary.parameters,
                100.0 * summary.parameters as f64 / summary.all_parameters as f64,
                summary.optimizer_state_bytes as f64 / 1e6
            )
        } else {
            String::new()
        },
        m.precision
    );
    let _ = writeln!(
        md,
        "| steps | {} ({} LM pretraining + {} joint planned) |",
        summary.steps, config.train.pretrain_steps, config.train.steps
    );
    let _ = writeln!(
        md,
        "| time | {:.1} s{} |",
        summary.seconds,
        if summary.stopped_early {
            " (stopped early: patience or time budget)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "| throughput | {:.0} real tokens/s, {:.1} examples/s in {:.0} s of optimizer steps; useful-token fraction {:.3} (packing {}) |",
        summary.tokens as f64 / summary.train_seconds.max(1e-9),
        summary.examples as f64 / summary.train_seconds.max(1e-9),
        summary.train_seconds,
        summary.useful_fraction,
        if config.train.packing { "on" } else { "off" }
    );
    let _ = writeln!(
        md,
        "| best aggregate validation score | {} |",
        summary.best_score.map_or("-".into(), |b| format!("{b:.4}"))
    );
    let _ = writeln!(
        md,
        "| divergence-guard events | {} (learning rate × {}) |",
        summary.guard_events, summary.lr_scale
    );
    let _ = writeln!(
        md,
        "| sampling / weighting | {:?}{} / {:?} |\n",
        config.train.sampling.strategy,
        if config.train.sampling.mixed_batches {
            ", mixed batches"
        } else {
            ", one task per step"
        },
        config.train.weighting.strategy
    );
    let _ = writeln!(md, "## Final validation scores\n");
    let _ = writeln!(md, "| task | kind | examples | primary | all metrics |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for s in &summary.final_scores {
        let all: Vec<String> = s
            .metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} {} | {} |",
            s.task,
            s.kind,
            s.examples,
            s.primary,
            s.metrics
                .get(&s.primary)
                .map_or("-".into(), |v| format!("{v:.4}")),
            all.join(", ")
        );
    }
    if !summary.augmented.is_empty() {
        let _ = writeln!(md, "\n## Generated examples\n");
        let _ = writeln!(md, "| task | generated | kept | generator loss | sample |");
        let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
        for a in &summary.augmented {
            let sample = a.samples.first().map_or("-".into(), |(l, t)| {
                format!("{l}: {}", t.replace('|', "\\|"))
            });
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.3} → {:.3} | {} |",
                a.task, a.generated, a.kept, a.finetune_loss.0, a.finetune_loss.1, sample
            );
        }
    }
    if !curves.guard_events.is_empty() {
        let _ = writeln!(
            md,
            "\nDivergence-guard events at steps {:?}.",
            curves.guard_events
        );
    }
    if !images.is_empty() {
        let _ = writeln!(md, "\n## Curves\n");
        for img in &images {
            let _ = writeln!(md, "![{img}]({img})");
        }
    }
    let _ = writeln!(md, "\n## Config\n\n```toml\n{}```", config.to_toml_string());
    let path = out.join("report.md");
    std::fs::write(&path, md).map_err(|e| Error::Io { path, source: e })?;
    Ok(())
}
