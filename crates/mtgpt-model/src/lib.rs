//! The GPT trunk of mtgpt on libtorch (filled by issue #4).
//!
//! Today this crate only re-exports the libtorch version it was built against; the
//! embeddings, attention, blocks, KV cache and generation arrive with issue #4.

/// The libtorch version this crate was compiled against, read from its headers at build time.
pub const LIBTORCH_VERSION: &str = env!("MTGPT_LIBTORCH_VERSION");
