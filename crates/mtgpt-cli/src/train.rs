//! `mtgpt train`, `mtgpt lr-find`, `mtgpt transfer`.
use crate::args::ConfigOutArgs;
use clap::Args;
use mtgpt_train::lr_find::{LrFindOptions, lr_find as run_lr_find};
use mtgpt_train::trainer::{TrainOptions, train as run_training};
use mtgpt_train::transfer::{markdown, transfer as run_transfer};

/// `mtgpt train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    target: ConfigOutArgs,
    /// Continue from the latest checkpoint in the output folder.
    #[arg(long)]
    resume: bool,
    /// Steps between log lines.
    #[arg(long, default_value_t = 10)]
    log_every: usize,
    /// No progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long)]
    no_progress: bool,
    /// Fault injection for testing the divergence guard: make the loss of this (0-based)
    /// step NaN. Repeatable.
    #[arg(long, hide = true, value_name = "STEP")]
    inject_nan_at: Vec<usize>,
    /// Data-parallel training over the processes started by `mpirun -np N` (`mpi`);
    /// `train.batch_size` is then per rank. Needs a build with `--features mpi`.
    #[arg(long, value_enum, value_name = "ENGINE")]
    distributed: Option<DistributedEngine>,
    /// Gradient bytes per all-reduce in distributed training, in MiB.
    #[arg(long, default_value_t = 25, value_name = "MIB")]
    bucket_mib: usize,
    /// Write every step's batches (unpadded rows, targets, learning rate) to this JSONL
    /// file, the model at step 0 to `OUT/dump-init`: a replay for another framework
    /// (`scripts/bench_joint_torch.py`).
    #[arg(long, value_name = "FILE")]
    dump_batches: Option<std::path::PathBuf>,
}

/// How `mtgpt train --distributed` reaches the other processes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistributedEngine {
    /// MPI (one process per rank, started by `mpirun`).
    Mpi,
}

/// What the binary says when `--distributed mpi` meets a build without the feature.
#[cfg(not(feature = "mpi"))]
const NO_MPI: &str = "--distributed mpi: this mtgpt was built without MPI support; build with \
`cargo build --release -p mtgpt-cli --features mpi` after scripts/setup-mpi.sh";

