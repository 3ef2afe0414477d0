//! Checks of every config value beyond what the schema's types enforce.
use super::source::Source;
use crate::config::{COMPRESS_METHODS, Config};
use crate::error::Result;
use crate::task::TaskKind;
use std::collections::HashSet;

pub(super) fn validate(c: &Config, src: &Source<'_>, overridden: &[String]) -> Result<()> {
    let err =
        |key: &str, value: String, reason: &str| src.value_error(overridden, key, value, reason);
    let positive = |key: &str, v: usize| {
        if v == 0 {
            Err(err(key, v.to_string(), "must be at least 1"))
        } else {
            Ok(())
        }
    };
    let finite_in = |key: &str, v: f64, lo: f64, hi: f64, what: &str| {
        if v.is_finite() && v >= lo && v <= hi {
            Ok(())
        } else {
            Err(err(key, v.to_string(), &format!("must be a number {what}")))
        }
    };

    if c.name.trim().is_empty() || !is_safe_name(&c.name) {
        return Err(err(
            "name",
            format!("{:?}", c.name),
            "use letters, digits, `_`, `-` or `.` (it names the output folder)",
        ));
    }

    let m = &c.model;
    positive("model.n_layer", m.n_layer)?;
    positive("model.n_head", m.n_head)?;
    positive("model.d_model", m.d_model)?;
    positive("model.d_ff", m.d_ff)?;
    positive("model.block_size", m.block_size)?;
    if m.d_model % m.n_head != 0 {
        return Err(err(
            "model.n_head",
            m.n_head.to_string(),
            &format!("must divide model.d_model = {}", m.d_model),
        ));
    }
    finite_in("model.dropout", m.dropout, 0.0, 0.999, "in [0, 1)")?;
    if let Err(reason) = m.check_layer_shapes() {
        let (key, v) = if reason.starts_with("model.layer_heads") {
            ("model.layer_heads", &m.layer_heads)
        } else {
            ("model.layer_d_ff", &m.layer_d_ff)
        };
        return Err(err(key, format!("{v:?}"), &reason));
    }
    if !(m.layer_norm_eps.is_finite() && m.layer_norm_eps > 0.0) {
        return Err(err(
            "model.layer_norm_eps",
            m.layer_norm_eps.to_string(),
            "must be a positive number",
        ));
    }

    let tok = &c.tokenizer;
    if tok.existing().is_none()
        && tok.kind == crate::config::TokenizerKind::Bpe
        && tok.vocab_size < 260
    {
        return Err(err(
            "tokenizer.vocab_size",
            tok.vocab_size.to_string(),
            "byte-level BPE needs at least 260 (256 bytes + special tokens)",
        ));
    }

    let p = &c.preprocess;
    finite_in(
        "preprocess.valid_fraction",
        p.valid_fraction,
        0.0,
        0.5,
        "in [0, 0.5]",
    )?;
    finite_in(
        "preprocess.test_fraction",
        p.test_fraction,
        0.0,
        0.5,
        "in [0, 0.5]",
    )?;

    let t = &c.train;
    positive("train.batch_size", t.batch_size)?;
    positive("train.grad_accum", t.grad_accum)?;
    if t.steps == 0 && t.pretrain_steps == 0 {
        return Err(err(
            "train.steps",
            "0".into(),
            "train.steps or train.pretrain_steps must be at least 1",
        ));
    }
    if !(t.lr.is_finite() && t.lr > 0.0 && t.lr < 10.0) {
        return Err(err(
            "train.lr",
            t.lr.to_string(),
            "must be a positive number below 10 (3e-4 is typical)",
        ));
    }
    finite_in("train.max_seconds", t.max_seconds, 0.0, f64::MAX, "≥ 0")?;
    finite_in("train.min_lr_ratio", t.min_lr_ratio, 0.0, 1.0, "in [0, 1]")?;
    finite_in(
        "train.trunk_lr_factor",
        t.trunk_lr_factor,
        0.0,
        1.0,
        "in [0, 1] (0 freezes the trunk's updates)",
    )?;
    if !(t.loraplus_lr_ratio.is_finite()
        && t.loraplus_lr_ratio > 0.0
        && t.loraplus_lr_ratio <= 1000.0)
    {
        return Err(err(
            "train.loraplus_lr_ratio",
            t.loraplus_lr_ratio.to_string(),
            "must be a number in (0, 1000] (1 = plain LoRA; LoRA+ suggests 16)",
        ));
    }
    if let Err((key, reason)) = c.adapters.check() {
        let value = match key.as_str() {
            "adapters.rank" => c.adapters.rank.to_string(),
            "adapters.alpha" => c.adapters.alpha.to_string(),
            "adapters.dropout" => c.adapters.dropout.to_string(),
            _ => format!("{:?}", c.adapters.targets),
        };
        return Err(err(&key, value, &reason));
    }
    if !t.trunk_trainable.is_empty() && t.trunk == crate::TrunkTraining::Full {
        return Err(err(
            "train.trunk_trainable",
            format!("{:?}", t.trunk_trainable),
            "only applies with train.trunk = \"frozen\" (a full trunk trains every weight)",
        ));
    }
    finite_in(
        "train.weight_decay",
        t.weight_decay,
        0.0,
        10.0,
        "in [0, 10]",
    )?;
    finite_in("train.beta1", t.beta1, 0.0, 0.999_999, "in [0, 1)")?;
    finite_in("train.beta2", t.beta2, 0.0, 0.999_999, "in [0, 1)")?;
    if !(t.eps.is_finite() && t.eps > 0.0) {
        return Err(err(
            "train.eps",
            t.eps.to_string(),
            "must be a positive number",
        ));
    }
    finite_in(
        "train.grad_clip",
        t.grad_clip,
        0.0,
        f64::MAX,
        "≥ 0 (0 turns clipping off)",
    )?;
    finite_in(
        "train.ema_decay",
        t.ema_decay,
        0.0,
        0.999_999,
        "in [0, 1) (0 turns the weight average off)",
    )?;
    if !(t.spike_factor.is_finite() && t.spike_factor > 1.0) {
        return Err(err(
            "train.spike_factor",
            t.spike_factor.to_string(),
            "must be a number above 1",
        ));
    }
    if !(t.guard_lr_factor.is_finite() && t.guard_lr_factor > 0.0 && t.guard_lr_factor < 1.0) {
        return Err(err(
            "train.guard_lr_factor",
            t.guard_lr_factor.to_string(),
            "must be a number in (0, 1)",
        ));
    }
    positive("train.guard_snapshot_every", t.guard_snapshot_every)?;
    let s = &t.sampling;
    if t.weighting.strategy == crate::config::WeightingStrategy::Pcgrad && !s.mixed_batches {
        return Err(err(
            "train.weighting.strategy",
            "\"pcgrad\"".into(),
            "PCGrad combines the gradients of several tasks in one step; set train.sampling.mixed_batches = true",
        ));
    }
    if !(s.temperature.is_finite() && s.temperature > 0.0) {
        return Err(err(
            "train.sampling.temperature",
            s.temperature.to_string(),
            "must be a positive number",
        ));
    }
    if !(s.end_temperature.is_finite() && s.end_temperature > 0.0) {
        return Err(err(
            "train.sampling.end_temperature",
            s.end_temperature.to_string(),
            "must be a positive number",
        ));
    }
    positive("train.sampling.cap", s.cap)?;
    if !(t.weighting.dwa_temperature.is_finite() && t.weighting.dwa_temperature > 0.0) {
        return Err(err(
            "train.weighting.dwa_temperature",
            t.weighting.dwa_temperature.to_string(),
            "must be a positive number",
        ));
    }

    let k = &c.compress;
    for (i, method) in k.methods.iter().enumerate() {
        if !COMPRESS_METHODS.contains(&method.as_str()) {
            return Err(err(
                &format!("compress.methods[{i}]"),
                format!("{method:?}"),
                &format!(
                    "unknown method; expected one of {}",
                    COMPRESS_METHODS.join(", ")
                ),
            ));
        }
    }
    finite_in("compress.sparsity", k.sparsity, 0.0, 0.99, "in [0, 0.99]")?;
    finite_in(
        "compress.head_fraction",
        k.head_fraction,
        0.0,
        0.95,
        "in [0, 0.95]",
    )?;
    finite_in(
        "compress.neuron_fraction",
        k.neuron_fraction,
        0.0,
        0.95,
        "in [0, 0.95]",
    )?;
    finite_in("compress.alpha", k.alpha, 0.0, 1.0, "in [0, 1]")?;
    finite_in(
        "compress.hidden_weight",
        k.hidden_weight,
        0.0,
        f64::MAX,
        "≥ 0",
    )?;
    if !(k.temperature.is_finite() && k.temperature > 0.0) {
        return Err(err(
            "compress.temperature",
            k.temperature.to_string(),
            "must be a positive number",
        ));
    }

    if c.tasks.is_empty() {
        return Err(err("task", "[]".into(), "add at least one [[task]] table"));
    }
    let mut seen = HashSet::new();
    for (i, task) in c.tasks.iter().enumerate() {
        let key = |field: &str| format!("task[{i}].{field}");
        if !is_safe_name(&task.name) || task.name.contains('|') {
            return Err(err(
                &key("name"),
                format!("{:?}", task.name),
                "use letters, digits, `_`, `-` or `.`",
            ));
        }
        if !seen.insert(task.name.as_str()) {
            return Err(err(
                &key("name"),
                format!("{:?}", task.name),
                "another task has this name",
            ));
        }
        if task.train.as_os_str().is_empty() {
            return Err(err(&key("train"), "\"\"".into(), "give the training file"));
        }
        if !(task.weight.is_finite() && task.weight >= 0.0) {
            return Err(err(
                &key("weight"),
                task.weight.to_string(),
                "must be a number ≥ 0",
            ));
        }
        if !(task.sample_weight.is_finite()
            && task.sample_weight > 0.0
            && task.sample_weight <= 1000.0)
        {
            return Err(err(
                &key("sample_weight"),
                task.sample_weight.to_string(),
                "must be a number in (0, 1000]",
            ));
        }
        if let Some(labels) = &task.labels {
            if !task.kind.has_label_set() {
                return Err(err(
                    &key("labels"),
                    format!("{labels:?}"),
                    &format!(
                        "only classify and tagging tasks take labels, this one is {}",
                        task.kind
                    ),
                ));
            }
            let mut uniq = HashSet::new();
            if labels.is_empty() || labels.iter().any(|l| l.is_empty() || !uniq.insert(l)) {
                return Err(err(
                    &key("labels"),
                    format!("{labels:?}"),
                    "must be non-empty, distinct, non-empty strings",
                ));
            }
        }
        if let Some(lang) = &task.stem
            && matches!(task.kind, TaskKind::ExtractiveQa | TaskKind::Tagging)
        {
            return Err(err(
                &key("stem"),
                format!("{lang:?}"),
                &format!(
                    "stemming would break the {} spans; only lm, classify and generate tasks take it",
                    task.kind
                ),
            ));
        }
        if let Some(lang) = &task.stem
            && !crate::STEMMER_LANGUAGES.contains(&lang.as_str())
        {
            return Err(err(
                &key("stem"),
                format!("{lang:?}"),
                &format!(
                    "unknown language; expected one of {}",
                    crate::STEMMER_LANGUAGES.join(", ")
                ),
            ));
        }
        if task.max_len == Some(0) {
            return Err(err(&key("max_len"), "0".into(), "must be at least 1"));
        }
        if let Some(a) = &task.augment {
            finite_in(
                &key("augment.eda_alpha"),
                a.eda_alpha,
                0.0,
                1.0,
                "in [0, 1]",
            )?;
            finite_in(
                &key("augment.char_noise"),
                a.char_noise,
                0.0,
                1.0,
                "in [0, 1]",
            )?;
            finite_in(
                &key("augment.token_noise"),
                a.token_noise,
                0.0,
                1.0,
                "in [0, 1]",
            )?;
        }
        if task.kind == TaskKind::Lm && task.attention == Some(crate::Attention::Prefix) {
            return Err(err(
                &key("attention"),
                "\"prefix\"".into(),
                "an lm task has no input part; it is always causal",
            ));
        }
        if task.kind != TaskKind::Tagging && task.attention == Some(crate::Attention::Repeat) {
            return Err(err(
                &key("attention"),
                "\"repeat\"".into(),
                &format!(
                    "only tagging tasks read a repeated input; this one is {}",
                    task.kind
                ),
            ));
        }
        if task.tag_words.is_some() && task.kind != TaskKind::Tagging {
            return Err(err(
                &key("tag_words"),
                format!("{:?}", task.tag_words),
                &format!("only tagging tasks take it, this one is {}", task.kind),
            ));
        }
        if task.crf && task.kind != TaskKind::Tagging {
            return Err(err(
                &key("crf"),
                "true".to_string(),
                &format!("only tagging tasks take it, this one is {}", task.kind),
            ));
        }
        if let Some(p) = task.pool
            && task.kind != TaskKind::Classify
        {
            return Err(err(
                &key("pool"),
                p.as_str().to_string(),
                &format!("only classify tasks take it, this one is {}", task.kind),
            ));
        }
        if let Some(c) = task.tag_context {
            if task.kind != TaskKind::Tagging {
                return Err(err(
                    &key("tag_context"),
                    c.to_string(),
                    &format!("only tagging tasks take it, this one is {}", task.kind),
                ));
            }
            if c > 16 {
                return Err(err(&key("tag_context"), c.to_string(), "must be in 0..=16"));
            }
        }
        if task.kind == TaskKind::Lm && task.lm_aux_weight != 0.0 {
            return Err(err(
                &key("lm_aux_weight"),
                task.lm_aux_weight.to_string(),
                "an lm task is language modelling already",
            ));
        }
        finite_in(
            &key("lm_aux_weight"),
            task.lm_aux_weight,
            0.0,
            10.0,
            "in [0, 10]",
        )?;
        if let Some(d) = &task.decode {
            if task.kind != TaskKind::Generate {
                return Err(err(
                    &key("decode"),
                    "{ .. }".into(),
                    &format!("only generate tasks take it, this one is {}", task.kind),
                ));
            }
            positive(&key("decode.max_new_tokens"), d.max_new_tokens)?;
            positive(&key("decode.num_beams"), d.num_beams)?;
            finite_in(
                &key("decode.repetition_penalty"),
                d.repetition_penalty,
                1.0,
                10.0,
                "in [1, 10]",
            )?;
        }
        if let Some(g) = &task.generate_augment {
            if task.kind != TaskKind::Classify {
                return Err(err(
                    &key("generate_augment"),
                    "{ .. }".into(),
                    &format!("only classify tasks take it, this one is {}", task.kind),
                ));
            }
            positive(&key("generate_augment.n"), g.n)?;
            positive(&key("generate_augment.max_new_tokens"), g.max_new_tokens)?;
            finite_in(
                &key("generate_augment.min_confidence"),
                g.min_confidence,
                0.0,
                1.0,
                "in [0, 1]",
            )?;
            finite_in(
                &key("generate_augment.at_fraction"),
                g.at_fraction,
                0.0,
                0.95,
                "in [0, 0.95]",
            )?;
            finite_in(
                &key("generate_augment.temperature"),
                g.temperature,
                0.01,
                10.0,
                "in [0.01, 10]",
            )?;
        }
    }
    for (i, name) in c.tokenizer.train_on.iter().enumerate() {
        if !seen.contains(name.as_str()) {
            return Err(err(
                &format!("tokenizer.train_on[{i}]"),
                format!("{name:?}"),
                "no task has this name",
            ));
        }
    }
    if t.pretrain_steps > 0 && !c.tasks.iter().any(|t| t.kind == TaskKind::Lm) {
        return Err(err(
            "train.pretrain_steps",
            t.pretrain_steps.to_string(),
            "LM pretraining needs at least one task of kind \"lm\"",
        ));
    }
    Ok(())
}

fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
