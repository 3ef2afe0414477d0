//! Classification metrics with scikit-learn's conventions: accuracy, per-class precision /
//! recall / F1, macro-F1 and the confusion matrix.
//!
//! Labels are strings. Undefined ratios (no prediction or no gold example of a class) count
//! as 0, as `zero_division=0` does in scikit-learn. Averages run over the sorted union of the
//! labels seen in predictions or gold, as `f1_score(average="macro")` does.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result, check_pairs};

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMetrics {
    /// The class label.
    pub label: String,
    /// `tp / (tp + fp)`, 0 when the class was never predicted.
    pub precision: f64,
    /// `tp / (tp + fn)`, 0 when the class never occurs in gold.
    pub recall: f64,
    /// `2 tp / (2 tp + fp + fn)`, 0 when both of the above are undefined.
    pub f1: f64,
    /// Number of gold examples of this class.
    pub support: usize,
}

/// Per-class metrics plus the averages over classes.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassReport {
    /// One entry per label seen in predictions or gold, sorted by label.
    pub classes: Vec<ClassMetrics>,
    /// Fraction of examples whose prediction equals the gold label.
    pub accuracy: f64,
    /// Unweighted mean of the per-class precisions.
    pub macro_precision: f64,
    /// Unweighted mean of the per-class recalls.
    pub macro_recall: f64,
    /// Unweighted mean of the per-class F1 scores.
    pub macro_f1: f64,
    /// Mean of the per-class F1 scores weighted by support.
    pub weighted_f1: f64,
}

/// Fraction of examples whose prediction equals the gold label (0..=1).
///
/// # Errors
/// [`Error::LengthMismatch`] if the slices differ in length, [`Error::Empty`] if both are empty.
pub fn accuracy<P: AsRef<str>, G: AsRef<str>>(pred: &[P], gold: &[G]) -> Result<f64> {
    check_pairs("accuracy", pred.len(), gold.len())?;
    let correct = pred
        .iter()
        .zip(gold)
        .filter(|(p, g)| p.as_ref() == g.as_ref())
        .count();
    Ok(correct as f64 / pred.len() as f64)
}

/// Macro-averaged F1 over the union of labels in `pred` and `gold` (0..=1).
///
/// # Errors
/// As [`accuracy`].
pub fn macro_f1<P: AsRef<str>, G: AsRef<str>>(pred: &[P], gold: &[G]) -> Result<f64> {
    Ok(class_report(pred, gold)?.macro_f1)
}

/// Per-class precision, recall, F1 and support, with accuracy and the macro averages.
///
/// # Errors
/// As [`accuracy`].
pub fn class_report<P: AsRef<str>, G: AsRef<str>>(pred: &[P], gold: &[G]) -> Result<ClassReport> {
    check_pairs("classification report", pred.len(), gold.len())?;
    // label -> (tp, predicted, gold)
    let mut counts: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for (p, g) in pred.iter().zip(gold) {
        let (p, g) = (p.as_ref(), g.as_ref());
        counts.entry(p).or_default().1 += 1;
        let entry = counts.entry(g).or_default();
        entry.2 += 1;
        if p == g {
            entry.0 += 1;
        }
    }
    let classes: Vec<ClassMetrics> = counts
        .into_iter()
        .map(|(label, (tp, predicted, support))| ClassMetrics {
            label: label.to_string(),
            precision: ratio(tp, predicted),
            recall: ratio(tp, support),
            f1: ratio(2 * tp, predicted + support),
            support,
        })
        .collect();
    let n = classes.len() as f64;
    let mean = |f: fn(&ClassMetrics) -> f64| classes.iter().map(f).sum::<f64>() / n;
    let weighted_f1 =
        classes.iter().map(|c| c.f1 * c.support as f64).sum::<f64>() / gold.len() as f64;
    Ok(ClassReport {
        accuracy: accuracy(pred, gold)?,
        macro_precision: mean(|c| c.precision),
        macro_recall: mean(|c| c.recall),
        macro_f1: mean(|c| c.f1),
        weighted_f1,
        classes,
    })
}

