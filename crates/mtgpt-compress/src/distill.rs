//! Multi-task distillation: a shallower student, initialised from every other block of the
//! teacher (and its embeddings, final norm and task heads), learns
//! `α · τ² · KL(teacher ‖ student at temperature τ) + (1 − α) · task loss` on batches of every
//! task, optionally plus `hidden_weight ·` MSE between each student block's output and the
//! output of the teacher block that ends the span of blocks it replaces.
use crate::error::{Error, Result};
use mtgpt_core::{Batch, IGNORE_INDEX, ModelConfig, Targets, TaskKind};
use mtgpt_tasks::{HeadSpec, MultiTaskModel};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// The student's shape: `teacher` with `layers` blocks (0 = half the teacher's, at least 1),
/// and for each student block the teacher block it starts from (evenly spaced: 0, 2, 4, … for
/// half depth).
pub fn student_shape(teacher: &ModelConfig, layers: usize) -> Result<(ModelConfig, Vec<usize>)> {
    let l = teacher.n_layer;
    let s = if layers == 0 { (l / 2).max(1) } else { layers };
    if s > l {
        return Err(Error::Invalid(format!(
            "compress.student_layers = {s}: the teacher has only {l} blocks"
        )));
    }
    let map: Vec<usize> = (0..s).map(|j| j * l / s).collect();
    let mut c = teacher.clone();
    c.n_layer = s;
    if !c.layer_heads.is_empty() {
        c.layer_heads = map.iter().map(|&i| teacher.heads_in(i)).collect();
    }
    if !c.layer_d_ff.is_empty() {
        c.layer_d_ff = map.iter().map(|&i| teacher.d_ff_in(i)).collect();
    }
    Ok((c, map))
}

/// A student of `layers` blocks (see [`student_shape`]) with the teacher's weights copied in:
/// block `j` from teacher block `map[j]`, everything else (embeddings, final norm, heads) as is.
pub fn init_student(
    teacher: &MultiTaskModel,
    specs: &[HeadSpec],
    layers: usize,
) -> Result<(MultiTaskModel, Vec<usize>)> {
    let (config, map) = student_shape(&teacher.gpt.config, layers)?;
    let student = MultiTaskModel::new(&config, specs, teacher.gpt.device())?;
    let src: HashMap<String, Tensor> = teacher.vs.variables().into_iter().collect();
    tch::no_grad(|| -> Result<()> {
        for (name, var) in student.vs.variables() {
            let from = match name.strip_prefix("transformer.h.") {
                Some(rest) => {
                    let (j, tail) = rest.split_once('.').unwrap_or((rest, ""));
                    let j: usize = j
                        .parse()
                        .map_err(|_| Error::Invalid(format!("variable `{name}`")))?;
                    format!("transformer.h.{}.{tail}", map[j])
                }
                None => name.clone(),
            };
            let t = src.get(&from).ok_or_else(|| {
                Error::Invalid(format!("the teacher has no `{from}` for `{name}`"))
            })?;
            var.shallow_clone().f_copy_(t)?;
        }
        Ok(())
    })?;
    Ok((student, map))
}

/// `τ² · KL(teacher ‖ student)` of one head's logits at temperature `tau`, averaged over the
/// distributions the head makes: supervised positions (`lm`, `generate`, `tagging`), rows
/// (`classify`), or the start and end distributions over positions (`extractive_qa`).
pub fn kd_loss(
    teacher: &Tensor,
    student: &Tensor,
    kind: TaskKind,
    batch: &Batch,
    tau: f64,
) -> Result<Tensor> {
    let (t, s) = match kind {
        TaskKind::Classify => (teacher.shallow_clone(), student.shallow_clone()),
        TaskKind::ExtractiveQa => {
            let n = teacher.size()[1];
            (
                teacher.transpose(1, 2).reshape([-1, n]),
                student.transpose(1, 2).reshape([-1, n]),
            )
        }
        TaskKind::Lm | TaskKind::Generate | TaskKind::Tagging => {
            let tg = match &batch.targets {
                Targets::Tokens(v) | Targets::Tags(v) => v,
                _ => {
                    return Err(Error::Invalid(format!(
                        "task `{}`: targets do not fit a {kind} head",
                        batch.task
                    )));
                }
            };
            let keep: Vec<i64> = tg
                .iter()
                .enumerate()
                .filter(|(_, x)| **x != IGNORE_INDEX)
                .map(|(i, _)| i as i64)
                .collect();
            let v = *teacher.size().last().unwrap_or(&1);
            let idx = Tensor::from_slice(&keep).to_device(teacher.device());
            (
                teacher.reshape([-1, v]).index_select(0, &idx),
                student.reshape([-1, v]).index_select(0, &idx),
            )
        }
    };
    if t.size()[0] == 0 {
        return Ok(Tensor::zeros([], (Kind::Float, student.device())));
    }
    let lt = (t.to_kind(Kind::Float) / tau).log_softmax(-1, Kind::Float);
    let ls = (s.to_kind(Kind::Float) / tau).log_softmax(-1, Kind::Float);
    let kl = (lt.exp() * (&lt - &ls)).sum_dim_intlist(-1, false, Kind::Float);
    Ok(kl.mean(Kind::Float) * (tau * tau))
}

