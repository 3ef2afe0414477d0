#!/usr/bin/env bash
# The Python reference venv of the tests that compare mtgpt with Hugging Face transformers:
# torch (PyPI's Linux wheel brings its CUDA libraries; about 3 GB, downloaded once and kept in
# pip's cache), transformers, tokenizers, safetensors, numpy, peft (the LoRA adapter
# interchange tests) and openai (the official client, against `mtgpt serve`), all from PyPI.
#
#   scripts/setup-pyref.sh     prints the venv's python on its last line
#
# The venv lives outside the checkout (MTGPT_PYREF, default ~/.cache/mtgpt/pyref) so every
# clone shares it; idempotent: when the venv already imports everything it returns at once.
# pip reuses what it downloaded before (its own cache).
set -euo pipefail
TORCH_VERSION=2.13.0
TRANSFORMERS_VERSION=4.57.6
PEFT_VERSION=0.18.1
OPENAI_VERSION=3.57.0
venv=${MTGPT_PYREF:-$HOME/.cache/mtgpt/pyref}
check="import torch, transformers, tokenizers, safetensors, numpy; \
assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__; \
assert transformers.__version__ == '$TRANSFORMERS_VERSION', transformers.__version__"
peft_check="import peft, openai; assert peft.__version__ == '$PEFT_VERSION', peft.__version__; \
assert openai.__version__ == '$OPENAI_VERSION', openai.__version__"
if "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
  if ! "$venv/bin/python" -c "$peft_check" >/dev/null 2>&1; then
    # A venv from before the adapter and serving tests: add peft and openai, keep the rest.
    echo "setup-pyref: adding peft $PEFT_VERSION and openai $OPENAI_VERSION to $venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "peft==$PEFT_VERSION" \
      "openai==$OPENAI_VERSION" >&2 \
      || { echo "setup-pyref: error: pip could not install peft==$PEFT_VERSION and openai==$OPENAI_VERSION from PyPI" >&2; exit 1; }
  fi
  echo "$venv/bin/python"
  exit 0
fi
die() { echo "setup-pyref: error: $*" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || die "python3 not found (Debian: apt-get install python3 python3-venv)"
echo "setup-pyref: making $venv (torch $TORCH_VERSION, transformers $TRANSFORMERS_VERSION)" >&2
if [ -e "$venv" ]; then
  # Only a venv this script made (it carries the marker) is replaced.
  [ -f "$venv/.mtgpt-pyref" ] || die "$venv exists but was not made by this script; remove it or set MTGPT_PYREF to another folder"
  rm -rf "$venv"
fi
python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
touch "$venv/.mtgpt-pyref"
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
"${pip[@]}" "torch==$TORCH_VERSION" "transformers==$TRANSFORMERS_VERSION" "peft==$PEFT_VERSION" "openai==$OPENAI_VERSION" numpy safetensors \
  || die "pip could not install torch==$TORCH_VERSION and transformers==$TRANSFORMERS_VERSION from PyPI"
"$venv/bin/python" -c "$check; $peft_check" >&2 || die "the venv in $venv does not import torch and transformers"
echo "$venv/bin/python"
