#!/usr/bin/env bash
# Interchange check with Hugging Face transformers: builds a small random mtgpt model,
# exports it as a GPT-2 folder, loads that with transformers.GPT2LMHeadModel (pip, in the
# reference venv of scripts/setup-pyref.sh) and compares logits; then imports the folder back
# and checks the weights round-trip exactly. Needs network for the first pip install only.
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh
build_mtgpt
py=$(scripts/setup-pyref.sh | tail -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" -q tokenizer train --input data/lm_en/valid.txt data/lm_zh/valid.txt --vocab-size 1000 --out "$work/tok/tokenizer.json"
cat > "$work/config.toml" <<'TOML'
name = "hf-check"
seed = 3
[model]
n_layer = 2
n_head = 4
d_model = 64
block_size = 64
[[task]]
name = "lm"
kind = "lm"
train = "unused.txt"
TOML
"$bin" -q model init --config "$work/config.toml" --tokenizer "$work/tok/tokenizer.json" --out "$work/model"
"$bin" -q export --model "$work/model" --format hf-gpt2 --out "$work/hf"
ids=$(echo "To be, or not to be 北京欢迎你" | "$bin" -q tokenizer encode --tokenizer "$work/hf/tokenizer.json" | tr ' ' ',')
"$bin" -q logits --model "$work/model" --ids "$ids" > "$work/ours.json"
"$py" - "$work/hf" "$ids" "$work/ours.json" <<'PY'
import json, sys, torch
from transformers import GPT2LMHeadModel
model = GPT2LMHeadModel.from_pretrained(sys.argv[1]).eval()
ids = torch.tensor([[int(i) for i in sys.argv[2].split(",")]])
with torch.no_grad():
    theirs = model(ids).logits[0]
ours = torch.tensor(json.load(open(sys.argv[3])))
diff = (theirs - ours).abs().max().item()
print(f"transformers GPT2LMHeadModel vs mtgpt: {ids.shape[1]} tokens, max |logit diff| = {diff:.2e}")
sys.exit(0 if diff < 1e-4 else 1)
PY
"$bin" -q import --hf "$work/hf" --out "$work/back"
cmp "$work/model/model.safetensors" "$work/back/model.safetensors" && echo "export → import: weights identical"
