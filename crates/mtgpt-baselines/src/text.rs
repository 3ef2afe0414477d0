//! TF-IDF features: n-gram counts from [`linfa_preprocessing`]'s `CountVectorizer` over
//! [`analyze`]d text, weighted by the training split's smoothed inverse document frequency
//! and L2-normalized per document (scikit-learn's `TfidfVectorizer` defaults).
use crate::error::{Result, fit_error};
use linfa_preprocessing::{CountVectorizer, Tokenizer};
use mtgpt_text::segment::is_han;
use ndarray::{Array1, Array2};

/// Splits text into tokens: runs of letters and digits (one word each), every Han character
/// alone, and every other visible character alone; whitespace separates.
pub fn analyze(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in s.char_indices() {
        if c.is_alphanumeric() && !is_han(c) {
            start.get_or_insert(i);
            continue;
        }
        if let Some(st) = start.take() {
            out.push(&s[st..i]);
        }
        if !c.is_whitespace() {
            out.push(&s[i..i + c.len_utf8()]);
        }
    }
    if let Some(st) = start {
        out.push(&s[st..]);
    }
    out
}

/// A fitted TF-IDF featurizer.
pub struct TfIdf {
    counts: CountVectorizer,
    idf: Array1<f32>,
}

/// The longest n-gram for `texts`: 3 when they are mostly Han characters (character n-grams
/// stand in for words), else 2.
fn max_n(texts: &[String]) -> usize {
    let (han, all) = texts
        .iter()
        .flat_map(|t| t.chars())
        .fold((0usize, 0usize), |(h, a), c| {
            (
                h + usize::from(is_han(c)),
                a + usize::from(!c.is_whitespace()),
            )
        });
    if han * 2 > all { 3 } else { 2 }
}

impl TfIdf {
    /// Fits the vocabulary (the `max_features` most frequent n-grams) and the IDF on `texts`.
    pub fn fit(texts: &[String], max_features: usize) -> Result<Self> {
        let docs = Array1::from(texts.to_vec());
        let counts = CountVectorizer::params()
            .tokenizer(Tokenizer::Function(analyze))
            .n_gram_range(1, max_n(texts))
            .max_features(Some(max_features))
            .fit(&docs)
            .map_err(|e| fit_error("tf-idf", e))?;
        let m = counts
            .transform(&docs)
            .map_err(|e| fit_error("tf-idf", e))?;
        let mut df = vec![0usize; counts.nentries()];
        for (_, (_, col)) in m.iter() {
            df[col] += 1;
        }
        let n = texts.len() as f32;
        let idf = df
            .iter()
            .map(|&d| ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0)
            .collect();
        Ok(TfIdf { counts, idf })
    }

    /// Dense, L2-normalized TF-IDF rows of `texts` `[texts, features]`.
    pub fn transform(&self, texts: &[String]) -> Result<Array2<f32>> {
        let docs = Array1::from(texts.to_vec());
        let m = self
            .counts
            .transform(&docs)
            .map_err(|e| fit_error("tf-idf", e))?;
        let mut x = Array2::<f32>::zeros((texts.len(), self.idf.len()));
        for (&c, (row, col)) in m.iter() {
            x[[row, col]] = c as f32 * self.idf[col];
        }
        for mut row in x.rows_mut() {
            let norm = row.dot(&row).sqrt();
            if norm > 0.0 {
                row /= norm;
            }
        }
        Ok(x)
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.idf.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.idf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyze_splits_words_han_characters_and_punctuation() {
        assert_eq!(
            analyze("Free entry!! 中奖了 call 0800"),
            ["Free", "entry", "!", "!", "中", "奖", "了", "call", "0800"]
        );
        assert!(analyze("  ").is_empty());
    }

    #[test]
    fn tfidf_rows_are_unit_length_and_rare_terms_weigh_more() {
        let texts: Vec<String> = ["a a b", "a c", "a d"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let f = TfIdf::fit(&texts, 100).unwrap();
        let x = f.transform(&texts).unwrap();
        for row in x.rows() {
            assert!((row.dot(&row) - 1.0).abs() < 1e-5);
        }
        let vocab = f.counts.vocabulary();
        let col = |w: &str| vocab.iter().position(|v| v == w).unwrap();
        // In document 1, "c" (in one document) outweighs "a" (in all three).
        assert!(x[[1, col("c")]] > x[[1, col("a")]]);
        // Unknown words give an all-zero row, not an error.
        let z = f.transform(&["zzz".to_string()]).unwrap();
        assert_eq!(z.sum(), 0.0);
    }
}
