//! A fast path for byte-level BPE encoding that gives exactly the ids of the `tokenizers`
//! pipeline (an equivalence test holds it to that) without building offset-tracking
//! `Encoding`s for every pre-segmented piece.
//!
//! It scans GPT-2's pre-tokenization rules by hand for characters whose Unicode class it
//! knows for sure (ASCII, assigned CJK ideographs, common CJK punctuation) and hands each
//! pre-token to the BPE model (with its cache). A piece with any other character goes through
//! the `tokenizers` pipeline instead, so exotic text is still encoded exactly.
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use tokenizers::{Model, PreTokenizerWrapper};

/// Pre-tokens cached per thread (per tokenizer); cleared when it grows past this many.
const CACHE_CAP: usize = 200_000;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// (tokenizer id, pre-token → ids). Thread-local, so rayon workers never wait on a lock
    /// (a shared sharded cache measured slower here).
    static CACHE: RefCell<(u64, HashMap<String, Vec<u32>>)> = RefCell::new((0, HashMap::new()));
}

/// GPT-2's reversible byte → printable char table.
static BYTE_CHARS: LazyLock<[char; 256]> = LazyLock::new(|| {
    let mut table = ['\0'; 256];
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut next = 256u32;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or('\0')
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    table
});

/// Character classes of GPT-2's pre-tokenizer regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

/// The class of `c`, when known for sure; `None` sends the piece to the slow path.
fn class(c: char) -> Option<Class> {
    Some(match c {
        'a'..='z' | 'A'..='Z' => Class::Letter,
        '0'..='9' => Class::Number,
        ' ' | '\t' | '\n' | '\r' | '\u{0B}' | '\u{0C}' => Class::Space,
        '\0'..='\u{7F}' => Class::Other,
        // CJK Unified Ideographs assigned since Unicode 13 and Extension A: all `Lo`.
        '\u{4E00}'..='\u{9FFC}' | '\u{3400}'..='\u{4DB5}' => Class::Letter,
        // Common CJK and general punctuation: `P*` categories.
        '\u{3001}'
        | '\u{3002}'
        | '\u{3008}'..='\u{3011}'
        | '\u{3014}'..='\u{301B}'
        | '\u{2018}'
        | '\u{2019}'
        | '\u{201C}'
        | '\u{201D}'
        | '\u{2014}'
        | '\u{2026}'
        | '\u{00B7}'
        | '\u{FF5E}' => Class::Other,
        _ => return None,
    })
}

