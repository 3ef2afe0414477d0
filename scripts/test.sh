#!/usr/bin/env bash
# The test command (README, CI): libtorch if missing, the Python reference venv of the
# transformers interchange tests if missing (scripts/setup-pyref.sh), then format, lints, the
# import-cycle check and every test, then
# the MPI equivalence test (OpenMPI installed if missing: scripts/test-mpi.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-libtorch.sh
echo "== Python reference venv (torch, transformers, peft, openai)"
scripts/setup-pyref.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== no import cycles between source files"
python3 scripts/check-imports.py
echo "== cargo test"
cargo test --workspace --locked
echo "== MPI data-parallel equivalence"
scripts/test-mpi.sh
