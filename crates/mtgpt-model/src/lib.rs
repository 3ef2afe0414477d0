//! The GPT trunk of mtgpt on libtorch: embeddings, causal self-attention on libtorch's
//! `scaled_dot_product_attention`, GELU MLP, pre-LN blocks, a tied LM head, a KV cache, and
//! fp32 or bf16 compute (fp32 master weights).
//!
//! ```no_run
//! use mtgpt_model::Gpt;
//! use tch::{nn, Device, Kind, Tensor};
//! let mut config = mtgpt_core::ModelConfig::tiny();
//! config.vocab_size = 1000;
//! let vs = nn::VarStore::new(Device::Cpu);
//! let gpt = Gpt::new(&vs.root(), &config)?;
//! let ids = Tensor::randint(1000, [2, 16], (Kind::Int64, Device::Cpu));
//! let hidden = gpt.forward(&ids, None, None, false)?.hidden;
//! assert_eq!(gpt.logits(&hidden).size(), [2, 16, 1000]);
//! # Ok::<(), mtgpt_model::Error>(())
//! ```
#![warn(missing_docs)]

pub mod compact;
mod dtype;
pub mod embed;
pub mod error;
mod folder;
pub mod generate;
pub mod gpt;
pub mod invariant;
pub mod io;
pub mod layers;
pub mod lora;
pub mod merge;
pub mod peft;
pub mod perf;

pub use error::{Error, Result};
pub use generate::{Decoder, GenerateConfig, RowRequest, generate, generate_rows};
pub use gpt::{Block, CausalSelfAttention, DecodeHead, Gpt, GptOutput, KvCache, Mlp};
pub use invariant::{INVARIANT_CHUNK, batch_invariant, is_batch_invariant};
pub use io::Model;
pub use layers::{Embedding, Int8Weight, LayerNorm, Linear};
pub use lora::{AdapterLayout, AdapterRows, LoraSet};

/// The libtorch version this crate was compiled against, read from its headers at build time.
pub const LIBTORCH_VERSION: &str = env!("MTGPT_LIBTORCH_VERSION");
