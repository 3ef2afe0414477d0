#!/usr/bin/env python3
"""Derives an extractive-QA task from the MSRA NER sample (data/ner_zh), as in MRC-style NER
(Li et al. 2020, "A Unified MRC Framework for Named Entity Recognition"): the context is the
sentence, the question asks for an entity type, the answer is the first entity of that type.

Usage: scripts/derive_qa_ner.py [ROOT]   (ROOT defaults to the repository root)
Writes data/qa_ner_zh/{valid,test}.jsonl from data/ner_zh/{valid,test}.jsonl. Deterministic.
"""
import json
import pathlib
import sys

QUESTIONS = {
    "LOC": "文中提到的地名是什么？",
    "PER": "文中提到的人名是什么？",
    "ORG": "文中提到的机构名是什么？",
}


def entities(tags):
    """(type, start, end) spans of BIO or BMES tags, end exclusive."""
    out, start, kind = [], None, None
    for i, t in enumerate(list(tags) + ["O"]):
        head, _, typ = t.partition("-")
        begins = head in ("B", "S") or (head in ("I", "M", "E") and typ != kind)
        if start is not None and (head == "O" or begins):
            out.append((kind, start, i))
            start, kind = None, None
        if head in ("B", "S") or (head in ("I", "M", "E") and start is None):
            start, kind = i, typ
        if head in ("S", "E") and start is not None:
            out.append((kind, start, i + 1))
            start, kind = None, None
    return out


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1])
    dst = root / "data" / "qa_ner_zh"
    dst.mkdir(parents=True, exist_ok=True)
    for split in ("valid", "test"):
        n = 0
        with open(root / "data" / "ner_zh" / f"{split}.jsonl", encoding="utf-8") as f, open(
            dst / f"{split}.jsonl", "w", encoding="utf-8"
        ) as w:
            for line in f:
                ex = json.loads(line)
                tokens, tags = ex["tokens"], ex["tags"]
                spans = [s for s in entities(tags) if s[0] in QUESTIONS]
                if not spans:
                    continue
                kind, a, b = spans[0]
                context = "".join(tokens)
                start = len("".join(tokens[:a]))
                answer = "".join(tokens[a:b])
                assert context[start : start + len(answer)] == answer
                w.write(
                    json.dumps(
                        {"context": context, "question": QUESTIONS[kind], "answer": {"text": answer, "start": start}},
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                n += 1
        print(f"data/qa_ner_zh/{split}.jsonl: {n} examples")


if __name__ == "__main__":
    main()
