//! One head per task kind on a shared GPT trunk, with its loss and predictions, and
//! [`MultiTaskModel`]: the trunk plus named heads whose parameters live apart under
//! `heads.<task>.*`.
use crate::crf::{Crf, Transitions};
use crate::error::{Error, Result};
use mtgpt_core::AdapterConfig;
use mtgpt_core::{Batch, IGNORE_INDEX, ModelConfig, Pool, Targets, TaskKind};
use mtgpt_model::{AdapterLayout, Gpt, Linear};
use std::collections::BTreeMap;
use tch::{Device, Kind, Reduction, Tensor, nn};

/// A task's head.
#[derive(Debug)]
pub enum Head {
    /// `lm` and `generate`: the tied LM head of the trunk (no parameters of its own).
    Lm,
    /// `classify`: the input pooled ([`Pool`]: last real token or mean) → linear over the
    /// classes.
    Classify {
        /// `[d] → classes`.
        lin: Linear,
        /// How the input is pooled.
        pool: Pool,
    },
    /// `extractive_qa`: per-token start and end logits.
    Span(Linear),
    /// `tagging`: per-token tag logits from the token's hidden state and those of the
    /// `context` tokens after it (right context on a causal trunk; 0 = the token alone).
    Tagging {
        /// `[d·(context + 1)] → tags`.
        lin: Linear,
        /// How many following tokens the head reads.
        context: i64,
        /// A linear-chain CRF over the tag scores (`crf = true`): trained by the sequence
        /// likelihood, decoded by Viterbi with its learnt transitions.
        crf: Option<Crf>,
    },
}

/// What a head returns for a batch.
#[derive(Debug)]
pub struct HeadOutput {
    /// Mean loss over supervised positions / rows, plus `lm_aux_weight` × `aux_loss` when
    /// the batch asks for the auxiliary LM loss.
    pub loss: Tensor,
    /// The auxiliary LM loss on the input part (unweighted), when the batch asks for it.
    pub aux_loss: Option<Tensor>,
    /// `lm`/`generate` `[B, T, V]`; `classify` `[B, C]`; `extractive_qa` `[B, T, 2]`
    /// (padding at -1e9); `tagging` `[B, T, K]`.
    pub logits: Tensor,
}

/// The trunk and one head per task.
#[derive(Debug)]
pub struct MultiTaskModel {
    /// Owns every weight: `transformer.*` (trunk) and `heads.<task>.*`.
    pub vs: nn::VarStore,
    /// The shared trunk.
    pub gpt: Gpt,
    /// Heads by task name.
    pub heads: BTreeMap<String, (TaskKind, Head)>,
}

/// A task a [`MultiTaskModel`] serves: its name, kind and (for classify/tagging) label count.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadSpec {
    /// Task name.
    pub name: String,
    /// Task kind.
    pub kind: TaskKind,
    /// Number of classes or tags (0 for the other kinds).
    pub num_labels: usize,
    /// `tagging`: how many following tokens the tag head reads (0 for the other kinds).
    pub tag_context: usize,
    /// `tagging`: a CRF layer over the tag scores (false for the other kinds).
    pub crf: bool,
    /// `classify`: how the head pools the input ([`Pool::Last`] for the other kinds).
    pub pool: Pool,
}

fn to_tensor(v: &[i64], shape: &[i64], dev: Device) -> Tensor {
    Tensor::from_slice(v).view(shape).to_device(dev)
}

