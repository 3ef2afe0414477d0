#!/usr/bin/env bash
# Training speed, mtgpt vs PyTorch eager on this machine: the same GPT shape, random tokens,
# full steps (forward, backward, global-norm clip 1.0, AdamW β=(0.9, 0.95), wd 0.1).
# PyTorch comes from pip (torch==2.13.0, the libtorch mtgpt links) in the venv .venv-bench.
# Usage: scripts/bench-train.sh [STEPS]   (timed steps per run after 2 warm-up steps; default 10)
# Each line also gives both sides' model-FLOP utilization (MFU, against the fp32 or bf16 matmul peak
# measured in the same run) and the ceiling: the time the step's matrix products alone take.
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "${BASH_SOURCE[0]}")/.."
steps=${1:-10}
source scripts/lib.sh
build_mtgpt
ensure_venv "import torch" torch==2.13.0 numpy
py=$(mktemp)
trap 'rm -f "$py"' EXIT
cat > "$py" <<'PY'
import sys, time, math, torch
import torch.nn as nn, torch.nn.functional as F
L, H, D, T, B, V, steps, prec = (int(a) for a in sys.argv[1:8]) + (sys.argv[8],) if False else (*map(int, sys.argv[1:8]), sys.argv[8])
torch.manual_seed(0); torch.set_num_threads(int(sys.argv[9]))
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.ln_1 = nn.LayerNorm(D); s.c_attn = nn.Linear(D, 3 * D); s.c_proj = nn.Linear(D, D)
        s.ln_2 = nn.LayerNorm(D); s.c_fc = nn.Linear(D, 4 * D); s.mlp_proj = nn.Linear(4 * D, D)
    def forward(s, x):
        b, t, d = x.shape
        q, k, v = s.c_attn(s.ln_1(x)).split(D, -1)
        q, k, v = (z.view(b, t, H, D // H).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + s.c_proj(y)
        return x + s.mlp_proj(F.gelu(s.c_fc(s.ln_2(x)), approximate="tanh"))
class GPT(nn.Module):
    def __init__(s):
        super().__init__(); s.wte = nn.Embedding(V, D); s.wpe = nn.Embedding(T, D)
        s.h = nn.ModuleList(Block() for _ in range(L)); s.ln_f = nn.LayerNorm(D)
    def forward(s, idx):
        x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1]))
        for b in s.h: x = b(x)
        return s.ln_f(x) @ s.wte.weight.t()
m = GPT()
with torch.no_grad():  # GPT-2 initialisation, as mtgpt: N(0, 0.02²), zero biases, unit norms
    for name, p in m.named_parameters():
        if p.dim() >= 2: p.normal_(0.0, 0.02)
        elif "ln" in name and name.endswith("weight"): p.fill_(1.0)
        else: p.zero_()
opt = torch.optim.AdamW(m.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
data = torch.randint(V, (B, T + 1))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
        logits = m(data[:, :T])
        loss = F.cross_entropy(logits.float().view(-1, V), data[:, 1:].reshape(-1))
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    return loss.item()
for _ in range(2): step()
t0 = time.perf_counter(); losses = [step() for _ in range(steps)]; s = time.perf_counter() - t0
print(f"tokens_per_s={steps * B * T / s:.0f} step_ms={1000 * s / steps:.1f} loss_first={losses[0]:.4f} loss_last={losses[-1]:.4f}")
PY
threads=$(nproc)
val() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<< "$2"; }
run() { # layers heads dim block batch precision
  local ours theirs
  ours=$("$bin" -q bench train --layers "$1" --heads "$2" --dim "$3" --block "$4" --batch "$5" --vocab 8000 --steps "$steps" --precision "$6")
  theirs=$("$venv/bin/python" "$py" "$1" "$2" "$3" "$4" "$5" 8000 "$steps" "$6" "$threads")
  local a b floor peak gflop pt_step
  a=$(val tokens_per_s "$ours"); b=$(val tokens_per_s "$theirs")
  floor=$(val gemm_floor_ms "$ours"); peak=$(val peak_gflops "$ours"); gflop=$(val model_gflop "$ours")
  pt_step=$(val step_ms "$theirs")
  printf '%-22s %-5s mtgpt %6s tok/s (MFU %s) | pytorch %6s tok/s (MFU %.3f) | ratio %.2fx\n' \
    "${1}L/${2}H/${3}d/T${4}/B${5}" "$6" "$a" "$(val mfu "$ours")" "$b" \
    "$(echo "$gflop / ($pt_step / 1000) / $peak" | bc -l)" "$(echo "$a / $b" | bc -l)"
  # The step's matrix products alone take gemm_floor_ms: no implementation can beat PyTorch
  # by more than PyTorch's step time over that floor.
  printf '    ceiling: matrix products alone %s ms -> at most %.2fx PyTorch (peak %s GFLOP/s)\n' \
    "$floor" "$(echo "$pt_step / $floor" | bc -l)" "$peak"
  echo "    mtgpt:   $ours"
  echo "    pytorch: $theirs"
  last_loss=$(val loss_last "$ours"); last_tps=$a
}
echo "threads=$threads steps=$steps (one run each: run twice when the machine is busy)"
ratio() { # label: bf16 / fp32 of the last two runs
  printf 'bf16 / fp32 at %s: %.2fx tokens/s, last loss %s vs %s (%.2f %%)\n' "$1" \
    "$(echo "$last_tps / $fp32_tps" | bc -l)" "$last_loss" "$fp32_loss" \
    "$(echo "100 * ($last_loss - $fp32_loss) / $fp32_loss" | bc -l)"
}
run 4 4 256 128 16 fp32
fp32_loss=$last_loss fp32_tps=$last_tps
run 4 4 256 128 16 bf16
ratio 4L/256d
run 6 8 512 256 8 fp32
fp32_loss=$last_loss fp32_tps=$last_tps
run 6 8 512 256 8 bf16
ratio 6L/512d
