//! Tag decoding that respects the tagging scheme: the best tag path under the per-word
//! scores among paths that are valid BIO (no `I-X` after `O` or after another type) or
//! BMES/BIOES (spans open with `B`, continue with `M`/`I`, close with `E`; `S` alone).
//! Labels outside these schemes constrain nothing. A CRF's learnt scores
//! ([`Transitions`]) add to a path's when the task has one.
use crate::crf::Transitions;

/// A label as (scheme letter, entity type): `B-PER` → (`B`, `PER`), `O` → (`O`, ``).
fn parse(label: &str) -> (char, &str) {
    let mut chars = label.chars();
    match (chars.next(), chars.next()) {
        (Some(p @ ('B' | 'I' | 'M' | 'E' | 'S')), Some('-' | '_')) => (p, &label[2..]),
        _ => ('O', ""),
    }
}

/// Which label transitions a scheme allows, for a fixed label set.
#[derive(Debug, Clone)]
pub struct TagScheme {
    /// `allowed[i][j]`: label `j` may follow label `i`.
    allowed: Vec<Vec<bool>>,
    /// Label `j` may start a sequence.
    start: Vec<bool>,
    /// Label `i` may end a sequence.
    end: Vec<bool>,
}

impl TagScheme {
    /// The constraints of `labels`: BMES/BIOES when some label starts with `E-` or `S-`
    /// (open spans must close), else BIO.
    pub fn new(labels: &[String]) -> Self {
        let parsed: Vec<(char, &str)> = labels.iter().map(|l| parse(l)).collect();
        let closing = parsed.iter().any(|(p, _)| matches!(p, 'E' | 'S'));
        let inside = |p: char| matches!(p, 'I' | 'M' | 'E');
        let open = |p: char| closing && matches!(p, 'B' | 'I' | 'M');
        let follows = |prev: Option<(char, &str)>, next: (char, &str)| match prev {
            None => !inside(next.0),
            Some((pp, pt)) => {
                if inside(next.0) {
                    matches!(pp, 'B' | 'I' | 'M') && pt == next.1
                } else {
                    !open(pp)
                }
            }
        };
        TagScheme {
            allowed: parsed
                .iter()
                .map(|&a| parsed.iter().map(|&b| follows(Some(a), b)).collect())
                .collect(),
            start: parsed.iter().map(|&b| follows(None, b)).collect(),
            end: parsed.iter().map(|&(p, _)| !open(p)).collect(),
        }
    }

    /// The best valid path under `scores` (one row of label log-probabilities per word);
    /// plain argmax where no valid path exists (a label set that cannot satisfy itself).
    pub fn decode(&self, scores: &[Vec<f32>]) -> Vec<usize> {
        self.decode_with(scores, None)
    }

    /// [`TagScheme::decode`] with a CRF's learnt scores added to the path's
    /// (`start` of the first label, `trans` of each step, `end` of the last).
    pub fn decode_with(&self, scores: &[Vec<f32>], crf: Option<&Transitions>) -> Vec<usize> {
        let k = self.start.len();
        if scores.is_empty() || k == 0 {
            return Vec::new();
        }
        let at = |v: Option<&Vec<f32>>, j: usize| v.and_then(|v| v.get(j)).copied().unwrap_or(0.0);
        let step = |i: usize, j: usize| {
            crf.and_then(|c| c.trans.get(i))
                .and_then(|r| r.get(j))
                .copied()
                .unwrap_or(0.0)
        };
        let ninf = f32::NEG_INFINITY;
        let mut best: Vec<f32> = (0..k)
            .map(|j| {
                if self.start[j] {
                    scores[0][j] + at(crf.map(|c| &c.start), j)
                } else {
                    ninf
                }
            })
            .collect();
        let mut back: Vec<Vec<usize>> = Vec::with_capacity(scores.len());
        for row in &scores[1..] {
            let mut next = vec![ninf; k];
            let mut from = vec![0usize; k];
            for j in 0..k {
                for (i, &b) in best.iter().enumerate() {
                    let v = b + row[j] + step(i, j);
                    if self.allowed[i][j] && b > ninf && v > next[j] {
                        next[j] = v;
                        from[j] = i;
                    }
                }
            }
            back.push(from);
            best = next;
        }
        let fin = |j: usize| best[j] + at(crf.map(|c| &c.end), j);
        let last = (0..k)
            .filter(|&j| self.end[j] && best[j] > ninf)
            .max_by(|&a, &b| fin(a).total_cmp(&fin(b)));
        let Some(mut j) = last else {
            return argmax_path(scores);
        };
        let mut path = vec![j];
        for from in back.iter().rev() {
            j = from[j];
            path.push(j);
        }
        path.reverse();
        path
    }
}

