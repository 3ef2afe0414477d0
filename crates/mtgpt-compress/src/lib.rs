//! Compression of trained mtgpt models: magnitude and structured pruning, int8 weight
//! quantization, multi-task distillation, and size/speed/score reports.
//!
//! Status: not implemented yet; issue #7 fills this crate.
