"""The official OpenAI Python client against `mtgpt serve` (tests/tests/serve.rs), in the venv
of scripts/setup-pyref.sh.

  check BASE_URL API_KEY MODEL PROMPT   completions and chat completions of PROMPT, whole and
                                        streamed, greedy; prints one JSON object with what came
                                        back
"""
import json
import sys

import openai


def main():
    base, key, model, prompt = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=60)
    out = {"models": [m.id for m in client.models.list().data]}
    c = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0)
    out["completion"] = {"text": c.choices[0].text, "finish_reason": c.choices[0].finish_reason,
                         "completion_tokens": c.usage.completion_tokens, "object": c.object}
    parts = []
    for chunk in client.completions.create(model=model, prompt=prompt, max_tokens=8,
                                           temperature=0, stream=True):
        parts.append(chunk.choices[0].text)
    out["completion_stream"] = {"text": "".join(parts), "chunks": len(parts)}
    msgs = [{"role": "user", "content": prompt}]
    r = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0)
    out["chat"] = {"content": r.choices[0].message.content, "role": r.choices[0].message.role,
                   "finish_reason": r.choices[0].finish_reason}
    parts = []
    for chunk in client.chat.completions.create(model=model, messages=msgs, max_tokens=8,
                                                temperature=0, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    out["chat_stream"] = {"content": "".join(parts), "chunks": len(parts)}
    try:
        openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
        out["wrong_key"] = "accepted"
    except openai.AuthenticationError as e:
        out["wrong_key"] = e.status_code
    try:
        client.completions.create(model="no-such-task", prompt="x", max_tokens=4)
        out["unknown_model"] = "accepted"
    except openai.NotFoundError as e:
        out["unknown_model"] = e.status_code
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    if sys.argv[1] != "check":
        sys.exit(f"unknown command {sys.argv[1]}")
    main()
