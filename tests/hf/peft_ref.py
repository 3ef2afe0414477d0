"""Reference side of the PEFT interchange test (tests/tests/peft.rs), in the venv of
scripts/setup-pyref.sh (torch, transformers, peft from PyPI).

  logits BASE ADAPTER IDS OURS.json   max |logit difference| of PeftModel(GPT2LMHeadModel(BASE),
                                      ADAPTER) on IDS against OURS.json
  make BASE OUT IDS LOGITS.json       a LoRA adapter made by peft on BASE (r=4, alpha=12, on
                                      c_attn and c_fc, random A and B), saved to OUT with
                                      save_pretrained; its logits on IDS to LOGITS.json
"""
import json
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import GPT2LMHeadModel


def ids_of(text):
    return torch.tensor([[int(i) for i in text.split(",")]])


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "logits":
        base = GPT2LMHeadModel.from_pretrained(args[0]).eval()
        model = PeftModel.from_pretrained(base, args[1]).eval()
        with torch.no_grad():
            theirs = model(ids_of(args[2])).logits[0]
        ours = torch.tensor(json.load(open(args[3])))
        print(f"{(theirs - ours).abs().max().item():.3e}")
    elif cmd == "make":
        torch.manual_seed(1)
        base = GPT2LMHeadModel.from_pretrained(args[0]).eval()
        config = LoraConfig(
            r=4,
            lora_alpha=12,
            lora_dropout=0.0,
            target_modules=["c_attn", "c_fc"],
            fan_in_fan_out=True,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base, config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.normal_(0.0, 0.3)
        model.save_pretrained(args[1], safe_serialization=True)
        model.eval()
        with torch.no_grad():
            logits = model(ids_of(args[2])).logits[0]
        json.dump(logits.tolist(), open(args[3], "w"))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
