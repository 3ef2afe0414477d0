//! Training batches per task, deterministic and resumable: every random choice is a function
//! of (seed, task, counter), so a stream's whole state is two numbers.
use crate::format::Formatted;
use rand::Rng as _;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Where a stream is (saved in checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamState {
    /// Passes over the data completed (labelled tasks) or windows drawn (LM).
    pub epoch: u64,
    /// Position in the current pass.
    pub cursor: usize,
}

/// The source of one task's training sequences.
#[derive(Debug)]
pub enum TaskStream {
    /// Formatted examples, reshuffled every epoch.
    Examples {
        /// All formatted training sequences.
        items: Vec<Formatted>,
        /// The order of the current epoch.
        order: Vec<usize>,
        /// Position.
        state: StreamState,
        /// Stream seed.
        seed: u64,
    },
    /// A token stream cut into random windows, each after the task token.
    Tokens {
        /// The tokens.
        tokens: TokenBuf,
        /// Tokens per window (the task token comes on top).
        window: usize,
        /// The task token id.
        task_id: i64,
        /// Windows drawn so far.
        state: StreamState,
        /// Stream seed.
        seed: u64,
    },
}

/// LM tokens: in memory, or a token file mapped into memory, so a corpus far larger than RAM
/// trains with only the pages the sampled windows touch resident.
pub enum TokenBuf {
    /// Tokens in memory.
    Owned(Vec<u32>),
    /// A file of little-endian `u32` tokens, memory-mapped.
    Mapped(memmap2::Mmap),
}

impl std::fmt::Debug for TokenBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenBuf::Owned(v) => write!(f, "TokenBuf::Owned({} tokens)", v.len()),
            TokenBuf::Mapped(m) => write!(f, "TokenBuf::Mapped({} tokens)", m.len() / 4),
        }
    }
}

impl TokenBuf {
    /// Maps the token file `path` (little-endian `u32`s, as `prep` writes them); on a
    /// big-endian machine, or for an empty file, it is read into memory instead. A length that
    /// is not a whole number of tokens is an error naming the file.
    pub fn map(path: &std::path::Path) -> crate::error::Result<Self> {
        let io = |e| crate::error::Error::Text(mtgpt_core::Error::io(path, e).into());
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if cfg!(target_endian = "big") || len % 4 != 0 || len == 0 {
            return Ok(TokenBuf::Owned(mtgpt_text::prep::read_token_file(path)?));
        }
        // SAFETY: prep writes a token file beside its final name and renames it over, so a
        // new preprocessing replaces the inode instead of changing this mapped one; nothing in
        // mtgpt truncates or writes a token file in place. (Another program that does would
        // break the mapping, as with any memory-mapped input.)
        let map = unsafe { memmap2::Mmap::map(&file).map_err(io)? };
        Ok(TokenBuf::Mapped(map))
    }

    /// The tokens.
    pub fn as_slice(&self) -> &[u32] {
        match self {
            TokenBuf::Owned(v) => v,
            TokenBuf::Mapped(m) => {
                let bytes: &[u8] = m;
                // SAFETY: a mapping starts on a page boundary (so is u32-aligned), its length
                // is a multiple of 4 (checked in `map`), and u32 has no invalid bit patterns;
                // the machine is little-endian, like the file.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<u32>(), bytes.len() / 4) }
            }
        }
    }
}

fn order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut mtgpt_core::seed::rng_for(
        seed,
        &format!("epoch/{epoch}"),
    ));
    idx
}

impl TaskStream {
    /// A stream over formatted examples.
    pub fn examples(items: Vec<Formatted>, seed: u64) -> Self {
        let order = order(items.len(), seed, 0);
        TaskStream::Examples {
            items,
            order,
            state: StreamState::default(),
            seed,
        }
    }

    /// A stream of windows over LM tokens.
    pub fn tokens(tokens: Vec<u32>, window: usize, task_id: i64, seed: u64) -> Self {
        Self::token_buf(TokenBuf::Owned(tokens), window, task_id, seed)
    }

    /// A stream of windows over LM tokens in memory or mapped from a file.
    pub fn token_buf(tokens: TokenBuf, window: usize, task_id: i64, seed: u64) -> Self {
        TaskStream::Tokens {
            tokens,
            window: window.max(1),
            task_id,
            state: StreamState::default(),
            seed,
        }
    }

    /// Training sequences available (examples, or token windows that fit).
    pub fn len(&self) -> usize {
        match self {
            TaskStream::Examples { items, .. } => items.len(),
            TaskStream::Tokens { tokens, window, .. } => tokens.as_slice().len() / window,
        }
    }

    /// Whether there is nothing to train on.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends sequences to an example stream (they join at the next [`restore`](Self::restore)
    /// or epoch). Token streams ignore this.
    pub fn extend(&mut self, more: Vec<Formatted>) {
        if let TaskStream::Examples { items, .. } = self {
            items.extend(more);
        }
    }

    /// The current position.
    pub fn state(&self) -> StreamState {
        match self {
            TaskStream::Examples { state, .. } | TaskStream::Tokens { state, .. } => *state,
        }
    }

