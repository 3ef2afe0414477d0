//! Text generation with the KV cache: greedy, temperature, top-k, top-p, repetition penalty,
//! stop tokens, a token budget, beam search, and batched prompts (left padding).
use crate::error::{Error, Result};
use crate::gpt::{Gpt, KvCache};
use tch::{Kind, Tensor};

/// How tokens are chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    /// Most tokens generated per prompt.
    pub max_new_tokens: usize,
    /// Pick the most likely token (ignores temperature, top-k, top-p).
    pub greedy: bool,
    /// Softmax temperature for sampling (> 0).
    pub temperature: f64,
    /// Keep only the k most likely tokens; 0 = all.
    pub top_k: i64,
    /// Keep the smallest set of tokens whose probability reaches p; 1.0 = all.
    pub top_p: f64,
    /// > 1 discourages tokens already in the prompt or output (CTRL / HF convention).
    pub repetition_penalty: f64,
    /// Generation of a row stops after any of these ids (it is kept in the output).
    pub stop_tokens: Vec<i64>,
    /// Beams; 1 = no beam search. Beam search is deterministic (log-probabilities).
    pub num_beams: usize,
    /// Seed for sampling.
    pub seed: u64,
    /// No n-gram of this many tokens appears twice in one output (0 = off). Counted over the
    /// generated tokens only, so an output may still copy phrases of its prompt.
    pub no_repeat_ngram_size: usize,
    /// The prompt is one bidirectional block (prefix attention, as the task was trained);
    /// generated tokens stay causal.
    pub prefix_prompt: bool,
    /// The stop tokens are not chosen before this many new tokens (0 = any time), as
    /// `min_new_tokens` in Hugging Face `generate`.
    pub min_new_tokens: usize,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_new_tokens: 64,
            greedy: false,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            stop_tokens: Vec::new(),
            num_beams: 1,
            seed: 0,
            no_repeat_ngram_size: 0,
            prefix_prompt: false,
            min_new_tokens: 0,
        }
    }
}

