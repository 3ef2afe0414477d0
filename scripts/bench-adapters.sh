#!/usr/bin/env bash
# Adapter training against full fine-tuning on the demo (issue #14), in one run: the demo
# config (configs/demo.toml, from the shipped base models/base-tiny) trained for the same
# wall-clock budget twice — (1) as the demo does, every trunk weight training, and (2) with
# the trunk frozen and one LoRA adapter per task (rank 4 on c_attn and mlp.c_fc, LayerNorms
# trainable, mixed batches in one trunk pass, lr 1e-3) — then both scored on the test split.
# Prints trainable parameters, optimizer state, peak RSS (/usr/bin/time -v), step time, each
# task's test score, and the ratios adapters / full. Then sentiment_zh's adapter is folded
# into the trunk (`mtgpt adapters fold`): its predictions on the test split against the
# adapter model's, and `mtgpt predict` times (median of 3) of the folded, adapter and full
# models.
# Usage: scripts/bench-adapters.sh [SECONDS] [--reuse|--train] [per_task4|tuned|both2]
#   SECONDS: training budget per run (default 600); --reuse: runs already in
#   runs/bench-adapters are scored again instead of trained again (delete one's `.time` file
#   to train only that one); the last argument picks the adapter settings.
# Run it alone: a build or test suite beside it skews the times.
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-600}
reuse=${2:-}
source scripts/lib.sh
build_mtgpt
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian/Ubuntu: apt-get install time)" >&2; exit 1; }
work=runs/bench-adapters
mkdir -p "$work"
common=(--config configs/demo.toml --no-progress --set "train.max_seconds=$secs")
# The adapter settings: `per_task4` (default: rank 4 per task on c_attn and mlp.c_fc) or
# `both2` (a shared rank-2 adapter plus one per task, on all four layer kinds).
# `tuned`: per_task4 at lr 3e-3 and alpha 32 (scale 8), the best measured on the demo.
case "${3:-per_task4}" in
  per_task4) shape=(--set adapters.mode=per_task --set adapters.rank=4 --set adapters.alpha=8
                    --set 'adapters.targets=["c_attn","mlp.c_fc"]' --set train.lr=1e-3) ;;
  tuned) shape=(--set adapters.mode=per_task --set adapters.rank=4 --set adapters.alpha=32
                --set 'adapters.targets=["c_attn","mlp.c_fc"]' --set train.lr=3e-3) ;;
  both2) shape=(--set adapters.mode=both --set adapters.rank=2 --set adapters.alpha=4
                --set train.lr=1e-3) ;;
  *) echo "unknown adapter settings $3 (per_task4, tuned, both2)" >&2; exit 1 ;;
esac
adapters=(
  "${shape[@]}"
  --set train.trunk=frozen --set 'train.trunk_trainable=["ln_"]'
  --set train.sampling.mixed_batches=true --set train.sampling.one_pass=true
)
for variant in full adapters; do
  extra=()
  [ "$variant" = adapters ] && extra=("${adapters[@]}")
  if [ "$reuse" != --reuse ] || [ ! -f "$work/$variant.time" ]; then
    echo "== $variant: training for ${secs} s"
    /usr/bin/time -v -o "$work/$variant.time" "$bin" -q train "${common[@]}" "${extra[@]}" \
      --out "$work/$variant" > "$work/$variant.train.txt"
  fi
  "$bin" -q eval --model "$work/$variant" --config configs/demo.toml --split test --json \
    > "$work/$variant.eval.json"
done
echo "== folding sentiment_zh's adapter into the trunk"
rm -rf "$work/folded"
"$bin" -q adapters fold --model "$work/adapters" --task sentiment_zh --out "$work/folded"
for m in adapters folded full; do
  for i in 1 2 3; do
    /usr/bin/time -f %e -o "$work/$m.t$i" "$bin" -q predict --model "$work/$m" --task sentiment_zh \
      --input data/sentiment_zh/test.jsonl > "$work/$m.pred.jsonl"
  done
  cat "$work/$m".t[123] | sort -n | sed -n 2p > "$work/$m.predict_s"
