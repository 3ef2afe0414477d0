//! Sentence generation for augmentation (LAMBADA, Anaby-Tavor et al. 2020): a copy of the
//! model is fine-tuned on `<|task:NAME|> label <|sep|> text <|endoftext|>` sequences of a
//! classification task, writes new texts conditioned on each label, and the current
//! classifier keeps those it assigns to the same label with enough confidence.
use crate::error::{Error, Result};
use crate::optim::AdamW;
use mtgpt_core::{Example, GenerateAugmentConfig, IGNORE_INDEX, ModelConfig, TaskKind};
use mtgpt_model::generate::{GenerateConfig, generate};
use mtgpt_tasks::{Formatted, HeadSpec, MultiTaskModel, Target, TaskFormatter, TaskHead};
use mtgpt_text::TextTokenizer;
use rand::seq::IndexedRandom as _;
use serde::Serialize;
use std::collections::HashSet;
use tch::{Device, Kind};

/// What one task's augmentation did.
#[derive(Debug, Clone, Serialize)]
pub struct AugmentOutcome {
    /// The task.
    pub task: String,
    /// Texts generated.
    pub generated: usize,
    /// Examples kept (classifier agreed with enough confidence, not a duplicate).
    pub kept: usize,
    /// Generator fine-tuning loss, first and last step.
    pub finetune_loss: (f64, f64),
    /// A few kept examples, `(label, text)`.
    pub samples: Vec<(String, String)>,
}

/// Learning rate of the generator's fine-tuning.
const GEN_LR: f64 = 3e-4;

/// Builds the conditioning prefix `<|task:NAME|> label <|sep|>` of `label`.
fn prefix(tok: &TextTokenizer, task: &str, label: &str) -> Result<Vec<i64>> {
    let task_id = tok
        .task_id(task)
        .ok_or_else(|| Error::Invalid(format!("the tokenizer has no token for task `{task}`")))?;
    let mut ids = vec![i64::from(task_id)];
    ids.extend(tok.encode_ids(label)?.into_iter().map(i64::from));
    ids.push(i64::from(tok.special().sep));
    Ok(ids)
}