impl GenerateConfig {
    fn check(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::Invalid(format!(
                "temperature must be > 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Invalid(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        if self.top_k < 0
            || self.num_beams == 0
            || !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0)
        {
            return Err(Error::Invalid(
                "top_k ≥ 0, num_beams ≥ 1 and repetition_penalty > 0 are required".into(),
            ));
        }
        Ok(())
    }
}

/// Applies the repetition penalty to `logits` `[vocab]` for the ids in `seen`.
fn penalize(logits: &Tensor, seen: &[i64], penalty: f64) -> Tensor {
    if penalty == 1.0 || seen.is_empty() {
        return logits.shallow_clone();
    }
    let mut uniq = seen.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let idx = Tensor::from_slice(&uniq).to_device(logits.device());
    let s = logits.gather(0, &idx, false);
    let s = (&s * penalty).where_self(&s.lt(0.0), &(&s / penalty));
    logits.scatter(0, &idx, &s)
}

/// The tokens that would complete an n-gram already in `out` (`n` tokens; 0 = none).
pub fn banned_ngram_tokens(out: &[i64], n: usize) -> Vec<i64> {
    if n == 0 || out.len() + 1 < n {
        return Vec::new();
    }
    let tail = &out[out.len() + 1 - n..];
    let mut banned: Vec<i64> = out
        .windows(n)
        .filter(|w| &w[..n - 1] == tail)
        .map(|w| w[n - 1])
        .collect();
    banned.sort_unstable();
    banned.dedup();
    banned
}

/// `logits` `[vocab]` with the tokens of [`banned_ngram_tokens`] at -inf.
fn ban_ngrams(logits: Tensor, out: &[i64], n: usize) -> Tensor {
    let banned = banned_ngram_tokens(out, n);
    if banned.is_empty() {
        return logits;
    }
    let idx = Tensor::from_slice(&banned).to_device(logits.device());
    logits.index_fill(0, &idx, f64::NEG_INFINITY)
}

/// `logits` `[vocab]` with the stop tokens at -inf while `out` is shorter than
/// `min_new_tokens`.
fn hold_stops(logits: Tensor, out: &[i64], cfg: &GenerateConfig) -> Tensor {
    if out.len() >= cfg.min_new_tokens || cfg.stop_tokens.is_empty() {
        return logits;
    }
    let idx = Tensor::from_slice(&cfg.stop_tokens).to_device(logits.device());
    logits.index_fill(0, &idx, f64::NEG_INFINITY)
}

/// Filters `logits` `[vocab]` by temperature, top-k and top-p (removed tokens get -inf).
fn filter(logits: &Tensor, cfg: &GenerateConfig) -> Tensor {
    let mut l = logits / cfg.temperature;
    let v = l.size()[0];
    if cfg.top_k > 0 && cfg.top_k < v {
        let (vals, _) = l.topk(cfg.top_k, 0, true, true);
        let kth = vals.get(cfg.top_k - 1);
        l = l.where_self(
            &l.ge_tensor(&kth),
            &Tensor::full_like(&l, f64::NEG_INFINITY),
        );
    }
    if cfg.top_p < 1.0 {
        let (sorted, order) = l.sort(0, true);
        let probs = sorted.softmax(0, Kind::Float);
        let before = probs.cumsum(0, Kind::Float) - &probs; // mass strictly before each token
        let drop = before.ge(cfg.top_p);
        let sorted = sorted.where_self(
            &drop.logical_not(),
            &Tensor::full_like(&sorted, f64::NEG_INFINITY),
        );
        l = Tensor::full_like(&l, f64::NEG_INFINITY).scatter(0, &order, &sorted);
    }
    l
}

/// Picks the next token of one row. Sampling draws from `rng` (the row's own, seeded by its
/// config), not libtorch's global generator, so it is reproducible whatever else runs.
fn choose(
    logits: &Tensor,
    seen: &[i64],
    out: &[i64],
    cfg: &GenerateConfig,
    rng: &mut impl rand::Rng,
) -> i64 {
    let l = hold_stops(
        ban_ngrams(
            penalize(logits, seen, cfg.repetition_penalty),
            out,
            cfg.no_repeat_ngram_size,
        ),
        out,
        cfg,
    );
    if cfg.greedy {
        return l.argmax(0, false).int64_value(&[]);
    }
    let probs: Vec<f64> =
        Vec::try_from(&filter(&l, cfg).softmax(0, Kind::Double)).unwrap_or_default();
    let u: f64 = rng.random();
    let mut acc = 0.0;
    let mut last = 0;
    for (i, p) in probs.iter().enumerate() {
        if *p > 0.0 {
            last = i;
            acc += p;
            if u < acc {
                return i as i64;
            }
        }
    }
    last as i64
}

/// Generates continuations of `prompts` (token ids); returns only the new tokens of each.
/// Prompts of different lengths are left-padded with `pad_id` and run as one batch.
pub fn generate(
    gpt: &Gpt,
    prompts: &[Vec<i64>],
    pad_id: i64,
    cfg: &GenerateConfig,
) -> Result<Vec<Vec<i64>>> {
    cfg.check()?;
    if cfg.num_beams > 1 {
        if prompts.iter().any(Vec::is_empty) {
            return Err(Error::Invalid(
                "every prompt needs at least one token".into(),
            ));
        }
        return prompts.iter().map(|p| beam_search(gpt, p, cfg)).collect();
    }
    // Row r samples from its own stream, seeded `cfg.seed + r`.
    let cfgs: Vec<GenerateConfig> = (0..prompts.len())
        .map(|r| GenerateConfig {
            seed: cfg.seed.wrapping_add(r as u64),
            ..cfg.clone()
        })
        .collect();
    let rows: Vec<RowRequest<'_>> = prompts
        .iter()
        .zip(&cfgs)
        .map(|(p, c)| RowRequest { prompt: p, cfg: c })
        .collect();
    generate_rows(gpt, &rows, pad_id, &mut |_, _| true)
}

/// One row of [`generate_rows`]: a prompt and how its tokens are chosen.
#[derive(Debug, Clone, Copy)]
pub struct RowRequest<'a> {
    /// The prompt's token ids (at least one).
    pub prompt: &'a [i64],
    /// The row's own settings: sampling, stop tokens, budget, seed, prefix prompt (beam
    /// search is not available per row).
    pub cfg: &'a GenerateConfig,
}

