//! Text normalization: Unicode NFKC, full-width → half-width, whitespace and control
//! characters, optional lower-casing — with a map from output back to input characters, so
//! spans found in normalized text (QA answers) can be placed in the original.
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::canonical_combining_class;

/// What [`Normalizer::normalize`] does; build it from `[preprocess]` with
/// [`Normalizer::from_config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalizer {
    /// Unicode NFKC (compatibility composition: `ﬁ` → `fi`, `①` → `1`, `Ａ` → `A`).
    pub nfkc: bool,
    /// Full-width ASCII (U+FF01–FF5E) and the ideographic space to half-width, also when
    /// `nfkc` is off.
    pub halfwidth: bool,
    /// Lower-case (Unicode-aware).
    pub lowercase: bool,
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer {
            nfkc: true,
            halfwidth: true,
            lowercase: false,
        }
    }
}

/// Normalized text plus, for every output character, the index of the input character it
/// came from (`source[i]` for output char `i`; one extra entry maps the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The normalized text.
    pub text: String,
    /// Output char index → input char index, `text.chars().count() + 1` entries.
    pub source: Vec<usize>,
}

impl Normalized {
    /// Maps a char range of the input to the char range of the normalized text that came
    /// from it (empty at the right place when all of it was removed).
    pub fn normalized_range(&self, start: usize, end: usize) -> (usize, usize) {
        let n = self.source.len() - 1;
        let s = self.source[..n].partition_point(|&src| src < start);
        let e = self.source[..n].partition_point(|&src| src < end);
        (s, e.max(s))
    }

    /// Maps a char range of the normalized text back to a char range of the input.
    pub fn original_range(&self, start: usize, end: usize) -> (usize, usize) {
        let last = self.source.len() - 1;
        let s = self.source[start.min(last)];
        // The end maps to just after the input char that produced the last output char.
        let e = if end == 0 {
            s
        } else {
            (self.source[(end - 1).min(last)] + 1).max(s)
        };
        (s, e.min(self.source[last]))
    }
}

fn halfwidth(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

impl Normalizer {
    /// The normalizer `[preprocess]` asks for.
    pub fn from_config(p: &mtgpt_core::PreprocessConfig) -> Self {
        Normalizer {
            nfkc: p.nfkc,
            halfwidth: p.halfwidth,
            lowercase: p.lowercase,
        }
    }

    /// Normalizes `input`: see [`Normalizer::normalize_with_offsets`].
    pub fn normalize(&self, input: &str) -> String {
        self.normalize_with_offsets(input).text
    }

    /// Normalizes `input` and keeps the char-offset map.
    ///
    /// Whitespace: `\r\n` and `\r` become `\n`; every other whitespace character becomes a
    /// space; runs of spaces collapse to one and spaces at line starts/ends are dropped.
    /// Control and format characters (C0/C1 controls, zero-width spaces, BOM) are removed;
    /// `\n` and `\t` (as a space) are kept.
    pub fn normalize_with_offsets(&self, input: &str) -> Normalized {
        // 1. Character-level mapping; each starter is normalized together with the combining
        //    marks that follow it, so NFKC composition works and offsets stay exact.
        let mut mapped: Vec<(char, usize)> = Vec::with_capacity(input.len());
        let chars: Vec<char> = input.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let mut j = i + 1;
            while j < chars.len() && canonical_combining_class(chars[j]) != 0 {
                j += 1;
            }
            let group = &chars[i..j];
            let mut emit = |c: char| {
                let c = if self.halfwidth { halfwidth(c) } else { c };
                if self.lowercase && c.is_uppercase() {
                    for l in c.to_lowercase() {
                        mapped.push((l, i));
                    }
                } else {
                    mapped.push((c, i));
                }
            };
            if self.nfkc && !group.iter().all(char::is_ascii) {
                for c in group.iter().copied().nfkc() {
                    emit(c);
                }
            } else {
                group.iter().copied().for_each(&mut emit);
            }
            i = j;
        }
        // 2. Whitespace and control characters.
        let mut text = String::with_capacity(input.len());
        let mut source = Vec::with_capacity(mapped.len() + 1);
        let mut pending_space: Option<usize> = None;
        let mut at_line_start = true;
        let mut k = 0;
        while k < mapped.len() {
            let (c, src) = mapped[k];
            k += 1;
            if c == '\r' {
                if mapped.get(k).is_some_and(|(n, _)| *n == '\n') {
                    continue; // the \n that follows is emitted
                }
                pending_space = None;
                text.push('\n');
                source.push(src);
                at_line_start = true;
                continue;
            }
            if c == '\n' {
                pending_space = None;
                text.push('\n');
                source.push(src);
                at_line_start = true;
                continue;
            }
            if c.is_whitespace() {
                if !at_line_start && pending_space.is_none() {
                    pending_space = Some(src);
                }
                continue;
            }
            if is_invisible(c) {
                continue;
            }
            if let Some(s) = pending_space.take() {
                text.push(' ');
                source.push(s);
            }
            text.push(c);
            source.push(src);
            at_line_start = false;
        }
        source.push(chars.len());
        Normalized { text, source }
    }
}

/// Control and format characters that carry no text.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let n = Normalizer::default();
        let lower = Normalizer {
            lowercase: true,
            ..n
        };
        let raw = Normalizer {
            nfkc: false,
            halfwidth: false,
            lowercase: false,
        };
        let cases: &[(Normalizer, &str, &str)] = &[
            (n, "ＡＢＣ１２３！", "ABC123!"),
            (n, "中文，标点。", "中文,标点。"),
            (n, "ﬁne ①", "fine 1"),
            (n, "  a \t\u{3000} b  \r\nc\u{200B}d\u{0007}", "a b\ncd"),
            (n, "e\u{0301}", "é"),
            (lower, "Hello WORLD", "hello world"),
            (raw, "ＡＢ  c", "ＡＢ c"),
            (Normalizer { nfkc: false, ..n }, "ＡＢ\u{3000}c", "AB c"),
            (n, "", ""),
        ];
        for (norm, input, want) in cases {
            assert_eq!(norm.normalize(input), *want, "{input:?}");
        }
    }

    #[test]
    fn offsets_map_back_to_the_input() {
        let n = Normalizer::default();
        let input = "  Ｔｈｅ  answer：ＡＢＣ ﬁne";
        let out = n.normalize_with_offsets(input);
        assert_eq!(out.text, "The answer:ABC fine");
        assert_eq!(out.source.len(), out.text.chars().count() + 1);
        let chars: Vec<char> = input.chars().collect();
        // "ABC" in the output is "ＡＢＣ" in the input.
        let start = out.text.find("ABC").unwrap();
        let (s, e) = out.original_range(start, start + 3);
        assert_eq!(chars[s..e].iter().collect::<String>(), "ＡＢＣ");
        // "fi" from the ligature maps to the single ligature char.
        let start = out.text.chars().count() - 4;
        let (s, e) = out.original_range(start, start + 2);
        assert_eq!(chars[s..e].iter().collect::<String>(), "ﬁ");
        // And forwards: the input's "ＡＢＣ" is the output's "ABC".
        let s_in = chars.iter().position(|&c| c == 'Ａ').unwrap();
        let (s, e) = out.normalized_range(s_in, s_in + 3);
        assert_eq!(
            out.text.chars().skip(s).take(e - s).collect::<String>(),
            "ABC"
        );
    }
}
