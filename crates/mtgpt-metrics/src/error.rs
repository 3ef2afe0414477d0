//! Errors of `mtgpt-metrics`.

/// Inputs a metric cannot score.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Predictions and references are not paired one to one.
    #[error("{metric}: {pred} predictions but {gold} references")]
    LengthMismatch {
        /// The metric that was asked for.
        metric: &'static str,
        /// Number of predictions.
        pred: usize,
        /// Number of references.
        gold: usize,
    },
    /// One tagged sentence has a different number of predicted and gold tags.
    #[error("{metric}: sentence {index} has {pred} predicted tags but {gold} gold tags")]
    SentenceLengthMismatch {
        /// The metric that was asked for.
        metric: &'static str,
        /// Index of the sentence (0-based).
        index: usize,
        /// Number of predicted tags.
        pred: usize,
        /// Number of gold tags.
        gold: usize,
    },
    /// Nothing to average over.
    #[error("{metric}: no examples to score")]
    Empty {
        /// The metric that was asked for.
        metric: &'static str,
    },
    /// An example has an empty list of references.
    #[error("{metric}: example {index} has no reference")]
    NoReference {
        /// The metric that was asked for.
        metric: &'static str,
        /// Index of the example (0-based).
        index: usize,
    },
    /// A label list given by the caller names a label twice.
    #[error("{metric}: label `{label}` is listed twice")]
    DuplicateLabel {
        /// The metric that was asked for.
        metric: &'static str,
        /// The repeated label.
        label: String,
    },
}

/// Result alias of `mtgpt-metrics`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that `pred` and `gold` pair up and are not empty.
pub(crate) fn check_pairs(metric: &'static str, pred: usize, gold: usize) -> Result<()> {
    if pred != gold {
        return Err(Error::LengthMismatch { metric, pred, gold });
    }
    if pred == 0 {
        return Err(Error::Empty { metric });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_pairs_cases() {
        let cases = [
            (2, 2, Ok(())),
            (
                2,
                3,
                Err(Error::LengthMismatch {
                    metric: "m",
                    pred: 2,
                    gold: 3,
                }),
            ),
            (0, 0, Err(Error::Empty { metric: "m" })),
        ];
        for (pred, gold, want) in cases {
            assert_eq!(check_pairs("m", pred, gold), want, "{pred} vs {gold}");
        }
    }

    #[test]
    fn messages_name_the_metric_and_counts() {
        let e = Error::SentenceLengthMismatch {
            metric: "span F1",
            index: 4,
            pred: 3,
            gold: 5,
        };
        assert_eq!(
            e.to_string(),
            "span F1: sentence 4 has 3 predicted tags but 5 gold tags"
        );
    }
}
