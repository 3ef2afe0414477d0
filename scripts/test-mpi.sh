#!/usr/bin/env bash
# The MPI equivalence test (CI, via scripts/test.sh): OpenMPI if missing, a `--features mpi`
# build of mtgpt into the normal target folder, then crates/mtgpt-cli/tests/mpi.rs, which runs
# `mpirun --oversubscribe -np 2 mtgpt train --distributed mpi` (batch 4 per rank) against one
# process with batch 8, a resume on two ranks and a refused resume on one. About a minute
# after the build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-libtorch.sh >/dev/null
scripts/setup-mpi.sh
echo "== MPI: 2 ranks × batch B against 1 process × batch 2B"
cargo test --locked -p mtgpt-cli --features mpi --test mpi -- --nocapture
