"""PyTorch reference for joint multi-task training throughput: replays, step by step, the training
batches mtgpt dumped (one task per step) on the same model, "HF-style": transformers' GPT2Model
(fp32, eager, SDPA attention), every batch right-padded to its longest row with an attention
mask, as transformers' DataCollatorWithPadding does, and torch.optim.AdamW.

The losses mirror crates/mtgpt-tasks/src/heads.rs and the optimizer mirrors
crates/mtgpt-train/src/optim.rs (decay groups, global step count for bias correction, gradients
that stay defined as zeros once a parameter got one), so the loss curves can be compared too.

Usage: python scripts/bench_joint_torch.py DUMP.jsonl [--steps N] [--warmup N] [--out RESULT.json]
       python scripts/bench_joint_torch.py DUMP.jsonl --check-first-loss

DUMP.jsonl: a header line {"header": {"init", "pad", "weight_decay", "beta1", "beta2", "eps",
"grad_clip", "dropout", "threads"}}, then one line per step {"step", "lr", "task", "kind",
"rows", "targets", "input_len", "lm_aux_weight"} (rows unpadded).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2Model

IGNORE = -100  # mtgpt_core::IGNORE_INDEX
HEAD_LAYER = {"classify": "score", "tagging": "tag", "extractive_qa": "span"}  # heads.rs


def decays(name, dims):
    """optim.rs `decays`: matrices get weight decay, except embeddings and loss weights."""
    return dims >= 2 and ".wte." not in name and ".wpe." not in name and not name.startswith("loss_weights.")


class MultiTask:
    """The GPT-2 trunk (`transformer.*`) and the task heads (`heads.<task>.<layer>.*`) of an mtgpt
    model folder. Head weights stay in mtgpt's `Linear` layout: weight [in, out], y = x W + b."""

    def __init__(self, folder, dropout):
        cfg = GPT2Config.from_json_file(os.path.join(folder, "config.json"))
        extra = getattr(cfg, "mtgpt", None) or {}  # config.json's own `mtgpt` block
        if extra.get("layer_heads") or extra.get("layer_d_ff"):
            sys.exit("bench_joint_torch: structurally pruned models are not supported")
        cfg.embd_pdrop = cfg.attn_pdrop = cfg.resid_pdrop = dropout
        cfg.use_cache = False
        try:
            cfg._attn_implementation = "sdpa"
        except Exception:  # older transformers: keep its default attention
            pass
        self.trunk = GPT2Model(cfg)
        weights = load_file(os.path.join(folder, "model.safetensors"))
        heads_file = os.path.join(folder, "heads.safetensors")  # an mtgpt model folder's heads
        if os.path.exists(heads_file):
            weights.update(load_file(heads_file))
        trunk = {k[len("transformer."):]: v for k, v in weights.items() if k.startswith("transformer.")}
        missing, unexpected = self.trunk.load_state_dict(trunk, strict=False)
        own = dict(self.trunk.named_parameters())
        if unexpected or any(k in own for k in missing):
            sys.exit(f"bench_joint_torch: trunk weights do not match GPT2Model: missing {missing}, unexpected {unexpected}")
        self.heads = {}  # task -> (layer name, weight [in, out], bias [out])
        named = [("transformer." + n, p) for n, p in self.trunk.named_parameters()]
        for name, t in weights.items():
            if name.startswith("heads.") and name.endswith(".weight"):
                layer = name[: -len(".weight")]
                task, kind_layer = layer[len("heads."):].rsplit(".", 1)
                w = torch.nn.Parameter(t.float().clone())
                b = torch.nn.Parameter(weights[layer + ".bias"].float().clone())
                self.heads[task] = (kind_layer, w, b)
                named += [(layer + ".weight", w), (layer + ".bias", b)]
        # Every trainable tensor with its mtgpt name, sorted by name as optim.rs does.
        self.named = sorted(named, key=lambda x: x[0])

    def train(self, on):
        self.trunk.train(on)

    def lm_logits(self, hidden):
        """The tied LM head: hidden @ wteᵀ (no bias)."""
        return hidden @ self.trunk.wte.weight.t()

    def loss(self, b):
        """The step's loss on a collated batch `b` (heads.rs `head_forward`, static weight 1)."""
        hidden = self.trunk(input_ids=b["ids"], attention_mask=b["mask"], use_cache=False).last_hidden_state
        kind, (B, T) = b["kind"], b["ids"].shape

        def ce(logits, targets):
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)

        if kind in ("lm", "generate"):
            loss = ce(self.lm_logits(hidden), b["targets"])
        else:
            layer, w, bias = self.heads[b["task"]]
            if layer != HEAD_LAYER.get(kind):
                sys.exit(f"bench_joint_torch: task `{b['task']}` is {kind} but its head is `{layer}`")
            if kind == "classify":
                # The last real token of each row (right padding).
                last = (b["mask"].sum(1) - 1).clamp_min(0)
                pooled = hidden[torch.arange(B), last]
                loss = ce(pooled @ w + bias, b["targets"])
            elif kind == "tagging":
                # tag_context: the hidden states of the next c tokens beside the token's own
                # (padding and positions past the row read as zeros); c from the weight shape.
                d = hidden.shape[-1]
                c = w.shape[0] // d - 1
                real = hidden * b["mask"].to(hidden.dtype).unsqueeze(-1)
                parts = [hidden]
                for k in range(1, c + 1):
                    shifted = torch.zeros_like(real)
                    if k < T:
                        shifted[:, : T - k] = real[:, k:]
                    parts.append(shifted)
                loss = ce(torch.cat(parts, -1) @ w + bias, b["targets"])
            elif kind == "extractive_qa":
                logits = (hidden @ w + bias).masked_fill(b["mask"].eq(0).unsqueeze(-1), -1e9)
                start, end = b["targets"]
                loss = (ce(logits[..., 0], start) + ce(logits[..., 1], end)) / 2.0
            else:
                sys.exit(f"bench_joint_torch: unknown task kind `{kind}`")
        if b["aux"]:
            # Auxiliary LM loss on the input, same causal pass: position p predicts token p + 1
            # while p + 1 < input_len.
            keep = torch.arange(1, T).view(1, T - 1) < b["input_len"].view(B, 1)
            targets = b["ids"][:, 1:].masked_fill(~keep, IGNORE)
            loss = loss + b["lm_aux_weight"] * ce(self.lm_logits(hidden[:, : T - 1]), targets)
        return loss


