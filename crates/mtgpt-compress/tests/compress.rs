//! The compression methods on tiny models: pruning reaches its sparsity and the masks survive
//! optimizer steps; removing heads and neurons that contribute nothing leaves every output
//! unchanged; distillation lowers the student's KL to the teacher; an int8 multi-task folder
//! loads back with its heads and stays close to fp32.
use mtgpt_compress::distill::{Distiller, init_student, kd_loss};
use mtgpt_compress::prune::Pruner;
use mtgpt_compress::structured::{norm_importance, select, shrink};
use mtgpt_core::{Batch, IGNORE_INDEX, ModelConfig, Precision, PruneScope, Targets, TaskKind};
use mtgpt_model::compact::{WeightFormat, save_trunk_as};
use mtgpt_tasks::{HeadSpec, MultiTaskModel, TaskHead};
use mtgpt_train::optim::AdamW;
use tch::{Device, Kind, Tensor};

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn tiny(n_layer: usize) -> ModelConfig {
    ModelConfig {
        n_layer,
        n_head: 2,
        d_model: 16,
        d_ff: 32,
        block_size: 16,
        vocab_size: 30,
        dropout: 0.0,
        layer_norm_eps: 1e-5,
        precision: Precision::Fp32,
        layer_heads: Vec::new(),
        layer_d_ff: Vec::new(),
    }
}

fn specs() -> Vec<HeadSpec> {
    vec![
        HeadSpec {
            pool: Default::default(),
            name: "lm".into(),
            kind: TaskKind::Lm,
            num_labels: 0,
            tag_context: 0,
            crf: false,
        },
        HeadSpec {
            pool: Default::default(),
            name: "cls".into(),
            kind: TaskKind::Classify,
            num_labels: 3,
            tag_context: 0,
            crf: false,
        },
    ]
}

fn model(seed: i64, n_layer: usize) -> MultiTaskModel {
    tch::manual_seed(seed);
    MultiTaskModel::new(&tiny(n_layer), &specs(), Device::Cpu).unwrap()
}

/// Deterministic rows of token ids (`rows × len`, ids in 1..30).
fn rows(seed: u64, rows: usize, len: usize) -> Vec<i64> {
    (0..rows * len)
        .map(|i| 1 + ((i as u64 * 7 + seed * 13 + (i as u64 * i as u64) % 11) % 29) as i64)
        .collect()
}

fn lm_batch(seed: u64) -> Batch {
    let (b, t) = (4, 12);
    let ids = rows(seed, b, t);
    let mut targets = vec![IGNORE_INDEX; b * t];
    for r in 0..b {
        for i in 0..t - 1 {
            targets[r * t + i] = ids[r * t + i + 1];
        }
    }
    Batch {
        task: "lm".into(),
        batch_size: b,
        seq_len: t,
        input_ids: ids,
        attention_mask: vec![1; b * t],
        targets: Targets::Tokens(targets),
        input_len: vec![0; b],
        prefix_attention: false,
        lm_aux_weight: 0.0,
    }
}

