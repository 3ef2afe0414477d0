//! The config schema users write in TOML (see `configs/README.md` for every key).
//!
//! Two layers, as in candle: [`ConfigFile`] is exactly what the file says, with defaults and
//! `deny_unknown_fields`; [`Config`] is the validated runtime config made from it by
//! [`Config::load`] / [`Config::from_toml_str`], with the model preset resolved.
use crate::adapters::{AdapterConfig, TrunkTraining};
use crate::task::TaskKind;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A config file as written, before presets are applied and values validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Run name; outputs go under `runs/<name>/` unless `--out` is given.
    pub name: String,
    /// The seed every random stream derives from.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The GPT trunk.
    #[serde(default)]
    pub model: ModelSection,
    /// The tokenizer.
    #[serde(default)]
    pub tokenizer: TokenizerConfig,
    /// Text preprocessing shared by all tasks.
    #[serde(default)]
    pub preprocess: PreprocessConfig,
    /// Joint training.
    #[serde(default)]
    pub train: TrainConfig,
    /// Compression after training.
    #[serde(default)]
    pub compress: CompressConfig,
    /// Low-rank adapters on the trunk.
    #[serde(default, skip_serializing_if = "adapters_off")]
    pub adapters: AdapterConfig,
    /// The tasks, one `[[task]]` table each.
    #[serde(default, rename = "task")]
    pub tasks: Vec<TaskConfig>,
}

fn adapters_off(a: &AdapterConfig) -> bool {
    *a == AdapterConfig::default()
}

fn default_seed() -> u64 {
    42
}

/// Named model shapes that `[model]` starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// 4 layers, 4 heads, 256 wide, 256-token context: trains in minutes on 2 cores.
    #[default]
    Tiny,
    /// 6 layers, 8 heads, 512 wide, 512-token context.
    Small,
    /// GPT-2 124M: 12 layers, 12 heads, 768 wide, 1024-token context, 50257 tokens.
    Base,
}

/// Numeric precision of training and inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// fp32 everywhere.
    #[default]
    Fp32,
    /// fp32 master weights, bf16 matmuls and attention (AMX on CPU, tensor cores on CUDA).
    Bf16,
}

impl Precision {
    /// The name used in configs (`fp32`, `bf16`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// `precision` as a config writes it: a [`Precision`], or `auto` (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrecisionChoice {
    /// bf16 compute with fp32 masters where the hardware has bf16 matrix units or
    /// instructions (AVX-512 BF16 or AMX on the CPU; CUDA), fp32 elsewhere
    /// ([`auto_precision`]).
    #[default]
    Auto,
    /// fp32 everywhere.
    Fp32,
    /// bf16 compute, fp32 masters.
    Bf16,
}

impl PrecisionChoice {
    /// The precision this choice means on this machine (`cuda`: training runs on CUDA).
    pub fn resolve(self, cuda: bool) -> Precision {
        match self {
            PrecisionChoice::Auto => auto_precision(cuda),
            PrecisionChoice::Fp32 => Precision::Fp32,
            PrecisionChoice::Bf16 => Precision::Bf16,
        }
    }
}

impl From<Precision> for PrecisionChoice {
    fn from(p: Precision) -> Self {
        match p {
            Precision::Fp32 => PrecisionChoice::Fp32,
            Precision::Bf16 => PrecisionChoice::Bf16,
        }
    }
}

/// The CPU's model name and feature flags, from `/proc/cpuinfo` (empty elsewhere).
pub fn cpu_flags() -> (String, std::collections::BTreeSet<String>) {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = text
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    (model, flags)
}

/// What `precision = "auto"` means here: bf16 on CUDA and on a CPU with AVX-512 BF16 or AMX
/// (bf16 matrix products measured 2.3× fp32 on an AVX-512 BF16 CPU), fp32 elsewhere.
pub fn auto_precision(cuda: bool) -> Precision {
    let (_, flags) = cpu_flags();
    if cuda || flags.contains("avx512_bf16") || flags.contains("amx_bf16") {
        Precision::Bf16
    } else {
        Precision::Fp32
    }
}

