//! Task metrics for mtgpt in pure Rust (no libtorch, fast to test): accuracy, macro-F1,
//! exact match and token F1, BLEU, ROUGE, perplexity, span F1.
//!
//! Status: not implemented yet; issue #5 fills this crate.
