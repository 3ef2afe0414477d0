//! LoRA adapters on tiny trunks: a fresh adapter changes nothing, each row of a mixed batch
//! gets exactly its own adapter in one pass (fp32, bf16, with the KV cache), so does each
//! token of a packed row that holds several tasks, gradients reach
//! only the adapters the batch used, folding gives the adapted model, and PEFT-layout files
//! round-trip.
use mtgpt_core::{AdapterConfig, AdapterMode, ModelConfig, Precision};
use mtgpt_model::lora::{AdapterLayout, AdapterRows};
use mtgpt_model::{KvCache, Model, peft};
use tch::{Device, Kind, Tensor};

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn tiny(precision: Precision) -> ModelConfig {
    ModelConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 16,
        d_ff: 32,
        block_size: 24,
        vocab_size: 40,
        dropout: 0.0,
        layer_norm_eps: 1e-5,
        precision,
        layer_heads: Vec::new(),
        layer_d_ff: Vec::new(),
    }
}

fn layout(mode: AdapterMode, targets: &[&str]) -> AdapterLayout {
    let c = AdapterConfig {
        mode,
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: targets.iter().map(|s| s.to_string()).collect(),
    };
    AdapterLayout::new(&c, &["a".into(), "b".into(), "c".into()])
}

const ALL: [&str; 4] = ["c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

/// A trunk with adapters whose `B` is random too (a trained-looking update).
fn adapted(seed: i64, mode: AdapterMode, precision: Precision) -> Model {
    tch::manual_seed(seed);
    let mut m = Model::new(&tiny(precision), Device::Cpu).unwrap();
    m.gpt
        .add_adapters(&m.vs.root(), &layout(mode, &ALL))
        .unwrap();
    tch::no_grad(|| {
        for (_, sets) in m.gpt.adapter_layers() {
            for s in sets {
                s.b.shallow_clone().copy_(&(s.b.randn_like() * 0.3));
            }
        }
    });
    m
}

fn ids() -> Tensor {
    Tensor::from_slice2(&[
        [3i64, 9, 4, 1, 7, 2],
        [5, 5, 8, 30, 11, 6],
        [1, 2, 3, 4, 5, 6],
    ])
}

fn hidden(m: &Model, ids: &Tensor) -> Tensor {
    tch::no_grad(|| m.gpt.forward(ids, None, None, false).unwrap().hidden)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Float) - b.to_kind(Kind::Float))
        .abs()
        .max()
        .double_value(&[])
}

#[test]
fn fresh_adapters_leave_the_model_unchanged() {
    let _g = serial();
    tch::manual_seed(1);
    let mut m = Model::new(&tiny(Precision::Fp32), Device::Cpu).unwrap();
    let before = hidden(&m, &ids());
    m.gpt
        .add_adapters(&m.vs.root(), &layout(AdapterMode::Both, &ALL))
        .unwrap();
    // Nothing selected yet: an error, not a silent base pass.
    let err = m.gpt.forward(&ids(), None, None, false).unwrap_err();
    assert!(err.to_string().contains("none is selected"), "{err}");
    m.gpt.select_task("b").unwrap();
    assert_eq!(max_diff(&before, &hidden(&m, &ids())), 0.0);
    assert!(
        m.gpt
            .select_task("nope")
            .unwrap_err()
            .to_string()
            .contains("no adapter for task `nope`")
    );
    // Weights: 2 layers × 4 targets × 2 stacks, A and B each.
    let n =
        m.vs.variables()
            .keys()
            .filter(|k| k.starts_with("adapters."))
            .count();
    assert_eq!(n, 2 * 4 * 2 * 2);
    assert_eq!(
        m.vs.variables()["adapters.task.h.0.attn.c_attn.lora_a"].size(),
        [3, 16, 4]
    );
}

#[test]
fn a_mixed_batch_gives_every_row_its_own_adapter_in_one_pass() {
    let _g = serial();
    for (mode, precision, tol) in [
        (AdapterMode::PerTask, Precision::Fp32, 1e-5),
        (AdapterMode::Both, Precision::Fp32, 1e-5),
        (AdapterMode::PerTask, Precision::Bf16, 3e-2),
    ] {
        let m = adapted(2, mode, precision);
        let x = ids();
        let names = ["c", "a", "b"];
        let rows = m
            .gpt
            .adapters
            .as_ref()
            .unwrap()
            .rows_per_example(&names, Device::Cpu)
            .unwrap();
        m.gpt.select_adapters(rows);
        let mixed = hidden(&m, &x);
        let mut differ = 0.0f64;
        for (r, name) in names.iter().enumerate() {
            m.gpt.select_task(name).unwrap();
            let alone = hidden(&m, &x.narrow(0, r as i64, 1));
            let d = max_diff(&mixed.narrow(0, r as i64, 1), &alone);
            assert!(d < tol, "{mode:?} {precision:?} row {r}: {d}");
            // ...and another task's adapter gives something else.
            m.gpt.select_task(names[(r + 1) % 3]).unwrap();
            differ = differ.max(max_diff(
                &mixed.narrow(0, r as i64, 1),
                &hidden(&m, &x.narrow(0, r as i64, 1)),
            ));
        }
        assert!(
            differ > 10.0 * tol,
            "{mode:?}: adapters make no difference ({differ})"
        );
    }
}

