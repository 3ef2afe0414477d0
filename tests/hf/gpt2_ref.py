"""Reference side of the Hugging Face interchange tests (tests/tests/hf_init.rs).

Runs in the venv of scripts/setup-pyref.sh (torch, transformers, tokenizers from PyPI).

  make DIR bpe|wordpiece      a tiny random GPT2LMHeadModel saved with save_pretrained, with a
                              byte-level BPE (GPT-2 style: only <|endoftext|>) or a BERT-style
                              WordPiece tokenizer (as the Chinese GPT-2 checkpoints use)
  encode DIR TEXT             token ids of TEXT (no special tokens added), comma-separated
  logits DIR IDS OURS.json    max |logit difference| of GPT2LMHeadModel(DIR) on IDS against
                              OURS.json over DIR's vocabulary columns (OURS may have more)
  generate DIR TEXT N         greedy continuation ids of TEXT, N new tokens, no early stop
"""
import json
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

TEXT = (
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
    "the slings and arrows of outrageous fortune. 北京欢迎你，今天天气很好。我们一起去公园散步吧！"
    "The quick brown fox jumps over the lazy dog 12345 times. 春眠不觉晓，处处闻啼鸟。\n"
)


def make(out, kind):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    corpus = [TEXT] * 20 + [line for line in TEXT.split("。")]
    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(corpus, trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            unk_token="<|endoftext|>",
        )
    elif kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        )
        tok.train_from_iterator(corpus, trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
        )
    else:
        sys.exit(f"unknown tokenizer kind {kind}")
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(fast),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    model = GPT2LMHeadModel(cfg).eval()
    # Larger weights than the 0.02 default, so logits differ clearly between tokens.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)


def load(d):
    return GPT2LMHeadModel.from_pretrained(d).eval()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        make(args[0], args[1])
    elif cmd == "encode":
        tok = PreTrainedTokenizerFast.from_pretrained(args[0])
        print(",".join(str(i) for i in tok(args[1], add_special_tokens=False)["input_ids"]))
    elif cmd == "logits":
        ids = torch.tensor([[int(i) for i in args[1].split(",")]])
        with torch.no_grad():
            theirs = load(args[0])(ids).logits[0]
        ours = torch.tensor(json.load(open(args[2])))[:, : theirs.shape[1]]
        print(f"{(theirs - ours).abs().max().item():.3e}")
    elif cmd == "generate":
        tok = PreTrainedTokenizerFast.from_pretrained(args[0])
        ids = torch.tensor([tok(args[1], add_special_tokens=False)["input_ids"]])
        n = int(args[2])
        with torch.no_grad():
            out = load(args[0]).generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=n,
                min_new_tokens=n,
                eos_token_id=None,
                pad_token_id=0,
            )
        print(",".join(str(i) for i in out[0, ids.shape[1]:].tolist()))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