fn cls_batch(seed: u64) -> Batch {
    let (b, t) = (6, 10);
    let ids = rows(seed, b, t);
    let mut mask = vec![1u8; b * t];
    // Right padding on some rows.
    for i in 7..t {
        mask[t + i] = 0;
        mask[3 * t + i] = 0;
    }
    Batch {
        task: "cls".into(),
        batch_size: b,
        seq_len: t,
        input_ids: ids,
        attention_mask: mask,
        targets: Targets::Classes((0..b as i64).map(|r| r % 3).collect()),
        input_len: (0..b).map(|r| if r % 2 == 1 { 7 } else { t }).collect(),
        prefix_attention: false,
        lm_aux_weight: 0.0,
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn zero_masks(p: &MultiTaskModel) -> Vec<Tensor> {
    p.gpt
        .linears()
        .iter()
        .map(|(_, l)| l.weight.eq(0.0))
        .collect()
}

#[test]
fn pruning_reaches_the_sparsity_and_masks_survive_optimizer_steps() {
    let _s = serial();
    for scope in [PruneScope::Global, PruneScope::Layer] {
        let m = model(1, 2);
        let mut pruner = Pruner::new(&m.gpt, scope);
        pruner.prune_to(0.5);
        assert!(
            (pruner.sparsity() - 0.5).abs() < 1e-3,
            "{scope:?}: {}",
            pruner.sparsity()
        );
        if scope == PruneScope::Layer {
            for (name, s) in pruner.layer_sparsity() {
                assert!((s - 0.5).abs() < 0.01, "{name}: {s}");
            }
        }
        let pruned = zero_masks(&m);
        let before: Vec<Tensor> = m
            .gpt
            .linears()
            .iter()
            .map(|(_, l)| l.weight.copy())
            .collect();
        // AdamW with weight decay would regrow every pruned weight; the masks hold them at 0.
        let mut opt = AdamW::new(&m.vs, 0.9, 0.95, 1e-8, 0.1);
        for step in 0..8 {
            let b = if step % 2 == 0 {
                lm_batch(step)
            } else {
                cls_batch(step)
            };
            m.forward(&b, true).unwrap().loss.backward();
            pruner.mask_grads();
            opt.step(1e-2);
            opt.zero_grad();
            pruner.apply();
        }
        assert!((pruner.sparsity() - 0.5).abs() < 1e-3);
        for (((_, l), was_zero), old) in m.gpt.linears().iter().zip(&pruned).zip(&before) {
            // Every pruned weight is still exactly zero ...
            let w = l.weight.masked_select(was_zero);
            assert_eq!(w.abs().max().double_value(&[]), 0.0);
            // ... and the kept ones did train.
            let kept = was_zero.logical_not();
            assert!(max_diff(&l.weight.masked_select(&kept), &old.masked_select(&kept)) > 1e-4);
        }
        // Gradual pruning only grows the pruned set: what was pruned at 50 % stays pruned at 70 %.
        pruner.prune_to(0.7);
        assert!((pruner.sparsity() - 0.7).abs() < 1e-3);
        for ((_, l), was_zero) in m.gpt.linears().iter().zip(&pruned) {
            assert_eq!(
                l.weight
                    .masked_select(was_zero)
                    .abs()
                    .max()
                    .double_value(&[]),
                0.0
            );
        }
    }
}

#[test]
fn a_pruned_model_is_stored_sparse_and_loads_back_identical() {
    let _s = serial();
    let m = model(2, 2);
    let mut pruner = Pruner::new(&m.gpt, PruneScope::Global);
    pruner.prune_to(0.6);
    let dir = tempfile::tempdir().unwrap();
    let tasks = vec![
        TaskHead {
            pool: Default::default(),
            name: "lm".into(),
            kind: TaskKind::Lm,
            labels: vec![],
            attention: Default::default(),
            decode: None,
            tag_context: 0,
            tag_words: false,
            word_splits: Default::default(),
            crf: false,
        },
        TaskHead {
            pool: Default::default(),
            name: "cls".into(),
            kind: TaskKind::Classify,
            labels: vec!["a".into(), "b".into(), "c".into()],
            attention: Default::default(),
            decode: None,
            tag_context: 0,
            tag_words: false,
            word_splits: Default::default(),
            crf: false,
        },
    ];
    m.save(dir.path(), &tasks, None).unwrap();
    let dense = std::fs::metadata(dir.path().join("model.safetensors"))
        .unwrap()
        .len();
    save_trunk_as(&m.gpt, &m.vs, dir.path(), WeightFormat::Sparse).unwrap();
    let sparse = std::fs::metadata(dir.path().join("model.safetensors"))
        .unwrap()
        .len();
    assert!(sparse < dense, "{sparse} vs {dense}");
    let (back, _) = MultiTaskModel::load(dir.path(), Device::Cpu).unwrap();
    for (name, var) in m.vs.variables() {
        assert!(var.equal(&back.vs.variables()[&name]), "{name}");
    }
}

#[test]
fn removing_heads_and_neurons_that_contribute_nothing_leaves_outputs_unchanged() {
    let _s = serial();
    let mut cfg = tiny(2);
    cfg.n_head = 4;
    tch::manual_seed(3);
    let m = MultiTaskModel::new(&cfg, &specs(), Device::Cpu).unwrap();
    let hd = cfg.head_dim() as i64;
    // Head 2 of block 0 and head 0 of block 1 write nothing to the residual stream (zero
    // output rows); neither do 6 neurons of each block.
    tch::no_grad(|| {
        let _ = m.gpt.blocks[0]
            .attn
            .c_proj
            .weight
            .narrow(0, 2 * hd, hd)
            .fill_(0.0);
        let _ = m.gpt.blocks[1]
            .attn
            .c_proj
            .weight
            .narrow(0, 0, hd)
            .fill_(0.0);
        for b in &m.gpt.blocks {
            for u in [0i64, 5, 9, 17, 30, 31] {
                let _ = b.mlp.c_proj.weight.get(u).fill_(0.0);
            }
        }
    });
    let lm = lm_batch(1);
    let cls = cls_batch(2);
    let want_lm = tch::no_grad(|| m.forward(&lm, false).unwrap().logits);
    let want_cls = tch::no_grad(|| m.forward(&cls, false).unwrap().logits);
    let scores = norm_importance(&m.gpt);
    assert_eq!(scores.heads[0][2], 0.0);
    // 2 of 8 heads, 12 of 64 neurons: exactly the dead ones.
    let keep_heads = select(&scores.heads, 0.25);
    let keep_neurons = select(&scores.neurons, 12.0 / 64.0);
    assert_eq!(keep_heads, vec![vec![0, 1, 3], vec![1, 2, 3]]);
    assert!(
        keep_neurons
            .iter()
            .all(|k| k.len() == 26 && !k.contains(&5))
    );
    let small = shrink(&m, &specs(), &keep_heads, &keep_neurons).unwrap();
    assert_eq!(small.gpt.config.layer_heads, vec![3, 3]);
    assert_eq!(small.gpt.config.layer_d_ff, vec![26, 26]);
    assert_eq!(
        small.gpt.blocks[0].attn.c_attn.weight.size(),
        [16, 3 * 3 * hd]
    );
    assert_eq!(small.gpt.blocks[0].mlp.c_fc.weight.size(), [16, 26]);
    let n = |x: &MultiTaskModel| x.vs.variables().values().map(Tensor::numel).sum::<usize>();
    assert!(n(&small) < n(&m));
    let got_lm = tch::no_grad(|| small.forward(&lm, false).unwrap().logits);
    let got_cls = tch::no_grad(|| small.forward(&cls, false).unwrap().logits);
    assert!(
        max_diff(&got_lm, &want_lm) < 1e-5,
        "{}",
        max_diff(&got_lm, &want_lm)
    );
    assert!(max_diff(&got_cls, &want_cls) < 1e-5);
    // The smaller shape survives a save and load (config.json records it).
    let dir = tempfile::tempdir().unwrap();
    let tasks = vec![
        TaskHead {
            pool: Default::default(),
            name: "lm".into(),
            kind: TaskKind::Lm,
            labels: vec![],
            attention: Default::default(),
            decode: None,
            tag_context: 0,
            tag_words: false,
            word_splits: Default::default(),
            crf: false,
        },
        TaskHead {
            pool: Default::default(),
            name: "cls".into(),
            kind: TaskKind::Classify,
            labels: vec!["a".into(), "b".into(), "c".into()],
            attention: Default::default(),
            decode: None,
            tag_context: 0,
            tag_words: false,
            word_splits: Default::default(),
            crf: false,
        },
    ];
    small.save(dir.path(), &tasks, None).unwrap();
    let (back, _) = MultiTaskModel::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(back.gpt.config.layer_heads, vec![3, 3]);
    let again = tch::no_grad(|| back.forward(&cls, false).unwrap().logits);
    assert!(again.equal(&got_cls));
}

#[test]
fn distillation_lowers_the_students_kl_to_the_teacher() {
    let _s = serial();
    let teacher = model(4, 2);
    // A teacher with opinions: sharper logits than an untrained init gives.
    tch::no_grad(|| {
        let _ = teacher.gpt.wte.weight.shallow_clone().g_mul_scalar_(8.0);
        for (_, l) in teacher.gpt.linears() {
            let _ = l.weight.shallow_clone().g_mul_scalar_(3.0);
        }
    });
    tch::manual_seed(5);
    let (initial, map) = init_student(&teacher, &specs(), 0).unwrap();
    assert_eq!(map, vec![0]);
    assert_eq!(initial.gpt.config.n_layer, 1);
    // Block 0, embeddings and heads start as the teacher's.
    assert!(
        initial.gpt.blocks[0]
            .mlp
            .c_fc
            .weight
            .equal(&teacher.gpt.blocks[0].mlp.c_fc.weight)
    );
    assert!(initial.gpt.wte.weight.equal(&teacher.gpt.wte.weight));
    // That start is already close; a fresh student shows the learning.
    let student = model(5, 1);
    let d = Distiller {
        teacher: &teacher,
        student: &student,
        alpha: 0.9,
        temperature: 2.0,
        hidden_weight: 0.1,
        map: vec![0],
    };
    let eval = [lm_batch(100), cls_batch(101)];
    let kl = |d: &Distiller| -> f64 {
        eval.iter()
            .map(|b| tch::no_grad(|| d.loss(b, false).unwrap().kl))
            .sum()
    };
    let start = kl(&d);
    assert!(start > 0.0);
    let mut opt = AdamW::new(&student.vs, 0.9, 0.95, 1e-8, 0.0);
    for step in 0..40u64 {
        let b = if step % 2 == 0 {
            lm_batch(step % 6)
        } else {
            cls_batch(step % 6)
        };
        d.loss(&b, true).unwrap().total.backward();
        opt.step(3e-3);
        opt.zero_grad();
    }
    let end = kl(&d);
    assert!(end < 0.5 * start, "KL {start} → {end}");
    // The KL of a model with itself is zero.
    let lm = lm_batch(7);
    let t = tch::no_grad(|| teacher.forward(&lm, false).unwrap().logits);
    let same = kd_loss(&t, &t, TaskKind::Lm, &lm, 2.0)
        .unwrap()
        .double_value(&[]);
    assert!(same.abs() < 1e-6);
}

#[test]
fn an_int8_multi_task_folder_loads_with_its_heads_and_stays_close() {
    let _s = serial();
    let mut m = model(6, 2);
    let cls = cls_batch(3);
    let want = tch::no_grad(|| m.forward(&cls, false).unwrap().logits);
    m.gpt.quantize_int8();
    let dir = tempfile::tempdir().unwrap();
    let tasks = vec![
        TaskHead {
            pool: Default::default(),
            name: "lm".into(),
            kind: TaskKind::Lm,
            labels: vec![],
            attention: Default::default(),
            decode: None,
            tag_context: 0,
            tag_words: false,
            word_splits: Default::default(),
            crf: false,
        },
        TaskHead {
            pool: Default::default(),
            name: "cls".into(),
            kind: TaskKind::Classify,
            labels: vec!["a".into(), "b".into(), "c".into()],
            attention: Default::default(),
            decode: None,
            tag_context: 0,
            tag_words: false,
            word_splits: Default::default(),
            crf: false,
        },
    ];
    m.save(dir.path(), &tasks, None).unwrap();
    save_trunk_as(&m.gpt, &m.vs, dir.path(), WeightFormat::Int8).unwrap();
    let (back, _) = MultiTaskModel::load(dir.path(), Device::Cpu).unwrap();
    assert!(back.gpt.is_int8());
    let got = tch::no_grad(|| back.forward(&cls, false).unwrap().logits);
    let rel = ((&got - &want).square().sum(Kind::Double).sqrt()
        / want.square().sum(Kind::Double).sqrt())
    .double_value(&[]);
    assert!(rel < 0.03, "relative error {rel}");
}
