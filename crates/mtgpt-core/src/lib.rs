//! Shared types of mtgpt: the config schema, task kinds, examples, batches, errors and seeding.
//!
//! Every other mtgpt crate talks through these types, so none has to reach into another's
//! internals. This crate has no libtorch dependency and builds in seconds.
//!
//! ```
//! use mtgpt_core::Config;
//! let text = r#"
//! name = "mini"
//! [model]
//! preset = "tiny"
//! n_layer = 2
//! [[task]]
//! name = "lm_en"
//! kind = "lm"
//! train = "data/lm_en/train.txt"
//! "#;
//! let config = Config::from_toml_str(text, "mini.toml".as_ref(), &["train.steps=50".into()])?;
//! assert_eq!(config.model.n_layer, 2);
//! assert_eq!(config.model.d_model, 256); // from the preset
//! assert_eq!(config.train.steps, 50);
//! # Ok::<(), mtgpt_core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod adapters;
pub mod config;
pub mod error;
mod load;
pub mod seed;
pub mod task;

pub use adapters::{ADAPTER_TARGETS, AdapterConfig, AdapterMode, TrunkTraining};
pub use config::{
    AugmentConfig, CompressConfig, Config, ConfigFile, DecodeConfig, GenerateAugmentConfig,
    Importance, ModelConfig, ModelSection, Precision, PrecisionChoice, PreprocessConfig, Preset,
    PruneScope, SamplingConfig, SamplingStrategy, Schedule, TaskConfig, TokenizerConfig,
    TokenizerKind, TrainConfig, WeightingConfig, WeightingStrategy,
};
pub use config::{DEFAULT_TAG_CONTEXT, auto_precision, cpu_flags, is_bio};
pub use error::{Error, Result};
pub use load::{init_folder, init_shape};
pub use task::{Answer, Attention, Batch, Example, IGNORE_INDEX, Pool, Targets, TaskKind};

/// Languages of the Snowball stemmers (rust-stemmers), as written in a task's `stem` key.
pub const STEMMER_LANGUAGES: [&str; 18] = [
    "arabic",
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "greek",
    "hungarian",
    "italian",
    "norwegian",
    "portuguese",
    "romanian",
    "russian",
    "spanish",
    "swedish",
    "tamil",
    "turkish",
];
