//! The trunk's contracts on tiny models: causality, cache = full forward, padding invariance,
//! the closed-form parameter count, save/load round trips and clear checkpoint errors, and
//! that training (fp32 and bf16) fits a batch.
use mtgpt_core::{ModelConfig, Precision};
use mtgpt_model::{KvCache, Model};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor, nn};

/// Tests in this file seed libtorch's process-wide generator; run them one at a time so
/// their initialisations do not interleave.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn tiny() -> ModelConfig {
    ModelConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 16,
        d_ff: 32,
        block_size: 24,
        vocab_size: 40,
        dropout: 0.0,
        layer_norm_eps: 1e-5,
        precision: Precision::Fp32,
        layer_heads: Vec::new(),
        layer_d_ff: Vec::new(),
    }
}

fn model(seed: i64) -> Model {
    tch::manual_seed(seed);
    Model::new(&tiny(), Device::Cpu).unwrap()
}

fn ids(rows: &[&[i64]]) -> Tensor {
    Tensor::from_slice2(rows)
}

/// Hidden state of one `token` decoded on a cache filled by `prompt` (with its `mask`).
fn decode_after(m: &Model, prompt: &Tensor, mask: &Tensor, token: i64) -> Tensor {
    let mut cache = KvCache::new();
    m.gpt
        .forward(prompt, Some(mask), Some(&mut cache), false)
        .unwrap();
    m.gpt
        .forward(&ids(&[&[token]]), None, Some(&mut cache), false)
        .unwrap()
        .hidden
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn parameter_count_matches_the_closed_form() {
    let _serial = serial();
    let m = model(0);
    let n: i64 =
        m.vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
    assert_eq!(n as usize, tiny().num_parameters());
}

#[test]
fn changing_a_later_token_leaves_earlier_logits_alone() {
    let _serial = serial();
    let m = model(1);
    let a = ids(&[&[1, 2, 3, 4, 5, 6]]);
    let b = ids(&[&[1, 2, 3, 9, 9, 9]]);
    let la = m
        .gpt
        .logits(&m.gpt.forward(&a, None, None, false).unwrap().hidden);
    let lb = m
        .gpt
        .logits(&m.gpt.forward(&b, None, None, false).unwrap().hidden);
    assert!(max_diff(&la.narrow(1, 0, 3), &lb.narrow(1, 0, 3)) < 1e-6);
    assert!(max_diff(&la.narrow(1, 3, 1), &lb.narrow(1, 3, 1)) > 1e-4);
}

#[test]
fn cached_decoding_equals_the_full_forward() {
    let _serial = serial();
    let m = model(2);
    let seq = ids(&[
        &[3, 1, 4, 1, 5, 9, 2, 6, 5, 3],
        &[2, 7, 1, 8, 2, 8, 1, 8, 2, 8],
    ]);
    let full = m.gpt.forward(&seq, None, None, false).unwrap().hidden;
    let mut cache = KvCache::new();
    // A 4-token prompt, then one token at a time.
    let mut parts = vec![
        m.gpt
            .forward(&seq.narrow(1, 0, 4), None, Some(&mut cache), false)
            .unwrap()
            .hidden,
    ];
    for t in 4..10 {
        parts.push(
            m.gpt
                .forward(&seq.narrow(1, t, 1), None, Some(&mut cache), false)
                .unwrap()
                .hidden,
        );
    }
    assert_eq!(cache.len(), 10);
    let inc = Tensor::cat(&parts, 1);
    assert!(max_diff(&full, &inc) < 1e-5, "{}", max_diff(&full, &inc));
}

#[test]
fn left_and_right_padding_leave_real_tokens_unchanged() {
    let _serial = serial();
    let m = model(3);
    let real = ids(&[&[5, 6, 7, 8]]);
    let alone = m.gpt.forward(&real, None, None, false).unwrap().hidden;
    let right = ids(&[&[5, 6, 7, 8, 0, 0]]);
    let rmask = ids(&[&[1, 1, 1, 1, 0, 0]]);
    let r = m
        .gpt
        .forward(&right, Some(&rmask), None, false)
        .unwrap()
        .hidden;
    assert!(max_diff(&alone, &r.narrow(1, 0, 4)) < 1e-5);
    let left = ids(&[&[0, 0, 5, 6, 7, 8]]);
    let lmask = ids(&[&[0, 0, 1, 1, 1, 1]]);
    let l = m
        .gpt
        .forward(&left, Some(&lmask), None, false)
        .unwrap()
        .hidden;
    assert!(max_diff(&alone, &l.narrow(1, 2, 4)) < 1e-5);
    assert!(
        l.isnan().any().int64_value(&[]) == 0,
        "padding rows stay finite"
    );
    // Left-padded batch with a cache: decoding continues correctly.
    let next = decode_after(&m, &left, &lmask, 9);
    let want = m
        .gpt
        .forward(&ids(&[&[5, 6, 7, 8, 9]]), None, None, false)
        .unwrap()
        .hidden
        .narrow(1, 4, 1);
    assert!(max_diff(&next, &want) < 1e-5);
}

#[test]
fn bf16_attention_is_causal_ignores_padding_and_agrees_with_fp32() {
    let _serial = serial();
    // Same seed, same fp32 master weights; only the compute dtype differs.
    let make = |precision| {
        tch::manual_seed(4);
        let mut cfg = tiny();
        cfg.precision = precision;
        Model::new(&cfg, Device::Cpu).unwrap()
    };
    let (m, m32) = (make(Precision::Bf16), make(Precision::Fp32));
    let hidden = |m: &Model, x: &Tensor, mask: Option<&Tensor>| {
        m.gpt.forward(x, mask, None, false).unwrap().hidden
    };
    // Several queries run bf16's plain-product attention: still causal, exactly.
    let a = hidden(&m, &ids(&[&[1, 2, 3, 4, 5, 6]]), None);
    let b = hidden(&m, &ids(&[&[1, 2, 3, 9, 9, 9]]), None);
    assert_eq!(max_diff(&a.narrow(1, 0, 3), &b.narrow(1, 0, 3)), 0.0);
    assert!(max_diff(&a.narrow(1, 3, 1), &b.narrow(1, 3, 1)) > 1e-3);
    // Close to fp32, but really computed in bf16.
    let a32 = hidden(&m32, &ids(&[&[1, 2, 3, 4, 5, 6]]), None);
    let gap = max_diff(&a, &a32);
    assert!(gap > 0.0 && gap < 0.1, "bf16 vs fp32: {gap}");
    // Left padding leaves real tokens alone (up to bf16 rounding of the longer sums).
    let left = ids(&[&[0, 0, 1, 2, 3, 4, 5, 6]]);
    let lmask = ids(&[&[0, 0, 1, 1, 1, 1, 1, 1]]);
    let l = hidden(&m, &left, Some(&lmask));
    assert!(max_diff(&a, &l.narrow(1, 2, 6)) < 0.05);
    assert_eq!(l.isnan().any().int64_value(&[]), 0);
    // A cached single step (libtorch's kernel) continues what plain products computed.
    let next = decode_after(&m, &left, &lmask, 7);
    let want = hidden(&m, &ids(&[&[1, 2, 3, 4, 5, 6, 7]]), None).narrow(1, 6, 1);
    assert!(max_diff(&next, &want) < 0.05, "{}", max_diff(&next, &want));
}

#[test]
fn bf16_compute_copies_change_nothing_and_end_with_their_scope() {
    let _serial = serial();
    tch::manual_seed(5);
    let mut cfg = tiny();
    cfg.precision = Precision::Bf16;
    let m = Model::new(&cfg, Device::Cpu).unwrap();
    let x = ids(&[&[1, 2, 3, 4, 5]]);
    let logits = || {
        tch::no_grad(|| {
            m.gpt
                .logits(&m.gpt.forward(&x, None, None, false).unwrap().hidden)
        })
    };
    let plain = logits();
    let scoped = m.gpt.with_compute_copies(|| {
        // A nested scope (generate inside one) reuses the copies and leaves them in place.
        m.gpt.with_compute_copies(|| ());
        let first = logits();
        // Inside the scope the forward pass reads the copies, not the masters.
        tch::no_grad(|| {
            let _ = m.gpt.blocks[0]
                .mlp
                .c_fc
                .weight
                .shallow_clone()
                .g_mul_scalar_(3.0);
        });
        assert_eq!(max_diff(&first, &logits()), 0.0);
        first
    });
    assert_eq!(max_diff(&plain, &scoped), 0.0);
    // After the scope the masters are read again: the change shows.
    assert!(max_diff(&plain, &logits()) > 1e-3);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let _serial = serial();
    let m = model(4);
    let e = m
        .gpt
        .forward(&ids(&[&[1, 40]]), None, None, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("token id 40 outside the vocabulary"), "{e}");
    let long = Tensor::zeros([1, 25], (Kind::Int64, Device::Cpu));
    let e = m
        .gpt
        .forward(&long, None, None, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exceeds block_size 24"), "{e}");
    let e = m
        .gpt
        .forward(&ids(&[&[1, 2]]), Some(&ids(&[&[1]])), None, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("attention_mask"), "{e}");
}

#[test]
fn save_load_round_trips_exactly() {
    let _serial = serial();
    let m = model(5);
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path()).unwrap();
    let back = Model::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(back.gpt.config, m.gpt.config);
    let a = m.vs.variables();
    for (name, t) in back.vs.variables() {
        assert!(t.equal(&a[&name]), "{name}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "gpt2");
    assert_eq!(config["n_embd"], 16);
}

#[test]
fn broken_checkpoints_are_clear_errors() {
    let _serial = serial();
    let m = model(6);
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path()).unwrap();
    let w = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let e = Model::load(dir.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("not a readable safetensors"),
        "{e}"
    );

    // A config that does not fit the weights.
    m.save(dir.path()).unwrap();
    let c = dir.path().join("config.json");
    let text = std::fs::read_to_string(&c)
        .unwrap()
        .replace("\"n_inner\": 32", "\"n_inner\": 64");
    std::fs::write(&c, text).unwrap();
    let e = Model::load(dir.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tensor `transformer.h.0.mlp.c_fc.bias` is [32], the config needs [64]"),
        "{e}"
    );
    std::fs::write(&c, "{").unwrap();
    let e = Model::load(dir.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("config.json") && e.contains("not valid JSON"),
        "{e}"
    );
}

fn train(precision: Precision, steps: usize) -> Vec<f64> {
    tch::manual_seed(7);
    let mut cfg = tiny();
    cfg.precision = precision;
    let m = Model::new(&cfg, Device::Cpu).unwrap();
    let batch = ids(&[
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        &[12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
    ]);
    let mut opt = nn::AdamW::default().build(&m.vs, 3e-3).unwrap();
    (0..steps)
        .map(|_| {
            let loss = m.gpt.lm_loss(&batch, None, true).unwrap();
            opt.backward_step(&loss);
            loss.double_value(&[])
        })
        .collect()
}

#[test]
fn a_tiny_model_overfits_one_batch() {
    let _serial = serial();
    let losses = train(Precision::Fp32, 150);
    assert!(losses[0] > 3.0, "{}", losses[0]);
    assert!(
        *losses.last().unwrap() < 0.1,
        "{:?}",
        &losses[losses.len() - 5..]
    );
}

#[test]
fn bf16_training_lowers_the_loss_like_fp32() {
    let _serial = serial();
    let fp32 = train(Precision::Fp32, 60);
    let bf16 = train(Precision::Bf16, 60);
    let (a, b) = (fp32[59], bf16[59]);
    assert!(b < 0.5 * bf16[0], "bf16 {} -> {}", bf16[0], b);
    assert!((a - b).abs() < 0.1 + 0.1 * a, "fp32 {a} vs bf16 {b}");
}

#[test]
fn prefix_attention_sees_later_input_tokens_and_stays_exact_under_padding() {
    let _serial = serial();
    for precision in [Precision::Fp32, Precision::Bf16] {
        tch::manual_seed(8);
        let mut cfg = tiny();
        cfg.precision = precision;
        let m = Model::new(&cfg, Device::Cpu).unwrap();
        let run = |x: &Tensor, mask: Option<&Tensor>, prefix: Option<i64>| {
            let b = x.size()[0];
            let p = prefix.map(|p| Tensor::full([b], p, (Kind::Int64, Device::Cpu)));
            m.gpt
                .forward_full(x, mask, p.as_ref(), None, false, false)
                .unwrap()
                .hidden
        };
        let a = ids(&[&[1, 2, 3, 4, 5, 6]]);
        let b = ids(&[&[1, 2, 3, 9, 5, 6]]); // token 3 changed
        // Causal: positions before the change do not move; prefix of 5: they do.
        assert_eq!(
            max_diff(
                &run(&a, None, None).narrow(1, 0, 3),
                &run(&b, None, None).narrow(1, 0, 3)
            ),
            0.0
        );
        let (pa, pb) = (run(&a, None, Some(5)), run(&b, None, Some(5)));
        assert!(max_diff(&pa.narrow(1, 0, 1), &pb.narrow(1, 0, 1)) > 1e-4);
        // A change after the block stays invisible to the block and to earlier positions.
        let c = ids(&[&[1, 2, 3, 4, 5, 8]]);
        assert_eq!(
            max_diff(&pa.narrow(1, 0, 5), &run(&c, None, Some(5)).narrow(1, 0, 5)),
            0.0
        );
        // A block of one position is causal attention.
        assert!(max_diff(&run(&a, None, Some(1)), &run(&a, None, None)) < 1e-6);
        // Right padding (block = the real tokens) and left padding (block ends at the end)
        // leave the real positions as they are alone.
        let tol = if precision == Precision::Bf16 {
            0.05
        } else {
            1e-5
        };
        let alone = run(&ids(&[&[1, 2, 3, 4]]), None, Some(4));
        let p = Tensor::from_slice(&[4i64, 6]);
        let right = m
            .gpt
            .forward_full(
                &ids(&[&[1, 2, 3, 4, 0, 0], &[1, 2, 3, 4, 5, 6]]),
                Some(&ids(&[&[1, 1, 1, 1, 0, 0], &[1, 1, 1, 1, 1, 1]])),
                Some(&p),
                None,
                false,
                false,
            )
            .unwrap()
            .hidden;
        assert!(max_diff(&alone.get(0), &right.get(0).narrow(0, 0, 4)) < tol);
        let left = run(
            &ids(&[&[0, 0, 1, 2, 3, 4]]),
            Some(&ids(&[&[0, 0, 1, 1, 1, 1]])),
            Some(6),
        );
        assert!(max_diff(&alone.get(0), &left.get(0).narrow(0, 2, 4)) < tol);
        assert_eq!(left.isnan().any().int64_value(&[]), 0);
    }
}

#[test]
fn prefix_with_a_cache_continues_the_full_forward_and_refuses_a_split_block() {
    let _serial = serial();
    let m = model(9);
    let x = ids(&[&[1, 2, 3, 4, 5, 6, 7]]);
    let p4 = Tensor::from_slice(&[4i64]);
    let full = m
        .gpt
        .forward_full(&x, None, Some(&p4), None, false, false)
        .unwrap()
        .hidden;
    let mut cache = KvCache::new();
    let first = m
        .gpt
        .forward_full(
            &x.narrow(1, 0, 4),
            None,
            Some(&p4),
            Some(&mut cache),
            false,
            false,
        )
        .unwrap()
        .hidden;
    let rest = m
        .gpt
        .forward_full(
            &x.narrow(1, 4, 3),
            None,
            Some(&p4),
            Some(&mut cache),
            false,
            false,
        )
        .unwrap()
        .hidden;
    assert!(max_diff(&Tensor::cat(&[first, rest], 1), &full) < 1e-5);
    let mut cache = KvCache::new();
    m.gpt
        .forward(&x.narrow(1, 0, 2), None, Some(&mut cache), false)
        .unwrap();
    let err = m
        .gpt
        .forward_full(
            &x.narrow(1, 2, 2),
            None,
            Some(&p4),
            Some(&mut cache),
            false,
            false,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("one call"), "{err}");
}
