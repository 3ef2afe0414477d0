//! Batch-invariant products: inside `batch_invariant`, a sequence's output of a
//! long-reduction bf16 `Linear` is the same bit for bit alone and inside a batch (outside,
//! libtorch's product rounds it differently for some row counts on this 2-core CPU).
use mtgpt_core::Precision;
use mtgpt_model::{Linear, batch_invariant, is_batch_invariant};
use tch::{Device, Kind, Tensor, nn};

#[test]
fn a_sequences_result_does_not_depend_on_its_batch_inside_the_scope() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    // The MLP output projection of the demo's trunk: a reduction over 1024 terms.
    let lin = Linear::new(vs.root() / "proj", 1024, 256, 0.02);
    // Sequence lengths at which the plain product was seen to vary with the row count.
    for t in [16, 112] {
        let x = Tensor::randn([32, t, 1024], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let first = |rows: i64| {
            lin.forward(&x.narrow(0, 0, rows), Precision::Bf16)
                .get(0)
                .to_kind(Kind::Float)
        };
        assert!(!is_batch_invariant());
        let alone = batch_invariant(|| {
            assert!(is_batch_invariant());
            let alone = first(1);
            for rows in [2, 3, 7, 16, 32] {
                assert!(first(rows).equal(&alone), "t = {t}, {rows} rows");
            }
            alone
        });
        assert!(!is_batch_invariant(), "the scope restores the setting");
        // The chunked sum stays within bf16 rounding of the one product.
        let diff = (first(1) - alone).abs().max().double_value(&[]);
        assert!(diff < 0.05, "t = {t}: {diff}");
    }
}

#[test]
fn the_scope_is_restored_after_a_panic() {
    let caught = std::panic::catch_unwind(|| batch_invariant(|| panic!("inside")));
    assert!(caught.is_err());
    assert!(!is_batch_invariant());
}
