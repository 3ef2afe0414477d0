//! Predictions and per-task scores of a multi-task model (metrics from `mtgpt-metrics`).
use crate::error::{Error, Result};
use crate::folder::TaskHead;
use crate::format::{Formatted, Target, TaskFormatter, span_text};
use crate::heads::{MultiTaskModel, best_span};
use crate::viterbi::{TagScheme, argmax_path};
use mtgpt_core::{Attention, DecodeConfig, Example, IGNORE_INDEX, TaskKind};
use mtgpt_metrics as metrics;
use mtgpt_model::{GenerateConfig, generate};
use mtgpt_text::TextTokenizer;
use serde::Serialize;
use std::collections::BTreeMap;
use tch::{Kind, Reduction, Tensor};

/// One prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Prediction {
    /// `lm`: mean negative log-likelihood (nats per token) and the token count.
    Lm {
        /// Mean NLL.
        nll: f64,
        /// Tokens scored.
        tokens: usize,
    },
    /// `classify`: the label and every label's probability.
    Class {
        /// Predicted label.
        label: String,
        /// Probabilities in label order.
        probs: Vec<f64>,
    },
    /// `extractive_qa`: the answer text and its char offset in the context (`None`: none found).
    Span {
        /// Answer text.
        text: String,
        /// Char offset in the context.
        start: Option<usize>,
    },
    /// `tagging`: one tag per input token.
    Tags(Vec<String>),
    /// `generate`: the generated text.
    Text(String),
}

/// Scores of one task on one split.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TaskScores {
    /// Task name.
    pub task: String,
    /// Task kind.
    pub kind: TaskKind,
    /// Examples scored.
    pub examples: usize,
    /// Metric name → value (0–1 except `loss`, `perplexity` and `bleu` 0–100).
    pub metrics: BTreeMap<String, f64>,
    /// The metric that summarises the task (`perplexity` for lm, lower is better; others
    /// higher is better, 0–1).
    pub primary: String,
}

/// Runs one task's head over examples.
pub struct Evaluator<'a> {
    model: &'a MultiTaskModel,
    tok: &'a TextTokenizer,
    task: &'a TaskHead,
    fmt: TaskFormatter<'a>,
    /// Examples per forward pass.
    pub batch: usize,
    /// How `generate` decodes (greedy; the task's settings unless changed).
    pub decode: DecodeConfig,
    /// `tagging`: decode the best tag path the scheme allows (BIO/BMES, [`TagScheme`])
    /// instead of each word's most likely tag.
    pub constrained: bool,
    /// `classify`, `tagging`, `extractive_qa`: run each chunk's sequences packed end to end
    /// ([`MultiTaskModel::forward_packed`]; the same outputs up to float rounding, far fewer
    /// padding tokens). On by default.
    pub packed: bool,
    /// `classify` and `tagging`: answers that do not depend on the other examples of a call
    /// (what `mtgpt predict` and `mtgpt serve` need to agree). Each chunk is split by
    /// length into groups padded to a multiple of [`INVARIANT_BUCKET`] tokens and run
    /// unpacked, so an example's attention rows have the same length and its matrix products
    /// the same shapes whatever shares its chunk; in bf16 on CPU (row-invariant oneDNN
    /// products) the outputs are then bit for bit those of the example alone. Off by default
    /// (scoring packs, which is faster and equal up to float rounding).
    pub invariant: bool,
    scheme: TagScheme,
}

/// Padded lengths of [`Evaluator::invariant`] are multiples of this many tokens.
pub const INVARIANT_BUCKET: usize = 8;

fn has_cjk(s: &str) -> bool {
    s.chars().any(mtgpt_text::segment::is_han)
}

impl<'a> Evaluator<'a> {
    /// An evaluator for `task` with sequences of at most `max_len` tokens.
    pub fn new(
        model: &'a MultiTaskModel,
        tok: &'a TextTokenizer,
        task: &'a TaskHead,
        max_len: usize,
    ) -> Result<Self> {
        let max_len = max_len.min(model.gpt.config.block_size);
        let fmt = TaskFormatter::new(tok, &task.name, task.kind, &task.labels, max_len)?
            .with_options(task.attention, 0.0)
            .with_word_groups(task.tag_words, &task.word_splits)?;
        Ok(Evaluator {
            model,
            tok,
            task,
            fmt,
            batch: 16,
            packed: true,
            invariant: false,
            decode: task.decode(),
            constrained: true,
            scheme: TagScheme::new(&task.labels),
        })
    }

