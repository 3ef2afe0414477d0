//! Text preprocessing for mtgpt: Unicode normalization, Chinese word segmentation (jieba-rs),
//! Snowball stemming (rust-stemmers), byte-level BPE and char tokenizers (`tokenizers`),
//! data augmentation and streaming JSONL readers for every task kind.
//!
//! Status: not implemented yet; issue #3 fills this crate. Nothing here pretends to work.