/// Each row's most likely label, ignoring the scheme (the first of equal ones, as libtorch's
/// argmax: bf16 logits tie often).
pub(crate) fn argmax_path(scores: &[Vec<f32>]) -> Vec<usize> {
    scores
        .iter()
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bio_never_opens_with_inside_or_switches_type() {
        let l = labels(&["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]);
        let s = TagScheme::new(&l);
        // Argmax would say O I-PER I-LOC: invalid twice.
        let scores = vec![
            vec![0.0, -9.0, -9.0, -9.0, -9.0],
            vec![-2.0, -1.5, -0.1, -9.0, -9.0],
            vec![-9.0, -9.0, -3.0, -9.0, -0.1],
        ];
        let path: Vec<&str> = s.decode(&scores).iter().map(|&i| l[i].as_str()).collect();
        assert_eq!(path, ["O", "B-PER", "I-PER"]);
        // Inside at the start is refused too.
        let first = s.decode(&[vec![-1.0, -2.0, -0.1, -9.0, -9.0]]);
        assert_eq!(l[first[0]], "O");
    }

    #[test]
    fn bmes_closes_every_span() {
        let l = labels(&["O", "B-X", "M-X", "E-X", "S-X"]);
        let s = TagScheme::new(&l);
        // Argmax: B-X O — a span that never closes.
        let scores = vec![
            vec![-3.0, -0.1, -9.0, -9.0, -5.0],
            vec![-0.1, -9.0, -9.0, -1.0, -9.0],
        ];
        let path: Vec<&str> = s.decode(&scores).iter().map(|&i| l[i].as_str()).collect();
        assert_eq!(path, ["B-X", "E-X"]);
        // Ending on an open span is refused.
        let one = s.decode(&[vec![-2.0, -0.1, -9.0, -9.0, -3.0]]);
        assert_eq!(l[one[0]], "O");
    }

    #[test]
    fn crf_scores_move_the_path_within_the_scheme() {
        let l = labels(&["O", "B-PER", "I-PER"]);
        let s = TagScheme::new(&l);
        // The emissions alone say O O; a CRF that likes B-PER → I-PER and starting on B-PER
        // turns it into one span, and the scheme still refuses I-PER first.
        let scores = vec![vec![-0.5, -1.0, -9.0], vec![-0.5, -9.0, -1.0]];
        assert_eq!(s.decode(&scores), vec![0, 0]);
        let mut crf = Transitions {
            trans: vec![vec![0.0; 3]; 3],
            start: vec![0.0, 1.0, 5.0],
            end: vec![0.0; 3],
        };
        crf.trans[1][2] = 1.0;
        assert_eq!(s.decode_with(&scores, Some(&crf)), vec![1, 2]);
        // An end score decides the last label.
        crf.end = vec![0.0, 0.0, -3.0];
        assert_eq!(s.decode_with(&scores, Some(&crf)), vec![1, 0]);
    }

    #[test]
    fn labels_outside_a_scheme_decode_as_argmax() {
        let l = labels(&["NOUN", "VERB"]);
        let scores = vec![vec![-0.1, -2.0], vec![-2.0, -0.1], vec![-0.2, -1.0]];
        assert_eq!(TagScheme::new(&l).decode(&scores), vec![0, 1, 0]);
        assert!(TagScheme::new(&l).decode(&[]).is_empty());
    }
}
