//! Sequence packing: the rows of several padded [`Batch`]es laid end to end into fewer, fuller
//! rows, each sequence attending only to itself, with its positions restarting at 0.
//!
//! The demo's batches are mostly padding (a classification batch is padded to its longest
//! review, a couplet is 25 tokens in a 128-token context); packing puts the same examples
//! into rows of up to `cols` tokens, so the trunk computes on real tokens. The heads then read
//! their own examples' hidden states back in the batch's own layout
//! ([`Packed::unpack_index`]), so every loss is the one of the unpacked batch.
use crate::error::{Error, Result};
use mtgpt_core::Batch;

/// Where the real tokens of every row of a set of batches went.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// Packed rows.
    pub rows: usize,
    /// Tokens per packed row (the longest filled row).
    pub cols: usize,
    /// Token ids `[rows, cols]`, padding 0.
    pub ids: Vec<i64>,
    /// Sequence number of each token within its row, from 1; 0 = padding.
    pub segment: Vec<i64>,
    /// Position of each token within its own sequence.
    pub position: Vec<i64>,
    /// Per token, the end of its sequence's bidirectional block (0 = causal).
    pub prefix_end: Vec<i64>,
    /// Per batch, per row of it: `(packed row, first column)`.
    pub place: Vec<Vec<(usize, usize)>>,
    /// Real tokens packed.
    pub tokens: usize,
}

/// Packs the rows of `batches` into rows of at most `cols` tokens, first fit by decreasing
/// length (ties in input order, so a packing is a function of its input); sequences of any
/// batch share rows. `prefix[g]` says whether batch `g`'s input part attends both ways.
pub fn pack(batches: &[Batch], cols: usize, prefix: &[bool]) -> Result<Packed> {
    if prefix.len() != batches.len() {
        return Err(Error::Invalid("pack: one prefix flag per batch".into()));
    }
    let mut items: Vec<(usize, usize, usize)> = Vec::new();
    for (g, batch) in batches.iter().enumerate() {
        batch.check_shapes().map_err(Error::Invalid)?;
        for r in 0..batch.batch_size {
            let len = batch.row_len(r);
            if len > cols {
                return Err(Error::Invalid(format!(
                    "task `{}`: a sequence of {len} tokens does not fit packed rows of {cols}",
                    batch.task
                )));
            }
            items.push((g, r, len));
        }
    }
    items.sort_by_key(|x| std::cmp::Reverse(x.2));
    // Used tokens of every open row.
    let mut open: Vec<usize> = Vec::new();
    let mut place: Vec<Vec<(usize, usize)>> =
        batches.iter().map(|b| vec![(0, 0); b.batch_size]).collect();
    for &(g, r, len) in &items {
        let row = match open.iter().position(|&used| used + len <= cols) {
            Some(i) => i,
            None => {
                open.push(0);
                open.len() - 1
            }
        };
        place[g][r] = (row, open[row]);
        open[row] += len.max(1);
    }
    let rows = open.len().max(1);
    let width = open.iter().copied().max().unwrap_or(1).max(1);
    let n = rows * width;
    let (mut ids, mut segment, mut position, mut prefix_end) =
        (vec![0; n], vec![0; n], vec![0; n], vec![0; n]);
    let mut count = vec![0i64; rows];
    let mut tokens = 0;
    // Sequences are numbered in the order of their columns.
    let mut order: Vec<(usize, usize, usize, usize)> = Vec::new();
    for (g, rows_of) in place.iter().enumerate() {
        for (r, &(row, col)) in rows_of.iter().enumerate() {
            order.push((row, col, g, r));
        }
    }
    order.sort();
    for (row, col, g, r) in order {
        let batch = &batches[g];
        let len = batch.row_len(r);
        count[row] += 1;
        let src = r * batch.seq_len;
        let pfx = if prefix[g] {
            batch.input_len[r].min(len) as i64
        } else {
            0
        };
        for p in 0..len {
            let at = row * width + col + p;
            ids[at] = batch.input_ids[src + p];
            segment[at] = count[row];
            position[at] = p as i64;
            prefix_end[at] = pfx;
        }
        tokens += len;
    }
    Ok(Packed {
        rows,
        cols: width,
        ids,
        segment,
        position,
        prefix_end,
        place,
        tokens,
    })
}

