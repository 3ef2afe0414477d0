#!/usr/bin/env bash
# Joint-training throughput and time to a score on the demo (issue #16), in one run:
#   A  mtgpt as before: no packing, fp32, 16 examples per step, padded to the longest;
#      its batches are dumped (`mtgpt train --dump-batches`);
#   B  mtgpt with packing, precision = auto and a token budget per step
#      (train.batch_tokens, ≈ A's real tokens per step);
#   C  B in fp32 (the same examples as B: the bf16 loss curve against fp32);
#   T  the PyTorch loop replaying A's batches on the same model (scripts/bench_joint_torch.py:
#      transformers' GPT2Model, fp32 eager, each batch padded to its longest row,
#      torch.optim.AdamW; the Python reference venv of the tests).
# Every run: the demo config (configs/demo.toml, from models/base-tiny) for STEPS steps with
# static loss weights, validation every EVAL steps. Prints useful (real) tokens/s, examples/s,
# the useful-token fraction, the seconds each run needs to reach A's best validation aggregate
# (optimizer steps only, evaluations left out), the bf16-vs-fp32 loss curves, and the ratios.
# The last line: useful_tokens_per_s=… examples_per_s=… seconds_to_score=… vs_pytorch=R.RR
# (run B; R = B's useful tokens/s over the PyTorch loop's).
# Usage: scripts/bench-joint.sh [STEPS] [EVAL]   (defaults 600 and 50)
# Run it alone: a build or test suite beside it skews the times.
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "${BASH_SOURCE[0]}")/.."
steps=${1:-600}
every=${2:-50}
source scripts/lib.sh
build_mtgpt
scripts/setup-pyref.sh >/dev/null
py=${MTGPT_PYREF:-$HOME/.cache/mtgpt/pyref}/bin/python
work=runs/bench-joint
rm -rf "$work"
mkdir -p "$work"
common=(--config configs/demo.toml --no-progress --set "train.steps=$steps"
  --set train.max_seconds=0 --set "train.eval_every=$every" --set train.checkpoint_every=0
  --set train.weighting.strategy=static)
train() { # name, extra flags...
  local name=$1
  shift
  echo "== $name"
  "$bin" -q train "${common[@]}" "$@" --out "$work/$name" | tee "$work/$name.txt" | grep useful
}
train A --set model.precision=fp32 --set train.packing=false --dump-batches "$work/A.batches.jsonl"
train B --set model.precision=auto --set train.packing=true --set train.batch_tokens=1024
train C --set model.precision=fp32 --set train.packing=true --set train.batch_tokens=1024
echo "== T (PyTorch, A's batches)"
"$py" scripts/bench_joint_torch.py "$work/A.batches.jsonl" --out "$work/T.json" > /dev/null
"$bin" info | grep -E "^(cpu|precision)"
"$py" - "$work" <<'EOF'
import json, sys
work = sys.argv[1]

def run(name):
    evals, losses, summary = [], [], {}
    for line in open(f"{work}/{name}/metrics.jsonl"):
        d = json.loads(line)
        if "aggregate" in d and d.get("aggregate") is not None:
            evals.append((d["step"], d["train_seconds"], d["aggregate"]))
        elif "loss" in d:
            losses.append((d["step"], d["loss"]))
    for line in open(f"{work}/{name}.txt"):
        if line.startswith("useful_tokens="):
            summary = {k: float(v) for k, v in (x.split("=") for x in line.split())}
    return evals, losses, summary

runs = {n: run(n) for n in "ABC"}
torch = json.load(open(f"{work}/T.json"))
target = max(a for _, _, a in runs["A"][0])

def to_score(evals):
    return next((s for _, s, a in evals if a >= target), None)

print(f"\ntarget: A's best validation aggregate {target:.4f}")
print("| run | useful tokens/s | examples/s | useful fraction | train s | s to A's best | best aggregate |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for n, label in [("A", "A mtgpt, no packing, fp32"), ("B", "B mtgpt, packing, auto"),
                 ("C", "C mtgpt, packing, fp32")]:
    ev, _, s = runs[n]
    t = to_score(ev)
    print(f"| {label} | {s['useful_tokens_per_s']:.0f} | {s['examples_per_s']:.1f} | "
          f"{s['useful_fraction']:.3f} | {s['train_seconds']:.1f} | "
          f"{'-' if t is None else f'{t:.1f}'} | {max(a for _, _, a in ev):.4f} |")
print(f"| T PyTorch loop (A's batches) | {torch['useful_tokens_per_s']:.0f} | "
      f"{torch['examples_per_s']:.1f} | {torch['useful_tokens'] / torch['padded_tokens']:.3f} | "
      f"{torch['seconds']:.1f} | - | - |")
a, b = runs["A"][2], runs["B"][2]
ta, tb = to_score(runs["A"][0]), to_score(runs["B"][0])
print(f"\nB / A: useful tokens/s {b['useful_tokens_per_s'] / a['useful_tokens_per_s']:.2f}x, "
      f"examples/s {b['examples_per_s'] / a['examples_per_s']:.2f}x, "
      f"time to A's best {'not reached' if tb is None else f'{100 * tb / ta:.0f} % of A' + chr(39) + 's'}")
print(f"A / PyTorch: {a['useful_tokens_per_s'] / torch['useful_tokens_per_s']:.2f}x; "
      f"B / PyTorch: {b['useful_tokens_per_s'] / torch['useful_tokens_per_s']:.2f}x")
# The bf16 loss curve against fp32 on the same examples (B vs C): mean logged training loss in
# windows of 100 steps.
def windows(losses, w=100):
    out = {}
    for step, loss in losses:
        out.setdefault((step - 1) // w, []).append(loss)
    return {k: sum(v) / len(v) for k, v in out.items()}
wb, wc = windows(runs["B"][1]), windows(runs["C"][1])
diffs = [abs(wb[k] - wc[k]) / wc[k] for k in sorted(wc) if k in wb]
print("loss per 100 steps, bf16 (B) vs fp32 (C): " + ", ".join(
    f"{wb[k]:.3f}/{wc[k]:.3f}" for k in sorted(wc) if k in wb))
print(f"bf16 loss curve vs fp32: max {100 * max(diffs):.2f} %, mean {100 * sum(diffs) / len(diffs):.2f} %")
eb, ec = runs["B"][0], runs["C"][0]
print("validation aggregate bf16 (B) vs fp32 (C) by step: " + ", ".join(
    f"{x[0]}: {x[2]:.4f}/{y[2]:.4f}" for x, y in zip(eb, ec)))
print(f"useful_tokens_per_s={b['useful_tokens_per_s']:.0f} examples_per_s={b['examples_per_s']:.1f} "
      f"seconds_to_score={'-' if tb is None else f'{tb:.1f}'} "
      f"vs_pytorch={b['useful_tokens_per_s'] / torch['useful_tokens_per_s']:.2f}")
EOF
