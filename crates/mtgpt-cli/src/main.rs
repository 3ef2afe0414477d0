//! `mtgpt`: the command-line front end. Thin by design: parse arguments, load the config,
//! call library functions, map errors to an exit code.
mod adapters;
mod args;
mod compress;
mod info;
mod model;
mod run;
mod serve;
mod tasks;
mod text;
mod train;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Multi-task training of GPT-style models on libtorch.
#[derive(Parser, Debug)]
#[command(name = "mtgpt", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides both flags.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// libtorch intra-op threads (default: every core).
    #[arg(long, global = true, env = "MTGPT_THREADS", value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print libtorch version, threads, CPU features and CUDA availability.
    Info(info::InfoArgs),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Normalize text from stdin (NFKC, full-width → half-width, whitespace, controls).
    Normalize(text::NormalizeArgs),
    /// Segment text from stdin into words (jieba for Chinese), one line in, one line out.
    Segment(text::SegmentArgs),
    /// Stem the words of stdin with a Snowball stemmer.
    Stem(text::StemArgs),
    /// Train, or encode and decode with, a tokenizer.
    #[command(subcommand)]
    Tokenizer(text::TokenizerCommand),
    /// Write augmented copies of a task JSONL file to stdout (EDA, char and token noise).
    Augment(text::AugmentArgs),
    /// Preprocess every task of a config and write the tokenized cache the trainer reads.
    Prep(text::PrepArgs),
    /// Create model folders.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Continue prompts with a model (greedy, sampling, beam search).
    Generate(model::GenerateArgs),
    /// Write a model as a Hugging Face GPT-2 folder.
    Export(model::ExportArgs),
    /// Read a Hugging Face GPT-2 folder into a model folder.
    Import(model::ImportArgs),
    /// Sentence vectors from a model's hidden states.
    Embed(model::EmbedArgs),
    /// Print a sequence's logits as JSON (for checking against other implementations).
    #[command(hide = true)]
    Logits(model::LogitsArgs),
    /// The whole pipeline: data, preprocessing, training, test scores, baselines, compression, report.
    Run(run::RunArgs),
    /// Train one trunk jointly on every task of a config.
    Train(train::TrainArgs),
    /// Pretrain a base model on large LM corpora, for `[model] init` of later runs.
    Pretrain(train::PretrainArgs),
    /// Learning-rate range test: suggests a learning rate and plots loss against it.
    LrFind(train::LrFindArgs),
    /// Joint training against each task trained alone, side by side.
    Transfer(train::TransferArgs),
    /// Predict with one task's head: input JSONL lines come back with a `prediction` field.
    Predict(tasks::PredictArgs),
    /// Score a multi-task model on a config's valid or test splits.
    Eval(tasks::EvalArgs),
    /// Compress a model: prune, prune-structured, int8 or distill, with a size/speed/score report.
    Compress(compress::CompressArgs),
    /// Serve a model over HTTP: every task, OpenAI-compatible completions, dynamic batching.
    Serve(serve::ServeArgs),
    /// LoRA adapters of a model folder: list, import from PEFT, merge, fold into the trunk.
    #[command(subcommand)]
    Adapters(adapters::AdaptersCommand),
    /// Measure training and decoding speed on random data.
    #[command(subcommand)]
    Bench(model::BenchCommand),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a config and print it resolved, with every default filled in.
    Check(ConfigCheckArgs),
}

#[derive(Args, Debug)]
struct ConfigCheckArgs {
    /// The TOML config file.
    file: PathBuf,
    /// Override a key, e.g. `--set train.steps=50` or `--set task.NAME.weight=2`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

fn config_check(args: &ConfigCheckArgs) -> anyhow::Result<()> {
    let config = mtgpt_core::Config::load(&args.file, &args.sets)?;
    for task in &config.tasks {
        for (split, path) in [
            ("train", Some(&task.train)),
            ("valid", task.valid.as_ref()),
            ("test", task.test.as_ref()),
        ] {
            if let Some(path) = path.filter(|p| !p.exists()) {
                tracing::warn!(
                    "task `{}`: {split} file {} does not exist yet",
                    task.name,
                    path.display()
                );
            }
        }
    }
    print!("{}", config.to_toml_string());
    tracing::info!(
        "{}: valid ({} tasks; {} trunk parameters, token embeddings not counted until the tokenizer fixes the vocabulary)",
        args.file.display(),
        config.tasks.len(),
        config.model.num_parameters()
    );
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info(args) => info::run(&args).context("mtgpt info"),
        Command::Config(ConfigCommand::Check(args)) => config_check(&args),
        Command::Normalize(args) => text::normalize(&args),
        Command::Segment(args) => text::segment(&args),
        Command::Stem(args) => text::stem(&args),
        Command::Tokenizer(cmd) => text::tokenizer(&cmd),
        Command::Augment(args) => text::augment(&args),
        Command::Prep(args) => text::prep(&args),
        Command::Model(cmd) => model::model(&cmd),
        Command::Generate(args) => model::generate_cmd(&args),
        Command::Export(args) => model::export(&args),
        Command::Import(args) => model::import(&args),
        Command::Embed(args) => model::embed(&args),
        Command::Logits(args) => model::logits(&args),
        Command::Bench(cmd) => model::bench(&cmd),
        Command::Run(args) => run::run(&args),
        Command::Train(args) => train::train(&args),
        Command::Pretrain(args) => train::pretrain(&args),
        Command::LrFind(args) => train::lr_find(&args),
        Command::Transfer(args) => train::transfer(&args),
        Command::Predict(args) => tasks::predict(&args),
        Command::Eval(args) => tasks::eval(&args),
        Command::Compress(args) => compress::compress(&args),
        Command::Adapters(cmd) => adapters::adapters(&cmd),
        Command::Serve(args) => serve::serve(&args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    if let Some(n) = cli.threads {
        if n == 0 {
            eprintln!("error: --threads / MTGPT_THREADS must be at least 1");
            return ExitCode::FAILURE;
        }
        tch::set_num_threads(n as i32);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The library errors already name file, line and key; print the chain once.
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
