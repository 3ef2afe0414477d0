# Shared helpers of the bench and check scripts (sourced, not run).

# Builds the release `mtgpt` (libtorch first, if missing) and sets $bin; with MTGPT_BIN set,
# uses that binary instead (e.g. an older build, to compare two in one session).
build_mtgpt() {
  scripts/setup-libtorch.sh >/dev/null
  if [ -n "${MTGPT_BIN:-}" ]; then
    bin=$MTGPT_BIN
    return
  fi
  cargo build --release --locked -q -p mtgpt-cli
  bin=target/release/mtgpt
}

# ensure_venv "python import line" pip-package...: the throwaway venv .venv-bench with the
# given packages (installed from PyPI on first use); sets $venv.
ensure_venv() {
  venv=.venv-bench
  local check=$1
  shift
  if ! "$venv/bin/python" -c "$check" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "$@"
  fi
}
