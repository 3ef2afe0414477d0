//! Task kinds and the examples each kind reads (one JSONL line = one example).
use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of task mtgpt trains; each has its own JSONL fields, head, loss and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Language modelling on raw text (`.txt`, or `.jsonl` with `text`).
    Lm,
    /// Sequence classification: `text`, optional `text_pair`, `label`.
    Classify,
    /// Extractive question answering: `context`, `question`, `answer{text,start}`.
    ExtractiveQa,
    /// Token tagging (BIO/BMES): `tokens[]`, `tags[]`.
    Tagging,
    /// Sequence-to-sequence generation (summarization, translation, generative QA):
    /// `source`, `target`.
    Generate,
}

impl TaskKind {
    /// All kinds, in the order of the docs.
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Lm,
        TaskKind::Classify,
        TaskKind::ExtractiveQa,
        TaskKind::Tagging,
        TaskKind::Generate,
    ];

    /// The name used in configs (`lm`, `classify`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Lm => "lm",
            TaskKind::Classify => "classify",
            TaskKind::ExtractiveQa => "extractive_qa",
            TaskKind::Tagging => "tagging",
            TaskKind::Generate => "generate",
        }
    }

    /// Whether examples of this kind carry a label from a closed set (`labels` in the config).
    pub fn has_label_set(self) -> bool {
        matches!(self, TaskKind::Classify | TaskKind::Tagging)
    }
}

/// How a task's sequence attends to itself.
///
/// `Causal`: every position sees only itself and earlier positions (a plain GPT).
/// `Prefix`: the task's input part is one block whose positions see each other both ways
/// (classify: text and text pair; tagging: the sentence; extractive QA: question and
/// context; generate: task token, source and separator), while generated/target positions
/// stay causal and see the whole input (the prefix LM of UniLM and T5). `Repeat` (tagging
/// only): causal attention over the sentence given twice, the tags read on the second copy,
/// whose tokens have seen the whole first one. `lm` is always causal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Left to right only.
    #[default]
    Causal,
    /// The input part both ways, the rest causal.
    Prefix,
    /// Causal over the input given twice (tagging only).
    Repeat,
}

impl Attention {
    /// The name used in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Attention::Causal => "causal",
            Attention::Prefix => "prefix",
            Attention::Repeat => "repeat",
        }
    }

    /// The mode a task of `kind` gets when its config does not say: causal (on the demo's
    /// pretrained causal base, prefix attention measured worse at equal time; see the README).
    pub fn default_for(_kind: TaskKind) -> Attention {
        Attention::Causal
    }
}

/// How a `classify` head reads the trunk: the hidden state of the input's last real token
/// (`Last`, GPT-2's sequence classification; the default), or the mean over every real
/// token of the input (`Mean`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// The last real token.
    #[default]
    Last,
    /// The mean over the real tokens.
    Mean,
}

impl Pool {
    /// The name used in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Last => "last",
            Pool::Mean => "mean",
        }
    }
}

impl fmt::Display for Attention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An extractive-QA answer: its text and the character offset where it starts in the context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The answer text, a substring of the context.
    pub text: String,
    /// Character (not byte) offset of the answer in the context.
    pub start: usize,
}

/// One training or evaluation example of any task kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Example {
    /// `classify`: one text or a text pair and its label.
    Classify {
        /// The (first) text.
        text: String,
        /// The optional second text (entailment, paraphrase, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text_pair: Option<String>,
        /// The label name.
        label: String,
    },
    /// `extractive_qa`: a context, a question and the answer span.
    ExtractiveQa {
        /// The passage that contains the answer.
        context: String,
        /// The question.
        question: String,
        /// The gold answer.
        answer: Answer,
    },
    /// `tagging`: words and one tag per word.
    Tagging {
        /// Words (or characters for Chinese NER).
        tokens: Vec<String>,
        /// One tag per token (BIO or BMES).
        tags: Vec<String>,
    },
    /// `generate`: a source and the target to produce.
    Generate {
        /// The input text (document, sentence to translate, question).
        source: String,
        /// The output text (summary, translation, answer).
        target: String,
    },
    /// `lm`: a piece of raw text. (Last, so that untagged parsing tries the kinds with more
    /// fields first; readers that know the task kind parse strictly.)
    Lm {
        /// The text.
        text: String,
    },
}

impl Example {
    /// The task kind this example belongs to.
    pub fn kind(&self) -> TaskKind {
        match self {
            Example::Lm { .. } => TaskKind::Lm,
            Example::Classify { .. } => TaskKind::Classify,
            Example::ExtractiveQa { .. } => TaskKind::ExtractiveQa,
            Example::Tagging { .. } => TaskKind::Tagging,
            Example::Generate { .. } => TaskKind::Generate,
        }
    }
}

