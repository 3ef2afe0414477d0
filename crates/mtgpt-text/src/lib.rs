//! Text preprocessing for mtgpt: Unicode normalization, Chinese word segmentation (jieba-rs),
//! Snowball stemming (rust-stemmers), byte-level BPE and char tokenizers (`tokenizers`),
//! data augmentation and streaming JSONL readers for every task kind.
//!
//! ```
//! use mtgpt_text::{Normalizer, Segmenter};
//! let text = Normalizer::default().normalize("我来到北京清华大学！");
//! assert_eq!(Segmenter::default().segment_line(&text), "我 来到 北京 清华大学 !");
//! ```
#![warn(missing_docs)]

pub mod augment;
mod bytelevel;
pub mod data;
pub mod error;
pub mod jsonl;
pub mod normalize;
pub mod prep;
pub mod segment;
pub mod stem;
pub mod tokenizer;

pub use error::{Error, Result};
pub use normalize::{Normalized, Normalizer};
pub use segment::{Segmenter, Word};
pub use tokenizer::{Encoded, SpecialIds, TextTokenizer, TokenizerMeta, TrainOptions};
