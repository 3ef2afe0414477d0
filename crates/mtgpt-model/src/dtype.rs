//! The compute dtype of a precision, and casting to it.
use mtgpt_core::Precision;
use tch::{Kind, Tensor};

/// The compute dtype of a precision.
pub fn compute_kind(precision: Precision) -> Kind {
    match precision {
        Precision::Fp32 => Kind::Float,
        Precision::Bf16 => Kind::BFloat16,
    }
}

/// Casts to the compute dtype of `precision` (no-op when already there).
pub(crate) fn compute(x: &Tensor, precision: Precision) -> Tensor {
    let kind = compute_kind(precision);
    if x.kind() == kind {
        x.shallow_clone()
    } else {
        x.to_kind(kind)
    }
}
