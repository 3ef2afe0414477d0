//! Task formatting and collation: from [`Example`]s to padded [`Batch`]es.
//!
//! Every sequence starts with the task prefix token `<|task:NAME|>` and ends with
//! `<|endoftext|>`:
//!
//! | kind | sequence | supervision |
//! | --- | --- | --- |
//! | `lm` | `task text eot` | next token everywhere |
//! | `classify` | `task text [sep text_pair] eot` | class of the sequence (pooled at its last real token) |
//! | `extractive_qa` | `task question sep context-window eot` | start/end token of the answer in the window; windows without it point at the task token |
//! | `tagging` | `task word₁ word₂ … eot` | tag on each word's first sub-token (after a separating space), other positions ignored; with word groups ([`TaskFormatter::with_word_groups`]) Chinese characters are first joined into jieba words |
//! | `generate` | `task source sep target eot` | next token on the target and the final eot only |
//!
//! Too-long inputs are truncated (the text, never the special tokens); QA contexts longer than
//! the window are split into overlapping windows with a stride, and each window keeps the char
//! offsets of its context tokens so predicted spans map back to the context text.
use crate::error::{Error, Result};
use mtgpt_core::{Attention, Batch, Example, IGNORE_INDEX, Targets, TaskKind};
use mtgpt_text::TextTokenizer;
use std::collections::HashMap;

/// One formatted sequence, before padding.
#[derive(Debug, Clone, PartialEq)]
pub struct Formatted {
    /// Token ids.
    pub ids: Vec<i64>,
    /// The supervision of this sequence.
    pub target: Target,
    /// How many leading positions are the input ([`Batch::input_len`]); 0 for `lm`.
    pub input_len: usize,
}

impl Formatted {
    /// An LM window over already tokenized text: the task token, then `tokens`, each position
    /// predicting the next (the last one nothing).
    pub fn lm_window(task_id: i64, tokens: &[u32]) -> Self {
        let mut ids = Vec::with_capacity(tokens.len() + 1);
        ids.push(task_id);
        ids.extend(tokens.iter().map(|&t| i64::from(t)));
        let mut targets = ids[1..].to_vec();
        targets.push(IGNORE_INDEX);
        Formatted {
            ids,
            target: Target::Tokens(targets),
            input_len: 0,
        }
    }
}

/// Supervision of one [`Formatted`] sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Next-token targets, one per position (`IGNORE_INDEX` where there is no loss).
    Tokens(Vec<i64>),
    /// A class id.
    Class(i64),
    /// Answer start and end token positions (inclusive), and for every position the char
    /// range in the context it covers (`None` outside the context).
    Span {
        /// Start token.
        start: i64,
        /// End token (inclusive).
        end: i64,
        /// Per position: char range in the context, for context tokens.
        offsets: Vec<Option<(usize, usize)>>,
        /// Which example (index in the input) this window came from.
        example: usize,
    },
    /// Tag ids per position (`IGNORE_INDEX` where there is no loss).
    Tags(Vec<i64>),
}

/// Turns examples of one task into sequences.
#[derive(Debug)]
pub struct TaskFormatter<'a> {
    tok: &'a TextTokenizer,
    task: String,
    kind: TaskKind,
    task_id: i64,
    labels: HashMap<String, i64>,
    max_len: usize,
    /// Context tokens shared by neighbouring QA windows.
    pub qa_stride: usize,
    attention: Attention,
    lm_aux_weight: f64,
    /// Tagging: jieba words of Chinese tokens are tagged as one unit.
    word_groups: Option<mtgpt_text::segment::Segmenter>,
    /// Tagging with word groups: words that the training tags cut, and where.
    word_splits: WordSplits,
}

/// Word groups the training tags of a tagging task cut ([`learn_word_splits`]): a group's text
/// → the byte offsets inside it where a new group starts. A word such as 访华 ("visit China",
/// `O B-LOC`) is then tagged as 访 + 华 wherever it appears, so the per-word tags can still
/// say where an entity starts and ends.
pub type WordSplits = std::collections::BTreeMap<String, Vec<usize>>;