/// Decodes several rows in one batch, each with its own settings and random stream, so a
/// request decodes the same whether it is batched with others or alone (up to float
/// rounding). Prompts are left-padded with `pad_id`; a row's budget is its `max_new_tokens`,
/// cut where the batch would pass the context. `on_token(row, token)` is called for every
/// new token as it is chosen (streaming); returning `false` stops that row there (a client
/// that went away). Returns each row's new tokens.
pub fn generate_rows(
    gpt: &Gpt,
    rows: &[RowRequest<'_>],
    pad_id: i64,
    on_token: &mut dyn FnMut(usize, i64) -> bool,
) -> Result<Vec<Vec<i64>>> {
    let mut outs: Vec<Vec<i64>> = vec![Vec::new(); rows.len()];
    if rows.is_empty() {
        return Ok(outs);
    }
    gpt.with_compute_copies(|| {
        let mut dec = Decoder::new(gpt, pad_id);
        let new: Vec<(u64, &[i64], GenerateConfig)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u64, r.prompt, r.cfg.clone()))
            .collect();
        dec.admit(&new)?;
        while !dec.is_empty() {
            for (key, out) in dec.step(&mut |k, t| on_token(k as usize, t))? {
                outs[key as usize] = out;
            }
        }
        Ok(outs)
    })
}

/// One sequence of a [`Decoder`].
struct Active {
    key: u64,
    cfg: GenerateConfig,
    seen: Vec<i64>,
    out: Vec<i64>,
    rng: rand_chacha::ChaCha8Rng,
    budget: usize,
}

/// A running decoding batch that sequences join and leave at any step (continuous
/// batching): [`Decoder::admit`] prefills new prompts and adds their rows to the batch's
/// cache (left-padded to a common end, padding masked), [`Decoder::step`] chooses one token
/// for every row and drops the rows that finished. Each row keeps its own settings and
/// random stream, so it decodes as it would alone (up to float rounding).
pub struct Decoder<'g> {
    gpt: &'g Gpt,
    pad_id: i64,
    cache: KvCache,
    rows: Vec<Active>,
    /// Next-token logits of the rows, `[rows, vocab]`.
    logits: Option<Tensor>,
    head: crate::gpt::DecodeHead<'g>,
}

impl<'g> Decoder<'g> {
    /// An empty batch (the model's weights must not change while it lives).
    pub fn new(gpt: &'g Gpt, pad_id: i64) -> Self {
        Decoder {
            gpt,
            pad_id,
            cache: KvCache::new(),
            rows: Vec::new(),
            logits: None,
            head: gpt.decode_head(),
        }
    }

    /// Rows decoding.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is decoding.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The keys of the rows decoding.
    pub fn keys(&self) -> Vec<u64> {
        self.rows.iter().map(|r| r.key).collect()
    }

    /// Whether prompts of `prompt_len` tokens asking for `max_new` tokens fit the context
    /// beside the rows already decoding (every row advances one position per step).
    pub fn fits(&self, prompt_len: usize, max_new: usize) -> bool {
        let end = (self.cache.len() as usize).max(prompt_len);
        let left = self
            .rows
            .iter()
            .map(|r| r.budget - r.out.len())
            .chain(std::iter::once(max_new))
            .max()
            .unwrap_or(0);
        end + left <= self.gpt.config.block_size
    }

