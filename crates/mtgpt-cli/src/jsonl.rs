//! Empty: the JSONL reader moved to `mtgpt_text::jsonl` and no verb calls it here any more.
//! Delete this file together with `mod jsonl;` in `main.rs`.
