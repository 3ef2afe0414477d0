//! A linear-chain CRF over a tagging head's per-position scores (`crf = true` on a tagging
//! task): learnt start, transition and end scores, trained by the sequence's negative
//! log-likelihood (the forward algorithm over every tag path) and decoded by Viterbi under
//! the tag scheme's constraints ([`crate::TagScheme::decode_with`]).
use mtgpt_core::IGNORE_INDEX;
use tch::{Device, Kind, Tensor, nn};

/// The CRF's parameters: `trans[i][j]` scores tag `j` after tag `i`; `start` and `end` score
/// a sequence's first and last tag. All start at zero, so a fresh CRF adds nothing to the
/// emissions.
#[derive(Debug)]
pub struct Crf {
    /// `[K, K]`, from row to column.
    pub trans: Tensor,
    /// `[K]`.
    pub start: Tensor,
    /// `[K]`.
    pub end: Tensor,
}

/// A CRF's scores read out of the model, for decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Transitions {
    /// `trans[i][j]`: tag `j` after tag `i`.
    pub trans: Vec<Vec<f32>>,
    /// The first tag's score.
    pub start: Vec<f32>,
    /// The last tag's score.
    pub end: Vec<f32>,
}

impl Crf {
    /// Zero-initialised scores for `k` tags under `p` (`trans`, `start`, `end`).
    pub fn new(p: &nn::Path, k: i64) -> Self {
        Crf {
            trans: p.zeros("trans", &[k, k]),
            start: p.zeros("start", &[k]),
            end: p.zeros("end", &[k]),
        }
    }

    /// The scores as plain numbers.
    pub fn transitions(&self) -> Transitions {
        let f = |t: &Tensor| t.to_kind(Kind::Float).to_device(Device::Cpu);
        let k = self.start.size()[0];
        let trans: Vec<f32> = Vec::try_from(&f(&self.trans).reshape([-1])).unwrap_or_default();
        Transitions {
            trans: trans
                .chunks(k.max(1) as usize)
                .map(|r| r.to_vec())
                .collect(),
            start: Vec::try_from(&f(&self.start)).unwrap_or_default(),
            end: Vec::try_from(&f(&self.end)).unwrap_or_default(),
        }
    }