/// Calls `f` with each GPT-2 pre-token of `s` (all chars of `s` must have a known class).
fn pretokens(s: &str, classes: &[(usize, Class)], mut f: impl FnMut(&str)) {
    let n = classes.len();
    let end_of = |k: usize| if k < n { classes[k].0 } else { s.len() };
    let mut i = 0;
    while i < n {
        let (start, cls) = classes[i];
        // Contractions: 's 't 're 've 'm 'll 'd.
        if s[start..].starts_with('\'') {
            let rest = &s[start + 1..];
            let len = ["s", "t", "m", "d", "re", "ve", "ll"]
                .iter()
                .find(|c| rest.starts_with(**c))
                .map(|c| c.len());
            if let Some(len) = len {
                f(&s[start..start + 1 + len]);
                i += 1 + len; // contraction chars are ASCII: one class entry per byte
                continue;
            }
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
        let body = if cls == Class::Space
            && s[start..].starts_with(' ')
            && i + 1 < n
            && classes[i + 1].1 != Class::Space
        {
            i + 1
        } else {
            i
        };
        let body_cls = classes[body].1;
        if body_cls != Class::Space {
            let mut j = body + 1;
            while j < n && classes[j].1 == body_cls {
                j += 1;
            }
            f(&s[start..end_of(j)]);
            i = j;
            continue;
        }
        // Whitespace: `\s+(?!\S)` leaves the last space before a non-space to the next token;
        // otherwise `\s+`.
        let mut j = i + 1;
        while j < n && classes[j].1 == Class::Space {
            j += 1;
        }
        if j < n && j - i > 1 {
            j -= 1;
        }
        f(&s[start..end_of(j)]);
        i = j;
    }
}

/// Encoder state derived once from a `tokenizers::Tokenizer`.
#[derive(Debug, Clone)]
pub(crate) struct FastByteLevel {
    specials: HashMap<String, u32>,
    /// Identifies this tokenizer in the thread-local cache.
    id: u64,
}

impl FastByteLevel {
    /// `Some` when the tokenizer is a plain byte-level BPE (no normalizer, GPT-2 regex, no
    /// prefix space): the only shape whose ids this fast path reproduces.
    pub(crate) fn for_tokenizer(tk: &tokenizers::Tokenizer) -> Option<Self> {
        let plain = tk.get_normalizer().is_none()
            && matches!(tk.get_pre_tokenizer(), Some(PreTokenizerWrapper::ByteLevel(b)) if !b.add_prefix_space && b.use_regex)
            && matches!(tk.get_model(), tokenizers::ModelWrapper::BPE(_));
        let specials = tk
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| {
                t.special
                    && !t.single_word
                    && !t.lstrip
                    && !t.rstrip
                    && t.content.starts_with("<|")
                    && t.content.ends_with("|>")
            })
            .map(|(id, t)| (t.content, id))
            .collect::<HashMap<_, _>>();
        // Only `<|...|>` special tokens are split here; anything else needs the full pipeline.
        let all_simple = specials.len() == tk.get_added_tokens_decoder().len();
        (plain && all_simple).then(|| FastByteLevel {
            specials,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Appends the ids of `text` to `out`; `pieces` pre-segments a special-free span.
    pub(crate) fn encode<'a>(
        &self,
        tk: &tokenizers::Tokenizer,
        text: &'a str,
        pieces: impl Fn(&'a str) -> Vec<&'a str>,
        out: &mut Vec<u32>,
    ) -> tokenizers::Result<()> {
        let mut rest = text;
        while !rest.is_empty() {
            // Find the next special token.
            let mut cut = rest.len();
            let mut special = None;
            let mut from = 0;
            while let Some(p) = rest[from..].find("<|") {
                let at = from + p;
                if let Some(q) = rest[at..].find("|>")
                    && let Some(&id) = self.specials.get(&rest[at..at + q + 2])
                {
                    cut = at;
                    special = Some((id, at + q + 2));
                    break;
                }
                from = at + 2;
            }
            for piece in pieces(&rest[..cut]) {
                self.encode_piece(tk, piece, out)?;
            }
            match special {
                Some((id, end)) => {
                    out.push(id);
                    rest = &rest[end..];
                }
                None => break,
            }
        }
        Ok(())
    }

    fn encode_piece(
        &self,
        tk: &tokenizers::Tokenizer,
        piece: &str,
        out: &mut Vec<u32>,
    ) -> tokenizers::Result<()> {
        let mut classes = Vec::with_capacity(piece.len());
        for (i, c) in piece.char_indices() {
            match class(c) {
                Some(k) => classes.push((i, k)),
                None => {
                    let enc = tk.encode_fast(piece, false)?;
                    out.extend_from_slice(enc.get_ids());
                    return Ok(());
                }
            }
        }
        let model = tk.get_model();
        let table = &*BYTE_CHARS;
        let mut mapped = String::with_capacity(piece.len() * 2);
        let mut result = Ok(());
        CACHE.with_borrow_mut(|(owner, cache)| {
            if *owner != self.id || cache.len() > CACHE_CAP {
                cache.clear();
                *owner = self.id;
            }
            pretokens(piece, &classes, |tok| {
                if result.is_err() {
                    return;
                }
                if let Some(ids) = cache.get(tok) {
                    out.extend_from_slice(ids);
                    return;
                }
                mapped.clear();
                mapped.extend(tok.bytes().map(|b| table[b as usize]));
                match model.tokenize(&mapped) {
                    Ok(tokens) => {
                        let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
                        out.extend_from_slice(&ids);
                        cache.insert(tok.to_string(), ids);
                    }
                    Err(e) => result = Err(e),
                }
            });
        });
        result
    }
}