done
# The same comparison in fp32 (the demo computes in bf16, whose rounding differs between
# x·W + x·A·B and x·(W + A·B)): fp32 copies of both folders.
for m in adapters folded; do
  src=$work/$m
  [ -d "$src/best" ] && src=$src/best
  rm -rf "$work/$m-fp32"
  cp -r "$src" "$work/$m-fp32"
  python3 - "$work/$m-fp32/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.setdefault("mtgpt", {})["precision"] = "fp32"
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
  "$bin" -q predict --model "$work/$m-fp32" --task sentiment_zh --input data/sentiment_zh/test.jsonl \
    > "$work/$m-fp32.pred.jsonl"
done
python3 - "$work" <<'PY'
import json, re, sys
work = sys.argv[1]
def train_line(v, key):
    text = open(f"{work}/{v}.train.txt").read()
    return float(re.search(rf"\b{key}=([0-9.]+)", text).group(1))
def rss_mb(v):
    text = open(f"{work}/{v}.time").read()
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
def scores(v):
    data = json.load(open(f"{work}/{v}.eval.json"))
    return {r["task"]: (r["primary"], r["metrics"][r["primary"]]) for r in data["tasks"]}
rows = {}
for v in ("full", "adapters"):
    steps = train_line(v, "steps")
    secs = train_line(v, "seconds")
    rows[v] = dict(
        trained=train_line(v, "trained_parameters"), params=train_line(v, "parameters"),
        opt=train_line(v, "optimizer_state_bytes") / 1e6, rss=rss_mb(v), steps=steps,
        step_ms=1000 * secs / max(steps, 1), scores=scores(v))
f, a = rows["full"], rows["adapters"]
print(f"{'':28} {'full fine-tuning':>18} {'adapters (frozen)':>18} {'adapters / full':>16}")
print(f"{'trained parameters':28} {f['trained']:>18,.0f} {a['trained']:>18,.0f} {a['trained']/f['trained']:>16.4f}")
print(f"{'  share of all parameters':28} {100*f['trained']/f['params']:>17.2f}% {100*a['trained']/a['params']:>17.2f}%")
print(f"{'optimizer state (MB)':28} {f['opt']:>18.2f} {a['opt']:>18.2f} {a['opt']/f['opt']:>16.4f}")
print(f"{'peak RSS (MB)':28} {f['rss']:>18.0f} {a['rss']:>18.0f} {a['rss']/f['rss']:>16.2f}")
print(f"{'optimizer steps':28} {f['steps']:>18.0f} {a['steps']:>18.0f}")
print(f"{'time per step (ms)':28} {f['step_ms']:>18.1f} {a['step_ms']:>18.1f} {a['step_ms']/f['step_ms']:>16.2f}")
for task, (key, fv) in f["scores"].items():
    av = a["scores"][task][1]
    print(f"{task + ' ' + key:28} {fv:>18.4f} {av:>18.4f} {av - fv:>+16.4f}")
def preds(m):
    return [json.loads(l)["prediction"] for l in open(f"{work}/{m}.pred.jsonl")]
def compare(a, b):
    pa, pb = preds(a), preds(b)
    same = sum(x["label"] == y["label"] for x, y in zip(pa, pb))
    diff = max(abs(p - q) for x, y in zip(pa, pb) for p, q in zip(x["probs"], y["probs"]))
    return same, len(pa), diff
t = {m: float(open(f"{work}/{m}.predict_s").read()) for m in ("adapters", "folded", "full")}
for tag, (x, y) in (("bf16", ("adapters", "folded")), ("fp32", ("adapters-fp32", "folded-fp32"))):
    same, n, diff = compare(x, y)
    print(f"folded sentiment_zh adapter ({tag}): {same}/{n} test labels equal to the adapter model's, max |prob difference| {diff:.2e}")
print(f"predict sentiment_zh test (s, median of 3): adapters {t['adapters']:.2f}  folded {t['folded']:.2f}  full model {t['full']:.2f}  folded/full {t['folded']/t['full']:.2f}")
print(f"optimizer_state_ratio={f['opt']/a['opt']:.1f} trained_share={a['trained']/a['params']:.4f}")
PY