/// `[model]` as written: a preset plus optional overrides of any of its fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// The preset the other keys override.
    #[serde(default)]
    pub preset: Preset,
    /// Transformer blocks.
    pub n_layer: Option<usize>,
    /// Attention heads per block.
    pub n_head: Option<usize>,
    /// Width of the residual stream.
    pub d_model: Option<usize>,
    /// Width of the MLP hidden layer (default 4 × `d_model`).
    pub d_ff: Option<usize>,
    /// Longest sequence the model sees (learned positions).
    pub block_size: Option<usize>,
    /// Vocabulary size; 0 takes it from the tokenizer.
    pub vocab_size: Option<usize>,
    /// Dropout on embeddings, attention and residual branches.
    pub dropout: Option<f64>,
    /// Epsilon of every LayerNorm.
    pub layer_norm_eps: Option<f64>,
    /// `auto` (the default), `fp32` or `bf16`.
    pub precision: Option<PrecisionChoice>,
    /// Attention heads of each block when they differ (written by structured pruning);
    /// absent = `n_head` everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_heads: Option<Vec<usize>>,
    /// MLP width of each block when they differ (written by structured pruning); absent =
    /// `d_ff` everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_d_ff: Option<Vec<usize>>,
    /// Start the trunk from this model folder (an mtgpt model or run folder, a base written by
    /// `mtgpt pretrain`, or a Hugging Face GPT-2 folder); its shape and tokenizer are used.
    /// Empty means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
}

/// The resolved shape and numerics of the GPT trunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Width of the MLP hidden layer.
    pub d_ff: usize,
    /// Longest sequence (learned positions).
    pub block_size: usize,
    /// Vocabulary size (0 until the tokenizer is known).
    pub vocab_size: usize,
    /// Dropout probability.
    pub dropout: f64,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// fp32 or bf16.
    pub precision: Precision,
    /// Attention heads of each block (head width stays `d_model / n_head`); empty = `n_head`
    /// in every block. Structured pruning writes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer_heads: Vec<usize>,
    /// MLP width of each block; empty = `d_ff` in every block. Structured pruning writes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer_d_ff: Vec<usize>,
}

impl ModelConfig {
    /// 4 layers × 4 heads × 256 wide, 256-token context.
    pub fn tiny() -> Self {
        Self::shape(4, 4, 256, 256, 0)
    }

    /// 6 layers × 8 heads × 512 wide, 512-token context.
    pub fn small() -> Self {
        Self::shape(6, 8, 512, 512, 0)
    }

    /// The GPT-2 124M shape: 12 × 12 × 768, 1024-token context, 50257 tokens.
    pub fn base() -> Self {
        Self::shape(12, 12, 768, 1024, 50257)
    }