impl MultiTaskModel {
    /// A freshly initialised trunk with heads for `specs`.
    pub fn new(config: &ModelConfig, specs: &[HeadSpec], device: Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let gpt = Gpt::new(&vs.root(), config)?;
        let d = config.d_model as i64;
        let mut heads = BTreeMap::new();
        for s in specs {
            let p = vs.root() / "heads" / s.name.as_str();
            if s.kind.has_label_set() && s.num_labels == 0 {
                return Err(Error::Invalid(format!(
                    "task `{}` ({}) needs at least one label",
                    s.name, s.kind
                )));
            }
            let head = match s.kind {
                TaskKind::Lm | TaskKind::Generate => Head::Lm,
                TaskKind::Classify => Head::Classify {
                    lin: Linear::new(&p / "score", d, s.num_labels as i64, 0.02),
                    pool: s.pool,
                },
                TaskKind::ExtractiveQa => Head::Span(Linear::new(&p / "span", d, 2, 0.02)),
                TaskKind::Tagging => {
                    let context = s.tag_context as i64;
                    let k = s.num_labels as i64;
                    Head::Tagging {
                        lin: Linear::new(&p / "tag", d * (context + 1), k, 0.02),
                        context,
                        crf: s.crf.then(|| Crf::new(&(&p / "crf"), k)),
                    }
                }
            };
            heads.insert(s.name.clone(), (s.kind, head));
        }
        Ok(MultiTaskModel { vs, gpt, heads })
    }

    /// Freezes (or unfreezes) the trunk: only head parameters train (linear probes on frozen
    /// features). `lm`/`generate` tasks have no head parameters and learn nothing while frozen.
    pub fn freeze_trunk(&self, frozen: bool) {
        for (name, t) in self.vs.variables() {
            if name.starts_with("transformer.") {
                let _ = t.set_requires_grad(!frozen);
            }
        }
    }

    /// Puts adapters on the trunk as `[adapters]` says, per task for `tasks` (the heads'
    /// task names); their weights join the variable store under `adapters.*`.
    pub fn add_adapters(&mut self, config: &AdapterConfig) -> Result<()> {
        let tasks: Vec<String> = self.heads.keys().cloned().collect();
        let layout = AdapterLayout::new(config, &tasks);
        self.gpt.add_adapters(&self.vs.root(), &layout)?;
        Ok(())
    }

    /// Makes every following trunk pass (generation, embeddings, logits) go through task
    /// `task`'s adapters; no-op on a trunk without adapters. [`MultiTaskModel::forward`]
    /// selects the batch's task itself.
    pub fn select_task(&self, task: &str) -> Result<()> {
        Ok(self.gpt.select_task(task)?)
    }

    /// The learnt CRF scores of tagging task `task`, if its head has a CRF.
    pub fn tag_transitions(&self, task: &str) -> Option<Transitions> {
        match self.heads.get(task) {
            Some((_, Head::Tagging { crf: Some(c), .. })) => Some(c.transitions()),
            _ => None,
        }
    }

    /// Trainable parameters (elements): `(trainable, all)`.
    pub fn parameter_counts(&self) -> (i64, i64) {
        self.vs.variables().values().fold((0, 0), |(t, a), v| {
            let n = v.numel() as i64;
            (t + if v.requires_grad() { n } else { 0 }, a + n)
        })
    }

    /// Runs the trunk and the batch's head. `train` turns dropout on.
    pub fn forward(&self, batch: &Batch, train: bool) -> Result<HeadOutput> {
        let mut out = self.forward_mixed(std::slice::from_ref(batch), train)?;
        Ok(out.remove(0))
    }

