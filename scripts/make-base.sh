#!/usr/bin/env bash
# Makes the shipped base model models/base-tiny: fetches the pretraining corpora
# (scripts/fetch-corpus.sh), checks that no valid or test text of any shipped task is in them,
# pretrains configs/base.toml with `mtgpt pretrain`, and writes models/base-tiny/README.md
# with the exact config, corpora, tokens seen, wall-clock and machine.
#
#   scripts/make-base.sh            all of it (about 40 min on 2 cores with bf16)
#   scripts/make-base.sh --resume   continue an interrupted pretraining run
#
# The run folder (checkpoints, prep/) is runs/base-tiny-pretrain (gitignored).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh
resume=()
for arg in "$@"; do
  case "$arg" in
    --resume) resume=(--resume) ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-base: unknown argument '$arg' (expected --resume or nothing)" >&2; exit 2 ;;
  esac
done
out=models/base-tiny
config=configs/base.toml
build_mtgpt
scripts/fetch-corpus.sh
corpora=$(sed -n 's/^train = "\(data\/full\/corpus\/[^"]*\)"/\1/p' "$config")
echo "make-base: checking that no held-out text of a shipped task is in: $corpora"
# shellcheck disable=SC2086
scripts/fetch-corpus.sh --check $corpora
start=$(date +%s)
"$bin" pretrain --config "$config" --out "$out" --work runs/base-tiny-pretrain ${resume[@]+"${resume[@]}"} --no-progress
end=$(date +%s)
python3 - "$out" "$config" "$((end - start))" <<'PY'
import json, sys, pathlib, platform
out, config, wall = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
r = json.loads((out / "pretrain.json").read_text())
manifest = json.loads(pathlib.Path("data/full/corpus/manifest.json").read_text())
size = (out / "model.safetensors").stat().st_size
lines = [
    f"# {r['name']}: the shipped base model",
    "",
    "Made by `scripts/make-base.sh` (do not edit; run the script again). `[model] init = "
    f"\"{out}\"` starts a run's trunk from it; its tokenizer comes with it.",
    "",
    f"- parameters: {r['parameters']:,} ({size / 1e6:.1f} MB `model.safetensors`, fp32)",
    f"- trained: {r['steps']:,} optimizer steps, {r['tokens_seen']:,} tokens, "
    f"{r['seconds'] / 60:.1f} min of training ({wall / 60:.1f} min for the whole `mtgpt pretrain`, preprocessing included)",
    f"- machine: {r['machine']} ({platform.system()} {platform.machine()})",
    f"- config: `{config}` (resolved below)",
    "- validation perplexity (the held-out end of each corpus):",
]
for task, ppl in r["valid_perplexity"].items():
    lines.append(f"  - `{task}`: {ppl:.1f}")
lines += ["", "## Corpora", "", "| task | file | MB | training tokens | sha256 |", "| --- | --- | --- | --- | --- |"]
files = manifest.get("files", {})
for c in r["corpora"]:
    name = pathlib.Path(c["train"]).name
    sha = files.get(name, {}).get("sha256", "") if isinstance(files, dict) else ""
    lines.append(f"| `{c['task']}` | `{c['train']}` | {c['train_bytes'] / 1e6:.1f} | {c['train_tokens']:,} | `{sha[:16]}` |")
lines += ["", "Sources and licences of the corpora: `data/CORPUS-SOURCES.md`. No valid or test "
          "text of a shipped task is in them (`scripts/fetch_corpus.py --check`, run by the script).",
          "", "## Loss curve (step, mean training loss)", ""]
lines.append(", ".join(f"{s}: {l:.2f}" for s, l in r["loss_curve"][:: max(1, len(r["loss_curve"]) // 20)]))
lines += ["", "## Resolved config", "", "```toml", r["config"].rstrip(), "```", ""]
(out / "README.md").write_text("\n".join(lines))
print(f"make-base: wrote {out} ({size / 1e6:.1f} MB)")
PY