/// The sorted union of the labels in `pred` and `gold`: the label order [`class_report`] uses.
pub fn labels_of<P: AsRef<str>, G: AsRef<str>>(pred: &[P], gold: &[G]) -> Vec<String> {
    let mut labels: Vec<String> = pred
        .iter()
        .map(|p| p.as_ref())
        .chain(gold.iter().map(|g| g.as_ref()))
        .map(str::to_string)
        .collect();
    labels.sort();
    labels.dedup();
    labels
}

/// Confusion matrix `m[i][j]`: number of examples with gold label `labels[i]` predicted as
/// `labels[j]` (rows are gold, columns predictions, as in scikit-learn). Examples whose gold or
/// predicted label is not in `labels` are left out. [`labels_of`] gives the usual label list.
///
/// # Errors
/// As [`accuracy`], and [`Error::DuplicateLabel`] if `labels` repeats a label.
pub fn confusion_matrix<P: AsRef<str>, G: AsRef<str>, L: AsRef<str>>(
    pred: &[P],
    gold: &[G],
    labels: &[L],
) -> Result<Vec<Vec<usize>>> {
    const METRIC: &str = "confusion matrix";
    check_pairs(METRIC, pred.len(), gold.len())?;
    let mut index = HashMap::new();
    for (i, label) in labels.iter().enumerate() {
        if index.insert(label.as_ref(), i).is_some() {
            return Err(Error::DuplicateLabel {
                metric: METRIC,
                label: label.as_ref().to_string(),
            });
        }
    }
    let mut matrix = vec![vec![0; labels.len()]; labels.len()];
    for (p, g) in pred.iter().zip(gold) {
        if let (Some(&j), Some(&i)) = (index.get(p.as_ref()), index.get(g.as_ref())) {
            matrix[i][j] += 1;
        }
    }
    Ok(matrix)
}

/// `num / den`, or 0 when `den` is 0 (scikit-learn's `zero_division=0`).
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_cases() {
        let cases: [(&[&str], &[&str], f64); 3] = [
            (&["a", "b", "c"], &["a", "b", "c"], 1.0),
            (&["a", "a", "a", "b"], &["a", "b", "a", "a"], 0.5),
            (&["x"], &["y"], 0.0),
        ];
        for (pred, gold, want) in cases {
            assert_eq!(accuracy(pred, gold).unwrap(), want, "{pred:?} vs {gold:?}");
        }
    }

    #[test]
    fn rejects_unpaired_and_empty_inputs() {
        let none: [&str; 0] = [];
        assert!(matches!(
            accuracy(&["a"], &["a", "b"]),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(macro_f1(&none, &none), Err(Error::Empty { .. })));
        assert!(matches!(
            confusion_matrix(&["a"], &["a"], &["a", "a"]),
            Err(Error::DuplicateLabel { .. })
        ));
    }

    #[test]
    fn per_class_counts_by_hand() {
        // gold a a b c, pred a b b b: a: tp1 p1 g2; b: tp1 p3 g1; c: tp0 p0 g1.
        let report = class_report(&["a", "b", "b", "b"], &["a", "a", "b", "c"]).unwrap();
        let got: Vec<_> = report
            .classes
            .iter()
            .map(|c| (c.label.as_str(), c.precision, c.recall, c.f1, c.support))
            .collect();
        let want = [
            ("a", 1.0, 0.5, 2.0 / 3.0, 2),
            ("b", 1.0 / 3.0, 1.0, 0.5, 1),
            ("c", 0.0, 0.0, 0.0, 1),
        ];
        assert_eq!(got, want);
        assert!((report.macro_f1 - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn label_only_in_predictions_counts_in_macro_average() {
        let with_unseen = macro_f1(&["a", "z"], &["a", "b"]).unwrap();
        // classes a (f1 1), b (f1 0), z (f1 0).
        assert!((with_unseen - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn confusion_rows_are_gold() {
        let m =
            confusion_matrix(&["b", "b", "a", "q"], &["a", "b", "a", "a"], &["a", "b"]).unwrap();
        assert_eq!(m, vec![vec![1, 1], vec![0, 1]]);
        assert_eq!(labels_of(&["b", "q"], &["a"]), ["a", "b", "q"]);
    }
}
