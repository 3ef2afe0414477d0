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
    let (model, flags) = mtgpt_core::cpu_flags();
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
        wanted.into_iter().filter(|f| flags.contains(*f)).collect(),
    )
}

/// Prints the report.
pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    let (cpu, features) = cpu_features();
    let cuda = tch::Cuda::is_available();
    let devices = if cuda { tch::Cuda::device_count() } else { 0 };
    let threads = tch::get_num_threads();
    let amx = features.contains(&"amx_bf16");
    let auto = mtgpt_core::auto_precision(cuda);
    let auto_why = if cuda {
        "CUDA"
    } else if amx {
        "AMX"
    } else if features.contains(&"avx512_bf16") {
        "AVX-512 BF16"
    } else {
        "no bf16 matrix instructions"
    };
    if args.json {
        let v = json!({
            "mtgpt": env!("CARGO_PKG_VERSION"),
            "libtorch": mtgpt_model::LIBTORCH_VERSION,
            "threads": threads,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "cpu": cpu,
            "cpu_features": features,
            "bf16_matrix_units": amx,
            "precision_auto": auto,
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
        "precision auto = {} here ({auto_why}; `[model] precision` fp32 or bf16 overrides it)",
        auto.as_str()
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