    /// Prefills `new` (`(key, prompt, settings)`; beam search is not available here) in one
    /// batch and adds the rows to the running batch. A row's budget is its `max_new_tokens`,
    /// cut where the context ends.
    pub fn admit(&mut self, new: &[(u64, &[i64], GenerateConfig)]) -> Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        for (_, p, cfg) in new {
            cfg.check()?;
            if p.is_empty() {
                return Err(Error::Invalid(
                    "every prompt needs at least one token".into(),
                ));
            }
        }
        let gpt = self.gpt;
        let dev = gpt.device();
        let b = new.len();
        let t = new.iter().map(|r| r.1.len()).max().unwrap_or(1);
        let end = (self.cache.len() as usize).max(t);
        let room = gpt.config.block_size.saturating_sub(end);
        let mut ids = vec![self.pad_id; b * t];
        let mut mask = vec![0i64; b * t];
        for (r, (_, p, _)) in new.iter().enumerate() {
            let off = t - p.len();
            ids[r * t + off..(r + 1) * t].copy_from_slice(p);
            mask[r * t + off..(r + 1) * t]
                .iter_mut()
                .for_each(|m| *m = 1);
        }
        let budgets: Vec<usize> = new.iter().map(|r| r.2.max_new_tokens.min(room)).collect();
        let reserve = budgets.iter().copied().max().unwrap_or(0);
        tch::no_grad(|| -> Result<()> {
            let ids_t = Tensor::from_slice(&ids)
                .view([b as i64, t as i64])
                .to_device(dev);
            let mask_t = Tensor::from_slice(&mask)
                .view([b as i64, t as i64])
                .to_device(dev);
            let padded = mask.contains(&0);
            let mut cache = KvCache::with_capacity(t + reserve);
            // Left padding: every prompt ends at position t, so a row's bidirectional block
            // ends there (or at 0: causal).
            let prefix = new.iter().any(|r| r.2.prefix_prompt).then(|| {
                let ends: Vec<i64> = new
                    .iter()
                    .map(|r| if r.2.prefix_prompt { t as i64 } else { 0 })
                    .collect();
                Tensor::from_slice(&ends).to_device(dev)
            });
            let hidden = gpt
                .forward_full(
                    &ids_t,
                    padded.then_some(&mask_t),
                    prefix.as_ref(),
                    Some(&mut cache),
                    false,
                    false,
                )?
                .hidden;
            let logits = self
                .head
                .logits(&hidden.narrow(1, t as i64 - 1, 1))
                .squeeze_dim(1);
            self.cache.join(&cache, reserve as i64 + 1);
            self.logits = Some(match self.logits.take() {
                Some(l) => Tensor::cat(&[l, logits], 0),
                None => logits,
            });
            Ok(())
        })?;
        for ((key, p, cfg), budget) in new.iter().zip(budgets) {
            self.rows.push(Active {
                key: *key,
                rng: <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(cfg.seed),
                cfg: cfg.clone(),
                seen: p.to_vec(),
                out: Vec::new(),
                budget,
            });
        }
        Ok(())
    }

    /// Chooses the next token of every row (calling `on_token(key, token)`; `false` stops
    /// that row), runs the rows that go on one position further, and returns the rows that
    /// finished (stop token, budget, or stopped by the callback) with their new tokens.
    pub fn step(
        &mut self,
        on_token: &mut dyn FnMut(u64, i64) -> bool,
    ) -> Result<Vec<(u64, Vec<i64>)>> {
        let Some(logits) = self.logits.take() else {
            return Ok(Vec::new());
        };
        let mut next = Vec::with_capacity(self.rows.len());
        let mut keep = Vec::with_capacity(self.rows.len());
        for (r, row) in self.rows.iter_mut().enumerate() {
            let tok = if row.budget == 0 {
                None
            } else {
                Some(choose(
                    &logits.get(r as i64),
                    &row.seen,
                    &row.out,
                    &row.cfg,
                    &mut row.rng,
                ))
            };
            let go_on = match tok {
                Some(tok) => {
                    row.out.push(tok);
                    row.seen.push(tok);
                    on_token(row.key, tok)
                        && !row.cfg.stop_tokens.contains(&tok)
                        && row.out.len() < row.budget
                }
                None => false,
            };
            keep.push(go_on);
            next.push(tok.unwrap_or(self.pad_id));
        }
        let mut done = Vec::new();
        let mut idx = Vec::new();
        let mut toks = Vec::new();
        let mut rest = Vec::new();
        for (r, (row, k)) in std::mem::take(&mut self.rows)
            .into_iter()
            .zip(&keep)
            .enumerate()
        {
            if *k {
                idx.push(r as i64);
                toks.push(next[r]);
                rest.push(row);
            } else {
                done.push((row.key, row.out));
            }
        }
        self.rows = rest;
        if self.rows.is_empty() {
            self.cache = KvCache::new();
            return Ok(done);
        }
        let dev = self.gpt.device();
        tch::no_grad(|| -> Result<()> {
            if idx.len() < keep.len() {
                self.cache
                    .select_rows(&Tensor::from_slice(&idx).to_device(dev));
            }
            let step = Tensor::from_slice(&toks)
                .view([toks.len() as i64, 1])
                .to_device(dev);
            let hidden = self
                .gpt
                .forward(&step, None, Some(&mut self.cache), false)?
                .hidden;
            self.logits = Some(self.head.logits(&hidden).squeeze_dim(1));
            Ok(())
        })?;
        Ok(done)
    }
}

