//! Data augmentation: EDA (synonym replacement, random insertion, random swap, random
//! deletion; Wei & Zou 2019) on words — jieba words for Chinese — plus character noise
//! (keyboard-neighbour typos, insertions, deletions, swaps) and token noise (`<|mask|>`).
//!
//! Synonyms come from real lexicons (one synonym group per line, words separated by tabs):
//! English WordNet synsets and Chinese synonym groups; see `data/SOURCES.md`. Every edit is
//! deterministic for a seed, and labels, QA answer spans and tags stay aligned: QA answers are
//! never edited (the context around them is, and `answer.start` is recomputed), and tagging
//! edits touch only tokens tagged `O`.
use crate::segment::{Segmenter, is_han};
use crate::tokenizer::MASK;
use mtgpt_core::{Answer, AugmentConfig, Example};
use rand::Rng;
use rand::seq::IndexedRandom;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Synonym groups and an index from word to the groups that contain it.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    groups: Vec<Vec<String>>,
    index: HashMap<String, Vec<u32>>,
}

impl Lexicon {
    /// Builds a lexicon from groups of synonyms (groups with fewer than two words are dropped).
    pub fn from_groups<I, G, S>(groups: I) -> Self
    where
        I: IntoIterator<Item = G>,
        G: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut lex = Lexicon::default();
        for g in groups {
            lex.add_group(g.into_iter().map(Into::into).collect());
        }
        lex
    }

    fn add_group(&mut self, mut group: Vec<String>) {
        group.retain(|w| !w.trim().is_empty());
        group.dedup();
        if group.len() < 2 {
            return;
        }
        let id = self.groups.len() as u32;
        for w in &group {
            self.index.entry(w.clone()).or_default().push(id);
        }
        self.groups.push(group);
    }

    /// Reads a lexicon file: one group per line, words separated by tabs; `#` starts a comment.
    pub fn load(path: &Path) -> crate::Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| mtgpt_core::Error::io(path, e))?;
        let mut lex = Lexicon::default();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| {
                crate::Error::bad_record(path, i + 1, "-", format!("unreadable line: {e}"))
            })?;
            if line.starts_with('#') {
                continue;
            }
            lex.add_group(line.split('\t').map(|w| w.trim().to_string()).collect());
        }
        Ok(lex)
    }

    /// Merges `other` into this lexicon.
    pub fn extend(&mut self, other: Lexicon) {
        for g in other.groups {
            self.add_group(g);
        }
    }

    /// Number of synonym groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether the lexicon has no groups.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Synonyms of `word` (lower-cased lookup for Latin words), without the word itself.
    pub fn synonyms(&self, word: &str) -> Vec<&str> {
        let key = word.to_lowercase();
        let mut out: Vec<&str> = Vec::new();
        for &g in self.index.get(&key).map(Vec::as_slice).unwrap_or_default() {
            for w in &self.groups[g as usize] {
                if *w != key && !out.contains(&w.as_str()) {
                    out.push(w);
                }
            }
        }
        out
    }
}

/// Applies a task's `augment` settings to examples.
#[derive(Debug, Clone)]
pub struct Augmenter {
    lexicon: std::sync::Arc<Lexicon>,
    segmenter: Segmenter,
    config: AugmentConfig,
}

/// Words EDA and noise may touch: ones with letters (Han included); numbers, punctuation and
/// special tokens are left alone (WordNet would turn `21` into `xxi`).
fn is_content_word(w: &str) -> bool {
    w.chars().any(char::is_alphabetic) && !w.starts_with("<|")
}