/// The parts of one distillation loss.
#[derive(Debug)]
pub struct DistillLoss {
    /// What is minimised.
    pub total: Tensor,
    /// `τ² · KL` (a number).
    pub kl: f64,
    /// The student's task loss (a number).
    pub task: f64,
}

/// Teacher and student with the distillation settings.
pub struct Distiller<'a> {
    /// The frozen teacher.
    pub teacher: &'a MultiTaskModel,
    /// The student being trained.
    pub student: &'a MultiTaskModel,
    /// Weight of the KL term.
    pub alpha: f64,
    /// Temperature τ.
    pub temperature: f64,
    /// Weight of hidden-state matching (0 = off).
    pub hidden_weight: f64,
    /// For student block `j`, the teacher block it started from.
    pub map: Vec<usize>,
}

impl Distiller<'_> {
    /// The loss of one batch; `train` turns the student's dropout on.
    pub fn loss(&self, batch: &Batch, train: bool) -> Result<DistillLoss> {
        let kind = self
            .teacher
            .heads
            .get(&batch.task)
            .map(|(k, _)| *k)
            .ok_or_else(|| Error::Invalid(format!("the teacher has no task `{}`", batch.task)))?;
        let t = tch::no_grad(|| self.teacher.forward(batch, false))?;
        let s = self.student.forward(batch, train)?;
        let kl = kd_loss(&t.logits, &s.logits, kind, batch, self.temperature)?;
        let mixed = &kl * self.alpha + &s.loss * (1.0 - self.alpha);
        let total = if self.hidden_weight > 0.0 {
            mixed + self.hidden_loss(batch, train)? * self.hidden_weight
        } else {
            mixed
        };
        Ok(DistillLoss {
            kl: kl.double_value(&[]),
            task: s.loss.double_value(&[]),
            total,
        })
    }

    /// Mean squared error between each student block's output and the output of the last
    /// teacher block of the span it replaces, over real tokens.
    fn hidden_loss(&self, batch: &Batch, train: bool) -> Result<Tensor> {
        let dev = self.student.gpt.device();
        let (b, n) = (batch.batch_size as i64, batch.seq_len as i64);
        let ids = Tensor::from_slice(&batch.input_ids)
            .view([b, n])
            .to_device(dev);
        let m: Vec<i64> = batch.attention_mask.iter().map(|&x| x as i64).collect();
        let mask = Tensor::from_slice(&m).view([b, n]).to_device(dev);
        let padded = batch.attention_mask.contains(&0);
        self.teacher.select_task(&batch.task)?;
        self.student.select_task(&batch.task)?;
        let t = tch::no_grad(|| {
            self.teacher
                .gpt
                .forward_t(&ids, padded.then_some(&mask), None, false, true)
        })?;
        let s = self
            .student
            .gpt
            .forward_t(&ids, padded.then_some(&mask), None, train, true)?;
        let (lt, ls) = (self.teacher.gpt.config.n_layer, self.map.len());
        let w = mask.to_kind(Kind::Float).unsqueeze(-1);
        let mut terms = Vec::with_capacity(ls);
        for j in 0..ls {
            let target = (j + 1) * lt / ls;
            let d = (&s.layers[j + 1] - &t.layers[target]).square() * &w;
            terms.push(d.sum(Kind::Float) / (w.sum(Kind::Float) * d.size()[2] as f64));
        }
        let sum = Tensor::stack(&terms, 0).sum(Kind::Float);
        Ok(sum / ls as f64)
    }
}