    /// Runs several batches (of one task each, e.g. the task groups of a mixed step) through
    /// **one** trunk pass — rows stacked and right-padded to the longest, every row through
    /// its own task's adapter and with its own task's attention — then each batch's head on
    /// its rows. The outputs equal [`MultiTaskModel::forward`] on each batch up to float
    /// rounding (padding is exact). An auxiliary LM loss under prefix attention still takes a
    /// second, causal pass over its batch.
    pub fn forward_mixed(&self, batches: &[Batch], train: bool) -> Result<Vec<HeadOutput>> {
        let Some(first) = batches.first() else {
            return Ok(Vec::new());
        };
        let dev = self.gpt.device();
        let kinds = self.kinds(batches)?;
        // Stack the rows, right-padded to the longest batch.
        let t_max = batches.iter().map(|b| b.seq_len).max().unwrap_or(1);
        let rows: usize = batches.iter().map(|b| b.batch_size).sum();
        let (mut ids, mut mask) = (vec![0i64; rows * t_max], vec![0i64; rows * t_max]);
        let mut prefix_len = vec![0i64; rows];
        let mut any_prefix = false;
        let mut names: Vec<&str> = Vec::with_capacity(rows);
        let mut r0 = 0;
        for (batch, kind) in batches.iter().zip(&kinds) {
            let prefix = batch.prefix_attention && *kind != TaskKind::Lm;
            any_prefix |= prefix;
            for r in 0..batch.batch_size {
                let (src, dst) = (r * batch.seq_len, (r0 + r) * t_max);
                ids[dst..dst + batch.seq_len]
                    .copy_from_slice(&batch.input_ids[src..src + batch.seq_len]);
                for (m, &x) in mask[dst..dst + batch.seq_len]
                    .iter_mut()
                    .zip(&batch.attention_mask[src..src + batch.seq_len])
                {
                    *m = x as i64;
                }
                if prefix {
                    prefix_len[r0 + r] = batch.input_len[r] as i64;
                }
                names.push(batch.task.as_str());
            }
            r0 += batch.batch_size;
        }
        let (b, t) = (rows as i64, t_max as i64);
        let ids_t = to_tensor(&ids, &[b, t], dev);
        let mask_t = to_tensor(&mask, &[b, t], dev);
        let padded = mask.contains(&0);
        let prefix_t = any_prefix.then(|| to_tensor(&prefix_len, &[b], dev));
        match &self.gpt.adapters {
            Some(layout) if batches.iter().any(|x| x.task != first.task) => {
                self.gpt.select_adapters(
                    layout
                        .rows_per_example(&names, dev)
                        .map_err(Error::Invalid)?,
                )
            }
            _ => self.gpt.select_task(&first.task)?,
        }
        let hidden = self
            .gpt
            .forward_full(
                &ids_t,
                padded.then_some(&mask_t),
                prefix_t.as_ref(),
                None,
                train,
                false,
            )?
            .hidden;
        let mut outs = Vec::with_capacity(batches.len());
        let mut r0 = 0i64;
        for (batch, kind) in batches.iter().zip(&kinds) {
            let (bg, tg) = (batch.batch_size as i64, batch.seq_len as i64);
            // The batch's own rows and positions of the stacked pass.
            let own = |x: &Tensor| {
                if batches.len() == 1 {
                    x.shallow_clone()
                } else {
                    x.narrow(0, r0, bg).narrow(1, 0, tg)
                }
            };
            let (h, ids, mask) = (own(&hidden), own(&ids_t), own(&mask_t));
            r0 += bg;
            outs.push(self.head_forward(batch, *kind, h, &ids, &mask, train, true)?);
        }
        Ok(outs)
    }

    /// The task kind of each batch (whose shapes are checked), or an error naming a task
    /// without a head.
    fn kinds(&self, batches: &[Batch]) -> Result<Vec<TaskKind>> {
        batches
            .iter()
            .map(|batch| {
                batch.check_shapes().map_err(Error::Invalid)?;
                self.heads
                    .get(&batch.task)
                    .map(|(kind, _)| *kind)
                    .ok_or_else(|| Error::Invalid(format!("no head for task `{}`", batch.task)))
            })
            .collect()
    }

    /// Whether the trunk selects adapters per task.
    fn per_task_adapters(&self) -> bool {
        self.gpt
            .adapters
            .as_ref()
            .is_some_and(|l| l.mode.per_task())
    }

    /// How [`MultiTaskModel::forward_packed`] packs `batches` into rows of at most `cols`
    /// tokens ([`crate::packing::pack`]): sequences of any task share a row (per-task
    /// adapters are selected per token), and each batch's input part attends both ways
    /// under prefix attention.
    pub fn pack(&self, batches: &[Batch], cols: usize) -> Result<crate::packing::Packed> {
        let kinds = self.kinds(batches)?;
        let prefix: Vec<bool> = batches
            .iter()
            .zip(&kinds)
            .map(|(b, k)| b.prefix_attention && *k != TaskKind::Lm)
            .collect();
        crate::packing::pack(batches, cols, &prefix)
    }