/// A padded batch of token ids for one task, in plain memory (tensors are made by the crates
/// that use libtorch). All 2-D buffers are row-major `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The task the rows come from.
    pub task: String,
    /// Rows in the batch.
    pub batch_size: usize,
    /// Tokens per row, padding included.
    pub seq_len: usize,
    /// Token ids, padded with the tokenizer's `<|pad|>` id.
    pub input_ids: Vec<i64>,
    /// 1 for a real token, 0 for padding.
    pub attention_mask: Vec<u8>,
    /// The supervision for this task kind.
    pub targets: Targets,
    /// Per row, how many leading positions are the task's input (the task token included):
    /// the bidirectional block under prefix attention and the text of the auxiliary LM loss.
    pub input_len: Vec<usize>,
    /// Whether the input part attends both ways ([`Attention::Prefix`]).
    pub prefix_attention: bool,
    /// Weight of the auxiliary LM loss on the input part (0 = none), added to the task loss.
    pub lm_aux_weight: f64,
}

/// Supervision carried by a [`Batch`]; `IGNORE_INDEX` marks positions without a loss.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Next-token targets per position (`lm`, `generate`): `[batch, seq]`.
    Tokens(Vec<i64>),
    /// One class id per row (`classify`): `[batch]`.
    Classes(Vec<i64>),
    /// Start and end token positions per row (`extractive_qa`): `[batch]` each.
    Spans {
        /// Start token index.
        start: Vec<i64>,
        /// End token index (inclusive).
        end: Vec<i64>,
    },
    /// One tag id per position (`tagging`): `[batch, seq]`.
    Tags(Vec<i64>),
}

/// Target value for positions that carry no loss (padding, prompt, non-first sub-tokens);
/// the same convention as PyTorch's `ignore_index`.
pub const IGNORE_INDEX: i64 = -100;

impl Batch {
    /// Real (unpadded) tokens of row `r`; rows are right-padded.
    pub fn row_len(&self, r: usize) -> usize {
        let t = self.seq_len;
        self.attention_mask[r * t..(r + 1) * t]
            .iter()
            .filter(|&&m| m == 1)
            .count()
    }

    /// Real tokens of every row together.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m == 1).count()
    }

    /// Checks that every buffer has the length its shape implies.
    pub fn check_shapes(&self) -> Result<(), String> {
        let n = self.batch_size * self.seq_len;
        if self.input_ids.len() != n || self.attention_mask.len() != n {
            return Err(format!(
                "input_ids/attention_mask have {}/{} values, expected {n}",
                self.input_ids.len(),
                self.attention_mask.len()
            ));
        }
        let (got, want) = match &self.targets {
            Targets::Tokens(t) | Targets::Tags(t) => (t.len(), n),
            Targets::Classes(c) => (c.len(), self.batch_size),
            Targets::Spans { start, end } => (start.len().max(end.len()), self.batch_size),
        };
        if got != want {
            return Err(format!("targets have {got} values, expected {want}"));
        }
        if self.input_len.len() != self.batch_size
            || self.input_len.iter().any(|&l| l > self.seq_len)
        {
            return Err(format!(
                "input_len has {} values (expected {}), each at most {}",
                self.input_len.len(),
                self.batch_size,
                self.seq_len
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_parse_from_their_jsonl_fields() {
        let cases = [
            (r#"{"text":"hello"}"#, TaskKind::Lm),
            (r#"{"text":"好","label":"pos"}"#, TaskKind::Classify),
            (
                r#"{"text":"a","text_pair":"b","label":"x"}"#,
                TaskKind::Classify,
            ),
            (
                r#"{"context":"abc","question":"q","answer":{"text":"b","start":1}}"#,
                TaskKind::ExtractiveQa,
            ),
            (r#"{"tokens":["a"],"tags":["O"]}"#, TaskKind::Tagging),
            (r#"{"source":"s","target":"t"}"#, TaskKind::Generate),
        ];
        for (line, kind) in cases {
            let ex: Example = serde_json::from_str(line).unwrap();
            assert_eq!(ex.kind(), kind, "{line}");
        }
    }

    #[test]
    fn kind_names_round_trip_through_serde() {
        for kind in TaskKind::ALL {
            let s = serde_json::to_string(&kind).unwrap();
            assert_eq!(s, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<TaskKind>(&s).unwrap(), kind);
        }
    }

    #[test]
    fn check_shapes_catches_mismatches() {
        let mut b = Batch {
            task: "t".into(),
            batch_size: 2,
            seq_len: 3,
            input_ids: vec![0; 6],
            attention_mask: vec![1; 6],
            targets: Targets::Classes(vec![0, 1]),
            input_len: vec![3, 2],
            prefix_attention: false,
            lm_aux_weight: 0.0,
        };
        assert!(b.check_shapes().is_ok());
        b.targets = Targets::Tokens(vec![0; 5]);
        assert!(b.check_shapes().unwrap_err().contains("expected 6"));
    }
}