impl Packed {
    /// For batch `g`, the flat index (into `[rows · cols]`) of each of its positions, row
    /// major `[batch_size, seq_len]`: its hidden states read back in the batch's own layout.
    /// Padding positions point at their row's first token (heads never read them).
    pub fn unpack_index(&self, g: usize, batch: &Batch) -> Vec<i64> {
        let t = batch.seq_len;
        let mut out = Vec::with_capacity(batch.batch_size * t);
        for (r, &(row, col)) in self.place[g].iter().enumerate() {
            let len = batch.row_len(r);
            let base = row * self.cols + col;
            for p in 0..t {
                out.push((base + if p < len { p } else { 0 }) as i64);
            }
        }
        out
    }

    /// Real tokens over all token slots of the packed rows.
    pub fn useful_fraction(&self) -> f64 {
        self.tokens as f64 / (self.rows * self.cols).max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtgpt_core::Targets;

    fn batch(task: &str, lens: &[usize], t: usize) -> Batch {
        let b = lens.len();
        let mut ids = vec![0i64; b * t];
        let mut mask = vec![0u8; b * t];
        for (r, &l) in lens.iter().enumerate() {
            for p in 0..l {
                ids[r * t + p] = (100 * r + p + 1) as i64;
                mask[r * t + p] = 1;
            }
        }
        Batch {
            task: task.into(),
            batch_size: b,
            seq_len: t,
            input_ids: ids,
            attention_mask: mask,
            targets: Targets::Classes(vec![0; b]),
            input_len: lens.iter().map(|l| l / 2).collect(),
            prefix_attention: false,
            lm_aux_weight: 0.0,
        }
    }

    #[test]
    fn every_token_lands_once_with_restarting_positions() {
        let a = batch("a", &[5, 3, 8], 8);
        let b = batch("b", &[2, 6], 6);
        let p = pack(&[a.clone(), b.clone()], 10, &[false, true]).unwrap();
        assert_eq!(p.tokens, 24);
        assert_eq!(p.rows, 3, "8+2, 6+3, 5 in rows of 10");
        for (g, bt) in [&a, &b].into_iter().enumerate() {
            let idx = p.unpack_index(g, bt);
            for r in 0..bt.batch_size {
                let len = bt.row_len(r);
                for q in 0..len {
                    let at = idx[r * bt.seq_len + q] as usize;
                    assert_eq!(p.ids[at], bt.input_ids[r * bt.seq_len + q]);
                    assert_eq!(p.position[at], q as i64);
                    let want = if g == 1 { bt.input_len[r] as i64 } else { 0 };
                    assert_eq!(p.prefix_end[at], want);
                }
                // One sequence number for the whole example, unique within its row.
                let segs: Vec<i64> = (0..len)
                    .map(|q| p.segment[idx[r * bt.seq_len + q] as usize])
                    .collect();
                assert!(segs.iter().all(|&s| s == segs[0] && s > 0));
            }
        }
        assert!(p.useful_fraction() > 0.75);
    }

    #[test]
    fn batches_share_rows_and_too_long_is_an_error() {
        let a = batch("a", &[2, 2], 2);
        let b = batch("b", &[2, 2], 2);
        let p = pack(&[a.clone(), b.clone()], 8, &[false, false]).unwrap();
        assert_eq!(p.rows, 1);
        let err = pack(&[batch("long", &[9], 9)], 8, &[false]).unwrap_err();
        assert!(err.to_string().contains("`long`"), "{err}");
    }
}