    /// Mean negative log-likelihood per tagged position of the gold tag paths. `emissions`
    /// `[B, T, K]` (fp32); `tags` `[B·T]` row-major, with [`IGNORE_INDEX`] where a position is
    /// not tagged (the task token, a word's later tokens, padding): each row's tagged
    /// positions, in order, form its sequence.
    pub fn nll(&self, emissions: &Tensor, tags: &[i64]) -> Tensor {
        let (b, t, k) = match emissions.size()[..] {
            [b, t, k] => (b, t, k),
            _ => return emissions.sum(Kind::Float) * 0.0,
        };
        let dev = emissions.device();
        let rows: Vec<Vec<(i64, i64)>> = (0..b as usize)
            .map(|r| {
                (0..t as usize)
                    .filter_map(|p| {
                        let y = tags[r * t as usize + p];
                        (y != IGNORE_INDEX).then_some((p as i64, y))
                    })
                    .collect()
            })
            .collect();
        let w = rows.iter().map(Vec::len).max().unwrap_or(0) as i64;
        let total: usize = rows.iter().map(Vec::len).sum();
        if w == 0 {
            return emissions.sum(Kind::Float) * 0.0;
        }
        let (mut idx, mut ys, mut ms) = (Vec::new(), Vec::new(), Vec::new());
        let mut last = Vec::with_capacity(b as usize);
        for r in &rows {
            for j in 0..w as usize {
                let (p, y, m) = r.get(j).map_or((0, 0, 0.0f32), |&(p, y)| (p, y, 1.0));
                idx.push(p);
                ys.push(y);
                ms.push(m);
            }
            last.push(r.len().saturating_sub(1) as i64);
        }
        let idx = Tensor::from_slice(&idx).view([b, w]).to_device(dev);
        let y = Tensor::from_slice(&ys).view([b, w]).to_device(dev);
        let m = Tensor::from_slice(&ms).view([b, w]).to_device(dev);
        let last = Tensor::from_slice(&last).view([b, 1]).to_device(dev);
        let has = m.select(1, 0);
        let e = emissions.to_kind(Kind::Float).gather(
            1,
            &idx.unsqueeze(-1).expand([b, w, k], false),
            false,
        );
        let (trans, start, end) = (
            self.trans.to_kind(Kind::Float),
            self.start.to_kind(Kind::Float),
            self.end.to_kind(Kind::Float),
        );
        // The gold path's score.
        let mut gold = (e.gather(2, &y.unsqueeze(-1), false).squeeze_dim(-1) * &m).sum_dim_intlist(
            1,
            false,
            Kind::Float,
        ) + start.index_select(0, &y.select(1, 0)) * &has
            + end.index_select(0, &y.gather(1, &last, false).squeeze_dim(1)) * &has;
        if w > 1 {
            let pair = y.narrow(1, 0, w - 1) * k + y.narrow(1, 1, w - 1);
            gold += (trans.reshape([-1]).take(&pair) * m.narrow(1, 1, w - 1)).sum_dim_intlist(
                1,
                false,
                Kind::Float,
            );
        }
        // Every path's: the forward algorithm, rows holding their last score past their end.
        let mut alpha = e.select(1, 0) + start.unsqueeze(0);
        for j in 1..w {
            let next = (alpha.unsqueeze(2) + trans.unsqueeze(0) + e.select(1, j).unsqueeze(1))
                .logsumexp([1], false);
            let keep = m.select(1, j).unsqueeze(1);
            alpha = &next * &keep + alpha * (1.0 - &keep);
        }
        let log_z = (alpha + end.unsqueeze(0)).logsumexp([1], false);
        ((log_z - gold) * has).sum(Kind::Float) / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// log Σ exp over every path, by enumeration.
    fn brute_log_z(e: &[Vec<f32>], tr: &[Vec<f32>], s: &[f32], en: &[f32]) -> f64 {
        let (w, k) = (e.len(), s.len());
        let mut total = 0.0f64;
        for code in 0..k.pow(w as u32) {
            let path: Vec<usize> = (0..w).map(|i| (code / k.pow(i as u32)) % k).collect();
            let mut sc = (s[path[0]] + en[path[w - 1]]) as f64;
            for i in 0..w {
                sc += e[i][path[i]] as f64;
                if i > 0 {
                    sc += tr[path[i - 1]][path[i]] as f64;
                }
            }
            total += sc.exp();
        }
        total.ln()
    }

    #[test]
    fn nll_equals_enumerating_every_path_and_skips_untagged_positions() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut crf = Crf::new(&vs.root(), 3);
        tch::manual_seed(7);
        tch::no_grad(|| {
            crf.trans
                .copy_(&Tensor::randn([3, 3], (Kind::Float, Device::Cpu)));
            crf.start
                .copy_(&Tensor::randn([3], (Kind::Float, Device::Cpu)));
            crf.end
                .copy_(&Tensor::randn([3], (Kind::Float, Device::Cpu)));
        });
        let em = Tensor::randn([2, 5, 3], (Kind::Float, Device::Cpu));
        let ig = IGNORE_INDEX;
        // Row 0 tags positions 1, 2, 4; row 1 tags positions 0 and 3 only.
        let tags = [ig, 2, 0, ig, 1, 1, ig, ig, 2, ig];
        let got = f64::try_from(crf.nll(&em, &tags)).unwrap();
        let tr = crf.transitions();
        let rows: Vec<Vec<Vec<f32>>> = (0..2)
            .map(|r| {
                let v: Vec<Vec<f32>> = Vec::try_from(&em.get(r)).unwrap();
                v
            })
            .collect();
        let mut want = 0.0;
        for (r, pos) in [(0usize, vec![1usize, 2, 4]), (1, vec![0, 3])] {
            let e: Vec<Vec<f32>> = pos.iter().map(|&p| rows[r][p].clone()).collect();
            let y: Vec<usize> = pos.iter().map(|&p| tags[r * 5 + p] as usize).collect();
            let mut gold = (tr.start[y[0]] + tr.end[*y.last().unwrap()]) as f64;
            for (i, &yi) in y.iter().enumerate() {
                gold += e[i][yi] as f64;
                if i > 0 {
                    gold += tr.trans[y[i - 1]][yi] as f64;
                }
            }
            want += brute_log_z(&e, &tr.trans, &tr.start, &tr.end) - gold;
        }
        want /= 5.0;
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        // A fresh CRF adds nothing: the loss is the per-position cross-entropy.
        let fresh = Crf::new(&nn::VarStore::new(Device::Cpu).root(), 3);
        let ce = -em
            .get(1)
            .log_softmax(-1, Kind::Float)
            .get(3)
            .get(2)
            .double_value(&[]);
        let one = [ig, ig, ig, ig, ig, ig, ig, ig, 2, ig];
        let got = f64::try_from(fresh.nll(&em, &one)).unwrap();
        assert!((got - ce).abs() < 1e-5, "{got} vs {ce}");
    }
}
