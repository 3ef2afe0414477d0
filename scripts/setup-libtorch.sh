#!/usr/bin/env bash
# Provision libtorch 2.13.0 (the version tch 0.26 expects) from the Python package index.
#
#   scripts/setup-libtorch.sh          CPU-only layout in .libtorch/ (default)
#   scripts/setup-libtorch.sh --cuda   full wheel with its CUDA libraries, also in .libtorch/
#                                      (replaces a CPU install; run without --cuda to go back)
#
# Idempotent: when the target folder already holds a matching install it returns in well
# under a second. A LIBTORCH already set in the environment is respected: it is checked and
# nothing is downloaded. See ../README.md ("libtorch") for how cargo finds the result.
set -euo pipefail

TORCH_VERSION=2.13.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
variant=cpu
for arg in "$@"; do
  case "$arg" in
    --cuda) variant=cuda ;;
    -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup-libtorch: unknown argument '$arg' (expected --cuda or nothing)" >&2; exit 2 ;;
  esac
done

die() { echo "setup-libtorch: error: $*" >&2; exit 1; }

check_install() { # $1 = folder; true when it holds libtorch $TORCH_VERSION of $variant
  [ -f "$1/lib/libtorch_cpu.so" ] && [ -f "$1/lib/libc10.so" ] \
    && [ -d "$1/include/torch" ] || return 1
  # The default accepts a CUDA install too (it is a superset); --cuda needs the CUDA one.
  if [ "$variant" = cpu ]; then
    grep -qxE "$TORCH_VERSION (cpu|cuda)" "$1/mtgpt-variant" 2>/dev/null
  else
    grep -qx "$TORCH_VERSION cuda" "$1/mtgpt-variant" 2>/dev/null
  fi
}

if [ -n "${LIBTORCH:-}" ]; then
  if [ -f "$LIBTORCH/lib/libtorch_cpu.so" ] && [ -d "$LIBTORCH/include" ]; then
    echo "setup-libtorch: using LIBTORCH=$LIBTORCH from the environment"
    exit 0
  fi
  die "LIBTORCH=$LIBTORCH is set but holds no lib/libtorch_cpu.so and include/; unset it to let this script install libtorch in $root/.libtorch"
fi

dest="$root/.libtorch"
if check_install "$dest"; then
  echo "setup-libtorch: libtorch $(cat "$dest/mtgpt-variant") already in $dest"
  exit 0
fi

command -v python3 >/dev/null 2>&1 \
  || die "python3 not found; install it (Debian: apt-get install python3 python3-pip) and run again"
python3 -m pip --version >/dev/null 2>&1 \
  || die "pip for python3 not found; install it (Debian: apt-get install python3-pip) and run again"

# The wheel is tagged for one CPython ABI; libtorch inside does not care which, so ask pip for
# the cp311 build whatever python3 this is.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "setup-libtorch: downloading torch==$TORCH_VERSION and its CUDA runtime stubs from PyPI (about 540 MB)"
pip_dl() {
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_25_x86_64 -d "$work" "$@"
}
pip_dl "torch==$TORCH_VERSION" "nvidia-cuda-runtime==$CUDART_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION" \
  || die "pip could not download torch==$TORCH_VERSION from PyPI (network or index problem); check 'python3 -m pip download torch==$TORCH_VERSION' works, then run again"

stage="$dest.partial"
rm -rf "$stage"
mkdir -p "$stage/lib"
python3 - "$work" "$stage" "$variant" <<'PY' || die "could not unpack the downloaded wheels"
import glob, os, shutil, sys, zipfile
work, stage, variant = sys.argv[1:4]
torch_whl = glob.glob(os.path.join(work, "torch-*.whl"))[0]
cpu_libs = {"libtorch_cpu.so", "libc10.so", "libgomp.so.1"}
with zipfile.ZipFile(torch_whl) as z:
    for info in z.infolist():
        name = info.filename
        if name.endswith("/"):
            continue
        if name.startswith("torch/include/"):
            rel = name[len("torch/"):]
        elif name.startswith("torch/lib/") and "/" not in name[len("torch/lib/"):]:
            base = name[len("torch/lib/"):]
            if variant == "cpu" and base not in cpu_libs:
                continue
            rel = "lib/" + base
        elif name.startswith("torch/share/cmake/"):
            rel = name[len("torch/"):]
        else:
            continue
        out = os.path.join(stage, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
# libtorch_cpu.so links libcudart.so.13 and libcupti.so.13 even for CPU use.
for pattern in ("nvidia_cuda_runtime-*.whl", "nvidia_cuda_cupti-*.whl"):
    with zipfile.ZipFile(glob.glob(os.path.join(work, pattern))[0]) as z:
        for info in z.infolist():
            base = os.path.basename(info.filename)
            if base in ("libcudart.so.13", "libcupti.so.13"):
                with z.open(info) as src, open(os.path.join(stage, "lib", base), "wb") as dst:
                    shutil.copyfileobj(src, dst)
PY

if [ "$variant" = cpu ]; then
  # The wheel's own libtorch.so pulls in libtorch_cuda.so and the whole CUDA stack.
  ln -sf libtorch_cpu.so "$stage/lib/libtorch.so"
else
  echo "setup-libtorch: installing the CUDA dependencies of torch==$TORCH_VERSION into $stage/python"
  python3 -m pip install --quiet --target "$stage/python" "torch==$TORCH_VERSION" \
    || die "pip could not install torch==$TORCH_VERSION with its CUDA dependencies"
  # Put every nvidia/*/lib beside libtorch so one library path finds all of them.
  # Relative links, so the folder still works after the rename below.
  for d in "$stage"/python/nvidia/*/lib; do
    pkg=$(basename "$(dirname "$d")")
    for f in "$d"/*.so*; do
      [ -e "$f" ] && ln -sf "../python/nvidia/$pkg/lib/$(basename "$f")" "$stage/lib/$(basename "$f")"
    done
  done
fi
echo "$TORCH_VERSION" > "$stage/build-version"
echo "$TORCH_VERSION $variant" > "$stage/mtgpt-variant"
rm -rf "$dest"
mv "$stage" "$dest"
check_install "$dest" || die "install in $dest is incomplete"
echo "setup-libtorch: libtorch $TORCH_VERSION ($variant) installed in $dest"
