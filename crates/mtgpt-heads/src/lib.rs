//! Task heads for mtgpt: one head per task kind (LM, classification, extractive QA, tagging,
//! generation) with its loss and decoding, task formatting into batches, and
//! `MultiTaskModel` = one shared trunk plus named heads.
//!
//! Status: not implemented yet; issue #5 fills this crate.