    /// The config of a named preset.
    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Tiny => Self::tiny(),
            Preset::Small => Self::small(),
            Preset::Base => Self::base(),
        }
    }

    fn shape(n_layer: usize, n_head: usize, d_model: usize, block: usize, vocab: usize) -> Self {
        ModelConfig {
            n_layer,
            n_head,
            d_model,
            d_ff: 4 * d_model,
            block_size: block,
            vocab_size: vocab,
            dropout: 0.1,
            layer_norm_eps: 1e-5,
            precision: Precision::Fp32,
            layer_heads: Vec::new(),
            layer_d_ff: Vec::new(),
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head.max(1)
    }

    /// Attention heads of block `layer`.
    pub fn heads_in(&self, layer: usize) -> usize {
        self.layer_heads.get(layer).copied().unwrap_or(self.n_head)
    }

    /// MLP width of block `layer`.
    pub fn d_ff_in(&self, layer: usize) -> usize {
        self.layer_d_ff.get(layer).copied().unwrap_or(self.d_ff)
    }

    /// Checks `layer_heads` / `layer_d_ff`: empty, or one entry per block, each at least 1
    /// (heads at most `n_head`). The message names the field and the bad value.
    pub fn check_layer_shapes(&self) -> Result<(), String> {
        for (key, v, max) in [
            ("layer_heads", &self.layer_heads, self.n_head),
            ("layer_d_ff", &self.layer_d_ff, usize::MAX),
        ] {
            if v.is_empty() {
                continue;
            }
            if v.len() != self.n_layer {
                return Err(format!(
                    "model.{key} has {} entries; it needs one per block (n_layer = {})",
                    v.len(),
                    self.n_layer
                ));
            }
            if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| **x == 0 || **x > max) {
                return Err(format!(
                    "model.{key}[{i}] = {x}: must be at least 1{}",
                    if max < usize::MAX {
                        format!(" and at most n_head = {max}")
                    } else {
                        String::new()
                    }
                ));
            }
        }
        Ok(())
    }

    /// Parameter count of the trunk with a tied LM head (closed form).
    pub fn num_parameters(&self) -> usize {
        let (d, l) = (self.d_model, self.n_layer);
        let hd = self.head_dim();
        let embeddings = self.vocab_size * d + self.block_size * d;
        let blocks: usize = (0..l)
            .map(|i| {
                let (a, f) = (self.heads_in(i) * hd, self.d_ff_in(i));
                let attn = d * 3 * a + 3 * a + a * d + d;
                let mlp = d * f + f + f * d + d;
                attn + mlp + 2 * 2 * d
            })
            .sum();
        embeddings + blocks + 2 * d
    }

    /// The shape in a GPT-2 `config.json` (ours or Hugging Face's `save_pretrained`); the
    /// error names the key. Settings GPT-2 has and mtgpt does not implement are refused.
    pub fn from_hf_json(v: &serde_json::Value) -> Result<Self, String> {
        use serde_json::Value;
        let bad = |key: &str, why: &str| format!("key `{key}`: {why}");
        let num = |key: &str| -> Result<usize, String> {
            v.get(key)
                .and_then(Value::as_u64)
                .map(|n| n as usize)
                .ok_or_else(|| bad(key, "missing or not a whole number"))
        };
        if let Some(t) = v.get("model_type").and_then(Value::as_str)
            && t != "gpt2"
        {
            return Err(bad("model_type", &format!("`{t}` is not gpt2")));
        }
        if let Some(a) = v.get("activation_function").and_then(Value::as_str)
            && !matches!(a, "gelu_new" | "gelu_pytorch_tanh")
        {
            return Err(bad(
                "activation_function",
                &format!("`{a}` is not supported (gelu_new only)"),
            ));
        }
        for key in [
            "scale_attn_by_inverse_layer_idx",
            "reorder_and_upcast_attn",
            "add_cross_attention",
        ] {
            if v.get(key).and_then(Value::as_bool) == Some(true) {
                return Err(bad(
                    key,
                    "true is not supported (mtgpt implements plain GPT-2)",
                ));
            }
        }
        if v.get("scale_attn_weights").and_then(Value::as_bool) == Some(false) {
            return Err(bad(
                "scale_attn_weights",
                "false is not supported (mtgpt scales attention by 1/sqrt(head width))",
            ));
        }
        if v.get("tie_word_embeddings").and_then(Value::as_bool) == Some(false) {
            return Err(bad(
                "tie_word_embeddings",
                "false is not supported (mtgpt ties the LM head to the token embedding)",
            ));
        }
        let d_model = num("n_embd")?;
        let mut c = ModelConfig {
            n_layer: num("n_layer")?,
            n_head: num("n_head")?,
            d_model,
            d_ff: v
                .get("n_inner")
                .and_then(Value::as_u64)
                .map_or(4 * d_model, |n| n as usize),
            block_size: num("n_positions")?,
            vocab_size: num("vocab_size")?,
            dropout: v.get("resid_pdrop").and_then(Value::as_f64).unwrap_or(0.1),
            layer_norm_eps: v
                .get("layer_norm_epsilon")
                .and_then(Value::as_f64)
                .unwrap_or(1e-5),
            precision: Precision::Fp32,
            layer_heads: Vec::new(),
            layer_d_ff: Vec::new(),
        };
        if let Some(p) = v.pointer("/mtgpt/precision") {
            c.precision = serde_json::from_value(p.clone())
                .map_err(|e| bad("mtgpt.precision", &e.to_string()))?;
        }
        for (key, field) in [
            ("layer_heads", &mut c.layer_heads),
            ("layer_d_ff", &mut c.layer_d_ff),
        ] {
            if let Some(x) = v.pointer(&format!("/mtgpt/{key}")) {
                *field = serde_json::from_value(x.clone()).map_err(|e| {
                    bad(
                        &format!("mtgpt.{key}"),
                        &format!("expected a list of whole numbers ({e})"),
                    )
                })?;
            }
        }
        if c.n_head == 0 || c.d_model % c.n_head != 0 {
            return Err(bad(
                "n_head",
                &format!("{} does not divide n_embd {}", c.n_head, c.d_model),
            ));
        }
        c.check_layer_shapes()
            .map_err(|e| e.replacen("model.", "mtgpt.", 1))?;
        Ok(c)
    }

    fn apply(section: &ModelSection) -> Self {
        let mut m = Self::preset(section.preset);
        let width_given = section.d_model.is_some();
        if let Some(v) = section.n_layer {
            m.n_layer = v;
        }
        if let Some(v) = section.n_head {
            m.n_head = v;
        }
        if let Some(v) = section.d_model {
            m.d_model = v;
        }
        m.d_ff = match section.d_ff {
            Some(v) => v,
            None if width_given => 4 * m.d_model,
            None => m.d_ff,
        };
        if let Some(v) = section.block_size {
            m.block_size = v;
        }
        if let Some(v) = section.vocab_size {
            m.vocab_size = v;
        }
        if let Some(v) = section.dropout {
            m.dropout = v;
        }
        if let Some(v) = section.layer_norm_eps {
            m.layer_norm_eps = v;
        }
        m.precision = section.precision.unwrap_or_default().resolve(false);
        m.layer_heads = section.layer_heads.clone().unwrap_or_default();
        m.layer_d_ff = section.layer_d_ff.clone().unwrap_or_default();
        m
    }

    fn to_section(&self, preset: Preset) -> ModelSection {
        ModelSection {
            preset,
            n_layer: Some(self.n_layer),
            n_head: Some(self.n_head),
            d_model: Some(self.d_model),
            d_ff: Some(self.d_ff),
            block_size: Some(self.block_size),
            vocab_size: Some(self.vocab_size),
            dropout: Some(self.dropout),
            layer_norm_eps: Some(self.layer_norm_eps),
            precision: Some(self.precision.into()),
            layer_heads: (!self.layer_heads.is_empty()).then(|| self.layer_heads.clone()),
            layer_d_ff: (!self.layer_d_ff.is_empty()).then(|| self.layer_d_ff.clone()),
            init: None,
        }
    }
}