def collate(line, pad):
    """One dump line -> right-padded tensors (timed: a DataLoader collator's work)."""
    rows, kind = line["rows"], line["kind"]
    if line.get("prefix_attention"):
        sys.exit("bench_joint_torch: prefix attention is not supported (causal trunk only)")
    lens = [len(r) for r in rows]
    T = max(lens)
    ids = torch.tensor([r + [pad] * (T - n) for r, n in zip(rows, lens)], dtype=torch.long)
    mask = torch.tensor([[1] * n + [0] * (T - n) for n in lens], dtype=torch.long)
    tg = line["targets"]
    if kind in ("lm", "generate", "tagging"):
        targets = torch.tensor([t + [IGNORE] * (T - len(t)) for t in tg], dtype=torch.long)
    elif kind == "classify":
        targets = torch.tensor(tg, dtype=torch.long)
    elif kind == "extractive_qa":
        targets = (torch.tensor(tg["start"], dtype=torch.long), torch.tensor(tg["end"], dtype=torch.long))
    else:
        sys.exit(f"bench_joint_torch: unknown task kind `{kind}`")
    w = float(line.get("lm_aux_weight", 0.0))
    input_len = line["input_len"]
    # heads.rs: an aux loss when weighted, T > 1 and some position is kept (checked here on the
    # lists instead of with a tensor reduction).
    aux = w > 0 and kind != "lm" and T > 1 and max(input_len) > 1
    return {"kind": kind, "task": line["task"], "ids": ids, "mask": mask, "targets": targets,
            "input_len": torch.tensor(input_len, dtype=torch.long), "lm_aux_weight": w, "aux": aux,
            "useful": sum(lens), "padded": len(rows) * T, "examples": len(rows)}