/// The segmenter that groups a tagging task's Chinese tokens into words: the tokenizer's own
/// pre-segmenter, else jieba with its HMM.
pub fn group_segmenter(tok: &TextTokenizer) -> mtgpt_text::segment::Segmenter {
    tok.segmenter()
        .cloned()
        .unwrap_or_else(|| mtgpt_text::segment::Segmenter::new(true))
}

/// The tag that continues `prev` inside one group: `B-X` and `I-X` go on as `I-X`, any other
/// tag as itself.
fn continued(prev: &str) -> String {
    match prev.strip_prefix("B-") {
        Some(x) => format!("I-{x}"),
        None => prev.to_string(),
    }
}

/// The word splits that make the per-group tags of `examples` (tokens and their BIO tags,
/// grouped by `seg` as [`word_groups`] does) exact: wherever a token's tag is not the one its
/// predecessor's continues, a group that holds both is cut there. Splits of one word in
/// different sentences are united.
pub fn learn_word_splits<'e>(
    seg: &mtgpt_text::segment::Segmenter,
    examples: impl IntoIterator<Item = (&'e [String], &'e [String])>,
) -> WordSplits {
    let mut found: std::collections::BTreeMap<String, std::collections::BTreeSet<usize>> =
        std::collections::BTreeMap::new();
    for (tokens, tags) in examples {
        let mut i = 0;
        for n in word_groups(seg, tokens, &WordSplits::new()) {
            let (group, gtags) = (&tokens[i..i + n], tags.get(i..i + n));
            i += n;
            let Some(gtags) = gtags else { continue };
            let mut at = 0;
            let mut cuts = Vec::new();
            for k in 0..n {
                if k > 0 && gtags[k] != continued(&gtags[k - 1]) {
                    cuts.push(at);
                }
                at += group[k].len();
            }
            if !cuts.is_empty() {
                found.entry(group.concat()).or_default().extend(cuts);
            }
        }
    }
    found
        .into_iter()
        .map(|(w, c)| (w, c.into_iter().collect()))
        .collect()
}

/// Lengths (in tokens) of the word groups of a tagging example's `tokens`: runs of Chinese
/// tokens go together as the jieba words of their text (a group always ends at a token
/// boundary, so a word boundary inside a token moves to the token's end), every other token
/// is a group of its own. A group whose text `splits` names is cut where it says (at token
/// boundaries only). The lengths sum to `tokens.len()`.
pub fn word_groups(
    seg: &mtgpt_text::segment::Segmenter,
    tokens: &[String],
    splits: &WordSplits,
) -> Vec<usize> {
    let han = |t: &str| !t.is_empty() && t.chars().all(mtgpt_text::segment::is_han);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !han(&tokens[i]) {
            out.push(1);
            i += 1;
            continue;
        }
        // A run of Han tokens, and the jieba word ends (byte offsets) of its text.
        let mut j = i;
        while j < tokens.len() && han(&tokens[j]) {
            j += 1;
        }
        let text: String = tokens[i..j].concat();
        let mut ends = std::collections::HashSet::new();
        let mut at = 0;
        for piece in seg.pieces(&text) {
            at += piece.len();
            ends.insert(at);
        }
        let (mut len, mut end) = (0, 0);
        let mut run = Vec::new();
        for t in &tokens[i..j] {
            len += 1;
            end += t.len();
            if ends.contains(&end) {
                run.push(len);
                len = 0;
            }
        }
        if len > 0 {
            run.push(len);
        }
        let mut s = i;
        for n in run {
            split_group(&tokens[s..s + n], splits, &mut out);
            s += n;
        }
        i = j;
    }
    out
}

/// Pushes the lengths of group `group`: itself, or its parts where `splits` cuts its text.
fn split_group(group: &[String], splits: &WordSplits, out: &mut Vec<usize>) {
    let Some(cuts) = splits.get(&group.concat()) else {
        out.push(group.len());
        return;
    };
    let (mut len, mut at) = (0, 0);
    for t in group {
        if len > 0 && cuts.contains(&at) {
            out.push(len);
            len = 0;
        }
        len += 1;
        at += t.len();
    }
    out.push(len);
}

