//! `mtgpt info`: what this build of mtgpt runs on.
use clap::Args;
use serde_json::json;

/// Arguments of `mtgpt info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// CPU feature flags worth knowing for training speed, from `/proc/cpuinfo` (x86 Linux).
fn cpu_features() -> (String, Vec<&'static str>) {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = text
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let flags: std::collections::HashSet<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().collect())
        .unwrap_or_default();
    let wanted = [
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
        "avx512_bf16",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
    ];
    (
        model,
        wanted.into_iter().filter(|f| flags.contains(f)).collect(),
    )
}

/// Prints the report.
pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    let (cpu, features) = cpu_features();
    let cuda = tch::Cuda::is_available();
    let devices = if cuda { tch::Cuda::device_count() } else { 0 };
    let threads = tch::get_num_threads();
    let amx = features.contains(&"amx_bf16");
    if args.json {
        let v = json!({
            "mtgpt": env!("CARGO_PKG_VERSION"),
            "libtorch": mtgpt_model::LIBTORCH_VERSION,
            "threads": threads,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "cpu": cpu,
            "cpu_features": features,
            "bf16_matrix_units": amx,
            "mkldnn": tch::utils::has_mkldnn(),
            "openmp": tch::utils::has_openmp(),
            "cuda": cuda,
            "cuda_devices": devices,
        });
        println!("{v}");
        return Ok(());
    }
    println!("mtgpt {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch {}", mtgpt_model::LIBTORCH_VERSION);
    println!("threads {threads} (libtorch intra-op; change with --threads N or MTGPT_THREADS)");
    println!("cpu {cpu}");
    println!(
        "cpu features {}",
        if features.is_empty() {
            "-".to_string()
        } else {
            features.join(" ")
        }
    );
    println!(
        "bf16 matrix units (AMX) {}",
        if amx {
            "yes: precision = \"bf16\" runs matmuls on AMX"
        } else {
            "no"
        }
    );
    println!(
        "mkldnn {} openmp {}",
        tch::utils::has_mkldnn(),
        tch::utils::has_openmp()
    );
    println!(
        "cuda {}",
        if cuda {
            format!("yes, {devices} device(s)")
        } else {
            "no".into()
        }
    );
    Ok(())
}
