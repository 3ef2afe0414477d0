//! Batch-invariant matrix products: inside [`batch_invariant`], a row's result does not
//! depend on how many other rows share its product.
//!
//! libtorch's bf16 product (oneDNN) picks its blocking and threading by the shape of the
//! whole product, so for a long reduction the same row can round differently alone and
//! beside other rows. Measured on the demo's widths with two threads: the MLP's output
//! projection (1024 terms) gave a sequence other values at some row counts (16-token rows:
//! with 3 and 7 rows; 112-token rows: with any number of rows but one), while every
//! reduction of 256 terms gave the same bits at every row count tried. Inside the scope,
//! [`crate::Linear`] and the adapters reduce over at most [`INVARIANT_CHUNK`] terms per
//! product and add the partial products in a fixed order, in fp32, so a row's output no
//! longer depends on its batch-mates. fp32 products are chunked the same way but are not
//! claimed invariant (not every cause there is known), and int8 layers (`mtgpt compress`)
//! keep their own kernels.
use std::cell::Cell;
use tch::{Kind, Tensor};

/// The longest reduction one product runs inside [`batch_invariant`].
pub const INVARIANT_CHUNK: i64 = 256;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with batch-invariant products on this thread (tch tensors stay on one thread);
/// the previous setting is restored afterwards, also when `f` panics.
pub fn batch_invariant<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ON.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(ON.with(|c| c.replace(true)));
    f()
}

/// Whether this thread is inside [`batch_invariant`].
pub fn is_batch_invariant() -> bool {
    ON.with(Cell::get)
}

/// `x @ w` (`[.., k]` × `[k, n]`, same dtype), reduced in chunks of [`INVARIANT_CHUNK`] when
/// `k` is longer and this thread is inside [`batch_invariant`]; the chunks' products are
/// summed in order, in fp32, and the sum cast back to `x`'s dtype. Otherwise one product.
pub(crate) fn matmul(x: &Tensor, w: &Tensor) -> Tensor {
    let last = x.dim() as i64 - 1;
    chunked(x, w.size()[0], |s, l| {
        x.narrow(last, s, l).matmul(&w.narrow(0, s, l))
    })
}

/// `x.bmm(w)` (`[b, t, k]` × `[b, k, n]`) as [`matmul`] does it.
pub(crate) fn bmm(x: &Tensor, w: &Tensor) -> Tensor {
    chunked(x, w.size()[1], |s, l| {
        x.narrow(2, s, l).bmm(&w.narrow(1, s, l))
    })
}

/// `part(0, k)` outside the scope or for `k` ≤ [`INVARIANT_CHUNK`]; otherwise the sum, in
/// order and in fp32, of `part(start, len)` over consecutive chunks, cast to `x`'s dtype.
fn chunked(x: &Tensor, k: i64, part: impl Fn(i64, i64) -> Tensor) -> Tensor {
    if !is_batch_invariant() || k <= INVARIANT_CHUNK {
        return part(0, k);
    }
    let mut acc = part(0, INVARIANT_CHUNK).to_kind(Kind::Float);
    let mut start = INVARIANT_CHUNK;
    while start < k {
        let len = INVARIANT_CHUNK.min(k - start);
        acc += part(start, len).to_kind(Kind::Float);
        start += len;
    }
    acc.to_kind(x.kind())
}
