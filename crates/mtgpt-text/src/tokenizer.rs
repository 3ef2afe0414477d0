//! Tokenizers: byte-level BPE trained with the `tokenizers` crate (optionally on jieba
//! pre-segmented text, so merges never cross a Chinese word boundary) and a char-level
//! tokenizer for small experiments. Both are saved as a Hugging Face `tokenizer.json` that
//! Python `tokenizers` loads, plus a small `*.mtgpt.json` sidecar with mtgpt's own settings.
use crate::error::{Error, Result};
use crate::segment::Segmenter;
use mtgpt_core::TokenizerKind;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, OffsetReferential, OffsetType,
    PostProcessorWrapper, PreTokenizedString, PreTokenizer, PreTokenizerWrapper, Trainer,
};

/// End of text; also separates documents in LM streams.
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// Padding.
pub const PAD: &str = "<|pad|>";
/// Separates source and target, or text and text pair.
pub const SEP: &str = "<|sep|>";
/// Mask token used by token-noise augmentation.
pub const MASK: &str = "<|mask|>";
/// Unknown character (char tokenizer only; byte-level BPE never needs it).
pub const UNK: &str = "<|unk|>";

/// The task prefix token of task `name`: `<|task:NAME|>`.
pub fn task_token(name: &str) -> String {
    format!("<|task:{name}|>")
}

/// The special tokens of a tokenizer for `tasks`, in id order.
pub fn special_tokens(tasks: &[String]) -> Vec<String> {
    let mut out: Vec<String> = [ENDOFTEXT, PAD, SEP, MASK, UNK]
        .iter()
        .map(|s| s.to_string())
        .collect();
    out.extend(tasks.iter().map(|t| task_token(t)));
    out
}

/// mtgpt's settings stored beside `tokenizer.json` (in `tokenizer.mtgpt.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerMeta {
    /// `bpe` or `char`.
    pub kind: TokenizerKind,
    /// Whether Han text is split into jieba words before the model sees it.
    pub presegment: bool,
    /// jieba's HMM setting used for pre-segmentation.
    pub hmm: bool,
    /// The tasks that have a `<|task:NAME|>` token.
    pub tasks: Vec<String>,
}

/// Ids of the special tokens every mtgpt tokenizer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    /// `<|endoftext|>`.
    pub endoftext: u32,
    /// `<|pad|>`.
    pub pad: u32,
    /// `<|sep|>`.
    pub sep: u32,
    /// `<|mask|>`.
    pub mask: u32,
}

/// Token ids of one text and each token's char range in that text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoded {
    /// Token ids.
    pub ids: Vec<u32>,
    /// `(start, end)` char offsets of each token in the input (special tokens included).
    pub offsets: Vec<(usize, usize)>,
}

/// Settings for [`TextTokenizer::train`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// `bpe` or `char`.
    pub kind: TokenizerKind,
    /// Target vocabulary size, special tokens included.
    pub vocab_size: usize,
    /// Minimum pair count for a BPE merge.
    pub min_frequency: u64,
    /// Task names that get a `<|task:NAME|>` token.
    pub tasks: Vec<String>,
    /// Pre-segment Han text with this segmenter (BPE and char alike); `None` for no jieba.
    pub presegment: Option<Segmenter>,
}

/// A trained or loaded tokenizer with mtgpt's pre-segmentation and special tokens.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    fast: Option<crate::bytelevel::FastByteLevel>,
    meta: TokenizerMeta,
    segmenter: Option<Segmenter>,
    special: SpecialIds,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("meta", &self.meta)
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenize(e.to_string())
}

/// Splits `text` into BPE words: the byte-level pre-tokenizer run on each pre-segmented piece.
fn byte_level_words(byte_level: &ByteLevel, pieces: &[&str]) -> tokenizers::Result<Vec<String>> {
    let mut words = Vec::new();
    for piece in pieces {
        let mut pts = PreTokenizedString::from(*piece);
        byte_level.pre_tokenize(&mut pts)?;
        words.extend(
            pts.get_splits(OffsetReferential::Original, OffsetType::Byte)
                .into_iter()
                .map(|(s, _, _)| s.to_owned()),
        );
    }
    Ok(words)
}

