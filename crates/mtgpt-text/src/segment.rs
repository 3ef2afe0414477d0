//! Word segmentation for Chinese, English and mixed text.
//!
//! Runs of Han characters go to jieba-rs; everything else is split by a small scanner that
//! keeps Latin words (with inner `'` and `-`), numbers (`3.14`, `1,000`) and special tokens
//! (`<|sep|>`) whole and makes each punctuation mark its own word.
use jieba_rs::Jieba;
use std::io::BufRead;
use std::sync::{Arc, LazyLock};

static DEFAULT_JIEBA: LazyLock<Arc<Jieba>> = LazyLock::new(|| Arc::new(Jieba::new()));

/// A word and where it starts in the text it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word<'a> {
    /// The word.
    pub text: &'a str,
    /// Byte offset of the word in the input.
    pub start: usize,
}

impl Word<'_> {
    /// Byte offset just after the word.
    pub fn end(&self) -> usize {
        self.start + self.text.len()
    }
}

/// A segmenter: jieba's dictionary (default or extended) and the HMM switch.
#[derive(Clone)]
pub struct Segmenter {
    jieba: Arc<Jieba>,
    hmm: bool,
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter")
            .field("hmm", &self.hmm)
            .finish_non_exhaustive()
    }
}

impl Default for Segmenter {
    fn default() -> Self {
        Self::new(true)
    }
}

/// Whether `c` is a Han (CJK ideograph) character, segmented by jieba.
pub fn is_han(c: char) -> bool {
    matches!(c,
        '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{2FA1F}' | '\u{3007}')
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_han(c) || c == '_'
}

impl Segmenter {
    /// jieba's default dictionary; `hmm` finds words missing from it.
    pub fn new(hmm: bool) -> Self {
        Segmenter {
            jieba: DEFAULT_JIEBA.clone(),
            hmm,
        }
    }

    /// The default dictionary extended with a user dictionary (`word [freq] [tag]` lines).
    pub fn with_user_dict(hmm: bool, path: &std::path::Path) -> crate::Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| mtgpt_core::Error::io(path, e))?;
        let mut jieba = Jieba::new();
        let mut reader = std::io::BufReader::new(file);
        // Check line by line first, so a bad line is reported with its number.
        let mut text = String::new();
        let mut line_no = 0;
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| mtgpt_core::Error::io(path, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let mut parts = line.split_whitespace();
            if parts.next().is_none() {
                continue;
            }
            if let Some(freq) = parts.next()
                && freq.parse::<usize>().is_err()
            {
                return Err(mtgpt_core::Error::BadRecord {
                    file: path.to_path_buf(),
                    line: line_no,
                    field: "freq".into(),
                    reason: format!(
                        "`{freq}` is not a whole number (expected `word [freq] [tag]`)"
                    ),
                }
                .into());
            }
            text.push_str(&line);
            if !line.ends_with('\n') {
                text.push('\n');
            }
        }
        jieba
            .load_dict(&mut text.as_bytes())
            .map_err(|e| crate::Error::Dictionary {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Segmenter {
            jieba: Arc::new(jieba),
            hmm,
        })
    }

    /// Whether this segmenter uses jieba's HMM.
    pub fn hmm(&self) -> bool {
        self.hmm
    }

    /// The segmenter `[preprocess]` asks for.
    pub fn from_config(p: &mtgpt_core::PreprocessConfig) -> crate::Result<Self> {
        if p.user_dict.is_empty() {
            Ok(Self::new(p.hmm))
        } else {
            Self::with_user_dict(p.hmm, std::path::Path::new(&p.user_dict))
        }
    }

    /// Words of `text`, whitespace dropped. `我来到北京清华大学` → `我 来到 北京 清华大学`.
    pub fn words<'a>(&self, text: &'a str) -> Vec<Word<'a>> {
        let mut out = Vec::new();
        self.each_piece(text, |piece, start, han| {
            if han {
                for t in self.jieba.cut(piece, self.hmm) {
                    out.push(Word {
                        text: t.word,
                        start: start + t.byte_start,
                    });
                }
            } else {
                scan_words(piece, start, &mut out);
            }
        });
        out
    }

    /// Pieces that cover `text` exactly (their concatenation is `text`): each Han run split
    /// into jieba words, everything between Han runs left whole. Used to pre-segment text for
    /// BPE so merges never cross a Chinese word boundary.
    pub fn pieces<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        self.each_piece(text, |piece, _, han| {
            if han {
                out.extend(self.jieba.cut(piece, self.hmm).into_iter().map(|t| t.word));
            } else {
                out.push(piece);
            }
        });
        out
    }

    /// Calls `f(piece, byte_start, is_han)` for alternating Han and non-Han runs.
    fn each_piece<'a>(&self, text: &'a str, mut f: impl FnMut(&'a str, usize, bool)) {
        let mut start = 0;
        let mut han = None;
        for (i, c) in text.char_indices() {
            let h = is_han(c);
            match han {
                Some(prev) if prev != h => {
                    f(&text[start..i], start, prev);
                    start = i;
                }
                _ => {}
            }
            han = Some(h);
        }
        if let Some(h) = han {
            f(&text[start..], start, h);
        }
    }

    /// One line of segmented output: words joined by single spaces.
    pub fn segment_line(&self, line: &str) -> String {
        let words = self.words(line);
        let mut out = String::with_capacity(line.len() + words.len());
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(w.text);
        }
        out
    }
}