/// Tokenizer families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKind {
    /// Byte-level BPE trained with the `tokenizers` crate.
    #[default]
    Bpe,
    /// One token per character seen in training (small experiments).
    Char,
}

/// `[tokenizer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// `bpe` or `char`.
    pub kind: TokenizerKind,
    /// Target vocabulary size for BPE, special tokens included.
    pub vocab_size: usize,
    /// Task names whose training text trains the tokenizer; empty means all tasks.
    pub train_on: Vec<String>,
    /// An existing `tokenizer.json` to reuse instead of training; empty means train one.
    pub path: String,
    /// Segment Chinese with jieba before BPE, so merges respect word boundaries.
    pub presegment: bool,
    /// Minimum pair frequency for a BPE merge.
    pub min_frequency: u64,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig {
            kind: TokenizerKind::Bpe,
            vocab_size: 8000,
            train_on: Vec::new(),
            path: String::new(),
            presegment: true,
            min_frequency: 2,
        }
    }
}

impl TokenizerConfig {
    /// The tokenizer file to reuse, if one is configured.
    pub fn existing(&self) -> Option<&Path> {
        (!self.path.is_empty()).then(|| Path::new(&self.path))
    }
}

/// `[preprocess]`: text cleaning and data handling shared by all tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreprocessConfig {
    /// Unicode NFKC normalisation.
    pub nfkc: bool,
    /// Full-width ASCII and spaces to half-width.
    pub halfwidth: bool,
    /// Lower-case all text.
    pub lowercase: bool,
    /// jieba's HMM for words not in its dictionary.
    pub hmm: bool,
    /// Extra jieba dictionary (`word [freq] [tag]` per line); empty for none.
    pub user_dict: String,
    /// Skip and count malformed records instead of stopping at the first one.
    pub skip_bad: bool,
    /// Share of a task's training file held out as `valid` when the task names no `valid`.
    pub valid_fraction: f64,
    /// Share held out as `test` when the task names no `test`.
    pub test_fraction: f64,
    /// Worker threads for preprocessing; 0 uses every core.
    pub threads: usize,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            nfkc: true,
            halfwidth: true,
            lowercase: false,
            hmm: true,
            user_dict: String::new(),
            skip_bad: false,
            valid_fraction: 0.1,
            test_fraction: 0.1,
            threads: 0,
        }
    }
}

/// Learning-rate schedule after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Cosine decay to `min_lr_ratio × lr`.
    #[default]
    Cosine,
    /// Linear decay to `min_lr_ratio × lr`.
    Linear,
    /// Constant after warmup.
    Constant,
}

/// How the next training task (or batch mix) is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplingStrategy {
    /// Proportional to (capped) dataset size.
    Proportional,
    /// Proportional to size^(1/T), sizes capped (T5 / jiant).
    #[default]
    Temperature,
    /// Round-robin over tasks.
    Uniform,
    /// Temperature moving from `temperature` to `end_temperature` over training.
    Annealed,
}