    /// Runs several batches (of one task each) through one trunk pass over **packed** rows
    /// ([`MultiTaskModel::pack`]: sequences end to end in rows of at most `cols` tokens, each
    /// attending only to itself, positions restarting per sequence), then each batch's head
    /// on its own positions read back in its own layout. The losses equal
    /// [`MultiTaskModel::forward_mixed`]'s up to float rounding; LM heads' logits are left
    /// undefined (training needs the losses), the other heads' are as usual. Also returns
    /// the packing, for its token counts.
    pub fn forward_packed(
        &self,
        batches: &[Batch],
        cols: usize,
        train: bool,
    ) -> Result<(Vec<HeadOutput>, crate::packing::Packed)> {
        let packed = self.pack(batches, cols)?;
        let outs = self.forward_packing(batches, &packed, train)?;
        Ok((outs, packed))
    }

    /// [`MultiTaskModel::forward_packed`] with the packing `packed` that
    /// [`MultiTaskModel::pack`] made of these `batches`.
    pub fn forward_packing(
        &self,
        batches: &[Batch],
        packed: &crate::packing::Packed,
        train: bool,
    ) -> Result<Vec<HeadOutput>> {
        let kinds = self.kinds(batches)?;
        if packed.place.len() != batches.len()
            || packed
                .place
                .iter()
                .zip(batches)
                .any(|(p, b)| p.len() != b.batch_size)
        {
            return Err(Error::Invalid(
                "forward_packing: the packing was made of other batches".into(),
            ));
        }
        let dev = self.gpt.device();
        let (r, c) = (packed.rows as i64, packed.cols as i64);
        let ids = to_tensor(&packed.ids, &[r, c], dev);
        let seg = to_tensor(&packed.segment, &[r, c], dev);
        let pos = to_tensor(&packed.position, &[r, c], dev);
        // Only a prefix-attention batch has bidirectional blocks (an input is never empty).
        let pfx = packed
            .prefix_end
            .iter()
            .any(|&p| p > 0)
            .then(|| to_tensor(&packed.prefix_end, &[r, c], dev));
        let names: Vec<&str> = batches.iter().map(|b| b.task.as_str()).collect();
        match &self.gpt.adapters {
            Some(layout) if self.per_task_adapters() && names.iter().any(|n| *n != names[0]) => {
                // Each token through its own task's adapter.
                let mut token_names: Vec<Option<&str>> = vec![None; packed.rows * packed.cols];
                for (g, batch) in batches.iter().enumerate() {
                    for (i, &(row, col)) in packed.place[g].iter().enumerate() {
                        let start = row * packed.cols + col;
                        let end = (start + batch.row_len(i).max(1)).min(token_names.len());
                        token_names[start..end].fill(Some(names[g]));
                    }
                }
                self.gpt.select_adapters(
                    layout
                        .rows_per_token(&token_names, [r, c], dev)
                        .map_err(Error::Invalid)?,
                )
            }
            _ => self.gpt.select_task(names.first().copied().unwrap_or(""))?,
        }
        let hidden = self
            .gpt
            .forward_packed(&ids, &seg, &pos, pfx.as_ref(), train)?
            .hidden;
        let d = hidden.size()[2];
        let flat = hidden.view([r * c, d]);
        let mut outs = Vec::with_capacity(batches.len());
        for (g, (batch, kind)) in batches.iter().zip(&kinds).enumerate() {
            let (bg, tg) = (batch.batch_size as i64, batch.seq_len as i64);
            let index = to_tensor(&packed.unpack_index(g, batch), &[bg * tg], dev);
            let h = flat.index_select(0, &index).view([bg, tg, d]);
            let ids = to_tensor(&batch.input_ids, &[bg, tg], dev);
            let mask: Vec<i64> = batch.attention_mask.iter().map(|&m| m as i64).collect();
            let mask = to_tensor(&mask, &[bg, tg], dev);
            outs.push(self.head_forward(batch, *kind, h, &ids, &mask, train, false)?);
        }
        Ok(outs)
    }

