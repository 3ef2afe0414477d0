//! `lm`: an interpolated absolute-discounting trigram model over the task's token ids (the
//! same tokens the GPT reads, so perplexities compare directly).
use mtgpt_core::TaskKind;
use mtgpt_tasks::TaskScores;
use std::collections::{BTreeMap, HashMap};

/// The discount of every observed n-gram count (Ney et al.'s usual value).
const DISCOUNT: f64 = 0.75;

/// Counts of one context: total continuations and distinct continuations.
#[derive(Default, Clone, Copy)]
struct Context {
    total: u64,
    distinct: u64,
}

/// A trigram model fitted on one token stream.
pub struct TrigramLm {
    unigram: HashMap<u32, u64>,
    bigram: HashMap<(u32, u32), u64>,
    trigram: HashMap<(u32, u32, u32), u64>,
    ctx1: HashMap<u32, Context>,
    ctx2: HashMap<(u32, u32), Context>,
    tokens: u64,
    vocab: u64,
}

impl TrigramLm {
    /// Counts unigrams, bigrams and trigrams of `tokens`.
    pub fn fit(tokens: &[u32]) -> Self {
        let mut m = TrigramLm {
            unigram: HashMap::new(),
            bigram: HashMap::new(),
            trigram: HashMap::new(),
            ctx1: HashMap::new(),
            ctx2: HashMap::new(),
            tokens: tokens.len() as u64,
            vocab: 0,
        };
        for (i, &w) in tokens.iter().enumerate() {
            *m.unigram.entry(w).or_default() += 1;
            if i >= 1 {
                let c = m.bigram.entry((tokens[i - 1], w)).or_default();
                *c += 1;
                let ctx = m.ctx1.entry(tokens[i - 1]).or_default();
                ctx.total += 1;
                ctx.distinct += u64::from(*c == 1);
            }
            if i >= 2 {
                let c = m
                    .trigram
                    .entry((tokens[i - 2], tokens[i - 1], w))
                    .or_default();
                *c += 1;
                let ctx = m.ctx2.entry((tokens[i - 2], tokens[i - 1])).or_default();
                ctx.total += 1;
                ctx.distinct += u64::from(*c == 1);
            }
        }
        // One more type than was seen stands for every unseen token.
        m.vocab = m.unigram.len() as u64 + 1;
        m
    }

    /// P(w): add-one over the seen types plus one unseen type.
    fn p1(&self, w: u32) -> f64 {
        (self.unigram.get(&w).copied().unwrap_or(0) as f64 + 1.0)
            / (self.tokens as f64 + self.vocab as f64)
    }

    fn p2(&self, v: u32, w: u32) -> f64 {
        let lower = self.p1(w);
        match self.ctx1.get(&v) {
            Some(c) if c.total > 0 => {
                let n = self.bigram.get(&(v, w)).copied().unwrap_or(0) as f64;
                ((n - DISCOUNT).max(0.0) + DISCOUNT * c.distinct as f64 * lower) / c.total as f64
            }
            _ => lower,
        }
    }

    /// P(w | u v), interpolated down to the unigram.
    pub fn prob(&self, u: Option<u32>, v: Option<u32>, w: u32) -> f64 {
        let Some(v) = v else {
            return self.p1(w);
        };
        let lower = self.p2(v, w);
        match u.and_then(|u| self.ctx2.get(&(u, v)).map(|c| (u, c))) {
            Some((u, c)) if c.total > 0 => {
                let n = self.trigram.get(&(u, v, w)).copied().unwrap_or(0) as f64;
                ((n - DISCOUNT).max(0.0) + DISCOUNT * c.distinct as f64 * lower) / c.total as f64
            }
            _ => lower,
        }
    }

    /// Mean negative log-likelihood (nats per token) of `tokens`, as one stream.
    pub fn nll(&self, tokens: &[u32]) -> f64 {
        let mut sum = 0.0;
        for i in 0..tokens.len() {
            let u = i.checked_sub(2).map(|j| tokens[j]);
            let v = i.checked_sub(1).map(|j| tokens[j]);
            sum -= self.prob(u, v, tokens[i]).ln();
        }
        sum / tokens.len().max(1) as f64
    }

    /// Scores as the model's LM scores are named: `loss` and `perplexity`.
    pub fn scores(&self, task: &str, tokens: &[u32]) -> TaskScores {
        let loss = self.nll(tokens);
        TaskScores {
            task: task.to_string(),
            kind: TaskKind::Lm,
            examples: 1,
            metrics: BTreeMap::from([
                ("loss".to_string(), loss),
                ("perplexity".to_string(), loss.exp()),
            ]),
            primary: "perplexity".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_sum_to_one_over_seen_types_plus_the_unseen_mass() {
        let train = [1u32, 2, 3, 1, 2, 4, 1, 2, 3];
        let m = TrigramLm::fit(&train);
        // Every context: seen types and one unseen stand-in must carry the whole mass.
        for (u, v) in [
            (Some(1), Some(2)),
            (None, Some(3)),
            (Some(9), Some(9)),
            (None, None),
        ] {
            let seen: f64 = [1u32, 2, 3, 4].iter().map(|&w| m.prob(u, v, w)).sum();
            let unseen = m.prob(u, v, 77);
            assert!(
                (seen + unseen - 1.0).abs() < 1e-9,
                "{u:?} {v:?}: {}",
                seen + unseen
            );
        }
        // Seen continuations are likelier than unseen ones.
        assert!(m.prob(Some(1), Some(2), 3) > m.prob(Some(1), Some(2), 1));
        // Text like the training text is less surprising than shuffled text.
        assert!(m.nll(&[1, 2, 3, 1, 2]) < m.nll(&[3, 2, 1, 3, 2]));
    }
}
