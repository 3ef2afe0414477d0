//! Character classes shared by the metrics, written to agree with the Python reference
//! implementations they are checked against.

/// Python's `str.isspace()` (what `str.split()` and `str.strip()` use): Rust's `White_Space`
/// plus the ASCII separators U+001C..=U+001F, which Python also counts.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no argument.
pub fn python_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_python_space).filter(|t| !t.is_empty())
}

/// Python's `str.strip()` with no argument.
pub fn python_strip(s: &str) -> &str {
    s.trim_matches(is_python_space)
}

/// A CJK ideograph: the Unified Ideographs block, extensions A to H and the compatibility
/// ideographs. Used by the Chinese modes of QA and ROUGE to make each such character a token.
pub fn is_cjk_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F | 0x30000..=0x323AF)
}

/// Whether `s` holds at least one CJK ideograph.
pub fn has_cjk(s: &str) -> bool {
    s.chars().any(is_cjk_ideograph)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_cases() {
        let cases = [
            (' ', true),
            ('\t', true),
            ('\u{1f}', true),
            ('\u{3000}', true),
            ('\u{a0}', true),
            ('\u{200b}', false),
            ('a', false),
            ('\u{180e}', false),
        ];
        for (c, want) in cases {
            assert_eq!(is_python_space(c), want, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn split_and_strip_like_python() {
        let cases: [(&str, &[&str], &str); 3] = [
            (
                "  a \u{1c}b\u{3000}c ",
                &["a", "b", "c"],
                "a \u{1c}b\u{3000}c",
            ),
            ("", &[], ""),
            ("\u{a0}x", &["x"], "x"),
        ];
        for (s, words, stripped) in cases {
            assert_eq!(python_split(s).collect::<Vec<_>>(), words, "{s:?}");
            assert_eq!(python_strip(s), stripped, "{s:?}");
        }
    }

    #[test]
    fn cjk_cases() {
        let cases = [
            ('中', true),
            ('㐀', true),
            ('𠀀', true),
            ('豈', true),
            ('。', false),
            ('a', false),
            ('ア', false),
            ('한', false),
        ];
        for (c, want) in cases {
            assert_eq!(is_cjk_ideograph(c), want, "{c}");
        }
        assert!(has_cjk("abc 北京"));
        assert!(!has_cjk("abc，。"));
    }
}