    /// Moves to a saved position.
    pub fn restore(&mut self, saved: StreamState) {
        match self {
            TaskStream::Examples {
                items,
                order: o,
                state,
                seed,
            } => {
                *o = order(items.len(), *seed, saved.epoch);
                *state = saved;
            }
            TaskStream::Tokens { state, .. } => *state = saved,
        }
    }

    /// The length in tokens of the `j`-th sequence [`next_batch`](Self::next_batch) would
    /// give from here (0 for an empty stream), without moving.
    pub fn peek_len(&self, j: usize) -> usize {
        match self {
            TaskStream::Examples {
                items,
                order: o,
                state,
                seed,
            } => {
                if items.is_empty() {
                    return 0;
                }
                let (mut at, mut epoch) = (state.cursor + j, state.epoch);
                if at < o.len() {
                    return items[o[at]].ids.len();
                }
                at -= o.len();
                epoch += 1;
                while at >= items.len() {
                    at -= items.len();
                    epoch += 1;
                }
                items[order(items.len(), *seed, epoch)[at]].ids.len()
            }
            TaskStream::Tokens { tokens, window, .. } => {
                let w = (*window).min(tokens.as_slice().len());
                if w == 0 { 0 } else { w + 1 }
            }
        }
    }

    /// The next `n` sequences.
    pub fn next_batch(&mut self, n: usize) -> Vec<Formatted> {
        let mut out = Vec::with_capacity(n);
        match self {
            TaskStream::Examples {
                items,
                order: o,
                state,
                seed,
            } => {
                if items.is_empty() {
                    return out;
                }
                while out.len() < n {
                    if state.cursor >= o.len() {
                        state.epoch += 1;
                        state.cursor = 0;
                        *o = order(items.len(), *seed, state.epoch);
                    }
                    out.push(items[o[state.cursor]].clone());
                    state.cursor += 1;
                }
            }
            TaskStream::Tokens {
                tokens,
                window,
                task_id,
                state,
                seed,
            } => {
                let tokens = tokens.as_slice();
                let w = (*window).min(tokens.len());
                if w == 0 {
                    return out;
                }
                for _ in 0..n {
                    let mut rng =
                        mtgpt_core::seed::rng_for(*seed, &format!("window/{}", state.epoch));
                    let start = rng.random_range(0..=tokens.len() - w);
                    state.epoch += 1;
                    out.push(Formatted::lm_window(*task_id, &tokens[start..start + w]));
                }
            }
        }
        out
    }

    /// Passes over the data so far (fractional), for the log.
    pub fn epochs(&self) -> f64 {
        match self {
            TaskStream::Examples { items, state, .. } => {
                state.epoch as f64 + state.cursor as f64 / items.len().max(1) as f64
            }
            TaskStream::Tokens {
                tokens,
                window,
                state,
                ..
            } => (state.epoch as usize * window) as f64 / tokens.as_slice().len().max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Target;

    fn items(n: usize) -> Vec<Formatted> {
        (0..n)
            .map(|i| Formatted {
                ids: vec![i as i64],
                target: Target::Class(0),
                input_len: 1,
            })
            .collect()
    }

    #[test]
    fn epochs_cover_every_example_once_and_reshuffle() {
        let mut s = TaskStream::examples(items(10), 3);
        let first: Vec<i64> = s.next_batch(10).iter().map(|f| f.ids[0]).collect();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        let second: Vec<i64> = s.next_batch(10).iter().map(|f| f.ids[0]).collect();
        assert_ne!(first, second, "a new order each epoch");
        assert!((s.epochs() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn restore_continues_exactly() {
        for mut s in [
            TaskStream::examples(items(7), 5),
            TaskStream::tokens((0..100).collect(), 8, 99, 5),
        ] {
            s.next_batch(5);
            let saved = s.state();
            let want = s.next_batch(9);
            s.next_batch(3);
            s.restore(saved);
            assert_eq!(s.next_batch(9), want);
        }
    }

    #[test]
    fn peek_len_sees_the_coming_sequences_across_epochs() {
        let items: Vec<Formatted> = (1..=5)
            .map(|i| Formatted {
                ids: vec![0; i],
                target: Target::Class(0),
                input_len: i,
            })
            .collect();
        let mut s = TaskStream::examples(items, 9);
        s.next_batch(3);
        let peeked: Vec<usize> = (0..12).map(|j| s.peek_len(j)).collect();
        let got: Vec<usize> = s.next_batch(12).iter().map(|f| f.ids.len()).collect();
        assert_eq!(peeked, got);
        let t = TaskStream::tokens((0..50).collect(), 8, 7, 1);
        assert_eq!(t.peek_len(3), 9);
    }

    #[test]
    fn token_windows_start_with_the_task_token() {
        let mut s = TaskStream::tokens((0..50).collect(), 8, 7, 1);
        for f in s.next_batch(20) {
            assert_eq!(f.ids.len(), 9);
            assert_eq!(f.ids[0], 7);
            assert!(
                f.ids[1..].windows(2).all(|w| w[1] == w[0] + 1),
                "contiguous tokens"
            );
            let Target::Tokens(t) = &f.target else {
                panic!()
            };
            assert_eq!(&t[..8], &f.ids[1..]);
        }
    }
}