/// `[train] sampling = { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// The strategy.
    pub strategy: SamplingStrategy,
    /// Temperature T (≥ 1 flattens the mixture).
    pub temperature: f64,
    /// Final temperature of the `annealed` strategy.
    pub end_temperature: f64,
    /// Dataset sizes above this count as this many examples.
    pub cap: usize,
    /// `true`: every batch mixes tasks; `false`: one task per step.
    pub mixed_batches: bool,
    /// Mixed batches: `true` runs all of a step's rows through **one** trunk pass (each row
    /// through its own task's adapter; rows padded to the longest), `false` one pass per task
    /// group (less padding).
    pub one_pass: bool,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            strategy: SamplingStrategy::Temperature,
            temperature: 2.0,
            end_temperature: 1.0,
            cap: 20000,
            mixed_batches: false,
            one_pass: false,
        }
    }
}

/// How task losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightingStrategy {
    /// The fixed per-task `weight`.
    Static,
    /// Learned log-variance per task (Kendall et al. 2018).
    #[default]
    Uncertainty,
    /// Dynamic weight average (Liu et al. 2019).
    Dwa,
    /// Projecting conflicting gradients (Yu et al. 2020).
    Pcgrad,
}

/// `[train] weighting = { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightingConfig {
    /// The strategy.
    pub strategy: WeightingStrategy,
    /// Softmax temperature of DWA.
    pub dwa_temperature: f64,
}

impl Default for WeightingConfig {
    fn default() -> Self {
        WeightingConfig {
            strategy: WeightingStrategy::Uncertainty,
            dwa_temperature: 2.0,
        }
    }
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Joint-training optimizer steps.
    pub steps: usize,
    /// Wall-clock budget in seconds; 0 = none. Training stops cleanly and saves.
    pub max_seconds: f64,
    /// LM-only steps on the `lm` tasks before joint training.
    pub pretrain_steps: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Sequence packing: a step's examples go end to end into rows of up to `block_size`
    /// tokens, each attending only to itself (the losses of the unpadded batch, computed on
    /// far fewer padding tokens).
    pub packing: bool,
    /// A token budget per micro-batch instead of `batch_size` examples: examples are drawn
    /// until their real tokens reach it (0 = use `batch_size`). Best with `packing`.
    pub batch_tokens: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// The trunk's learning rate (every `transformer.*` weight, the token embedding included)
    /// as a fraction of `lr`; heads and loss weights train at `lr`. Below 1 keeps a pretrained
    /// trunk (`model.init`) close to where it started while new heads learn fast.
    pub trunk_lr_factor: f64,
    /// LoRA+ (Hayou et al. 2024): every adapter's `B` matrix steps at this multiple of `lr`,
    /// its `A` at `lr` (PEFT's `loraplus_lr_ratio`); 1 = plain LoRA.
    pub loraplus_lr_ratio: f64,
    /// `full` (every trunk weight trains) or `frozen` (the trunk stays as it started; with
    /// `[adapters]` only the adapters, the heads and `trunk_trainable` train).
    pub trunk: TrunkTraining,
    /// Trunk parameters that train although `trunk = "frozen"`: every one whose name
    /// (`transformer.h.0.ln_1.weight`) contains one of these strings.
    pub trunk_trainable: Vec<String>,
    /// Final learning rate as a share of `lr`.
    pub min_lr_ratio: f64,
    /// Linear warmup steps.
    pub warmup_steps: usize,
    /// Decay after warmup.
    pub schedule: Schedule,
    /// AdamW decoupled weight decay (not applied to biases, norms, embeddings).
    pub weight_decay: f64,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Global gradient-norm clip; 0 = off.
    pub grad_clip: f64,
    /// Decay of an exponential moving average of the trained weights (Polyak averaging);
    /// 0 = off. When on, validation, `best/` and `model/` use the averaged weights
    /// (bias-corrected, so early evaluations are not pulled towards the start); training goes
    /// on from the raw ones. 0.998 averages over roughly the last 500 steps.
    pub ema_decay: f64,
    /// Evaluate on the valid splits every this many steps; 0 = only at the end.
    pub eval_every: usize,
    /// Evaluations without improvement before stopping; 0 = never stop early.
    pub patience: usize,
    /// Write a checkpoint every this many steps; 0 = only at the end.
    pub checkpoint_every: usize,
    /// Checkpoints kept (the best one is kept in addition).
    pub keep_checkpoints: usize,
    /// A loss above this many times its task's running mean counts as divergence.
    pub spike_factor: f64,
    /// Divergence guard: the learning rate is multiplied by this after each event.
    pub guard_lr_factor: f64,
    /// Divergence guard: events tolerated before training stops with an error.
    pub guard_max_events: usize,
    /// Divergence guard: steps between in-memory snapshots of the last good state (checkpoint
    /// steps are snapshots too).
    pub guard_snapshot_every: usize,
    /// Task mixture sampling.
    pub sampling: SamplingConfig,
    /// Loss weighting.
    pub weighting: WeightingConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 3000,
            max_seconds: 0.0,
            pretrain_steps: 0,
            batch_size: 16,
            grad_accum: 1,
            packing: false,
            batch_tokens: 0,
            lr: 3e-4,
            min_lr_ratio: 0.1,
            trunk_lr_factor: 1.0,
            loraplus_lr_ratio: 1.0,
            trunk: TrunkTraining::Full,
            trunk_trainable: Vec::new(),
            warmup_steps: 100,
            schedule: Schedule::Cosine,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            ema_decay: 0.0,
            eval_every: 250,
            patience: 0,
            checkpoint_every: 500,
            keep_checkpoints: 2,
            spike_factor: 5.0,
            guard_lr_factor: 0.5,
            guard_max_events: 10,
            guard_snapshot_every: 50,
            sampling: SamplingConfig::default(),
            weighting: WeightingConfig::default(),
        }
    }
}