    /// The `classify` logits `[B, classes]` (fp32) of `batch`, in evaluation, with the trunk
    /// read at each row's last real token only ([`Gpt::hidden_at`]: most of the last block
    /// is skipped). Equal to [`MultiTaskModel::forward`]'s logits up to float rounding; with
    /// `packed` ([`MultiTaskModel::pack`] of this one batch) the rows run packed.
    pub fn classify_logits(
        &self,
        batch: &Batch,
        packed: Option<&crate::packing::Packed>,
    ) -> Result<Tensor> {
        let kind = self.kinds(std::slice::from_ref(batch))?[0];
        let Head::Classify { lin, pool } = &self.heads[&batch.task].1 else {
            return Err(Error::Invalid(format!(
                "task `{}` is {kind}, not classify",
                batch.task
            )));
        };
        if *pool == Pool::Mean {
            // Every position is read: the whole pass.
            let mut outs = match packed {
                Some(p) => self.forward_packing(std::slice::from_ref(batch), p, false)?,
                None => vec![self.forward(batch, false)?],
            };
            return Ok(outs.remove(0).logits);
        }
        let dev = self.gpt.device();
        self.gpt.select_task(&batch.task)?;
        let hidden = match packed {
            Some(p) => {
                if p.place.len() != 1 || p.place[0].len() != batch.batch_size {
                    return Err(Error::Invalid(
                        "classify_logits: the packing was made of another batch".into(),
                    ));
                }
                let at: Vec<i64> = p.place[0]
                    .iter()
                    .enumerate()
                    .map(|(r, &(row, col))| {
                        (row * p.cols + col + batch.row_len(r).max(1) - 1) as i64
                    })
                    .collect();
                let (r, c) = (p.rows as i64, p.cols as i64);
                let pfx = p
                    .prefix_end
                    .iter()
                    .any(|&x| x > 0)
                    .then(|| to_tensor(&p.prefix_end, &[r, c], dev));
                self.gpt.packed_hidden_at(
                    &to_tensor(&p.ids, &[r, c], dev),
                    &to_tensor(&p.segment, &[r, c], dev),
                    &to_tensor(&p.position, &[r, c], dev),
                    pfx.as_ref(),
                    &to_tensor(&at, &[at.len() as i64], dev),
                )?
            }
            None => {
                let (b, t) = (batch.batch_size as i64, batch.seq_len as i64);
                let at: Vec<i64> = (0..batch.batch_size)
                    .map(|r| (r * batch.seq_len + batch.row_len(r).max(1) - 1) as i64)
                    .collect();
                let mask: Vec<i64> = batch.attention_mask.iter().map(|&m| m as i64).collect();
                let padded = mask.contains(&0);
                let mask = to_tensor(&mask, &[b, t], dev);
                let prefix = batch.prefix_attention.then(|| {
                    let l: Vec<i64> = batch.input_len.iter().map(|&l| l as i64).collect();
                    to_tensor(&l, &[b], dev)
                });
                self.gpt.hidden_at(
                    &to_tensor(&batch.input_ids, &[b, t], dev),
                    padded.then_some(&mask),
                    prefix.as_ref(),
                    &to_tensor(&at, &[b], dev),
                )?
            }
        };
        Ok(lin
            .forward(&hidden, self.gpt.config.precision)
            .to_kind(Kind::Float))
    }