    /// Predictions for `examples` (their gold fields are not used, except a tagging example's
    /// tag count).
    pub fn predict(&self, examples: &[Example]) -> Result<Vec<Prediction>> {
        self.predict_with(examples, None)
    }

    /// [`Evaluator::predict`]; a tagging task also puts each word's most likely tag (argmax,
    /// from the same forward pass) into `argmax` when given.
    fn predict_with(
        &self,
        examples: &[Example],
        mut argmax: Option<&mut Vec<Prediction>>,
    ) -> Result<Vec<Prediction>> {
        tch::no_grad(|| {
            let mut out = Vec::with_capacity(examples.len());
            for (c, chunk) in examples.chunks(self.batch.max(1)).enumerate() {
                out.extend(self.predict_chunk(chunk, c * self.batch, argmax.as_deref_mut())?);
            }
            Ok(out)
        })
    }

    fn predict_chunk(
        &self,
        chunk: &[Example],
        offset: usize,
        argmax: Option<&mut Vec<Prediction>>,
    ) -> Result<Vec<Prediction>> {
        if self.task.kind == TaskKind::Generate {
            return self.generate(chunk);
        }
        let mut items = Vec::new();
        for (i, ex) in chunk.iter().enumerate() {
            // Formatting needs a label for classify/tagging; any known one will do here.
            let ex = match ex {
                Example::Classify {
                    text, text_pair, ..
                } => Example::Classify {
                    text: text.clone(),
                    text_pair: text_pair.clone(),
                    label: self.task.labels[0].clone(),
                },
                Example::Tagging { tokens, .. } => Example::Tagging {
                    tokens: tokens.clone(),
                    tags: vec![self.task.labels[0].clone(); tokens.len()],
                },
                other => other.clone(),
            };
            items.extend(self.fmt.format(&ex, offset + i)?);
        }
        let per_example = matches!(self.task.kind, TaskKind::Classify | TaskKind::Tagging)
            && items.len() == chunk.len();
        if !(self.invariant && per_example) {
            return self.score_items(chunk, &items, offset, None, argmax);
        }
        // Groups of examples by padded length, each run on its own; answers put back in order.
        // Rows that fill their padded length exactly form groups of their own: a batch
        // without padding takes the trunk's unmasked causal attention, one with padding the
        // masked kernel, and the two round differently.
        let block = self.model.gpt.config.block_size;
        let mut groups: BTreeMap<(usize, bool), Vec<usize>> = BTreeMap::new();
        for (i, it) in items.iter().enumerate() {
            let len = it.ids.len().max(1);
            let padded = (len.div_ceil(INVARIANT_BUCKET) * INVARIANT_BUCKET)
                .min(block)
                .max(len);
            groups.entry((padded, padded == len)).or_default().push(i);
        }
        let mut out: Vec<Option<Prediction>> = vec![None; chunk.len()];
        let mut free: Vec<Option<Prediction>> = vec![None; chunk.len()];
        for ((padded, _), idx) in groups {
            let sub: Vec<Example> = idx.iter().map(|&i| chunk[i].clone()).collect();
            let sub_items: Vec<Formatted> = idx.iter().map(|&i| items[i].clone()).collect();
            let mut sub_free = Vec::new();
            let preds = mtgpt_model::batch_invariant(|| {
                self.score_items(
                    &sub,
                    &sub_items,
                    0,
                    Some(padded),
                    argmax.is_some().then_some(&mut sub_free),
                )
            })?;
            for (k, p) in preds.into_iter().enumerate() {
                out[idx[k]] = Some(p);
            }
            for (k, p) in sub_free.into_iter().enumerate() {
                free[idx[k]] = Some(p);
            }
        }
        if let Some(a) = argmax {
            a.extend(free.into_iter().flatten());
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Predictions for `chunk` from its formatted `items` (`offset`: the chunk's first example
    /// index, as given to the formatter); `pad_to`: rows padded to that many tokens and run
    /// unpacked ([`Evaluator::invariant`]).
    fn score_items(
        &self,
        chunk: &[Example],
        items: &[Formatted],
        offset: usize,
        pad_to: Option<usize>,
        mut argmax: Option<&mut Vec<Prediction>>,
    ) -> Result<Vec<Prediction>> {
        let batch = self.fmt.collate_to(items, pad_to.unwrap_or(0))?;
        let one = std::slice::from_ref(&batch);
        // Packed only when that saves at least a tenth of the token slots: rows of about
        // equal length (one text sent 32 times) gain nothing and pay for longer attention rows.
        let packed = if self.packed && pad_to.is_none() && self.task.kind != TaskKind::Lm {
            let p = self.model.pack(one, self.model.gpt.config.block_size)?;
            let padded = batch.batch_size * batch.seq_len;
            ((p.rows * p.cols) as f64 <= 0.9 * padded as f64).then_some(p)
        } else {
            None
        };
        let logits = match packed {
            _ if self.task.kind == TaskKind::Classify => {
                self.model.classify_logits(&batch, packed.as_ref())?
            }
            Some(p) => self.model.forward_packing(one, &p, false)?.remove(0).logits,
            None => self.model.forward(&batch, false)?.logits,
        };
        match self.task.kind {
            TaskKind::Lm => {
                let t = batch.seq_len as i64;
                let Target::Tokens(_) = &items[0].target else {
                    unreachable!()
                };
                let mtgpt_core::Targets::Tokens(tg) = &batch.targets else {
                    unreachable!()
                };
                let targets = Tensor::from_slice(tg).view([-1]).to_device(logits.device());
                let v = logits.size()[2];
                let nll = logits
                    .view([-1, v])
                    .cross_entropy_loss::<Tensor>(
                        &targets,
                        None,
                        Reduction::None,
                        IGNORE_INDEX,
                        0.0,
                    )
                    .view([-1, t]);
                let counts: Vec<i64> = Vec::try_from(
                    &targets
                        .view([-1, t])
                        .ne(IGNORE_INDEX)
                        .sum_dim_intlist(1, false, Kind::Int64),
                )?;
                let sums: Vec<f64> = Vec::try_from(&nll.sum_dim_intlist(1, false, Kind::Double))?;
                Ok(sums
                    .iter()
                    .zip(&counts)
                    .map(|(s, &n)| Prediction::Lm {
                        nll: s / n.max(1) as f64,
                        tokens: n as usize,
                    })
                    .collect())
            }
            TaskKind::Classify => {
                let probs = logits.softmax(-1, Kind::Double);
                (0..chunk.len() as i64)
                    .map(|r| {
                        let p: Vec<f64> = Vec::try_from(&probs.get(r))?;
                        let best = p
                            .iter()
                            .enumerate()
                            .max_by(|a, b| a.1.total_cmp(b.1))
                            .map_or(0, |(i, _)| i);
                        Ok(Prediction::Class {
                            label: self.task.labels[best].clone(),
                            probs: p,
                        })
                    })
                    .collect()
            }
            TaskKind::Tagging => {
                let logp = logits.log_softmax(-1, Kind::Float);
                let crf = self.model.tag_transitions(&self.task.name);
                let fallback = if self.task.labels.iter().any(|l| l == "O") {
                    "O".to_string()
                } else {
                    self.task.labels[0].clone()
                };
                let mut out = Vec::with_capacity(chunk.len());
                for (r, (it, ex)) in items.iter().zip(chunk).enumerate() {
                    let Target::Tags(tg) = &it.target else {
                        unreachable!()
                    };
                    let Example::Tagging { tokens, .. } = ex else {
                        unreachable!()
                    };
                    // One row of label log-probabilities per labelled position.
                    let at: Vec<i64> = (0..tg.len() as i64)
                        .filter(|&p| tg[p as usize] != IGNORE_INDEX)
                        .collect();
                    let rows = logp
                        .get(r as i64)
                        .index_select(0, &Tensor::from_slice(&at).to_device(logp.device()));
                    let rows: Vec<Vec<f32>> = Vec::try_from(&rows)?;
                    let groups = self.fmt.groups_of(tokens);
                    // Words cut by max_len get the fallback tag; a word group's tag is spread
                    // over its tokens.
                    let tags = |path: Vec<usize>| {
                        let mut t: Vec<String> = path
                            .into_iter()
                            .map(|p| self.task.labels[p].clone())
                            .collect();
                        if let Some(g) = &groups {
                            t.resize(g.len(), fallback.clone());
                            t = crate::format::expand_group_tags(g, &t);
                        }
                        t.resize(tokens.len(), fallback.clone());
                        Prediction::Tags(t)
                    };
                    let free = tags(argmax_path(&rows));
                    if self.constrained {
                        out.push(tags(self.scheme.decode_with(&rows, crf.as_ref())));
                        if let Some(a) = argmax.as_deref_mut() {
                            a.push(free);
                        }
                    } else {
                        if let Some(a) = argmax.as_deref_mut() {
                            a.push(free.clone());
                        }
                        out.push(free);
                    }
                }
                Ok(out)
            }
            TaskKind::ExtractiveQa => {
                // The best-scoring span over all windows of each example.
                let mut best: Vec<Option<(f32, String, usize)>> = vec![None; chunk.len()];
                for (r, it) in items.iter().enumerate() {
                    let Target::Span {
                        offsets, example, ..
                    } = &it.target
                    else {
                        unreachable!()
                    };
                    let Example::ExtractiveQa { context, .. } = &chunk[example - offset] else {
                        unreachable!()
                    };
                    let row = logits.get(r as i64);
                    let allowed: Vec<bool> = offsets.iter().map(Option::is_some).collect();
                    let Some((s, e)) = best_span(&row, &allowed, 30) else {
                        continue;
                    };
                    let score = row.get(s as i64).get(0).double_value(&[])
                        + row.get(e as i64).get(1).double_value(&[]);
                    let Some(text) = span_text(context, offsets, s, e) else {
                        continue;
                    };
                    let raw_start = offsets[s].map_or(0, |o| o.0);
                    let lead = context
                        .chars()
                        .skip(raw_start)
                        .take_while(|c| c.is_whitespace())
                        .count();
                    let slot = &mut best[example - offset];
                    if slot.as_ref().is_none_or(|(b, _, _)| (score as f32) > *b) {
                        *slot = Some((score as f32, text, raw_start + lead));
                    }
                }
                Ok(best
                    .into_iter()
                    .map(|b| match b {
                        Some((_, text, start)) => Prediction::Span {
                            text,
                            start: Some(start),
                        },
                        None => Prediction::Span {
                            text: String::new(),
                            start: None,
                        },
                    })
                    .collect())
            }
            TaskKind::Generate => unreachable!(),
        }
    }

    fn generate(&self, chunk: &[Example]) -> Result<Vec<Prediction>> {
        let sp = self.tok.special();
        let task_id = self.tok.task_id(&self.task.name).unwrap_or(0) as i64;
        let block = self.model.gpt.config.block_size;
        let room = block
            .saturating_sub(self.decode.max_new_tokens.min(block / 2) + 2)
            .max(1);
        let prompts: Vec<Vec<i64>> = chunk
            .iter()
            .map(|ex| {
                let Example::Generate { source, .. } = ex else {
                    return Err(Error::Invalid("not a generate example".into()));
                };
                let mut ids: Vec<i64> = self
                    .tok
                    .encode_ids(source)?
                    .into_iter()
                    .map(i64::from)
                    .collect();
                if ids.len() > room {
                    ids.drain(..ids.len() - room);
                }
                let mut p = vec![task_id];
                p.extend(ids);
                p.push(sp.sep as i64);
                Ok(p)
            })
            .collect::<Result<_>>()?;
        let cfg = GenerateConfig {
            max_new_tokens: self.decode.max_new_tokens,
            greedy: true,
            stop_tokens: vec![sp.endoftext as i64],
            no_repeat_ngram_size: self.decode.no_repeat_ngram_size,
            repetition_penalty: self.decode.repetition_penalty,
            min_new_tokens: self.decode.min_new_tokens,
            num_beams: self.decode.num_beams,
            prefix_prompt: self.task.attention == Attention::Prefix,
            ..Default::default()
        };
        self.model.select_task(&self.task.name)?;
        let outs = generate(&self.model.gpt, &prompts, sp.pad as i64, &cfg)?;
        outs.into_iter()
            .map(|o| {
                let ids: Vec<u32> = o.into_iter().map(|i| i as u32).collect();
                Ok(Prediction::Text(
                    self.tok.decode(&ids, true)?.trim().to_string(),
                ))
            })
            .collect()
    }

    /// Scores on labelled examples.
    pub fn evaluate(&self, examples: &[Example]) -> Result<TaskScores> {
        if examples.is_empty() {
            return Err(Error::Invalid(format!(
                "task `{}`: nothing to evaluate",
                self.task.name
            )));
        }
        let mut free = Vec::new();
        let preds = self.predict_with(examples, Some(&mut free))?;
        let mut scores = score_predictions(&self.task.name, self.task.kind, examples, &preds)?;
        if self.task.kind == TaskKind::Tagging && self.constrained {
            // What the constraint buys: the same model decoded word by word.
            let f = score_predictions(&self.task.name, self.task.kind, examples, &free)?;
            scores
                .metrics
                .insert("span_f1_argmax".into(), f.metrics["span_f1"]);
        }
        Ok(scores)
    }
}

/// The scores of predictions `preds` of task `task` (kind `kind`) against the gold fields of
/// `examples` (one prediction per example): the metrics every model and every baseline of a
/// task kind is scored by.
pub fn score_predictions(
    task: &str,
    kind: TaskKind,
    examples: &[Example],
    preds: &[Prediction],
) -> Result<TaskScores> {
    if examples.is_empty() || preds.len() != examples.len() {
        return Err(Error::Invalid(format!(
            "task `{task}`: {} predictions for {} examples",
            preds.len(),
            examples.len()
        )));
    }
    let m = |e: metrics::Error| Error::Invalid(e.to_string());
    let mut out = BTreeMap::new();
    let primary = match kind {
        TaskKind::Lm => {
            let (mut sum, mut n) = (0.0, 0usize);
            for p in preds {
                if let Prediction::Lm { nll, tokens } = p {
                    sum += nll * *tokens as f64;
                    n += tokens;
                }
            }
            let loss = sum / n.max(1) as f64;
            out.insert("loss".into(), loss);
            out.insert("perplexity".into(), metrics::perplexity(loss));
            "perplexity"
        }
        TaskKind::Classify => {
            let pred: Vec<&str> = preds
                .iter()
                .map(|p| {
                    if let Prediction::Class { label, .. } = p {
                        label.as_str()
                    } else {
                        ""
                    }
                })
                .collect();
            let gold: Vec<&str> = examples
                .iter()
                .map(|e| {
                    if let Example::Classify { label, .. } = e {
                        label.as_str()
                    } else {
                        ""
                    }
                })
                .collect();
            out.insert(
                "accuracy".into(),
                metrics::accuracy(&pred, &gold).map_err(m)?,
            );
            out.insert(
                "macro_f1".into(),
                metrics::macro_f1(&pred, &gold).map_err(m)?,
            );
            "accuracy"
        }
        TaskKind::ExtractiveQa => {
            let pred: Vec<&str> = preds
                .iter()
                .map(|p| {
                    if let Prediction::Span { text, .. } = p {
                        text.as_str()
                    } else {
                        ""
                    }
                })
                .collect();
            let gold: Vec<[&str; 1]> = examples
                .iter()
                .map(|e| {
                    if let Example::ExtractiveQa { answer, .. } = e {
                        [answer.text.as_str()]
                    } else {
                        [""]
                    }
                })
                .collect();
            let s = metrics::qa_scores(&pred, &gold).map_err(m)?;
            out.insert("exact_match".into(), s.exact_match);
            out.insert("f1".into(), s.f1);
            "f1"
        }
        TaskKind::Tagging => {
            let pred: Vec<Vec<String>> = preds
                .iter()
                .map(|p| {
                    if let Prediction::Tags(t) = p {
                        t.clone()
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            let gold: Vec<Vec<String>> = examples
                .iter()
                .map(|e| {
                    if let Example::Tagging { tags, .. } = e {
                        tags.clone()
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            let r = metrics::span_report(&pred, &gold).map_err(m)?;
            out.insert("span_f1".into(), r.f1);
            out.insert("token_accuracy".into(), r.token_accuracy);
            "span_f1"
        }
        TaskKind::Generate => {
            let pred: Vec<&str> = preds
                .iter()
                .map(|p| {
                    if let Prediction::Text(t) = p {
                        t.as_str()
                    } else {
                        ""
                    }
                })
                .collect();
            let gold: Vec<&str> = examples
                .iter()
                .map(|e| {
                    if let Example::Generate { target, .. } = e {
                        target.as_str()
                    } else {
                        ""
                    }
                })
                .collect();
            let zh = gold.iter().any(|g| has_cjk(g));
            let bleu = metrics::corpus_bleu(
                &pred,
                &gold,
                if zh {
                    metrics::BleuTokenize::Zh
                } else {
                    metrics::BleuTokenize::Mteval13a
                },
            )
            .map_err(m)?;
            let rouge = metrics::rouge_corpus(
                &pred,
                &gold,
                if zh {
                    metrics::RougeTokenize::Chars
                } else {
                    metrics::RougeTokenize::Default
                },
            )
            .map_err(m)?;
            let em = pred
                .iter()
                .zip(&gold)
                .filter(|(p, g)| metrics::exact_match(p, g))
                .count() as f64
                / pred.len() as f64;
            out.insert("bleu".into(), bleu.score);
            out.insert("rouge_l".into(), rouge.rouge_l.fmeasure);
            out.insert("exact_match".into(), em);
            "rouge_l"
        }
    };
    Ok(TaskScores {
        task: task.to_string(),
        kind,
        examples: examples.len(),
        metrics: out,
        primary: primary.into(),
    })
}

impl Evaluator<'_> {
    /// LM scores on a token stream (a `prep` `.bin` split): consecutive windows, each after the
    /// task token, at most `max_tokens` tokens in all.
    pub fn evaluate_lm_tokens(&self, tokens: &[u32], max_tokens: usize) -> Result<TaskScores> {
        use crate::format::Formatted;
        let task_id = self.tok.task_id(&self.task.name).unwrap_or(0) as i64;
        let window = self.model.gpt.config.block_size.saturating_sub(1).max(1);
        let tokens = &tokens[..tokens.len().min(max_tokens)];
        let items: Vec<Formatted> = tokens
            .chunks(window)
            .filter(|c| !c.is_empty())
            .map(|c| Formatted::lm_window(task_id, c))
            .collect();
        if items.is_empty() {
            return Err(Error::Invalid(format!(
                "task `{}`: no tokens to evaluate",
                self.task.name
            )));
        }
        let (mut sum, mut n) = (0.0, 0i64);
        tch::no_grad(|| -> Result<()> {
            for group in items.chunks(self.batch.max(1)) {
                let batch = self.fmt.collate(group)?;
                let out = self.model.forward(&batch, false)?;
                let mtgpt_core::Targets::Tokens(tg) = &batch.targets else {
                    unreachable!()
                };
                let count = tg.iter().filter(|&&t| t != IGNORE_INDEX).count() as i64;
                sum += out.loss.double_value(&[]) * count as f64;
                n += count;
            }
            Ok(())
        })?;
        let loss = sum / n.max(1) as f64;
        let metrics = BTreeMap::from([
            ("loss".to_string(), loss),
            ("perplexity".to_string(), metrics::perplexity(loss)),
        ]);
        Ok(TaskScores {
            task: self.task.name.clone(),
            kind: TaskKind::Lm,
            examples: items.len(),
            metrics,
            primary: "perplexity".into(),
        })
    }
}

/// The mean primary score of the non-LM tasks (all 0–1, higher is better); `None` if there
/// are none.
pub fn aggregate(scores: &[TaskScores]) -> Option<f64> {
    let v: Vec<f64> = scores
        .iter()
        .filter(|s| s.kind != TaskKind::Lm)
        .filter_map(|s| s.metrics.get(&s.primary).copied())
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}