/// Per-task data augmentation (`augment = { ... }` in a `[[task]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// EDA: share of words changed by each operation.
    pub eda_alpha: f64,
    /// Augmented copies made of each training example.
    pub n_aug: usize,
    /// Probability per character of a typo (keyboard neighbour, insert, delete, swap).
    pub char_noise: f64,
    /// Probability per word of replacing it with the unknown/mask token.
    pub token_noise: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            eda_alpha: 0.1,
            n_aug: 1,
            char_noise: 0.0,
            token_noise: 0.0,
        }
    }
}

/// One `[[task]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Unique task name (letters, digits, `_`, `-`); becomes the `<|task:NAME|>` token.
    pub name: String,
    /// The task kind.
    pub kind: TaskKind,
    /// Training data: `.jsonl`, or `.txt` raw text for `lm`.
    pub train: PathBuf,
    /// Validation data; split off `train` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<PathBuf>,
    /// Test data; split off `train` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<PathBuf>,
    /// Closed label set (`classify`, `tagging`); read from the training data when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Static loss weight.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// The task counts as `sample_weight` × its training-set size in the task mixture
    /// (before `sampling.cap`): > 1 draws it more often, < 1 less (T5's mixing rates).
    #[serde(default = "default_weight", skip_serializing_if = "is_one")]
    pub sample_weight: f64,
    /// Snowball stemmer language applied to the task's words (e.g. `"english"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stem: Option<String>,
    /// Longest tokenized example; longer ones are truncated (QA: windowed). Default: block size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
    /// Data augmentation of the training split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<AugmentConfig>,
    /// Extra examples written by the model itself (`classify` tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_augment: Option<GenerateAugmentConfig>,
    /// `"causal"` or `"prefix"` ([`crate::Attention`]); default [`crate::Attention::default_for`]
    /// the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<crate::Attention>,
    /// Weight of an auxiliary LM loss on the task's input text, added to the task loss
    /// (Radford et al. 2018); 0 = none. Under prefix attention it costs a second, causal pass.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lm_aux_weight: f64,
    /// How a `generate` task decodes when scored and predicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<DecodeConfig>,
    /// `tagging`: how many following tokens the tag head reads beside the token itself
    /// (right context on a causal trunk); default [`DEFAULT_TAG_CONTEXT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_context: Option<usize>,
    /// `tagging`: tag Chinese text per jieba word (the units a pre-segmented BPE was trained
    /// on) instead of per token, spreading each word's tag back over its tokens; needs BIO
    /// tags. Default: on for BIO tag sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_words: Option<bool>,
    /// `tagging`: a linear-chain CRF over the tag scores, trained by the sequence likelihood
    /// and decoded with its learnt transitions (default off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub crf: bool,
    /// `classify`: how the head reads the trunk, `"last"` (default) or `"mean"`
    /// ([`crate::Pool`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<crate::Pool>,
}

/// Whether `labels` are BIO tags: each `O`, `B-X` or `I-X`.
pub fn is_bio(labels: &[String]) -> bool {
    labels
        .iter()
        .all(|l| l == "O" || l.starts_with("B-") || l.starts_with("I-"))
}

/// The tag head's right context when a tagging task does not set `tag_context`.
pub const DEFAULT_TAG_CONTEXT: usize = 2;

impl TaskConfig {
    /// Whether a tagging task with tag set `labels` tags per jieba word: the configured
    /// `tag_words`, else whether `labels` are BIO tags (`O`, `B-X`, `I-X`); false for other
    /// kinds.
    pub fn tag_words(&self, labels: &[String]) -> bool {
        self.kind == TaskKind::Tagging && self.tag_words.unwrap_or_else(|| is_bio(labels))
    }

