#!/usr/bin/env bash
# Issue #9 crash test: trains a tiny two-task model, SIGKILLs it 20 times at random moments
# (every third kill waits for a checkpoint write to start), resumes with `mtgpt train --resume`
# after each, checks after every kill that each visible checkpoint loads, and at the end that
# the final weights, heads and optimizer moments equal an uninterrupted run's byte for byte.
# The kill moments come from MTGPT_CRASH_SEED (printed; set it to repeat a run).
# Usage: scripts/crash-test.sh [REPEATS]   (default 1; each repeat uses a fresh seed)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-libtorch.sh >/dev/null
for _ in $(seq "${1:-1}"); do
  cargo test -q -p mtgpt-e2e --test crash -- --ignored --exact crash_test_20_kills --nocapture
done