    /// The loss and logits of `batch`'s head on its trunk output `hidden` `[B, T, d]`, with
    /// the batch's `ids` and `mask` (`[B, T]`, as the trunk read them). Without `logits`, an
    /// LM head projects only the positions that have a target, and its output's logits are
    /// left undefined (training needs the loss only).
    #[allow(clippy::too_many_arguments)]
    fn head_forward(
        &self,
        batch: &Batch,
        kind: TaskKind,
        hidden: Tensor,
        ids: &Tensor,
        mask: &Tensor,
        train: bool,
        want_logits: bool,
    ) -> Result<HeadOutput> {
        let head = &self.heads[&batch.task].1;
        let dev = self.gpt.device();
        let (b, t) = (batch.batch_size as i64, batch.seq_len as i64);
        let padded = batch.attention_mask.contains(&0);
        let input_len: Vec<i64> = batch.input_len.iter().map(|&l| l as i64).collect();
        let input_len = to_tensor(&input_len, &[b], dev);
        let prefix = batch.prefix_attention && kind != TaskKind::Lm;
        // The auxiliary LM loss reads the input causally: from the same pass when it was
        // causal, else from a second, causal one.
        let aux_loss = if batch.lm_aux_weight > 0.0 && t > 1 {
            let causal = if prefix {
                self.gpt.select_task(&batch.task)?;
                self.gpt
                    .forward(ids, padded.then_some(mask), None, train)?
                    .hidden
            } else {
                hidden.shallow_clone()
            };
            // Position p predicts token p + 1 while p + 1 is still inside the input; only
            // those positions go through the LM head.
            let next = Tensor::arange_start(1, t, (Kind::Int64, dev)).view([1, t - 1]);
            let keep = next.lt_tensor(&input_len.view([b, 1])).reshape([-1]);
            let at = keep.nonzero().squeeze_dim(1);
            (at.size()[0] > 0).then(|| {
                let d = causal.size()[2];
                let h = causal
                    .narrow(1, 0, t - 1)
                    .reshape([-1, d])
                    .index_select(0, &at);
                let targets = ids.narrow(1, 1, t - 1).reshape([-1]).index_select(0, &at);
                self.gpt.logits(&h).cross_entropy_loss::<Tensor>(
                    &targets,
                    None,
                    Reduction::Mean,
                    IGNORE_INDEX,
                    0.0,
                )
            })
        } else {
            None
        };
        let ce = |logits: &Tensor, targets: &Tensor| {
            let n = *logits.size().last().unwrap_or(&1);
            logits.reshape([-1, n]).cross_entropy_loss::<Tensor>(
                &targets.reshape([-1]),
                None,
                Reduction::Mean,
                IGNORE_INDEX,
                0.0,
            )
        };
        let mismatch = || {
            Error::Invalid(format!(
                "task `{}` ({kind}) got targets of another kind",
                batch.task
            ))
        };
        let out = match (head, &batch.targets) {
            (Head::Lm, Targets::Tokens(tg)) if want_logits => {
                let logits = self.gpt.logits(&hidden);
                let loss = ce(&logits, &to_tensor(tg, &[b, t], dev));
                HeadOutput {
                    loss,
                    aux_loss: None,
                    logits,
                }
            }
            (Head::Lm, Targets::Tokens(tg)) => {
                // Only the positions with a target go through the LM head.
                let at: Vec<i64> = (0..tg.len() as i64)
                    .filter(|&i| tg[i as usize] != IGNORE_INDEX)
                    .collect();
                let targets: Vec<i64> = at.iter().map(|&i| tg[i as usize]).collect();
                let d = hidden.size()[2];
                let at = Tensor::from_slice(&at).to_device(dev);
                let h = hidden.reshape([-1, d]).index_select(0, &at);
                let loss = self.gpt.logits(&h).cross_entropy_loss::<Tensor>(
                    &Tensor::from_slice(&targets).to_device(dev),
                    None,
                    Reduction::Mean,
                    IGNORE_INDEX,
                    0.0,
                );
                HeadOutput {
                    loss,
                    aux_loss: None,
                    logits: Tensor::new(),
                }
            }
            (Head::Classify { lin, pool }, Targets::Classes(c)) => {
                let pooled = match pool {
                    Pool::Last => {
                        // The last real token of each row (right padding).
                        let last = (mask.sum_dim_intlist(1, false, Kind::Int64) - 1).clamp_min(0);
                        let d = hidden.size()[2];
                        hidden
                            .gather(1, &last.view([b, 1, 1]).expand([b, 1, d], false), false)
                            .squeeze_dim(1)
                    }
                    Pool::Mean => {
                        // The mean over each row's real tokens, summed in fp32.
                        let m = mask.to_kind(Kind::Float).unsqueeze(-1);
                        let sum = (hidden.to_kind(Kind::Float) * &m).sum_dim_intlist(
                            1,
                            false,
                            Kind::Float,
                        );
                        sum / m.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0)
                    }
                };
                let logits = lin
                    .forward(&pooled, self.gpt.config.precision)
                    .to_kind(Kind::Float);
                let loss = ce(&logits, &to_tensor(c, &[b], dev));
                HeadOutput {
                    loss,
                    aux_loss: None,
                    logits,
                }
            }
            (Head::Span(lin), Targets::Spans { start, end }) => {
                let logits = lin
                    .forward(&hidden, self.gpt.config.precision)
                    .to_kind(Kind::Float);
                let pad = mask.eq(0).unsqueeze(-1);
                let logits = logits.masked_fill(&pad, -1e9);
                let s = ce(&logits.select(2, 0), &to_tensor(start, &[b], dev));
                let e = ce(&logits.select(2, 1), &to_tensor(end, &[b], dev));
                HeadOutput {
                    loss: (s + e) / 2.0,
                    aux_loss: None,
                    logits,
                }
            }
            (Head::Tagging { lin, context, crf }, Targets::Tags(tg)) => {
                let logits = lin
                    .forward(
                        &right_context(&hidden, mask, *context),
                        self.gpt.config.precision,
                    )
                    .to_kind(Kind::Float);
                let loss = match crf {
                    Some(crf) => crf.nll(&logits, tg),
                    None => ce(&logits, &to_tensor(tg, &[b, t], dev)),
                };
                HeadOutput {
                    loss,
                    aux_loss: None,
                    logits,
                }
            }
            _ => return Err(mismatch()),
        };
        Ok(match aux_loss {
            Some(aux) => HeadOutput {
                loss: out.loss + &aux * batch.lm_aux_weight,
                aux_loss: Some(aux),
                logits: out.logits,
            },
            None => out,
        })
    }
}

