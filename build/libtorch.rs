//! Shared build script of every mtgpt crate that links libtorch.
//!
//! torch-sys finds libtorch (from `LIBTORCH`, which `.cargo/config.toml` points at the
//! project's `.libtorch/` unless the user set it) and passes its lib folder on as
//! `DEP_TCH_LIBTORCH_LIB`. We bake that folder into the binaries, tests and benches as
//! an rpath, so they run from a new shell without `LD_LIBRARY_PATH`, and we record the
//! libtorch version read from its headers for `mtgpt info`.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:rustc-env=MTGPT_LIBTORCH_VERSION=unknown");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let include = Path::new(&lib).join("..").join("include");
    let version = [
        "torch/headeronly/version.h",
        "torch/csrc/api/include/torch/version.h",
    ]
    .iter()
    .map(|rel| include.join(rel))
    .find_map(|header| {
        println!("cargo:rerun-if-changed={}", header.display());
        let text = std::fs::read_to_string(&header).ok()?;
        let part = |name: &str| {
            text.lines().find_map(|l| {
                let rest = l.strip_prefix("#define ")?.strip_prefix(name)?;
                rest.trim().parse::<u32>().ok()
            })
        };
        Some(format!(
            "{}.{}.{}",
            part("TORCH_VERSION_MAJOR")?,
            part("TORCH_VERSION_MINOR")?,
            part("TORCH_VERSION_PATCH")?
        ))
    })
    .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=MTGPT_LIBTORCH_VERSION={version}");
}
