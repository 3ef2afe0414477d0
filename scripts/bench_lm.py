"""The PyTorch side of scripts/bench-lm.sh: the mtgpt GPT (pre-LN, GELU tanh, learned positions,
tied LM head, GPT-2 initialisation) trained on the token files mtgpt's `prep` wrote, with the
same windows (task token + block-1 tokens), AdamW groups, warmup, clipping and precision, for a
fixed wall-clock budget; then scored on the first N valid tokens exactly as `mtgpt eval` does.

Usage: python bench_lm.py PREP_DIR TASK LAYERS HEADS DIM BLOCK BATCH LR WARMUP WD BETA1 BETA2
       CLIP SECONDS PRECISION EVAL_TOKENS THREADS SEED
"""
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

(prep, task, L, H, D, T, B, lr, warmup, wd, b1, b2, clip, seconds, precision, eval_tokens, threads, seed) = sys.argv[1:19]
L, H, D, T, B, warmup, eval_tokens, threads, seed = map(int, (L, H, D, T, B, warmup, eval_tokens, threads, seed))
lr, wd, b1, b2, clip, seconds = map(float, (lr, wd, b1, b2, clip, seconds))
torch.manual_seed(seed)
torch.set_num_threads(threads)
manifest = json.load(open(f"{prep}/prep.json"))
V = manifest["vocab_size"]
tok = json.load(open(f"{prep}/tokenizer.json"))
task_id = next(t["id"] for t in tok["added_tokens"] if t["content"] == f"<|task:{task}|>")
splits = manifest["tasks"][task]["splits"]
train = torch.from_numpy(np.fromfile(f"{prep}/{splits['train']['file']}", dtype=np.uint32).astype(np.int64))
valid = torch.from_numpy(np.fromfile(f"{prep}/{splits['valid']['file']}", dtype=np.uint32).astype(np.int64))
W = T - 1  # tokens per window after the task token


class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.ln_1, s.ln_2 = nn.LayerNorm(D), nn.LayerNorm(D)
        s.c_attn, s.c_proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        s.c_fc, s.mlp_proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(s, x):
        b, t, d = x.shape
        q, k, v = s.c_attn(s.ln_1(x)).split(D, -1)
        q, k, v = (z.view(b, t, H, D // H).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + s.c_proj(y)
        return x + s.mlp_proj(F.gelu(s.c_fc(s.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(s):
        super().__init__()
        s.wte, s.wpe = nn.Embedding(V, D), nn.Embedding(T, D)
        s.h = nn.ModuleList(Block() for _ in range(L))
        s.ln_f = nn.LayerNorm(D)
        for name, p in s.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(s, idx):
        x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1]))
        for b in s.h:
            x = b(x)
        return s.ln_f(x) @ s.wte.weight.t()


m = GPT()
decay = [p for n, p in m.named_parameters() if p.dim() == 2 and not n.startswith(("wte", "wpe"))]
rest = [p for n, p in m.named_parameters() if not (p.dim() == 2 and not n.startswith(("wte", "wpe")))]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(b1, b2), eps=1e-8)
bf16 = precision == "bf16"


def windows(starts, data):
    x = torch.stack([torch.cat([torch.tensor([task_id]), data[s : s + W]]) for s in starts])
    y = torch.cat([x[:, 1:], torch.full((len(starts), 1), -100)], 1)
    return x, y


def loss_of(x, y):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = m(x)
    return F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1), ignore_index=-100)


step, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    for g in opt.param_groups:
        g["lr"] = lr * min(1.0, (step + 1) / warmup)
    x, y = windows(torch.randint(0, len(train) - W + 1, (B,)).tolist(), train)
    loss = loss_of(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
    opt.step()
    step += 1
elapsed = time.perf_counter() - t0

# The first eval_tokens valid tokens in consecutive windows of W, the last one shorter.
m.eval()
v = valid[:eval_tokens]
total, count = 0.0, 0
with torch.no_grad():
    chunks = [v[i : i + W] for i in range(0, len(v), W)]
    for i in range(0, len(chunks), 32):
        group = chunks[i : i + 32]
        for c in {len(c) for c in group}:
            same = [g for g in group if len(g) == c]
            x = torch.stack([torch.cat([torch.tensor([task_id]), g]) for g in same])
            y = torch.cat([x[:, 1:], torch.full((len(same), 1), -100)], 1)
            n = int((y != -100).sum())
            total += float(loss_of(x, y)) * n
            count += n
print(f"steps={step} seconds={elapsed:.1f} tokens_per_s={step * B * W / elapsed:.0f} train_loss={float(loss):.4f} val_loss={total / count:.4f}")