/// Beam search for one prompt: keeps `num_beams` hypotheses by summed log-probability and
/// returns the finished (or, at the budget, alive) one with the best length-normalized score.
fn beam_search(gpt: &Gpt, prompt: &[i64], cfg: &GenerateConfig) -> Result<Vec<i64>> {
    gpt.with_compute_copies(|| {
        tch::no_grad(|| {
            let dev = gpt.device();
            let k = cfg.num_beams as i64;
            let budget = cfg
                .max_new_tokens
                .min(gpt.config.block_size.saturating_sub(prompt.len()));
            let mut cache = KvCache::with_capacity(prompt.len() + budget);
            let head = gpt.decode_head();
            let ids = Tensor::from_slice(prompt).view([1, -1]).to_device(dev);
            let prefix = cfg
                .prefix_prompt
                .then(|| Tensor::from_slice(&[prompt.len() as i64]).to_device(dev));
            let hidden = gpt
                .forward_full(&ids, None, prefix.as_ref(), Some(&mut cache), false, false)?
                .hidden;
            let last = hidden.narrow(1, prompt.len() as i64 - 1, 1);
            let mut logp = head
                .logits(&last)
                .squeeze_dim(1)
                .log_softmax(-1, Kind::Float); // [1, V]
            let mut beams: Vec<(Vec<i64>, f64)> = vec![(Vec::new(), 0.0)];
            let mut finished: Vec<(Vec<i64>, f64)> = Vec::new();
            let norm = |toks: &[i64], s: f64| s / (toks.len().max(1) as f64);
            for _ in 0..budget {
                let v = logp.size()[1];
                let scores = logp.copy();
                for (i, (toks, s)) in beams.iter().enumerate() {
                    let mut row = hold_stops(
                        ban_ngrams(
                            penalize(
                                &scores.get(i as i64),
                                &[prompt, toks].concat(),
                                cfg.repetition_penalty,
                            ),
                            toks,
                            cfg.no_repeat_ngram_size,
                        ),
                        toks,
                        cfg,
                    );
                    row += *s;
                    scores.get(i as i64).copy_(&row);
                }
                let (top, idx) = scores.view([-1]).topk(2 * k, 0, true, true);
                let top: Vec<f64> = Vec::try_from(&top)?;
                let idx: Vec<i64> = Vec::try_from(&idx)?;
                let mut next: Vec<(Vec<i64>, f64)> = Vec::new();
                let mut rows = Vec::new();
                let mut toks_next = Vec::new();
                for (score, flat) in top.into_iter().zip(idx) {
                    let (beam, tok) = (flat / v, flat % v);
                    let mut toks = beams[beam as usize].0.clone();
                    toks.push(tok);
                    if cfg.stop_tokens.contains(&tok) {
                        finished.push((toks, score));
                    } else if (next.len() as i64) < k {
                        next.push((toks, score));
                        rows.push(beam);
                        toks_next.push(tok);
                    }
                }
                let best_alive = next
                    .iter()
                    .map(|(t, s)| norm(t, *s))
                    .fold(f64::NEG_INFINITY, f64::max);
                let best_done = finished
                    .iter()
                    .map(|(t, s)| norm(t, *s))
                    .fold(f64::NEG_INFINITY, f64::max);
                if next.is_empty() || (finished.len() as i64 >= k && best_done >= best_alive) {
                    beams = next;
                    break;
                }
                cache.select_rows(&Tensor::from_slice(&rows).to_device(dev));
                let step = Tensor::from_slice(&toks_next).view([-1, 1]).to_device(dev);
                let hidden = gpt.forward(&step, None, Some(&mut cache), false)?.hidden;
                logp = head
                    .logits(&hidden)
                    .squeeze_dim(1)
                    .log_softmax(-1, Kind::Float);
                beams = next;
            }
            // `beams` holds the hypotheses still alive after the last step.
            finished.extend(beams);
            Ok(finished
                .into_iter()
                .max_by(|a, b| norm(&a.0, a.1).total_cmp(&norm(&b.0, b.1)))
                .map(|(t, _)| t)
                .unwrap_or_default())
        })
    })
}