/// The MPI job this process belongs to, set up in `opts`: one rank per process, this rank's
/// share of the cores, one GPU per rank on a host's GPUs. `None` without `--distributed`.
#[cfg(feature = "mpi")]
fn join_job(
    a: &TrainArgs,
    opts: &mut TrainOptions,
) -> anyhow::Result<Option<std::rc::Rc<mtgpt_train::dist::MpiCommunicator>>> {
    use mtgpt_train::dist::{Communicator as _, Distributed, MpiCommunicator};
    let Some(DistributedEngine::Mpi) = a.distributed else {
        return Ok(None);
    };
    let comm = std::rc::Rc::new(
        MpiCommunicator::init().ok_or_else(|| anyhow::anyhow!("MPI was already initialized"))?,
    );
    let (local_rank, local_size) = comm.local_rank_and_size();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads_set = ["OMP_NUM_THREADS", "MTGPT_THREADS"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if local_size > 1 && !threads_set && tch::get_num_threads() as usize >= cores {
        // The ranks of one host share its cores instead of each taking all of them.
        tch::set_num_threads((cores / local_size).max(1) as i32);
    }
    if let tch::Device::Cuda(_) = opts.device {
        opts.device = tch::Device::Cuda(local_rank % tch::Cuda::device_count().max(1) as usize);
    }
    if comm.rank() != 0 {
        opts.progress = false;
    }
    tracing::info!(
        "rank {} of {} (local {local_rank} of {local_size}), device {:?}, {} threads",
        comm.rank(),
        comm.size(),
        opts.device,
        tch::get_num_threads()
    );
    let mut dist = Distributed::new(comm.clone());
    dist.bucket_bytes = a.bucket_mib.max(1) << 20;
    opts.dist = Some(dist);
    Ok(Some(comm))
}

/// `mtgpt lr-find`.
#[derive(Args, Debug)]
pub struct LrFindArgs {
    /// The config; lr_find.csv/png/json go to --out (default: runs/<name>-lr-find).
    #[command(flatten)]
    target: ConfigOutArgs,
    /// First learning rate.
    #[arg(long, default_value_t = 1e-7)]
    min_lr: f64,
    /// Last learning rate.
    #[arg(long, default_value_t = 1.0)]
    max_lr: f64,
    /// Steps of the ramp.
    #[arg(long, default_value_t = 100)]
    steps: usize,
}

/// `mtgpt transfer`.
#[derive(Args, Debug)]
pub struct TransferArgs {
    /// The config; the runs and transfer.md go to --out (default: runs/<name>-transfer).
    #[command(flatten)]
    target: ConfigOutArgs,
}

/// `mtgpt pretrain`.
#[derive(Args, Debug)]
pub struct PretrainArgs {
    #[command(flatten)]
    config: crate::args::ConfigArgs,
    /// The base model folder to write (the trunk, its tokenizer and pretrain.json), for
    /// `[model] init` of later runs.
    #[arg(long)]
    out: std::path::PathBuf,
    /// The run folder: checkpoints, prep/ and metrics.jsonl (default: runs/<name>-pretrain).
    #[arg(long)]
    work: Option<std::path::PathBuf>,
    /// Continue from the latest checkpoint in the run folder.
    #[arg(long)]
    resume: bool,
    /// Steps between log lines.
    #[arg(long, default_value_t = 50)]
    log_every: usize,
    /// No progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long)]
    no_progress: bool,
}

/// Pretrains a base on the config's LM corpora and prints what it made.
pub fn pretrain(a: &PretrainArgs) -> anyhow::Result<()> {
    let config = a.config.load()?;
    let work = a
        .work
        .clone()
        .unwrap_or_else(|| config.run_dir("-pretrain"));
    let mut opts = options(&work);
    opts.resume = a.resume;
    opts.log_every = a.log_every;
    opts.progress = !a.no_progress;
    opts.report = false;
    let r = mtgpt_train::pretrain::pretrain(&config, &opts, &a.out)?;
    for (task, ppl) in &r.valid_perplexity {
        println!("{task:<16} valid perplexity={ppl:.2}");
    }
    println!(
        "steps={} tokens_seen={} seconds={:.1} parameters={} base={} run={}",
        r.steps,
        r.tokens_seen,
        r.seconds,
        r.parameters,
        a.out.display(),
        work.display()
    );
    Ok(())
}

fn options(out: &std::path::Path) -> TrainOptions {
    let mut opts = TrainOptions::new(out);
    opts.lexicons = mtgpt_text::augment::default_lexicons();
    opts.device = crate::args::device();
    opts
}

/// Runs the learning-rate range test and prints the suggestion.
pub fn lr_find(a: &LrFindArgs) -> anyhow::Result<()> {
    let (config, out) = a.target.load("-lr-find")?;
    let r = run_lr_find(
        &config,
        &options(&out),
        &LrFindOptions {
            min_lr: a.min_lr,
            max_lr: a.max_lr,
            steps: a.steps,
            ..LrFindOptions::default()
        },
    )?;
    println!(
        "suggested_lr={:.3e} min_loss_lr={:.3e} points={} plot={} csv={}",
        r.suggested,
        r.min_loss_lr,
        r.points.len(),
        r.plot.display(),
        r.csv.display()
    );
    Ok(())
}

/// Trains jointly and per task, prints the comparison.
pub fn transfer(a: &TransferArgs) -> anyhow::Result<()> {
    let (config, out) = a.target.load("-transfer")?;
    let r = run_transfer(&config, &options(&out))?;
    print!("{}", markdown(&config, &r));
    println!("report={}", out.join("transfer.md").display());
    Ok(())
}

/// Trains and prints the final validation scores.
pub fn train(a: &TrainArgs) -> anyhow::Result<()> {
    let (config, out) = a.target.load("")?;
    let mut opts = options(&out);
    opts.resume = a.resume;
    opts.log_every = a.log_every;
    opts.progress = !a.no_progress;
    opts.inject_nan_at = a.inject_nan_at.clone();
    opts.dump_batches = a.dump_batches.clone();
    #[cfg(not(feature = "mpi"))]
    if a.distributed.is_some() {
        anyhow::bail!(NO_MPI);
    }
    #[cfg(feature = "mpi")]
    let job = join_job(a, &mut opts)?;
    let result = run_training(&config, &opts);
    #[cfg(feature = "mpi")]
    if let Some(comm) = &job {
        use mtgpt_train::dist::Communicator as _;
        if let Err(e) = &result
            && comm.size() > 1
        {
            // The other ranks would wait for this one in their next collective forever.
            eprintln!("error (rank {} of {}): {e}", comm.rank(), comm.size());
            comm.abort(1);
        }
        if comm.rank() != 0 {
            result?;
            return Ok(());
        }
    }
    let s = result?;
    for t in &s.final_scores {
        let m: Vec<String> = t
            .metrics
            .iter()
            .map(|(k, v)| format!("{k}={v:.4}"))
            .collect();
        println!("{:<16} {:<14} {}", t.task, t.kind.as_str(), m.join(" "));
    }
    println!(
        "steps={} best_aggregate={} seconds={:.1}{} model={}",
        s.steps,
        s.best_score.map_or("-".into(), |b| format!("{b:.4}")),
        s.seconds,
        if s.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        out.join("model").display()
    );
    println!(
        "trained_parameters={} parameters={} optimizer_state_bytes={}",
        s.parameters, s.all_parameters, s.optimizer_state_bytes
    );
    println!(
        "useful_tokens={} examples={} train_seconds={:.1} useful_tokens_per_s={:.0} examples_per_s={:.1} useful_fraction={:.3}",
        s.tokens,
        s.examples,
        s.train_seconds,
        s.tokens as f64 / s.train_seconds.max(1e-9),
        s.examples as f64 / s.train_seconds.max(1e-9),
        s.useful_fraction
    );
    if s.guard_events > 0 {
        println!(
            "divergence_guard_events={} lr_scale={}",
            s.guard_events, s.lr_scale
        );
    }
    for a in &s.augmented {
        println!(
            "generated_examples task={} generated={} kept={}",
            a.task, a.generated, a.kept
        );
    }
    println!("report={}", out.join("report.md").display());
    Ok(())
}
