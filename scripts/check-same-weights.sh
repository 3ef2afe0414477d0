#!/usr/bin/env bash
# Shows that a refactor changed no behaviour: trains configs/smoke.toml for a fixed number of
# steps with the `mtgpt` binary of BASE (a git revision, default HEAD~1) and with the working
# tree's, and compares the two model.safetensors byte for byte.
#
#   scripts/check-same-weights.sh [BASE] [STEPS]      (STEPS default 20)
#
# BASE is built in a throwaway git worktree with a target folder of its own, both under
# target/same-weights/ (cargo names path crates by their place in the workspace, so two trees
# of the same workspace must not share a target folder); the first call compiles the
# dependencies there once. Exit status 0 when identical.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
base=${1:-HEAD~1}
steps=${2:-20}
scripts/setup-libtorch.sh
rev=$(git rev-parse --verify "$base^{commit}")
work="$root/target/same-weights"
mkdir -p "$work"
if [ ! -e "$work/base/.git" ]; then
  rm -rf "$work/base"
  git worktree add --detach "$work/base" "$rev" >/dev/null
else
  git -C "$work/base" checkout -q --detach "$rev"
fi
echo "== building $base (${rev:0:10})"
(cd "$work/base" && LIBTORCH="$root/.libtorch" CARGO_TARGET_DIR="$work/target" \
  cargo build -q --locked -p mtgpt-cli && cp "$work/target/debug/mtgpt" "$work/mtgpt-base")
echo "== building the working tree"
cargo build -q -p mtgpt-cli
cp target/debug/mtgpt "$work/mtgpt-new"
for which in base new; do
  rm -rf "$work/run-$which"
  echo "== training with the $which binary ($steps steps of configs/smoke.toml)"
  "$work/mtgpt-$which" --quiet train --config configs/smoke.toml --out "$work/run-$which" \
    --set train.steps="$steps" --set train.pretrain_steps=5 --set train.eval_every=10 \
    --set train.checkpoint_every=10 >/dev/null
done
a=$(sha256sum < "$work/run-base/model/model.safetensors" | cut -c1-64)
b=$(sha256sum < "$work/run-new/model/model.safetensors" | cut -c1-64)
echo "base model.safetensors sha256 $a"
echo "new  model.safetensors sha256 $b"
if [ "$a" = "$b" ]; then
  echo "identical"
else
  echo "DIFFERENT"
  exit 1
fi