    /// The tag head's right context in force (0 for kinds other than `tagging`).
    pub fn tag_context(&self) -> usize {
        match self.kind {
            TaskKind::Tagging => self.tag_context.unwrap_or(DEFAULT_TAG_CONTEXT),
            _ => 0,
        }
    }

    /// The classify head's pooling in force ([`crate::Pool::Last`] for the other kinds).
    pub fn pool(&self) -> crate::Pool {
        match self.kind {
            TaskKind::Classify => self.pool.unwrap_or_default(),
            _ => crate::Pool::Last,
        }
    }

    /// The attention mode in force: the configured one, else the kind's default (`lm` is
    /// always causal).
    pub fn attention(&self) -> crate::Attention {
        match self.kind {
            TaskKind::Lm => crate::Attention::Causal,
            k => self
                .attention
                .unwrap_or_else(|| crate::Attention::default_for(k)),
        }
    }
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// `decode = { ... }` in a `[[task]]` of kind `generate`: greedy decoding with loop guards,
/// used by scoring, `mtgpt predict` and `mtgpt eval` (flags of `mtgpt generate` override).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// No n-gram of this size occurs twice in an output (0 = off).
    pub no_repeat_ngram_size: usize,
    /// > 1 discourages tokens already in the prompt or output (1 = off).
    pub repetition_penalty: f64,
    /// Most new tokens.
    pub max_new_tokens: usize,
    /// The end of text is not generated before this many new tokens (0 = any time).
    pub min_new_tokens: usize,
    /// Beam search with this many beams when the task is scored and predicted (1 = greedy).
    /// The OpenAI-compatible endpoints of `mtgpt serve` sample or decode greedily per request.
    pub num_beams: usize,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            no_repeat_ngram_size: 3,
            repetition_penalty: 1.0,
            max_new_tokens: 64,
            min_new_tokens: 0,
            num_beams: 1,
        }
    }
}

/// `generate_augment = { ... }` in a `[[task]]`: after the LM phase and part of joint training,
/// the model is fine-tuned briefly on `label <|sep|> text` sequences, writes `n` new
/// examples conditioned on labels, and keeps those the current classifier assigns to the
/// same label with probability ≥ `min_confidence` (as LAMBADA, Anaby-Tavor et al. 2020).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateAugmentConfig {
    /// Examples to generate (before filtering).
    pub n: usize,
    /// Classifier probability an example needs for its label to be kept.
    pub min_confidence: f64,
    /// Share of the joint-training steps done before generating (the classifier must be
    /// trained enough to filter).
    pub at_fraction: f64,
    /// Fine-tuning steps of the generator on `label <|sep|> text`.
    pub finetune_steps: usize,
    /// Most new tokens per generated example.
    pub max_new_tokens: usize,
    /// Sampling temperature of the generator.
    pub temperature: f64,
}

impl Default for GenerateAugmentConfig {
    fn default() -> Self {
        GenerateAugmentConfig {
            n: 200,
            min_confidence: 0.8,
            at_fraction: 0.5,
            finetune_steps: 100,
            max_new_tokens: 48,
            temperature: 0.9,
        }
    }
}

fn default_weight() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

/// Scope of unstructured magnitude pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneScope {
    /// One threshold over all prunable weights.
    #[default]
    Global,
    /// The target sparsity in every layer.
    Layer,
}

/// How `prune-structured` ranks attention heads and MLP neurons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Importance {
    /// First-order Taylor estimate |Σ w·∂L/∂w| over the unit's weights, on training batches of
    /// every task (Molchanov et al. 2019; Michel et al. 2019 for heads).
    #[default]
    Taylor,
    /// L2 norm of the unit's weights (no data needed).
    Norm,
}

/// `[compress]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressConfig {
    /// Methods `mtgpt run` applies after training (`prune`, `prune-structured`, `int8`,
    /// `distill`); empty = none.
    pub methods: Vec<String>,
    /// Target share of zero weights for `prune`.
    pub sparsity: f64,
    /// `global` or `layer`.
    pub scope: PruneScope,
    /// Fine-tuning steps during gradual pruning and for distillation.
    pub finetune_steps: usize,
    /// Share of attention heads removed by `prune-structured`.
    pub head_fraction: f64,
    /// Share of MLP neurons removed by `prune-structured`.
    pub neuron_fraction: f64,
    /// Student depth for `distill`; 0 = half the teacher's.
    pub student_layers: usize,
    /// Weight of the KL term in distillation (the task loss gets 1 − α).
    pub alpha: f64,
    /// Distillation temperature τ.
    pub temperature: f64,
    /// Weight of hidden-state matching; 0 = off.
    pub hidden_weight: f64,
    /// How `prune-structured` ranks heads and neurons: `taylor` or `norm`.
    pub importance: Importance,
}