#[test]
fn a_packed_row_of_several_tasks_gives_every_token_its_own_adapter() {
    let _g = serial();
    for (mode, precision, tol) in [
        (AdapterMode::PerTask, Precision::Fp32, 1e-5),
        (AdapterMode::Both, Precision::Fp32, 1e-5),
        (AdapterMode::PerTask, Precision::Bf16, 3e-2),
    ] {
        let m = adapted(3, mode, precision);
        let layout = m.gpt.adapters.clone().unwrap();
        // Row 0: task c's 6 tokens then task a's 4; row 1: task b's 6 tokens, 4 padding.
        let x = ids();
        let row0 = Tensor::cat(&[x.get(0), x.get(1).narrow(0, 0, 4)], 0);
        let row1 = Tensor::cat(
            &[x.get(2), Tensor::zeros([4], (Kind::Int64, Device::Cpu))],
            0,
        );
        let packed = Tensor::stack(&[row0, row1], 0);
        let segment = Tensor::from_slice2(&[
            [1i64, 1, 1, 1, 1, 1, 2, 2, 2, 2],
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
        ]);
        let position = Tensor::from_slice2(&[
            [0i64, 1, 2, 3, 4, 5, 0, 1, 2, 3],
            [0, 1, 2, 3, 4, 5, 0, 0, 0, 0],
        ]);
        let mut names = vec![Some("c"); 6];
        names.extend([Some("a"); 4]);
        names.extend([Some("b"); 6]);
        names.extend([None; 4]);
        m.gpt
            .select_adapters(layout.rows_per_token(&names, [2, 10], Device::Cpu).unwrap());
        let h = tch::no_grad(|| {
            m.gpt
                .forward_packed(&packed, &segment, &position, None, false)
                .unwrap()
                .hidden
        });
        // The last token of each sequence, read alone by the `at` path.
        let at = Tensor::from_slice(&[5i64, 9, 15]);
        let h_at = tch::no_grad(|| {
            m.gpt
                .packed_hidden_at(&packed, &segment, &position, None, &at)
                .unwrap()
        });
        for (k, (task, row, start, len, src)) in
            [("c", 0, 0, 6, 0), ("a", 0, 6, 4, 1), ("b", 1, 0, 6, 2)]
                .into_iter()
                .enumerate()
        {
            m.gpt.select_task(task).unwrap();
            let alone = hidden(&m, &x.narrow(0, src, 1).narrow(1, 0, len));
            let got = h.narrow(0, row, 1).narrow(1, start, len);
            let d = max_diff(&got, &alone);
            assert!(d < tol, "{mode:?} {precision:?} {task}: {d}");
            let d_at = max_diff(&h_at.get(k as i64), &alone.get(0).get(len - 1));
            assert!(d_at < tol, "{mode:?} {precision:?} {task} at: {d_at}");
            // Another task's adapter gives something else.
            m.gpt
                .select_task(if task == "a" { "b" } else { "a" })
                .unwrap();
            let other = hidden(&m, &x.narrow(0, src, 1).narrow(1, 0, len));
            assert!(max_diff(&got, &other) > 10.0 * tol, "{mode:?} {task}");
        }
        // A token list of the wrong size is an error naming both sizes.
        let err = layout
            .rows_per_token(&names[..19], [2, 10], Device::Cpu)
            .err()
            .unwrap();
        assert!(err.contains("19 token tasks for 2 × 10"), "{err}");
    }
}

#[test]
fn cached_decoding_with_per_row_adapters_equals_the_full_pass() {
    let _g = serial();
    let m = adapted(3, AdapterMode::PerTask, Precision::Fp32);
    let x = ids();
    let layout = m.gpt.adapters.clone().unwrap();
    m.gpt.select_adapters(
        layout
            .rows_per_example(&["b", "c", "a"], Device::Cpu)
            .unwrap(),
    );
    let full = hidden(&m, &x);
    let mut cache = KvCache::new();
    let first = tch::no_grad(|| {
        m.gpt
            .forward(&x.narrow(1, 0, 4), None, Some(&mut cache), false)
            .unwrap()
            .hidden
    });
    let rest = tch::no_grad(|| {
        m.gpt
            .forward(&x.narrow(1, 4, 2), None, Some(&mut cache), false)
            .unwrap()
            .hidden
    });
    assert!(max_diff(&Tensor::cat(&[first, rest], 1), &full) < 1e-5);
}

