//! Generation: greedy equals a full-recompute argmax loop, batching with left padding equals
//! one prompt at a time, stop tokens, seeded sampling, and beam search on a memorized sequence.
use mtgpt_core::{ModelConfig, Precision};
use mtgpt_model::{GenerateConfig, Model, generate};
use tch::nn::OptimizerConfig;
use tch::{Device, Tensor, nn};

/// Tests in this file seed libtorch's process-wide generator; run them one at a time so
/// their initialisations do not interleave.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn tiny(seed: i64) -> Model {
    tch::manual_seed(seed);
    let cfg = ModelConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 16,
        d_ff: 32,
        block_size: 32,
        vocab_size: 30,
        dropout: 0.0,
        layer_norm_eps: 1e-5,
        precision: Precision::Fp32,
        layer_heads: Vec::new(),
        layer_d_ff: Vec::new(),
    };
    Model::new(&cfg, Device::Cpu).unwrap()
}

fn greedy(n: usize) -> GenerateConfig {
    GenerateConfig {
        max_new_tokens: n,
        greedy: true,
        ..Default::default()
    }
}

#[test]
fn greedy_matches_an_argmax_loop_without_cache() {
    let _serial = serial();
    let m = tiny(1);
    let prompt = vec![3i64, 7, 1];
    let got = generate(&m.gpt, std::slice::from_ref(&prompt), 0, &greedy(8)).unwrap();
    let mut ids = prompt.clone();
    for _ in 0..8 {
        let t = Tensor::from_slice(&ids).view([1, -1]);
        let h = m.gpt.forward(&t, None, None, false).unwrap().hidden;
        ids.push(
            m.gpt
                .logits(&h)
                .get(0)
                .get(ids.len() as i64 - 1)
                .argmax(0, false)
                .int64_value(&[]),
        );
    }
    assert_eq!(got[0], ids[3..]);
}

#[test]
fn batched_left_padded_prompts_match_single_prompts() {
    let _serial = serial();
    let m = tiny(2);
    let prompts = vec![vec![5i64], vec![4, 9, 2, 8, 1], vec![6, 6, 3]];
    let batch = generate(&m.gpt, &prompts, 0, &greedy(6)).unwrap();
    for (p, b) in prompts.iter().zip(&batch) {
        let one = generate(&m.gpt, std::slice::from_ref(p), 0, &greedy(6)).unwrap();
        assert_eq!(&one[0], b, "prompt {p:?}");
    }
}

#[test]
fn stop_tokens_and_budgets_end_generation() {
    let _serial = serial();
    let m = tiny(3);
    let free = generate(&m.gpt, &[vec![1]], 0, &greedy(10)).unwrap()[0].clone();
    assert_eq!(free.len(), 10);
    let stop = free[2];
    let cfg = GenerateConfig {
        stop_tokens: vec![stop],
        ..greedy(10)
    };
    let got = generate(&m.gpt, &[vec![1]], 0, &cfg).unwrap()[0].clone();
    let first = free.iter().position(|&t| t == stop).unwrap();
    assert_eq!(got, free[..=first]);
    // The block size caps the budget: prompt 30 + at most 2 new tokens.
    let long: Vec<i64> = (0..30).map(|i| i % 29).collect();
    assert_eq!(
        generate(&m.gpt, &[long], 0, &greedy(10)).unwrap()[0].len(),
        2
    );
}

#[test]
fn sampling_is_seeded_and_top_k_1_is_greedy() {
    let _serial = serial();
    let m = tiny(4);
    let cfg = GenerateConfig {
        max_new_tokens: 12,
        temperature: 1.5,
        top_p: 0.9,
        seed: 11,
        ..Default::default()
    };
    let a = generate(&m.gpt, &[vec![2]], 0, &cfg).unwrap();
    assert_eq!(a, generate(&m.gpt, &[vec![2]], 0, &cfg).unwrap());
    let other = GenerateConfig {
        seed: 12,
        ..cfg.clone()
    };
    assert_ne!(a, generate(&m.gpt, &[vec![2]], 0, &other).unwrap());
    let k1 = GenerateConfig { top_k: 1, ..cfg };
    assert_eq!(
        generate(&m.gpt, &[vec![2]], 0, &k1).unwrap(),
        generate(&m.gpt, &[vec![2]], 0, &greedy(12)).unwrap()
    );
    let bad = GenerateConfig {
        temperature: 0.0,
        ..Default::default()
    };
    assert!(
        generate(&m.gpt, &[vec![2]], 0, &bad)
            .unwrap_err()
            .to_string()
            .contains("temperature")
    );
}