impl TextTokenizer {
    /// Trains a tokenizer on `texts` (streamed; each item is a line or document).
    pub fn train<I, S>(texts: I, opts: &TrainOptions) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let specials = special_tokens(&opts.tasks);
        if opts.vocab_size <= specials.len() {
            return Err(Error::Invalid(format!(
                "vocab_size {} leaves no room beside {} special tokens",
                opts.vocab_size,
                specials.len()
            )));
        }
        let meta = TokenizerMeta {
            kind: opts.kind,
            presegment: opts.presegment.is_some(),
            hmm: opts.presegment.as_ref().is_none_or(|s| s.hmm()),
            tasks: opts.tasks.clone(),
        };
        let inner = match opts.kind {
            TokenizerKind::Bpe => Self::train_bpe(texts, opts, &specials)?,
            TokenizerKind::Char => Self::train_char(texts, opts, &specials)?,
        };
        Self::from_parts(inner, meta, Path::new("<trained>"))
    }

    fn train_bpe<I, S>(
        texts: I,
        opts: &TrainOptions,
        specials: &[String],
    ) -> Result<tokenizers::Tokenizer>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if opts.vocab_size < 256 + specials.len() {
            return Err(Error::Invalid(format!(
                "byte-level BPE needs vocab_size ≥ 256 + {} special tokens, got {}",
                specials.len(),
                opts.vocab_size
            )));
        }
        let byte_level = ByteLevel::new(false, false, true);
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(opts.vocab_size)
            .min_frequency(opts.min_frequency)
            .show_progress(false)
            .special_tokens(
                specials
                    .iter()
                    .map(|s| AddedToken::from(s.clone(), true))
                    .collect(),
            )
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let segmenter = opts.presegment.clone();
        trainer
            .feed(texts, |text| {
                let pieces = match &segmenter {
                    Some(s) => s.pieces(text),
                    None => vec![text],
                };
                byte_level_words(&byte_level, &pieces)
            })
            .map_err(tok_err)?;
        let mut model = BPE::default();
        let added = trainer.train(&mut model).map_err(tok_err)?;
        let mut tk = tokenizers::Tokenizer::new(ModelWrapper::from(model));
        tk.with_pre_tokenizer(Some(PreTokenizerWrapper::from(byte_level)));
        tk.with_decoder(Some(DecoderWrapper::from(byte_level)));
        tk.with_normalizer(None::<NormalizerWrapper>);
        tk.with_post_processor(None::<PostProcessorWrapper>);
        tk.add_special_tokens(&added);
        Ok(tk)
    }

    fn train_char<I, S>(
        texts: I,
        opts: &TrainOptions,
        specials: &[String],
    ) -> Result<tokenizers::Tokenizer>
    where
        I: Iterator<Item = S>,
        S: AsRef<str>,
    {
        let mut counts: std::collections::HashMap<char, u64> = Default::default();
        for t in texts {
            for c in t.as_ref().chars() {
                *counts.entry(c).or_default() += 1;
            }
        }
        let mut chars: Vec<(char, u64)> = counts.into_iter().collect();
        // Most frequent first; ties by code point so the vocabulary is deterministic.
        chars.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        chars.truncate(opts.vocab_size - specials.len());
        chars.sort_by_key(|c| c.0);
        let mut vocab = serde_json::Map::new();
        for (i, s) in specials.iter().enumerate() {
            vocab.insert(s.clone(), i.into());
        }
        for (c, _) in &chars {
            let id = vocab.len();
            vocab.entry(c.to_string()).or_insert(id.into());
        }
        let added: Vec<serde_json::Value> = specials
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[\\s\\S]"},
                              "behavior": "Isolated", "invert": false},
            "post_processor": null,
            "decoder": {"type": "Fuse"},
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK},
        });
        json.to_string()
            .parse::<tokenizers::Tokenizer>()
            .map_err(tok_err)
    }

    fn from_parts(inner: tokenizers::Tokenizer, meta: TokenizerMeta, path: &Path) -> Result<Self> {
        let id = |t: &str| {
            inner.token_to_id(t).ok_or_else(|| Error::Tokenizer {
                path: path.to_path_buf(),
                reason: format!(
                    "has no `{t}` token; mtgpt tokenizers need {ENDOFTEXT}, {PAD}, {SEP} and {MASK}"
                ),
            })
        };
        let special = SpecialIds {
            endoftext: id(ENDOFTEXT)?,
            pad: id(PAD)?,
            sep: id(SEP)?,
            mask: id(MASK)?,
        };
        let segmenter = meta.presegment.then(|| Segmenter::new(meta.hmm));
        Ok(TextTokenizer {
            fast: crate::bytelevel::FastByteLevel::for_tokenizer(&inner),
            inner,
            meta,
            segmenter,
            special,
        })
    }

    /// The sidecar path that belongs to a `tokenizer.json` path.
    pub fn meta_path(path: &Path) -> PathBuf {
        path.with_extension("mtgpt.json")
    }

    /// Writes `path` (HF `tokenizer.json`) and its `*.mtgpt.json` sidecar.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path, true).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let meta = serde_json::to_string_pretty(&self.meta).map_err(tok_err)?;
        let meta_path = Self::meta_path(path);
        std::fs::write(&meta_path, meta + "\n")
            .map_err(|e| mtgpt_core::Error::io(&meta_path, e))?;
        Ok(())
    }

    /// Loads a `tokenizer.json`; its sidecar is optional (without it: no pre-segmentation).
    pub fn load(path: &Path) -> Result<Self> {
        let (text, inner) = Self::read_json(path)?;
        let meta = Self::load_meta(path, &text)?;
        Self::from_parts(inner, meta, path)
    }

    /// The text of the `tokenizer.json` at `path` and the Hugging Face tokenizer it holds.
    fn read_json(path: &Path) -> Result<(String, tokenizers::Tokenizer)> {
        let text = std::fs::read_to_string(path).map_err(|e| mtgpt_core::Error::io(path, e))?;
        let inner = text.parse().map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            reason: format!("not a valid tokenizer.json: {e}"),
        })?;
        Ok((text, inner))
    }

    /// The sidecar of `path` (`text` is the tokenizer file), or the settings of a tokenizer
    /// that has none: no pre-segmentation, no task tokens.
    fn load_meta(path: &Path, text: &str) -> Result<TokenizerMeta> {
        let meta_path = Self::meta_path(path);
        Ok(match std::fs::read_to_string(&meta_path) {
            Ok(m) => serde_json::from_str(&m).map_err(|e| Error::Tokenizer {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenizerMeta {
                kind: if text.contains("\"WordLevel\"") {
                    TokenizerKind::Char
                } else {
                    TokenizerKind::Bpe
                },
                presegment: false,
                hmm: true,
                tasks: Vec::new(),
            },
            Err(e) => return Err(mtgpt_core::Error::io(&meta_path, e).into()),
        })
    }

    /// Loads a `tokenizer.json` as [`TextTokenizer::load`] does, first appending whichever of
    /// mtgpt's special tokens (`<|endoftext|>`, `<|pad|>`, `<|sep|>`, `<|mask|>`) and of the
    /// task tokens of `tasks` it lacks, as special tokens after its last id. This is how a
    /// tokenizer from elsewhere (GPT-2's byte-level BPE with only `<|endoftext|>`, a BERT-style
    /// WordPiece) becomes an mtgpt one; ids it has are never moved. Returns the tokens added.
    pub fn load_with_tokens(path: &Path, tasks: &[String]) -> Result<(Self, Vec<String>)> {
        let (text, mut inner) = Self::read_json(path)?;
        let mut wanted: Vec<String> = [ENDOFTEXT, PAD, SEP, MASK]
            .iter()
            .map(|s| s.to_string())
            .collect();
        wanted.extend(tasks.iter().map(|t| task_token(t)));
        let missing: Vec<String> = wanted
            .into_iter()
            .filter(|t| inner.token_to_id(t).is_none())
            .collect();
        if !missing.is_empty() {
            let added: Vec<AddedToken> = missing
                .iter()
                .map(|t| AddedToken::from(t.clone(), true))
                .collect();
            inner.add_special_tokens(&added);
        }
        let meta = Self::load_meta(path, &text)?;
        let mut tok = Self::from_parts(inner, meta, path)?;
        for t in tasks {
            if !tok.meta.tasks.contains(t) {
                tok.meta.tasks.push(t.clone());
            }
        }
        Ok((tok, missing))
    }

    /// Ids of this tokenizer's tokens that the `tokenizer.json` at `base` lacks (those
    /// [`TextTokenizer::load_with_tokens`] appended to it), ascending.
    pub fn ids_not_in(&self, base: &Path) -> Result<Vec<u32>> {
        let (_, other) = Self::read_json(base)?;
        let mut ids: Vec<u32> = self
            .inner
            .get_vocab(true)
            .into_iter()
            .filter(|(t, _)| other.token_to_id(t).is_none())
            .map(|(_, id)| id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// mtgpt's settings of this tokenizer.
    pub fn meta(&self) -> &TokenizerMeta {
        &self.meta
    }

    /// Vocabulary size including special tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Ids of the special tokens.
    pub fn special(&self) -> SpecialIds {
        self.special
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The id of `<|task:NAME|>`.
    pub fn task_id(&self, task: &str) -> Option<u32> {
        self.inner.token_to_id(&task_token(task))
    }

    /// The jieba segmenter this tokenizer pre-segments with, if any.
    pub fn segmenter(&self) -> Option<&Segmenter> {
        self.segmenter.as_ref()
    }

    /// The underlying Hugging Face tokenizer.
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn pieces<'a>(&self, text: &'a str) -> Vec<&'a str> {
        match &self.segmenter {
            Some(s) => s.pieces(text),
            None => vec![text],
        }
    }

    /// Token ids of `text` (special tokens written in the text are recognised). Byte-level
    /// BPE takes a fast path that gives the same ids as [`TextTokenizer::encode`].
    pub fn encode_ids(&self, text: &str) -> Result<Vec<u32>> {
        if let Some(fast) = &self.fast {
            let mut out = Vec::with_capacity(text.len() / 2);
            fast.encode(&self.inner, text, |s| self.pieces(s), &mut out)
                .map_err(tok_err)?;
            return Ok(out);
        }
        self.encode_ids_reference(text)
    }

    /// Token ids through the full `tokenizers` pipeline (the reference for the fast path).
    pub fn encode_ids_reference(&self, text: &str) -> Result<Vec<u32>> {
        let pieces = self.pieces(text);
        let enc = self.inner.encode_fast(pieces, false).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids and char offsets of `text`.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let pieces = self.pieces(text);
        let mut starts = Vec::with_capacity(pieces.len());
        let mut at = 0;
        for p in &pieces {
            starts.push(at);
            at += p.chars().count();
        }
        let enc = self
            .inner
            .encode_char_offsets(pieces, false)
            .map_err(tok_err)?;
        let offsets = enc
            .get_offsets()
            .iter()
            .zip(enc.get_word_ids())
            .map(|(&(s, e), w)| {
                let base = w.map_or(0, |w| starts[w as usize]);
                (base + s, base + e)
            })
            .collect();
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            offsets,
        })
    }

    /// Text of `ids`; with `skip_special`, special tokens are left out.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tok_err)
    }
}
