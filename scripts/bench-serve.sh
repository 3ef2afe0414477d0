#!/usr/bin/env bash
# Serving throughput and latency (issue #15), loopback, one run: `mtgpt serve` on a model
# folder (default runs/demo: `scripts/demo.sh` makes it), load from `oha` (installed once
# from crates.io into .tools/), classification (POST /v1/tasks/sentiment_zh, one test input
# per request) and generation (POST /v1/completions on poem_zh, 16 greedy tokens), at 1, 8 and
# 32 concurrent clients (REQUESTS per point for classification, a quarter of them for
# generation), with dynamic batching (--max-batch 32) and without (--max-batch 1).
# Prints requests/s, p50 and p99 latency, the status codes seen, batching's speed-up, and
# whether 256 answers to 32 concurrent clients equal `mtgpt predict`'s. Then ROUNDS more
# rounds of the 32-client classification point alone, batching and batch size 1 alternated
# (a fresh server each), and their median speed-up: on a shared machine one point moves by
# a third between minutes, so the median of alternated rounds is the figure to quote.
# Usage: scripts/bench-serve.sh [MODEL_DIR] [REQUESTS] [ROUNDS]
#        (default runs/demo, 512 per point, 3 rounds of 4 × REQUESTS / REQUESTS)
# Run it alone: a build or test suite beside it skews the figures.
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model=${1:-runs/demo}
n=${2:-512}
rounds=${3:-3}
source scripts/lib.sh
build_mtgpt
[ -e "$model" ] || { echo "no model at $model (run scripts/demo.sh first, or pass a model folder)" >&2; exit 1; }
oha=.tools/bin/oha
if [ ! -x "$oha" ]; then
  echo "installing oha from crates.io into .tools/ (once)" >&2
  cargo install --quiet --locked --root .tools oha@1.16.0 >&2
fi
work=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
cls_body='{"text": "这家餐厅的菜很好吃，服务也很周到，下次还会再来"}'
gen_body='{"model": "poem_zh", "prompt": "滿目江山四望幽", "max_tokens": 16, "temperature": 0}'
# start_server BATCH: `mtgpt serve` on a free port in the background; sets $server, $addr.
start_server() {
  "$bin" -q serve --model "$model" --addr 127.0.0.1:0 --max-batch "$1" > "$work/addr" &
  server=$!
  for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.1; done
  addr=$(sed -n 's#listening on http://##p' "$work/addr")
}
stop_server() {
  kill -TERM "$server"; wait "$server" || true; server=
  rm -f "$work/addr"
}
for batch in 32 1; do
  start_server "$batch"
  for kind in classify generate; do
    if [ "$kind" = classify ]; then url="http://$addr/v1/tasks/sentiment_zh"; body=$cls_body; count=$n
    else url="http://$addr/v1/completions"; body=$gen_body; count=$((n / 4)); fi
    for c in 1 8 32; do
      "$oha" --no-tui --output-format json -n "$count" -c "$c" -m POST -H 'Content-Type: application/json' \
        -d "$body" "$url" > "$work/$kind-$c-$batch.json"
    done
  done
  if [ "$batch" = 32 ]; then
    # 32 concurrent clients, 256 different test inputs: every answer must be predict's.
    head -256 data/sentiment_zh/test.jsonl > "$work/inputs.jsonl"
    "$bin" -q predict --model "$model" --task sentiment_zh --input "$work/inputs.jsonl" > "$work/want.jsonl"
    python3 - "$addr" "$work" <<'PY' | tee "$work/equal.txt"
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
addr, work = sys.argv[1], sys.argv[2]
inputs = [json.loads(l) for l in open(f"{work}/inputs.jsonl")]
want = [json.loads(l) for l in open(f"{work}/want.jsonl")]
def ask(i):
    req = urllib.request.Request(f"http://{addr}/v1/tasks/sentiment_zh", data=json.dumps(inputs[i]).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read())
with ThreadPoolExecutor(32) as pool:
    got = list(pool.map(ask, range(len(inputs))))
def agree(a, b):
    # Labels exactly, probabilities within 1e-6 (a row's floats round differently in a batch).
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) < 1e-6
    if isinstance(a, list):
        return len(a) == len(b) and all(agree(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(agree(a[k], b[k]) for k in a)
    return a == b
same = 0
for i, ((st, g), w) in enumerate(zip(got, want)):
    if st == 200 and agree(g, w):
        same += 1
    else:
        print(f"input {i} differs: status {st}, served {json.dumps(g, ensure_ascii=False)}, predict {json.dumps(w, ensure_ascii=False)}")
print(f"answers_equal_to_predict={same}/{len(want)} (32 concurrent clients)")
PY
  fi
  stop_server
done
# The alternated rounds: batching gets 4× the requests, so both halves run a few seconds.
for r in $(seq "$rounds"); do
  for batch in 32 1; do
    start_server "$batch"
    url="http://$addr/v1/tasks/sentiment_zh"
    count=$(( batch == 32 ? 4 * n : n ))
    "$oha" --no-tui -n 64 -c 32 -m POST -H 'Content-Type: application/json' -d "$cls_body" "$url" > /dev/null
    "$oha" --no-tui --output-format json -n "$count" -c 32 -m POST -H 'Content-Type: application/json' \
      -d "$cls_body" "$url" > "$work/round-$r-$batch.json"
    stop_server
  done
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work = sys.argv[1]
def point(kind, c, batch):
    d = json.load(open(f"{work}/{kind}-{c}-{batch}.json"))
    lat = d.get("latencyPercentiles", {})
    return d["summary"]["requestsPerSec"], lat.get("p50", 0) * 1000, lat.get("p99", 0) * 1000, d.get("statusCodeDistribution", {})
print(f"{'':22} {'batching (max 32)':>30} {'batch size 1':>30} {'speed-up':>9}")
print(f"{'':22} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
for kind in ("classify", "generate"):
    for c in (1, 8, 32):
        a, b = point(kind, c, 32), point(kind, c, 1)
        codes = sorted(set(a[3]) | set(b[3]))
        print(f"{kind + ' c=' + str(c):22} {a[0]:>10.1f} {a[1]:>9.1f} {a[2]:>9.1f} {b[0]:>10.1f} {b[1]:>9.1f} {b[2]:>9.1f} {a[0]/b[0]:>8.2f}x  status {','.join(codes)}")
a, b = point("classify", 32, 32), point("classify", 32, 1)
g, h = point("generate", 32, 32), point("generate", 32, 1)
print(open(f"{work}/equal.txt").read().strip())
print(f"classify_speedup_c32={a[0]/b[0]:.2f} generate_speedup_c32={g[0]/h[0]:.2f}")
rounds = int(sys.argv[2])
if rounds:
    rps = lambda r, b: json.load(open(f"{work}/round-{r}-{b}.json"))["summary"]["requestsPerSec"]
    ratios = []
    for r in range(1, rounds + 1):
        x, y = rps(r, 32), rps(r, 1)
        ratios.append(x / y)
        print(f"round {r}: classify c=32 {x:.1f} / {y:.1f} req/s = {x / y:.2f}x")
    print(f"classify_speedup_c32_median={statistics.median(ratios):.2f} ({rounds} alternated rounds)")
PY