/// Splits non-Han text into words, numbers, special tokens and punctuation.
fn scan_words<'a>(text: &'a str, base: usize, out: &mut Vec<Word<'a>>) {
    let bytes_at = |i: usize| text[i..].chars().next();
    let mut i = 0;
    while let Some(c) = bytes_at(i) {
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        if c == '<'
            && text[i..].starts_with("<|")
            && let Some(end) = text[i..].find("|>")
            && !text[i..i + end].contains(char::is_whitespace)
        {
            i += end + 2;
        } else if is_word_char(c) {
            i += c.len_utf8();
            while let Some(c) = bytes_at(i) {
                if is_word_char(c) {
                    i += c.len_utf8();
                    continue;
                }
                // Keep `don't`, `e-mail`, `3.14`, `1,000` whole: a joiner between two word
                // characters (digits only for `.` and `,`).
                let joiner = matches!(c, '\'' | '’' | '-' | '.' | ',');
                let next = bytes_at(i + c.len_utf8());
                let prev = text[..i].chars().next_back();
                let ok = joiner
                    && next.is_some_and(is_word_char)
                    && (matches!(c, '\'' | '’' | '-')
                        || prev.is_some_and(|p| p.is_ascii_digit())
                            && next.is_some_and(|n| n.is_ascii_digit()));
                if !ok {
                    break;
                }
                i += c.len_utf8();
            }
        } else {
            i += c.len_utf8();
        }
        out.push(Word {
            text: &text[start..i],
            start: base + start,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let s = Segmenter::new(true);
        let cases = [
            ("我来到北京清华大学", "我 来到 北京 清华大学"),
            ("他来到了网易杭研大厦", "他 来到 了 网易 杭研 大厦"),
            (
                "Hello, world! It's 3.14 or 1,000.",
                "Hello , world ! It's 3.14 or 1,000 .",
            ),
            (
                "我用iPhone 15拍了e-mail照片。",
                "我用 iPhone 15 拍 了 e-mail 照片 。",
            ),
            ("<|task:ner_zh|>小明<|sep|>", "<|task:ner_zh|> 小明 <|sep|>"),
            ("  ", ""),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(s.segment_line(input), want, "{input:?}");
        }
    }

    #[test]
    fn hmm_switch_changes_unknown_words() {
        // 杭研 is not in jieba's dictionary: the HMM joins it, without HMM it falls apart.
        assert!(
            Segmenter::new(true)
                .segment_line("网易杭研大厦")
                .contains("杭研")
        );
        assert!(
            !Segmenter::new(false)
                .segment_line("网易杭研大厦")
                .contains("杭研")
        );
    }

    #[test]
    fn user_dictionaries_add_words_and_report_bad_lines() {
        let dir = std::env::temp_dir().join(format!("mtgpt-dict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dict = dir.join("user.dict");
        std::fs::write(&dict, "杭研大厦 100 n\n多任务学习 50\n").unwrap();
        let s = Segmenter::with_user_dict(false, &dict).unwrap();
        assert_eq!(
            s.segment_line("网易杭研大厦研究多任务学习"),
            "网易 杭研大厦 研究 多任务学习"
        );
        std::fs::write(&dict, "好词 10\n坏词 many\n").unwrap();
        let e = Segmenter::with_user_dict(false, &dict)
            .unwrap_err()
            .to_string();
        assert!(e.contains("user.dict:2: field `freq`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pieces_cover_the_text_and_words_point_into_it() {
        let s = Segmenter::default();
        let text = "Mixed 中文和English混合, 123 个字!\n第二行";
        assert_eq!(s.pieces(text).concat(), text);
        for w in s.words(text) {
            assert_eq!(&text[w.start..w.end()], w.text);
        }
    }
}