/// `hidden` `[B, T, d]` with the hidden states of the `context` following positions
/// appended to each position's (`[B, T, d·(context + 1)]`); padding and positions past a
/// row's end read as zeros, so the result does not depend on how the rows were padded.
fn right_context(hidden: &Tensor, mask: &Tensor, context: i64) -> Tensor {
    if context == 0 {
        return hidden.shallow_clone();
    }
    let t = hidden.size()[1];
    let real = hidden * mask.to_kind(hidden.kind()).unsqueeze(-1);
    let mut parts = vec![hidden.shallow_clone()];
    for k in 1..=context {
        parts.push(if k < t {
            Tensor::cat(
                &[real.narrow(1, k, t - k), real.narrow(1, 0, k).zeros_like()],
                1,
            )
        } else {
            real.zeros_like()
        });
    }
    Tensor::cat(&parts, 2)
}

/// Per-row predicted class ids from `classify` logits `[B, C]`.
pub fn predict_classes(logits: &Tensor) -> Vec<i64> {
    Vec::try_from(&logits.argmax(-1, false)).unwrap_or_default()
}

/// Per-position predicted tag ids from `tagging` logits `[B, T, K]`, row-major.
pub fn predict_tags(logits: &Tensor) -> Vec<Vec<i64>> {
    let ids = logits.argmax(-1, false);
    (0..ids.size()[0])
        .map(|r| Vec::try_from(&ids.get(r)).unwrap_or_default())
        .collect()
}

/// The best answer span `(start, end)` of one row of span logits `[T, 2]` among positions
/// where `allowed` is true (context tokens), with `end - start < max_len`; `None` when no
/// position is allowed.
pub fn best_span(logits: &Tensor, allowed: &[bool], max_len: usize) -> Option<(usize, usize)> {
    let s: Vec<f32> = Vec::try_from(&logits.select(1, 0).to_kind(Kind::Float)).ok()?;
    let e: Vec<f32> = Vec::try_from(&logits.select(1, 1).to_kind(Kind::Float)).ok()?;
    let mut best: Option<(f32, usize, usize)> = None;
    for i in (0..s.len()).filter(|&i| allowed.get(i) == Some(&true)) {
        for j in (i..(i + max_len).min(e.len())).filter(|&j| allowed.get(j) == Some(&true)) {
            let score = s[i] + e[j];
            if best.is_none_or(|(b, _, _)| score > b) {
                best = Some((score, i, j));
            }
        }
    }
    best.map(|(_, i, j)| (i, j))
}