/// Joins words back into text: a space between two non-Han words, nothing next to Han text
/// or before punctuation.
pub fn join_words<S: AsRef<str>>(words: &[S]) -> String {
    let mut out = String::new();
    for w in words {
        let w = w.as_ref();
        let (Some(prev), Some(next)) = (out.chars().next_back(), w.chars().next()) else {
            out.push_str(w);
            continue;
        };
        let glue = is_han(prev)
            || is_han(next)
            || !(next.is_alphanumeric() || next == '<')
            || matches!(prev, '(' | '[' | '{' | '"' | '\'' | '-' | '/');
        if !glue {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// Keyboard neighbours of a lower-case ASCII letter on a QWERTY layout.
fn keyboard_neighbours(c: char) -> &'static str {
    match c {
        'q' => "wa",
        'w' => "qes",
        'e' => "wrd",
        'r' => "etf",
        't' => "ryg",
        'y' => "tuh",
        'u' => "yij",
        'i' => "uok",
        'o' => "ipl",
        'p' => "ol",
        'a' => "qsz",
        's' => "awdz",
        'd' => "sefx",
        'f' => "drgc",
        'g' => "fthv",
        'h' => "gyjb",
        'j' => "hukn",
        'k' => "jilm",
        'l' => "kop",
        'z' => "asx",
        'x' => "zsdc",
        'c' => "xdfv",
        'v' => "cfgb",
        'b' => "vghn",
        'n' => "bhjm",
        'm' => "njk",
        _ => "",
    }
}

/// Character noise: each character, with probability `p`, gets a typo (keyboard neighbour
/// for ASCII letters), a duplicate insertion, a deletion or a swap with the next one.
pub fn char_noise(text: &str, p: f64, rng: &mut impl Rng) -> String {
    if p <= 0.0 {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || !rng.random_bool(p.min(1.0)) {
            out.push(c);
            i += 1;
            continue;
        }
        match rng.random_range(0..4) {
            0 => {
                let lower = c.to_ascii_lowercase();
                let near: Vec<char> = keyboard_neighbours(lower).chars().collect();
                match near.choose(rng) {
                    Some(&n) if c.is_ascii_uppercase() => out.push(n.to_ascii_uppercase()),
                    Some(&n) => out.push(n),
                    None => out.push(c),
                }
            }
            1 => {
                out.push(c);
                out.push(c);
            }
            2 => {} // deletion
            _ => {
                if let Some(&next) = chars.get(i + 1).filter(|n| !n.is_whitespace()) {
                    out.push(next);
                    out.push(c);
                    i += 1;
                } else {
                    out.push(c);
                }
            }
        }
        i += 1;
    }
    out
}

/// One EDA operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdaOp {
    /// Replace words with a synonym.
    SynonymReplacement,
    /// Insert a synonym of a random word at a random place.
    RandomInsertion,
    /// Swap two words.
    RandomSwap,
    /// Delete each word with probability α.
    RandomDeletion,
}

impl Augmenter {
    /// An augmenter with this lexicon (shared, not copied), segmenter and settings. The
    /// probabilities (`eda_alpha`, `char_noise`, `token_noise`) are clamped to [0, 1] and a NaN
    /// counts as 0, so no setting can make augmentation panic; callers that take them from
    /// users should still reject out-of-range values with a message.
    pub fn new(
        lexicon: impl Into<std::sync::Arc<Lexicon>>,
        segmenter: Segmenter,
        mut config: AugmentConfig,
    ) -> Self {
        let unit = |p: f64| if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        config.eda_alpha = unit(config.eda_alpha);
        config.char_noise = unit(config.char_noise);
        config.token_noise = unit(config.token_noise);
        Augmenter {
            lexicon: lexicon.into(),
            segmenter,
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &AugmentConfig {
        &self.config
    }

    /// Applies one EDA operation to `words`, only at positions where `editable` is true; the
    /// returned positions say where each output word came from (`None` = inserted).
    pub fn eda(
        &self,
        words: &[String],
        editable: &[bool],
        op: EdaOp,
        rng: &mut impl Rng,
    ) -> (Vec<String>, Vec<Option<usize>>) {
        let mut out: Vec<(String, Option<usize>)> = words
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, w)| (w, Some(i)))
            .collect();
        let candidates: Vec<usize> = (0..words.len())
            .filter(|&i| editable[i] && is_content_word(&words[i]))
            .collect();
        let n = ((self.config.eda_alpha * candidates.len() as f64).round() as usize).max(1);
        match op {
            EdaOp::SynonymReplacement => {
                let mut with_syn: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&i| !self.lexicon.synonyms(&words[i]).is_empty())
                    .collect();
                for _ in 0..n.min(with_syn.len()) {
                    let k = rng.random_range(0..with_syn.len());
                    let i = with_syn.swap_remove(k);
                    let syns = self.lexicon.synonyms(&words[i]);
                    if let Some(s) = syns.choose(rng) {
                        out[i].0 = s.to_string();
                    }
                }
            }
            EdaOp::RandomInsertion => {
                for _ in 0..n {
                    let with_syn: Vec<usize> = candidates
                        .iter()
                        .copied()
                        .filter(|&i| !self.lexicon.synonyms(&words[i]).is_empty())
                        .collect();
                    let Some(&src) = with_syn.choose(rng) else {
                        break;
                    };
                    let syn = self
                        .lexicon
                        .synonyms(&words[src])
                        .choose(rng)
                        .map(|s| s.to_string());
                    // Insert before an editable position (or at the end) so protected spans
                    // stay contiguous.
                    let slots: Vec<usize> = (0..=out.len())
                        .filter(|&j| j == out.len() || out[j].1.is_none_or(|o| editable[o]))
                        .filter(|&j| j == 0 || out[j - 1].1.is_none_or(|o| editable[o]))
                        .collect();
                    if let (Some(s), Some(&at)) = (syn, slots.choose(rng)) {
                        out.insert(at, (s, None));
                    }
                }
            }
            EdaOp::RandomSwap => {
                if candidates.len() >= 2 {
                    for _ in 0..n {
                        let a = *candidates.choose(rng).unwrap_or(&0);
                        let b = *candidates.choose(rng).unwrap_or(&0);
                        out.swap(a, b);
                    }
                }
            }
            EdaOp::RandomDeletion => {
                let p = self.config.eda_alpha;
                let keep: Vec<bool> = out
                    .iter()
                    .map(|(_, o)| o.is_none_or(|o| !editable[o] || !rng.random_bool(p)))
                    .collect();
                if keep.iter().any(|&k| k) {
                    let mut it = keep.into_iter();
                    out.retain(|_| it.next().unwrap_or(true));
                }
            }
        }
        out.into_iter().unzip()
    }

    fn random_op(rng: &mut impl Rng) -> EdaOp {
        match rng.random_range(0..4) {
            0 => EdaOp::SynonymReplacement,
            1 => EdaOp::RandomInsertion,
            2 => EdaOp::RandomSwap,
            _ => EdaOp::RandomDeletion,
        }
    }

    /// One augmented version of a free text: a random EDA op, then char and token noise.
    pub fn augment_text(&self, text: &str, rng: &mut impl Rng) -> String {
        let words: Vec<String> = self
            .segmenter
            .words(text)
            .iter()
            .map(|w| w.text.to_string())
            .collect();
        if words.is_empty() {
            return text.to_string();
        }
        let editable = vec![true; words.len()];
        let op = Self::random_op(rng);
        let (mut words, _) = self.eda(&words, &editable, op, rng);
        self.noise_words(&mut words, None, rng);
        join_words(&words)
    }

    /// Token and char noise on words (only where `editable` says so, when given).
    fn noise_words(&self, words: &mut [String], editable: Option<&[bool]>, rng: &mut impl Rng) {
        for (i, w) in words.iter_mut().enumerate() {
            if editable.is_some_and(|e| !e[i]) || !is_content_word(w) {
                continue;
            }
            if self.config.token_noise > 0.0 && rng.random_bool(self.config.token_noise.min(1.0)) {
                *w = MASK.to_string();
            } else if self.config.char_noise > 0.0 {
                let noisy = char_noise(w, self.config.char_noise, rng);
                if !noisy.is_empty() {
                    *w = noisy;
                }
            }
        }
    }

    /// One augmented copy of `ex`, with its supervision kept aligned.
    pub fn augment(&self, ex: &Example, rng: &mut impl Rng) -> Example {
        match ex {
            Example::Lm { text } => Example::Lm {
                text: self.augment_text(text, rng),
            },
            Example::Classify {
                text,
                text_pair,
                label,
            } => Example::Classify {
                text: self.augment_text(text, rng),
                text_pair: text_pair.as_ref().map(|t| self.augment_text(t, rng)),
                label: label.clone(),
            },
            Example::Generate { source, target } => Example::Generate {
                source: self.augment_text(source, rng),
                target: target.clone(),
            },
            Example::ExtractiveQa {
                context,
                question,
                answer,
            } => self.augment_qa(context, question, answer, rng),
            Example::Tagging { tokens, tags } => {
                let editable: Vec<bool> = tags.iter().map(|t| t == "O").collect();
                let op = Self::random_op(rng);
                let (mut new_tokens, origin) = self.eda(tokens, &editable, op, rng);
                let new_tags: Vec<String> = origin
                    .iter()
                    .map(|o| o.map_or_else(|| "O".to_string(), |i| tags[i].clone()))
                    .collect();
                let new_editable: Vec<bool> = origin
                    .iter()
                    .map(|o| o.is_none_or(|i| editable[i]))
                    .collect();
                self.noise_words(&mut new_tokens, Some(&new_editable), rng);
                Example::Tagging {
                    tokens: new_tokens,
                    tags: new_tags,
                }
            }
        }
    }

    fn augment_qa(
        &self,
        context: &str,
        question: &str,
        answer: &Answer,
        rng: &mut impl Rng,
    ) -> Example {
        let chars: Vec<char> = context.chars().collect();
        let end = (answer.start + answer.text.chars().count()).min(chars.len());
        let start = answer.start.min(end);
        let before: String = chars[..start].iter().collect();
        let after: String = chars[end..].iter().collect();
        // Keep the whitespace that touches the answer, so it stays a separate word.
        let aug_side = |s: &str, rng: &mut dyn rand::RngCore| -> String {
            let core = s.trim();
            if core.is_empty() {
                return s.to_string();
            }
            let lead = &s[..s.len() - s.trim_start().len()];
            let trail = &s[s.trim_end().len()..];
            let mut r = rand_chacha_from(rng);
            format!("{lead}{}{trail}", self.augment_text(core, &mut r))
        };
        let before2 = aug_side(&before, rng);
        let after2 = aug_side(&after, rng);
        let new_start = before2.chars().count();
        Example::ExtractiveQa {
            context: format!("{before2}{}{after2}", answer.text),
            question: self.augment_text(question, rng),
            answer: Answer {
                text: answer.text.clone(),
                start: new_start,
            },
        }
    }

    /// `n_aug` augmented copies of `ex`, deterministic for (`seed`, `key`): the same example
    /// under the same key always gets the same copies, whatever thread or order runs it.
    pub fn augment_copies(&self, ex: &Example, seed: u64, key: &str) -> Vec<Example> {
        let mut rng = mtgpt_core::seed::rng_for(seed, key);
        (0..self.config.n_aug)
            .map(|_| self.augment(ex, &mut rng))
            .collect()
    }
}

fn rand_chacha_from(rng: &mut dyn rand::RngCore) -> mtgpt_core::seed::Rng {
    use rand::SeedableRng;
    mtgpt_core::seed::Rng::seed_from_u64(rng.next_u64())
}

/// Reads the lexicon files that exist among `paths` and merges them (missing files are
/// skipped: augmentation then only swaps, deletes and adds noise).
pub fn load_lexicons(paths: &[&Path]) -> crate::Result<Lexicon> {
    let mut lex = Lexicon::default();
    for p in paths {
        if p.exists() {
            lex.extend(Lexicon::load(p)?);
        }
    }
    Ok(lex)
}

/// The project's synonym lexicons, relative to the working folder: the full fetched ones
/// (`data/full/lexicon/`) when present, else the shipped samples (`data/lexicon/`).
pub fn default_lexicons() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for name in ["en_synonyms.txt", "zh_synonyms.txt"] {
        let full = PathBuf::from("data/full/lexicon").join(name);
        let sample = PathBuf::from("data/lexicon").join(name);
        if full.exists() {
            out.push(full);
        } else if sample.exists() {
            out.push(sample);
        }
    }
    out
}

#[cfg(test)]
mod tests;