#[test]
fn beam_search_recovers_a_memorized_sequence() {
    let _serial = serial();
    let m = tiny(5);
    let seq: Vec<i64> = vec![1, 12, 5, 20, 7, 3, 25, 9, 14, 2];
    let batch = Tensor::from_slice(&seq).view([1, -1]);
    let mut opt = nn::AdamW::default().build(&m.vs, 1e-2).unwrap();
    for _ in 0..200 {
        let loss = m.gpt.lm_loss(&batch, None, true).unwrap();
        opt.backward_step(&loss);
    }
    let cfg = GenerateConfig {
        num_beams: 3,
        max_new_tokens: 9,
        stop_tokens: vec![2],
        ..Default::default()
    };
    let got = generate(&m.gpt, &[vec![1]], 0, &cfg).unwrap();
    assert_eq!(got[0], seq[1..]);
}

#[test]
fn prefix_prompt_generation_equals_a_recompute_loop_and_batches_with_left_padding() {
    let _serial = serial();
    let m = tiny(6);
    let cfg = GenerateConfig {
        prefix_prompt: true,
        ..greedy(6)
    };
    let prompts = vec![vec![3i64, 7, 1, 9], vec![5i64, 2]];
    let got = generate(&m.gpt, &prompts, 0, &cfg).unwrap();
    for (prompt, out) in prompts.iter().zip(&got) {
        // Recompute every step: the prompt is one block, the generated tokens causal.
        let mut ids = prompt.clone();
        let block = Tensor::from_slice(&[prompt.len() as i64]);
        for _ in 0..6 {
            let t = Tensor::from_slice(&ids).view([1, -1]);
            let h = m
                .gpt
                .forward_full(&t, None, Some(&block), None, false, false)
                .unwrap()
                .hidden;
            ids.push(
                m.gpt
                    .logits(&h)
                    .get(0)
                    .get(ids.len() as i64 - 1)
                    .argmax(0, false)
                    .int64_value(&[]),
            );
        }
        assert_eq!(out[..], ids[prompt.len()..]);
    }
    // Beam search with one beam follows the same path.
    let beam = generate(
        &m.gpt,
        &prompts[..1],
        0,
        &GenerateConfig {
            num_beams: 2,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_eq!(beam[0].len(), 6);
}

#[test]
fn no_repeat_ngram_keeps_every_ngram_of_an_output_unique() {
    let _serial = serial();
    let m = tiny(2);
    // A random tiny model falls into loops when decoding greedily for long enough.
    let prompt = vec![vec![4i64, 4, 4]];
    let plain = generate(&m.gpt, &prompt, 0, &greedy(24)).unwrap();
    let repeats = |o: &[i64], n: usize| {
        let mut seen = std::collections::HashSet::new();
        o.windows(n).any(|w| !seen.insert(w.to_vec()))
    };
    assert!(
        repeats(&plain[0], 2),
        "the test needs a looping model: {:?}",
        plain[0]
    );
    for n in [1usize, 2, 3] {
        let cfg = GenerateConfig {
            no_repeat_ngram_size: n,
            ..greedy(24)
        };
        let out = generate(&m.gpt, &prompt, 0, &cfg).unwrap();
        assert!(!repeats(&out[0], n), "n = {n}: {:?}", out[0]);
        let beams = generate(
            &m.gpt,
            &prompt,
            0,
            &GenerateConfig {
                num_beams: 3,
                ..cfg
            },
        )
        .unwrap();
        assert!(!repeats(&beams[0], n), "beams, n = {n}: {:?}", beams[0]);
    }
}

#[test]
fn sequences_joining_a_running_batch_decode_as_they_would_alone() {
    let _g = serial();
    let m = tiny(21);
    let prompts: [&[i64]; 4] = [&[3, 9, 4, 1, 7], &[5, 2], &[8, 8, 1, 2, 6, 11, 4], &[13]];
    let budgets = [6usize, 9, 4, 7];
    let alone: Vec<Vec<i64>> = prompts
        .iter()
        .zip(budgets)
        .map(|(p, n)| {
            generate(&m.gpt, &[p.to_vec()], 0, &greedy(n))
                .unwrap()
                .remove(0)
        })
        .collect();
    // Row 0 starts alone; rows 1 and 2 join after two tokens (one shorter prompt, one longer
    // than the batch's past); row 3 joins after row 2 has left.
    let mut dec = mtgpt_model::Decoder::new(&m.gpt, 0);
    let mut outs: Vec<Option<Vec<i64>>> = vec![None; 4];
    let mut streamed: Vec<Vec<i64>> = vec![Vec::new(); 4];
    let mut on = |k: u64, t: i64| {
        streamed[k as usize].push(t);
        true
    };
    let cfg = |i: usize| greedy(budgets[i]);
    tch::no_grad(|| {
        dec.admit(&[(0, prompts[0], cfg(0))]).unwrap();
        for _ in 0..2 {
            assert!(dec.step(&mut on).unwrap().is_empty());
        }
        dec.admit(&[(1, prompts[1], cfg(1)), (2, prompts[2], cfg(2))])
            .unwrap();
        assert_eq!(dec.len(), 3);
        let mut joined_3 = false;
        while !dec.is_empty() {
            for (k, out) in dec.step(&mut on).unwrap() {
                outs[k as usize] = Some(out);
            }
            if outs[2].is_some() && !joined_3 {
                dec.admit(&[(3, prompts[3], cfg(3))]).unwrap();
                joined_3 = true;
            }
        }
    });
    for i in 0..4 {
        assert_eq!(outs[i].as_ref(), Some(&alone[i]), "row {i}");
        assert_eq!(streamed[i], alone[i], "row {i} streamed");
    }
    // A row whose callback says stop leaves at once.
    let mut dec = mtgpt_model::Decoder::new(&m.gpt, 0);
    let done = tch::no_grad(|| {
        dec.admit(&[(7, prompts[0], greedy(10))]).unwrap();
        dec.step(&mut |_, _| false).unwrap()
    });
    assert_eq!(done, vec![(7, alone[0][..1].to_vec())]);
    assert!(dec.is_empty());
}

#[test]
fn min_new_tokens_hold_the_stop_tokens_back() {
    let _serial = serial();
    let m = tiny(1);
    let prompt = vec![3i64, 7, 1];
    let free = generate(&m.gpt, std::slice::from_ref(&prompt), 0, &greedy(8)).unwrap();
    // Stopping at greedy's first token ends the output at once ...
    let stop = GenerateConfig {
        stop_tokens: vec![free[0][0]],
        ..greedy(8)
    };
    let short = generate(&m.gpt, std::slice::from_ref(&prompt), 0, &stop).unwrap();
    assert_eq!(short[0], vec![free[0][0]]);
    // ... unless the first 4 tokens may not be a stop token, greedy and with beams.
    for num_beams in [1, 3] {
        let held = GenerateConfig {
            min_new_tokens: 4,
            num_beams,
            ..stop.clone()
        };
        let out = generate(&m.gpt, std::slice::from_ref(&prompt), 0, &held).unwrap();
        assert!(out[0].len() >= 4, "beams {num_beams}: {:?}", out[0]);
        assert!(
            !out[0][..4].contains(&free[0][0]),
            "beams {num_beams}: {:?}",
            out[0]
        );
    }
}