#[test]
fn gradients_reach_only_the_selected_adapters() {
    let _g = serial();
    let m = adapted(4, AdapterMode::PerTask, Precision::Fp32);
    m.gpt.select_task("b").unwrap();
    let loss = m.gpt.lm_loss(&ids(), None, true).unwrap();
    loss.backward();
    let a = &m.vs.variables()["adapters.task.h.1.mlp.c_fc.lora_a"];
    let g = a.grad();
    let norms: Vec<f64> = (0..3).map(|k| g.get(k).norm().double_value(&[])).collect();
    assert_eq!(norms[0], 0.0);
    assert!(norms[1] > 0.0);
    assert_eq!(norms[2], 0.0);
}

#[test]
fn folding_an_adapter_gives_the_adapted_model() {
    let _g = serial();
    for mode in [AdapterMode::PerTask, AdapterMode::Shared, AdapterMode::Both] {
        let mut m = adapted(5, mode, Precision::Fp32);
        m.gpt.select_task("c").unwrap();
        let with = hidden(&m, &ids());
        m.gpt.fold_adapters("c").unwrap();
        assert!(m.gpt.adapters.is_none());
        assert!(m.gpt.linears().iter().all(|(_, l)| l.lora.is_empty()));
        let folded = hidden(&m, &ids());
        assert!(max_diff(&with, &folded) < 1e-4, "{mode:?}");
    }
}

#[test]
fn adapters_round_trip_through_peft_files() {
    let _g = serial();
    for (mode, targets) in [
        (AdapterMode::PerTask, vec!["c_attn", "mlp.c_proj"]),
        (AdapterMode::Both, ALL.to_vec()),
        (AdapterMode::Shared, vec!["attn.c_proj"]),
    ] {
        tch::manual_seed(6);
        let mut m = Model::new(&tiny(Precision::Fp32), Device::Cpu).unwrap();
        m.gpt
            .add_adapters(&m.vs.root(), &layout(mode, &targets))
            .unwrap();
        tch::no_grad(|| {
            for (_, sets) in m.gpt.adapter_layers() {
                for s in sets {
                    s.b.shallow_clone().copy_(&s.b.randn_like());
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path()).unwrap();
        peft::save_adapters(&m.gpt, dir.path()).unwrap();
        let mut back = Model::load(dir.path(), Device::Cpu).unwrap();
        assert!(peft::load_adapters(&mut back.gpt, &back.vs.root(), dir.path()).unwrap());
        for task in ["a", "b", "c"] {
            m.gpt.select_task(task).unwrap();
            back.gpt.select_task(task).unwrap();
            assert_eq!(
                max_diff(&hidden(&m, &ids()), &hidden(&back, &ids())),
                0.0,
                "{mode:?} {task}"
            );
        }
        // A task's folder is a whole PEFT adapter: its update is the task's update.
        if mode.per_task() {
            let ad = peft::read_peft(&peft::task_dir(dir.path(), "b")).unwrap();
            let want = if mode == AdapterMode::Both { 8 } else { 4 };
            assert_eq!(ad.rank, want);
            let layer = format!("transformer.h.1.{}", targets[targets.len() - 1]);
            let sets = m
                .gpt
                .adapter_layers()
                .into_iter()
                .find(|(n, _)| *n == layer)
                .unwrap()
                .1;
            let mine = sets.iter().enumerate().fold(
                Tensor::zeros([1], (Kind::Float, Device::Cpu)),
                |acc, (i, s)| {
                    let k = if mode == AdapterMode::Both && i == 0 {
                        0
                    } else {
                        1
                    };
                    acc + s.delta_weight(k)
                },
            );
            assert!(max_diff(&ad.delta_weight(&layer).unwrap(), &mine) < 1e-5);
        } else {
            assert!(
                peft::task_dir(dir.path(), "shared")
                    .join(peft::ADAPTER_CONFIG)
                    .exists()
            );
        }
    }
}

#[test]
fn an_imported_adapter_of_lower_rank_and_other_scale_is_exact() {
    let _g = serial();
    let m = adapted(7, AdapterMode::PerTask, Precision::Fp32);
    // Task `a`'s update, rewritten as a rank-4 adapter with another alpha…
    let mut ad = peft::task_adapter(&m.gpt, "a").unwrap();
    ad.alpha = 2.0;
    let factor = m.gpt.adapters.as_ref().unwrap().scale() / (ad.alpha / ad.rank as f64);
    ad.scale = ad.alpha / ad.rank as f64;
    for (_, (_, b)) in ad.layers.iter_mut() {
        *b = &*b * factor;
    }
    // …imported into task `c`: `c` now computes what `a` did.
    peft::set_task_adapter(&m.gpt, "c", &ad, "x".as_ref()).unwrap();
    m.gpt.select_task("a").unwrap();
    let a = hidden(&m, &ids());
    m.gpt.select_task("c").unwrap();
    assert!(max_diff(&a, &hidden(&m, &ids())) < 1e-5);
    // Too high a rank is refused by name.
    ad.rank = 9;
    let err = peft::set_task_adapter(&m.gpt, "c", &ad, "x".as_ref()).unwrap_err();
    assert!(err.to_string().contains("rank 9"), "{err}");
    let _ = AdapterRows::All(0);
}
