//! `mtgpt run`: the whole pipeline (`mtgpt_pipeline::run`) with its options from the command
//! line.
use crate::args::ConfigOutArgs;
use clap::Args;
use mtgpt_pipeline::RunOptions;

/// `mtgpt run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    target: ConfigOutArgs,
    /// Also train every task alone with the same budget (single-task baselines).
    #[arg(long)]
    baselines: bool,
    /// Skip the classic baselines (TF-IDF + logistic regression, CRF, retrieval, n-gram LM)
    /// that are otherwise fitted in seconds and shown beside every task.
    #[arg(long)]
    no_classic: bool,
    /// With `model.init`: also train the same config from a random trunk with the same budget
    /// (into OUT/scratch/) and show its test scores beside the pretrained start's.
    #[arg(long)]
    scratch: bool,
    /// Skip the compression stage even if the config lists methods.
    #[arg(long)]
    no_compress: bool,
    /// Redo every stage even when its inputs are unchanged.
    #[arg(long)]
    fresh: bool,
    /// Predictions shown per task in the report.
    #[arg(long, default_value_t = 3)]
    samples: usize,
}

/// Runs the pipeline and prints each task's primary test score and the report's path.
pub fn run(a: &RunArgs) -> anyhow::Result<()> {
    let (config, out) = a.target.load("")?;
    let mut opts = RunOptions::new(out);
    opts.baselines = a.baselines;
    opts.classic = !a.no_classic;
    opts.scratch = a.scratch;
    opts.compress = !a.no_compress;
    opts.fresh = a.fresh;
    opts.samples = a.samples;
    opts.lexicons = mtgpt_text::augment::default_lexicons();
    opts.device = crate::args::device();
    opts.progress = true;
    opts.config_path = Some(a.target.config.config.clone());
    let outcome = mtgpt_pipeline::run(&config, &opts)?;
    for s in &outcome.scores {
        let scratch = outcome
            .scratch
            .get(&s.task)
            .map_or(String::new(), |v| format!(" from_scratch={v:.4}"));
        let classic: String = outcome
            .classic
            .iter()
            .filter(|b| b.scores.task == s.task)
            .filter_map(|b| {
                let v = b.scores.metrics.get(&b.scores.primary)?;
                Some(format!(" {}={v:.4}", b.method))
            })
            .collect();
        println!(
            "{:<16} {:<14} {}={:.4}{scratch}{classic}",
            s.task,
            s.kind.as_str(),
            s.primary,
            s.metrics.get(&s.primary).copied().unwrap_or(f64::NAN)
        );
    }
    println!(
        "report={} ({:.0} s)",
        outcome.report.display(),
        outcome.seconds
    );
    Ok(())
}