/// Decode speed: tokens per second with and without the KV cache for a prompt of one token
/// and `n` new tokens (greedy), on random weights. Returns (cached, recompute) tokens/s.
pub fn decode_speed(gpt: &Gpt, n: usize) -> Result<(f64, f64)> {
    let dev = gpt.device();
    let n = n.min(gpt.config.block_size - 1);
    let cfg = GenerateConfig {
        max_new_tokens: n,
        greedy: true,
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let got = generate(gpt, &[vec![0]], 0, &cfg)?;
    let cached = got[0].len() as f64 / start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    gpt.with_compute_copies(|| {
        tch::no_grad(|| -> Result<()> {
            let head = gpt.decode_head();
            let mut ids = vec![0i64];
            for _ in 0..n {
                let t = Tensor::from_slice(&ids).view([1, -1]).to_device(dev);
                let h = gpt.forward(&t, None, None, false)?.hidden;
                let l = head.logits(&h.narrow(1, ids.len() as i64 - 1, 1));
                ids.push(l.argmax(-1, false).int64_value(&[0, 0]));
            }
            Ok(())
        })
    })?;
    let recompute = n as f64 / start.elapsed().as_secs_f64();
    Ok((cached, recompute))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(l: &Tensor) -> Vec<f64> {
        Vec::try_from(&l.softmax(0, Kind::Float).to_kind(Kind::Double)).unwrap()
    }

    #[test]
    fn top_k_and_top_p_keep_the_right_tokens() {
        // Probabilities 0.5, 0.3, 0.15, 0.05.
        let l = Tensor::from_slice(&[0.5f32, 0.3, 0.15, 0.05]).log();
        let cfg = |k: i64, p: f64| GenerateConfig {
            top_k: k,
            top_p: p,
            ..Default::default()
        };
        let kept = |c: GenerateConfig| probs(&filter(&l, &c)).iter().filter(|&&p| p > 0.0).count();
        assert_eq!(kept(cfg(2, 1.0)), 2);
        assert_eq!(kept(cfg(0, 0.5)), 1);
        assert_eq!(kept(cfg(0, 0.79)), 2);
        assert_eq!(kept(cfg(0, 0.81)), 3);
        assert_eq!(kept(cfg(0, 1.0)), 4);
        let p = probs(&filter(&l, &cfg(0, 0.79)));
        assert!((p[0] - 0.625).abs() < 1e-5, "renormalized: {p:?}");
    }

    #[test]
    fn banned_ngrams_are_the_ones_that_would_repeat() {
        // "a b c a b" with n = 3: the tail "a b" was followed by "c".
        assert_eq!(banned_ngram_tokens(&[1, 2, 3, 1, 2], 3), vec![3]);
        assert_eq!(banned_ngram_tokens(&[1, 2, 3, 1, 2], 0), Vec::<i64>::new());
        assert_eq!(banned_ngram_tokens(&[1, 2, 1], 1), vec![1, 2]);
        assert_eq!(banned_ngram_tokens(&[5, 5], 2), vec![5]);
        assert_eq!(banned_ngram_tokens(&[5], 3), Vec::<i64>::new());
        let l = ban_ngrams(
            Tensor::zeros([6], (Kind::Float, tch::Device::Cpu)),
            &[1, 2, 3, 1, 2],
            3,
        );
        let v: Vec<f32> = Vec::try_from(&l).unwrap();
        assert!(v[3].is_infinite() && v.iter().filter(|x| x.is_finite()).count() == 5);
    }

    #[test]
    fn repetition_penalty_lowers_seen_tokens_either_sign() {
        let l = Tensor::from_slice(&[2.0f32, -2.0, 1.0]);
        let out: Vec<f32> = Vec::try_from(&penalize(&l, &[0, 1, 1], 2.0)).unwrap();
        assert_eq!(out, vec![1.0, -4.0, 1.0]);
    }
}