def make_optimizer(named, h):
    """torch AdamW with optim.rs's decay / no-decay groups and all state created up front, so the
    step count can follow mtgpt's single global count (see `sync_steps`)."""
    decay = [p for n, p in named if decays(n, p.dim())]
    rest = [p for n, p in named if not decays(n, p.dim())]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": h["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
        lr=0.0, betas=(h["beta1"], h["beta2"]), eps=h["eps"])
    for _, p in named:
        opt.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
    return opt, [opt.state[p]["step"] for _, p in named]


def sync_steps(steps, done):
    """optim.rs counts steps once for all parameters (a head first reached at step k gets the
    bias correction of step k + 1); torch counts per parameter. Set every count to `done`, which
    torch's step then increments."""
    torch._foreach_zero_(steps)
    torch._foreach_add_(steps, float(done))


def train_step(model, opt, step_counts, params, clip, b, lr, done):
    """Forward, backward, clipping by global norm and one AdamW update at `lr`; `done` = steps
    taken before this one. Returns the loss."""
    loss = model.loss(b)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(params, clip)
    for g in opt.param_groups:
        g["lr"] = lr
    sync_steps(step_counts, done)
    opt.step()
    # Zeroed, not freed: as in mtgpt, a parameter that got a gradient once keeps being stepped
    # (moments and weight decay) in steps that do not reach it.
    opt.zero_grad(set_to_none=False)
    return loss.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump")
    ap.add_argument("--steps", type=int, default=None, help="replay only the first N steps")
    ap.add_argument("--warmup", type=int, default=3, help="first N steps not timed (default 3)")
    ap.add_argument("--out", default=None, help="also write the result JSON here")
    ap.add_argument("--check-first-loss", action="store_true",
                    help="print step 0's loss in eval mode (no dropout, no update) and exit")
    a = ap.parse_args()

    # Load the whole dump first (not timed).
    with open(a.dump) as f:
        h = json.loads(f.readline())["header"]
        lines = [json.loads(l) for l in f if l.strip()]
    if a.steps is not None:
        lines = lines[: a.steps]
    torch.set_num_threads(int(h.get("threads", torch.get_num_threads())))
    torch.manual_seed(0)
    model = MultiTask(h["init"], float(h["dropout"]))

    if a.check_first_loss:
        model.train(False)
        with torch.no_grad():
            loss = model.loss(collate(lines[0], h["pad"]))
        print(json.dumps({"step": lines[0].get("step", 0), "task": lines[0]["task"], "loss": loss.item()}))
        return

    warmup = a.warmup
    if len(lines) <= warmup:
        sys.exit(f"bench_joint_torch: {len(lines)} steps, need more than --warmup {warmup}")
    model.train(True)
    params = [p for _, p in model.named]
    opt, step_counts = make_optimizer(model.named, h)
    clip = float(h.get("grad_clip", 0.0))
    losses, useful, padded, examples = [], 0, 0, 0
    t0 = time.perf_counter()
    for i, line in enumerate(lines):
        if i == warmup:
            t0 = time.perf_counter()
        b = collate(line, h["pad"])
        losses.append(train_step(model, opt, step_counts, params, clip, b, float(line["lr"]), i))
        if i >= warmup:
            useful, padded, examples = useful + b["useful"], padded + b["padded"], examples + b["examples"]
        if i % 50 == 0 or i == len(lines) - 1:
            print(f"step {i} ({line['task']}): loss {losses[-1]:.4f}", file=sys.stderr)
    seconds = time.perf_counter() - t0

    tail = losses[-20:]
    result = {
        "steps": len(lines) - warmup, "seconds": seconds, "useful_tokens": useful, "examples": examples,
        "padded_tokens": padded, "useful_tokens_per_s": useful / seconds, "examples_per_s": examples / seconds,
        "first_losses": losses[:5], "last_loss_mean": sum(tail) / len(tail), "torch": torch.__version__,
        "step_losses": losses,
    }
    line = json.dumps(result)
    print(line)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
