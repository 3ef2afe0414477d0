#!/usr/bin/env bash
# Training speed, mtgpt vs PyTorch eager on this machine: the same GPT shape, random tokens,
# full steps (forward, backward, global-norm clip 1.0, AdamW β=(0.9, 0.95), wd 0.1).
# PyTorch comes from pip (torch==2.13.0, the libtorch mtgpt links) in the venv .venv-bench.
# Usage: scripts/bench-train.sh [STEPS]   (timed steps per run after 2 warm-up steps; default 10)
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
run() { # layers heads dim block batch precision
  local ours theirs
  ours=$("$bin" -q bench train --layers "$1" --heads "$2" --dim "$3" --block "$4" --batch "$5" --vocab 8000 --steps "$steps" --precision "$6")
  theirs=$("$venv/bin/python" "$py" "$1" "$2" "$3" "$4" "$5" 8000 "$steps" "$6" "$threads")
  local a b
  a=$(sed -n 's/.*tokens_per_s=\([0-9]*\).*/\1/p' <<< "$ours")
  b=$(sed -n 's/.*tokens_per_s=\([0-9]*\).*/\1/p' <<< "$theirs")
  printf '%-22s %-5s mtgpt %8s tok/s | pytorch %8s tok/s | ratio %.2fx\n' "${1}L/${2}H/${3}d/T${4}/B${5}" "$6" "$a" "$b" "$(echo "$a / $b" | bc -l)"
  echo "    mtgpt:   $ours"
  echo "    pytorch: $theirs"
}
echo "threads=$threads steps=$steps (medians are not taken: run twice when the machine is busy)"
run 4 4 256 128 16 fp32
run 6 8 512 256 8 fp32
run 6 8 512 256 8 bf16
