//! Snowball stemming (rust-stemmers) in every language it has.
use rust_stemmers::{Algorithm, Stemmer};

/// Looks up a stemmer by its config name (`"english"`, `"french"`, ...; see
/// [`mtgpt_core::STEMMER_LANGUAGES`]).
pub fn stemmer(language: &str) -> crate::Result<Stemmer> {
    let algo = match language.to_ascii_lowercase().as_str() {
        "arabic" => Algorithm::Arabic,
        "danish" => Algorithm::Danish,
        "dutch" => Algorithm::Dutch,
        "english" => Algorithm::English,
        "finnish" => Algorithm::Finnish,
        "french" => Algorithm::French,
        "german" => Algorithm::German,
        "greek" => Algorithm::Greek,
        "hungarian" => Algorithm::Hungarian,
        "italian" => Algorithm::Italian,
        "norwegian" => Algorithm::Norwegian,
        "portuguese" => Algorithm::Portuguese,
        "romanian" => Algorithm::Romanian,
        "russian" => Algorithm::Russian,
        "spanish" => Algorithm::Spanish,
        "swedish" => Algorithm::Swedish,
        "tamil" => Algorithm::Tamil,
        "turkish" => Algorithm::Turkish,
        _ => {
            return Err(crate::Error::UnknownLanguage {
                language: language.to_string(),
            });
        }
    };
    Ok(Stemmer::create(algo))
}

/// Stems every alphabetic word of `text` (as split by `segmenter`) and joins the result with
/// single spaces. Snowball stemmers expect lower-case input, so words are lower-cased first;
/// numbers, punctuation and Han words pass through unchanged.
pub fn stem_text(stemmer: &Stemmer, segmenter: &crate::Segmenter, text: &str) -> String {
    let words = segmenter.words(text);
    let mut out = String::with_capacity(text.len());
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if w.text.chars().any(char::is_alphabetic) && !w.text.chars().any(crate::segment::is_han) {
            out.push_str(&stemmer.stem(&w.text.to_lowercase()));
        } else {
            out.push_str(w.text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_language_has_a_stemmer() {
        for lang in mtgpt_core::STEMMER_LANGUAGES {
            stemmer(lang).unwrap_or_else(|e| panic!("{lang}: {e}"));
        }
        assert!(
            stemmer("klingon")
                .err()
                .unwrap()
                .to_string()
                .contains("klingon")
        );
    }

    #[test]
    fn table() {
        let cases = [
            ("english", "running", "run"),
            ("english", "cats", "cat"),
            ("english", "generously", "generous"),
            ("french", "continuellement", "continuel"),
            ("german", "häuser", "haus"),
            ("spanish", "corriendo", "corr"),
            ("russian", "книги", "книг"),
        ];
        for (lang, word, want) in cases {
            assert_eq!(stemmer(lang).unwrap().stem(word), want, "{lang} {word}");
        }
    }

    #[test]
    fn stem_text_keeps_numbers_punctuation_and_chinese() {
        let s = stemmer("english").unwrap();
        let seg = crate::Segmenter::default();
        assert_eq!(
            stem_text(&s, &seg, "The Cats were running, 3.5 km 我们跑步"),
            "the cat were run , 3.5 km 我们 跑步"
        );
    }
}