impl Default for CompressConfig {
    fn default() -> Self {
        CompressConfig {
            methods: Vec::new(),
            sparsity: 0.5,
            scope: PruneScope::Global,
            finetune_steps: 300,
            head_fraction: 0.25,
            neuron_fraction: 0.25,
            student_layers: 0,
            alpha: 0.5,
            temperature: 2.0,
            hidden_weight: 0.0,
            importance: Importance::Taylor,
        }
    }
}

/// The compression methods mtgpt knows.
pub const COMPRESS_METHODS: [&str; 4] = ["prune", "prune-structured", "int8", "distill"];

/// A validated config, ready for the library crates.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Run name.
    pub name: String,
    /// Root seed.
    pub seed: u64,
    /// The preset `[model]` started from.
    pub preset: Preset,
    /// Resolved model shape.
    pub model: ModelConfig,
    /// `model.init`: the folder the trunk starts from (its shape is `model`).
    pub init: Option<PathBuf>,
    /// Tokenizer settings.
    pub tokenizer: TokenizerConfig,
    /// Preprocessing settings.
    pub preprocess: PreprocessConfig,
    /// Training settings.
    pub train: TrainConfig,
    /// Compression settings.
    pub compress: CompressConfig,
    /// Adapter settings.
    pub adapters: AdapterConfig,
    /// Whether `model.precision` is `auto` (then `model.precision` is what it resolved to on
    /// this machine's CPU; training on CUDA makes it bf16).
    pub precision_auto: bool,
    /// Tasks in file order.
    pub tasks: Vec<TaskConfig>,
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
}

impl Config {
    pub(crate) fn from_file(file: ConfigFile, source: Option<PathBuf>) -> Self {
        Config {
            name: file.name,
            seed: file.seed,
            preset: file.model.preset,
            model: ModelConfig::apply(&file.model),
            // `init = ""` (e.g. `--set model.init=`) means none: a random trunk.
            init: file
                .model
                .init
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            tokenizer: file.tokenizer,
            preprocess: file.preprocess,
            train: file.train,
            compress: file.compress,
            adapters: file.adapters,
            precision_auto: file
                .model
                .precision
                .is_none_or(|p| p == PrecisionChoice::Auto),
            tasks: file.tasks,
            source,
        }
    }

    /// The config in file form with every default written out (what `config check` prints and
    /// what is saved beside checkpoints); loading it gives this config back.
    pub fn to_file(&self) -> ConfigFile {
        ConfigFile {
            name: self.name.clone(),
            seed: self.seed,
            model: ModelSection {
                init: self.init.clone(),
                precision: Some(if self.precision_auto {
                    PrecisionChoice::Auto
                } else {
                    self.model.precision.into()
                }),
                ..self.model.to_section(self.preset)
            },
            tokenizer: self.tokenizer.clone(),
            preprocess: self.preprocess.clone(),
            train: self.train.clone(),
            compress: self.compress.clone(),
            adapters: self.adapters.clone(),
            tasks: self.tasks.clone(),
        }
    }

    /// The resolved config as TOML text.
    pub fn to_toml_string(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        toml::to_string_pretty(&self.to_file()).unwrap_or_default()
    }

    /// The same run from a random trunk: `model.init` dropped, the shape kept, the tokenizer
    /// trained on the tasks (as `[tokenizer]` says) unless the config names one of its own,
    /// and `train.trunk_lr_factor` back to 1 (a random trunk has nothing to keep). The "from
    /// scratch" side of `mtgpt run --scratch`.
    pub fn without_init(&self) -> Config {
        let mut c = self.clone();
        c.train.trunk_lr_factor = 1.0;
        if let Some(dir) = c.init.take()
            && c.tokenizer.existing() == Some(dir.join("tokenizer.json").as_path())
        {
            c.tokenizer.path.clear();
        }
        c
    }

    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<&TaskConfig> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// The default output folder of a verb: `runs/<name><suffix>` (`""` for `train` and `run`,
    /// `"-lr-find"`, `"-transfer"`, …).
    pub fn run_dir(&self, suffix: &str) -> PathBuf {
        PathBuf::from("runs").join(format!("{}{suffix}", self.name))
    }
}