/// Generates extra examples for the classification task `head` from `train` (its prepared
/// training examples). `model` is the model being trained (left unchanged); the generator
/// is a copy of its trunk.
#[allow(clippy::too_many_arguments)]
pub fn generate_examples(
    model: &MultiTaskModel,
    model_cfg: &ModelConfig,
    tok: &TextTokenizer,
    formatter: &TaskFormatter,
    head: &TaskHead,
    train: &[Example],
    cfg: &GenerateAugmentConfig,
    seed: u64,
    device: Device,
) -> Result<(Vec<Example>, AugmentOutcome)> {
    if head.kind != TaskKind::Classify || head.labels.is_empty() {
        return Err(Error::Invalid(format!(
            "task `{}`: generate_augment needs a classify task with labels",
            head.name
        )));
    }
    let block = model_cfg.block_size;
    let eot = i64::from(tok.special().endoftext);

    // 1. The generator: a copy of the trunk with an LM head, fine-tuned on label-prefixed text.
    let generator = MultiTaskModel::new(
        model_cfg,
        &[HeadSpec {
            pool: Default::default(),
            name: head.name.clone(),
            kind: TaskKind::Lm,
            num_labels: 0,
            tag_context: 0,
            crf: false,
        }],
        device,
    )?;
    let mut gvs = generator.vs;
    gvs.copy(&model.vs)
        .map_err(|e| Error::Invalid(format!("copying the trunk into the generator: {e}")))?;
    let generator = MultiTaskModel {
        vs: gvs,
        ..generator
    };
    // An LM head under the task's own name, so its task token prefixes the sequences.
    let lm_format = TaskFormatter::new(tok, &head.name, TaskKind::Lm, &[], block)?;
    let mut seqs = Vec::new();
    for ex in train {
        let Example::Classify { text, label, .. } = ex else {
            continue;
        };
        let mut ids = prefix(tok, &head.name, label)?;
        let n_prefix = ids.len();
        ids.extend(tok.encode_ids(text)?.into_iter().map(i64::from));
        ids.truncate(block - 1);
        ids.push(eot);
        // Loss on the text and the end only: the prefix is given at generation time.
        let mut targets: Vec<i64> = ids[1..].to_vec();
        targets.push(IGNORE_INDEX);
        for t in targets.iter_mut().take(n_prefix - 1) {
            *t = IGNORE_INDEX;
        }
        seqs.push(Formatted {
            ids,
            target: Target::Tokens(targets),
            input_len: 0,
        });
    }
    if seqs.is_empty() {
        return Err(Error::Invalid(format!(
            "task `{}`: no training examples to fine-tune the generator on",
            head.name
        )));
    }
    let mut rng = mtgpt_core::seed::rng_for(seed, "genaug");
    let mut opt = AdamW::new(&generator.vs, 0.9, 0.95, 1e-8, 0.0);
    let mut losses = Vec::new();
    for _ in 0..cfg.finetune_steps {
        let items: Vec<Formatted> = seqs.choose_multiple(&mut rng, 16).cloned().collect();
        let batch = lm_format.collate(&items)?;
        let out = generator.forward(&batch, true)?;
        let l = out.loss.double_value(&[]);
        out.loss.backward();
        opt.clip_grad_norm(1.0);
        if l.is_finite() {
            opt.step(GEN_LR);
        }
        opt.zero_grad();
        losses.push(l);
    }

    // 2. Generate, labels in turn.
    let gen_cfg = GenerateConfig {
        max_new_tokens: cfg.max_new_tokens.min(block.saturating_sub(8)).max(1),
        temperature: cfg.temperature,
        top_p: 0.95,
        stop_tokens: vec![eot, i64::from(tok.special().sep)],
        seed,
        ..GenerateConfig::default()
    };
    let seen: HashSet<String> = train
        .iter()
        .filter_map(|e| match e {
            Example::Classify { text, .. } => Some(text.trim().to_string()),
            _ => None,
        })
        .collect();
    let mut candidates = Vec::new();
    let labels = &head.labels;
    let mut round = 0u64;
    generator.select_task(&head.name)?;
    while candidates.len() < cfg.n {
        let want = (cfg.n - candidates.len()).min(32);
        let chosen: Vec<&String> = (0..want)
            .map(|i| &labels[(candidates.len() + i) % labels.len()])
            .collect();
        let prompts: Vec<Vec<i64>> = chosen
            .iter()
            .map(|l| prefix(tok, &head.name, l))
            .collect::<Result<_>>()?;
        let outs = generate(
            &generator.gpt,
            &prompts,
            i64::from(tok.special().pad),
            &GenerateConfig {
                seed: mtgpt_core::seed::derive_seed(seed, &format!("round/{round}")),
                ..gen_cfg.clone()
            },
        )?;
        round += 1;
        for (label, ids) in chosen.into_iter().zip(outs) {
            let ids: Vec<u32> = ids
                .into_iter()
                .filter(|&t| t >= 0)
                .map(|t| t as u32)
                .collect();
            let text = tok.decode(&ids, true)?.trim().to_string();
            candidates.push((label.clone(), text));
        }
    }
    let generated = candidates.len();

    // 3. Keep what the current classifier agrees with, confidently; no duplicates.
    let mut uniq = HashSet::new();
    let candidates: Vec<(String, String)> = candidates
        .into_iter()
        .filter(|(_, t)| t.chars().count() >= 2 && !seen.contains(t) && uniq.insert(t.clone()))
        .collect();
    let mut kept = Vec::new();
    for chunk in candidates.chunks(32) {
        let examples: Vec<Example> = chunk
            .iter()
            .map(|(label, text)| Example::Classify {
                text: text.clone(),
                text_pair: None,
                label: label.clone(),
            })
            .collect();
        let mut items = Vec::new();
        for (k, ex) in examples.iter().enumerate() {
            items.extend(formatter.format(ex, k)?);
        }
        let batch = formatter.collate(&items)?;
        let out = tch::no_grad(|| model.forward(&batch, false))?;
        let probs = out.logits.to_kind(Kind::Float).softmax(-1, Kind::Float);
        for (k, ex) in examples.into_iter().enumerate() {
            let Example::Classify { label, .. } = &ex else {
                continue;
            };
            let Some(class) = labels.iter().position(|l| l == label) else {
                continue;
            };
            let row = probs.get(k as i64);
            let best = row.argmax(0, false).int64_value(&[]) as usize;
            let p = row.double_value(&[class as i64]);
            if best == class && p >= cfg.min_confidence {
                kept.push(ex);
            }
        }
    }
    let samples = kept
        .iter()
        .take(5)
        .filter_map(|e| match e {
            Example::Classify { text, label, .. } => Some((label.clone(), text.clone())),
            _ => None,
        })
        .collect();
    let outcome = AugmentOutcome {
        task: head.name.clone(),
        generated,
        kept: kept.len(),
        finetune_loss: (
            losses.first().copied().unwrap_or(f64::NAN),
            losses.last().copied().unwrap_or(f64::NAN),
        ),
        samples,
    };
    Ok((kept, outcome))
}
