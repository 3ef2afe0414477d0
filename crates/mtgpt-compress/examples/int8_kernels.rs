//! Times libtorch's int8 matmul kernels against fp32 and bf16 on the trunk's shapes:
//! `cargo run --release -p mtgpt-compress --example int8_kernels`.
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn time(label: &str, reps: usize, f: impl Fn() -> Tensor) -> f64 {
    for _ in 0..3 {
        let _ = f();
    }
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            let _ = f();
            t0.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    println!("{label:<44} {med:>10.1} µs");
    med
}

fn main() {
    tch::manual_seed(0);
    for (m, k, n) in [
        (1i64, 256i64, 768i64),
        (1, 256, 8000),
        (1, 1024, 256),
        (16, 256, 768),
        (2048, 256, 768),
        (2048, 256, 8000),
    ] {
        println!("M={m} K={k} N={n}");
        let x = Tensor::randn([m, k], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([n, k], (Kind::Float, Device::Cpu)) * 0.02;
        let b = Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let amax = w.abs().amax([1i64].as_slice(), true);
        let s = &amax / 127.0;
        let wq = (&w / &s).round().clamp(-127.0, 127.0).to_kind(Kind::Int8);
        let s1 = s.squeeze_dim(1);
        let s16 = s1.to_kind(Kind::BFloat16);
        let xb = x.to_kind(Kind::BFloat16);
        let wb = w.to_kind(Kind::BFloat16);
        let wqt = wq.tr().contiguous();
        let reps = if m > 100 { 20 } else { 200 };
        let base = time("fp32 linear", reps, || x.linear(&w, Some(&b)));
        let a = time("int8pack_mm fp32 x", reps, || {
            x.internal_weight_int8pack_mm(&wq, &s1)
        });
        let c = time("int8pack_mm bf16 x (cast in and out)", reps, || {
            x.to_kind(Kind::BFloat16)
                .internal_weight_int8pack_mm(&wq, &s16)
                .to_kind(Kind::Float)
        });
        let c2 = time("int8pack_mm bf16 x (no casts)", reps, || {
            xb.internal_weight_int8pack_mm(&wq, &s16)
        });
        let d = time("bf16 linear (no casts)", reps, || {
            xb.linear(&wb, None::<Tensor>)
        });
        let e = time("dyn-quant x + _int_mm + rescale", reps, || {
            let sx = x.abs().amax([1i64].as_slice(), true).clamp_min(1e-8) / 127.0;
            let xq = (&x / &sx).round().to_kind(Kind::Int8);
            xq.internal_int_mm(&wqt).to_kind(Kind::Float) * sx * &s1
        });
        println!(
            "  ratios vs fp32: pack-fp32 {:.2} pack-bf16 {:.2} pack-bf16-nocast {:.2} bf16 {:.2} int_mm {:.2}",
            base / a,
            base / c,
            base / c2,
            base / d,
            base / e
        );
    }
}