/// Tags of the tokens of word groups `groups` from one BIO tag per group: a `B-X` group is
/// `B-X I-X …`, an `I-X` group all `I-X`, any other tag repeated.
pub fn expand_group_tags(groups: &[usize], tags: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (&n, tag) in groups.iter().zip(tags) {
        let rest = continued(tag);
        out.push(tag.clone());
        out.extend(std::iter::repeat_n(rest, n.saturating_sub(1)));
    }
    out
}

fn ids(tok: &TextTokenizer, text: &str) -> Result<Vec<i64>> {
    Ok(tok.encode_ids(text)?.into_iter().map(i64::from).collect())
}

impl<'a> TaskFormatter<'a> {
    /// A formatter for task `task` of kind `kind`; `labels` is the label set of classify and
    /// tagging tasks (ids in that order); `max_len` caps every sequence (≥ 8).
    pub fn new(
        tok: &'a TextTokenizer,
        task: &str,
        kind: TaskKind,
        labels: &[String],
        max_len: usize,
    ) -> Result<Self> {
        let task_id = tok
            .task_id(task)
            .ok_or_else(|| Error::Invalid(format!("the tokenizer has no <|task:{task}|> token")))?
            as i64;
        if max_len < 8 {
            return Err(Error::Invalid(format!(
                "max_len {max_len} is too short (≥ 8)"
            )));
        }
        if kind.has_label_set() && labels.is_empty() {
            return Err(Error::Invalid(format!(
                "task `{task}` ({kind}) needs a label set"
            )));
        }
        Ok(TaskFormatter {
            tok,
            task: task.to_string(),
            kind,
            task_id,
            labels: labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), i as i64))
                .collect(),
            max_len,
            qa_stride: max_len / 4,
            attention: Attention::Causal,
            lm_aux_weight: 0.0,
            word_groups: None,
            word_splits: WordSplits::new(),
        })
    }

    /// This formatter tagging jieba words instead of single Chinese tokens when `on` (a
    /// tagging task's `tag_words`): each group's tag is its first token's, predictions are
    /// spread back over the group's tokens ([`expand_group_tags`]). Needs BIO tags; a no-op
    /// for other kinds. Uses the tokenizer's own pre-segmenter, so groups are the pieces its
    /// BPE was trained on. Groups named in `splits` (learnt from the training tags by
    /// [`learn_word_splits`]) are cut where it says.
    pub fn with_word_groups(mut self, on: bool, splits: &WordSplits) -> Result<Self> {
        if !on || self.kind != TaskKind::Tagging {
            return Ok(self);
        }
        let mut labels: Vec<String> = self.labels.keys().cloned().collect();
        labels.sort();
        if !mtgpt_core::is_bio(&labels) {
            return Err(Error::Invalid(format!(
                "task `{}`: tag_words needs BIO tags (O, B-X, I-X), these are {labels:?}",
                self.task
            )));
        }
        self.word_groups = Some(group_segmenter(self.tok));
        self.word_splits = splits.clone();
        Ok(self)
    }

    /// The word groups of a tagging example's tokens when this formatter groups them.
    pub fn groups_of(&self, tokens: &[String]) -> Option<Vec<usize>> {
        self.word_groups
            .as_ref()
            .map(|s| word_groups(s, tokens, &self.word_splits))
    }

    /// This formatter with the task's attention mode (forced causal for `lm`) and auxiliary
    /// LM weight, which its batches carry ([`Batch::prefix_attention`],
    /// [`Batch::lm_aux_weight`]).
    pub fn with_options(mut self, attention: Attention, lm_aux_weight: f64) -> Self {
        self.attention = match (self.kind, attention) {
            (TaskKind::Lm, _) => Attention::Causal,
            // Only tagging reads a repeated input; elsewhere it is plain causal attention.
            (k, Attention::Repeat) if k != TaskKind::Tagging => Attention::Causal,
            (_, a) => a,
        };
        self.lm_aux_weight = lm_aux_weight;
        self
    }

    /// The attention mode of the batches.
    pub fn attention(&self) -> Attention {
        self.attention
    }

    /// The longest sequence this formatter makes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    fn label(&self, label: &str) -> Result<i64> {
        self.labels
            .get(label)
            .copied()
            .ok_or_else(|| Error::Invalid(format!("task `{}`: unknown label `{label}`", self.task)))
    }

    /// Formats one example (`index` identifies it in QA windows); QA may give several windows.
    pub fn format(&self, ex: &Example, index: usize) -> Result<Vec<Formatted>> {
        let sp = self.tok.special();
        let (eot, sep) = (sp.endoftext as i64, sp.sep as i64);
        let room = self.max_len - 2; // task token + eot
        // The input is the whole sequence except for generate (task, source, separator) and
        // lm (none).
        let one = |ids: Vec<i64>, target: Target, input: Option<usize>| {
            let input_len = input.unwrap_or(ids.len());
            Ok(vec![Formatted {
                ids,
                target,
                input_len,
            }])
        };
        if ex.kind() != self.kind {
            return Err(Error::Invalid(format!(
                "task `{}` is {}, got a {} example",
                self.task,
                self.kind,
                ex.kind()
            )));
        }
        match ex {
            Example::Lm { text } => {
                let mut seq = vec![self.task_id];
                seq.extend(ids(self.tok, text)?.into_iter().take(room));
                seq.push(eot);
                let mut targets: Vec<i64> = seq[1..].to_vec();
                targets.push(IGNORE_INDEX);
                one(seq, Target::Tokens(targets), Some(0))
            }
            Example::Classify {
                text,
                text_pair,
                label,
            } => {
                let mut a = ids(self.tok, text)?;
                let mut seq = vec![self.task_id];
                match text_pair {
                    Some(pair) => {
                        let mut b = ids(self.tok, pair)?;
                        // Trim the longer side first, keeping room for the separator.
                        while a.len() + b.len() > room - 1 {
                            if a.len() >= b.len() {
                                a.pop()
                            } else {
                                b.pop()
                            };
                        }
                        seq.extend(a);
                        seq.push(sep);
                        seq.extend(b);
                    }
                    None => seq.extend(a.into_iter().take(room)),
                }
                seq.push(eot);
                one(seq, Target::Class(self.label(label)?), None)
            }
            Example::Generate { source, target } => {
                let mut src = ids(self.tok, source)?;
                let tgt = ids(self.tok, target)?;
                // The target keeps at least half the room; the source is cut from its start.
                let tgt_room = tgt
                    .len()
                    .min((room - 1).saturating_sub(src.len().min((room - 1) / 2)));
                let tgt: Vec<i64> = tgt.into_iter().take(tgt_room).collect();
                let src_room = room - 1 - tgt.len();
                if src.len() > src_room {
                    src.drain(..src.len() - src_room);
                }
                let mut seq = vec![self.task_id];
                seq.extend(&src);
                seq.push(sep);
                let first_target = seq.len();
                seq.extend(&tgt);
                seq.push(eot);
                // Position p predicts seq[p + 1]; only target tokens and the final eot count.
                let targets = (0..seq.len())
                    .map(|p| {
                        if p + 1 >= first_target && p + 1 < seq.len() {
                            seq[p + 1]
                        } else {
                            IGNORE_INDEX
                        }
                    })
                    .collect();
                one(seq, Target::Tokens(targets), Some(first_target))
            }
            Example::Tagging { tokens, tags } => {
                // Word groups: one unit per jieba word, tagged with its first token's tag.
                let grouped = self.groups_of(tokens).map(|groups| {
                    let (mut words, mut first) = (Vec::new(), Vec::new());
                    let mut i = 0;
                    for n in groups {
                        words.push(tokens[i..i + n].concat());
                        first.push(tags.get(i).cloned().unwrap_or_default());
                        i += n;
                    }
                    (words, first)
                });
                let (tokens, tags) = match &grouped {
                    Some((w, t)) => (w, t),
                    None => (tokens, tags),
                };
                // `repeat`: the sentence twice, `task s sep s eot`, tags on the second copy,
                // whose every token has read the whole first one (right context on a causal
                // trunk); each copy gets half the room.
                let repeat = self.attention == Attention::Repeat;
                let budget = if repeat { (room - 1) / 2 } else { room };
                let mut body: Vec<i64> = Vec::new();
                let mut labels: Vec<i64> = Vec::new();
                let mut prev: Option<&str> = None;
                for (word, tag) in tokens.iter().zip(tags) {
                    // Latin words after Latin words get their space back, as in running text.
                    let spaced = prev.is_some_and(|p| needs_space(p, word));
                    let text = if spaced {
                        format!(" {word}")
                    } else {
                        word.clone()
                    };
                    let piece = ids(self.tok, &text)?;
                    if body.len() + piece.len() > budget {
                        break;
                    }
                    // The label goes on the word's first sub-token that is not just the
                    // separating space (a char tokenizer keeps the space apart).
                    let first = if spaced {
                        self.first_visible(&piece)?
                    } else {
                        0
                    };
                    for (k, id) in piece.iter().enumerate() {
                        body.push(*id);
                        labels.push(if k == first {
                            self.label(tag)?
                        } else {
                            IGNORE_INDEX
                        });
                    }
                    prev = Some(word);
                }
                let mut seq = vec![self.task_id];
                let mut targets = vec![IGNORE_INDEX];
                if repeat {
                    seq.extend(&body);
                    seq.push(sep);
                    targets.extend(std::iter::repeat_n(IGNORE_INDEX, body.len() + 1));
                }
                seq.extend(&body);
                targets.extend(labels);
                seq.push(eot);
                targets.push(IGNORE_INDEX);
                one(seq, Target::Tags(targets), None)
            }
            Example::ExtractiveQa {
                context,
                question,
                answer,
            } => self.format_qa(context, question, answer, index),
        }
    }

    /// Index of the first token of `piece` whose text is not only whitespace.
    fn first_visible(&self, piece: &[i64]) -> Result<usize> {
        for k in 0..piece.len() {
            let ids: Vec<u32> = piece[..=k].iter().map(|&i| i as u32).collect();
            if !self.tok.decode(&ids, false)?.trim().is_empty() {
                return Ok(k);
            }
        }
        Ok(0)
    }

    fn format_qa(
        &self,
        context: &str,
        question: &str,
        answer: &mtgpt_core::Answer,
        index: usize,
    ) -> Result<Vec<Formatted>> {
        let sp = self.tok.special();
        let (eot, sep) = (sp.endoftext as i64, sp.sep as i64);
        let q: Vec<i64> = ids(self.tok, question)?
            .into_iter()
            .take(self.max_len / 3)
            .collect();
        let enc = self.tok.encode(context)?;
        let head = 2 + q.len(); // task, question, sep
        let window = self.max_len - head - 1;
        let (a_start, a_end) = (answer.start, answer.start + answer.text.chars().count());
        let n = enc.ids.len();
        let stride = self.qa_stride.min(window / 2);
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let to = (from + window).min(n);
            let mut seq = vec![self.task_id];
            seq.extend(&q);
            seq.push(sep);
            let mut offsets = vec![None; seq.len()];
            for k in from..to {
                seq.push(enc.ids[k] as i64);
                offsets.push(Some(enc.offsets[k]));
            }
            seq.push(eot);
            offsets.push(None);
            // The answer's first and last tokens, when the whole answer is in this window.
            let s = (from..to).find(|&k| {
                enc.offsets[k].0 <= a_start && a_start < enc.offsets[k].1.max(enc.offsets[k].0 + 1)
            });
            let e = (from..to)
                .rev()
                .find(|&k| enc.offsets[k].0 < a_end && a_end <= enc.offsets[k].1);
            let (start, end) = match (s, e) {
                (Some(s), Some(e)) if s <= e => {
                    ((head + s - from) as i64, (head + e - from) as i64)
                }
                _ => (0, 0),
            };
            out.push(Formatted {
                input_len: seq.len(),
                ids: seq,
                target: Target::Span {
                    start,
                    end,
                    offsets,
                    example: index,
                },
            });
            if to >= n {
                break;
            }
            from = to - stride.min(to - from - 1);
        }
        Ok(out)
    }

    /// Pads formatted sequences (right padding) into a batch.
    pub fn collate(&self, items: &[Formatted]) -> Result<Batch> {
        self.collate_to(items, 0)
    }

    /// [`TaskFormatter::collate`] with rows of at least `min_len` tokens (padding included),
    /// so that a row's padded length need not depend on its batch-mates.
    pub fn collate_to(&self, items: &[Formatted], min_len: usize) -> Result<Batch> {
        let pad = self.tok.special().pad as i64;
        let b = items.len();
        let t = items
            .iter()
            .map(|f| f.ids.len())
            .max()
            .unwrap_or(0)
            .max(min_len);
        let mut input_ids = vec![pad; b * t];
        let mut attention_mask = vec![0u8; b * t];
        for (r, f) in items.iter().enumerate() {
            input_ids[r * t..r * t + f.ids.len()].copy_from_slice(&f.ids);
            attention_mask[r * t..r * t + f.ids.len()]
                .iter_mut()
                .for_each(|m| *m = 1);
        }
        let per_position = |get: &dyn Fn(&Formatted) -> Option<&Vec<i64>>| -> Result<Vec<i64>> {
            let mut out = vec![IGNORE_INDEX; b * t];
            for (r, f) in items.iter().enumerate() {
                let v = get(f)
                    .ok_or_else(|| Error::Invalid("mixed target kinds in one batch".into()))?;
                out[r * t..r * t + v.len()].copy_from_slice(v);
            }
            Ok(out)
        };
        let targets = match items.first().map(|f| &f.target) {
            None | Some(Target::Tokens(_)) => {
                Targets::Tokens(per_position(&|f| match &f.target {
                    Target::Tokens(v) => Some(v),
                    _ => None,
                })?)
            }
            Some(Target::Tags(_)) => Targets::Tags(per_position(&|f| match &f.target {
                Target::Tags(v) => Some(v),
                _ => None,
            })?),
            Some(Target::Class(_)) => Targets::Classes(
                items
                    .iter()
                    .map(|f| match f.target {
                        Target::Class(c) => Ok(c),
                        _ => Err(Error::Invalid("mixed target kinds in one batch".into())),
                    })
                    .collect::<Result<_>>()?,
            ),
            Some(Target::Span { .. }) => {
                let (mut start, mut end) = (Vec::with_capacity(b), Vec::with_capacity(b));
                for f in items {
                    match f.target {
                        Target::Span {
                            start: s, end: e, ..
                        } => {
                            start.push(s);
                            end.push(e);
                        }
                        _ => return Err(Error::Invalid("mixed target kinds in one batch".into())),
                    }
                }
                Targets::Spans { start, end }
            }
        };
        let batch = Batch {
            task: self.task.clone(),
            batch_size: b,
            seq_len: t,
            input_ids,
            attention_mask,
            targets,
            input_len: items.iter().map(|f| f.input_len.min(f.ids.len())).collect(),
            prefix_attention: self.attention == Attention::Prefix,
            lm_aux_weight: self.lm_aux_weight,
        };
        batch.check_shapes().map_err(Error::Invalid)?;
        Ok(batch)
    }
}

fn needs_space(prev: &str, word: &str) -> bool {
    let han = |c: char| mtgpt_text::segment::is_han(c);
    match (prev.chars().next_back(), word.chars().next()) {
        (Some(p), Some(w)) => {
            !han(p)
                && !han(w)
                && w.is_alphanumeric()
                && (p.is_alphanumeric() || matches!(p, ',' | '.' | ';' | ':' | '!' | '?'))
        }
        _ => false,
    }
}

/// Recovers the answer text of a QA window from predicted start/end token positions.
/// Byte-level tokens carry the space before a word (` the`), so the span is trimmed.
pub fn span_text(
    context: &str,
    offsets: &[Option<(usize, usize)>],
    start: usize,
    end: usize,
) -> Option<String> {
    let s = offsets.get(start).copied().flatten()?.0;
    let e = offsets.get(end).copied().flatten()?.1;
    let text: String = context.chars().skip(s).take(e.saturating_sub(s)).collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}
