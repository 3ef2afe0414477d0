//! The model worker: one thread owns the model (tch tensors are not shared between threads)
//! and a dynamic batcher in front of it. Requests wait in a bounded queue; the worker takes
//! the first, keeps gathering for `max_wait` or until `max_batch` requests, then runs each
//! task's inputs as one batch (classification, tagging, QA, …: the same code as `mtgpt
//! predict`) and each task's generation requests as one decoding batch (every row with its
//! own settings, streamed token by token, stopping alone when its client goes away).
use crate::api::ApiError;
use crate::metrics::Metrics;
use crate::options::ServeOptions;
use axum::http::StatusCode;
use mtgpt_core::{Attention, Config, TaskKind};
use mtgpt_model::{GenerateConfig, RowRequest, generate_rows};
use mtgpt_tasks::{Evaluator, MultiTaskModel, TaskHead, parse_input, with_prediction};
use mtgpt_text::{Normalizer, TextTokenizer};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// How one generation request decodes.
#[derive(Debug, Clone)]
pub struct GenParams {
    /// Most new tokens.
    pub max_tokens: usize,
    /// Whether the request set `max_tokens` (a default is cut to what the context leaves).
    pub max_tokens_set: bool,
    /// 0 = greedy.
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Sampling seed.
    pub seed: u64,
}

/// What a generation request hears back, in order: deltas, then `Done` (or `Failed`).
#[derive(Debug)]
pub enum GenEvent {
    /// New text.
    Delta(String),
    /// The end: why, and the token counts.
    Done {
        /// `stop` or `length`.
        finish_reason: &'static str,
        /// Prompt tokens (task token and separator included).
        prompt_tokens: usize,
        /// Tokens generated.
        completion_tokens: usize,
    },
    /// The request failed before any text.
    Failed(ApiError),
}

/// A request for the model.
pub enum Job {
    /// Predict with a task's head: one answer per input object.
    Predict {
        /// The task.
        task: String,
        /// Input objects (as `mtgpt predict` reads them).
        inputs: Vec<Value>,
        /// The answers (each input with `prediction` added).
        reply: oneshot::Sender<Result<Vec<Value>, ApiError>>,
    },
    /// Continue a prompt with a `generate` or `lm` task.
    Generate {
        /// The task.
        task: String,
        /// The prompt text.
        prompt: String,
        /// Decoding settings.
        params: GenParams,
        /// Where the text goes.
        events: mpsc::UnboundedSender<GenEvent>,
    },
}

/// A prediction request: its inputs and where the answers go.
type PredictReq = (Vec<Value>, oneshot::Sender<Result<Vec<Value>, ApiError>>);
/// A generation request: prompt, settings and where the text goes.
type GenReq = (String, GenParams, mpsc::UnboundedSender<GenEvent>);

/// A task the model serves, as the routes need it.
#[derive(Debug, Clone)]
pub struct ServedTask {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: TaskKind,
}

/// The routes' side of the worker.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
    /// The tasks served.
    pub tasks: Arc<Vec<ServedTask>>,
    /// The model's context length.
    pub block_size: usize,
}

impl WorkerHandle {
    /// Queues a job: a full queue is a 429, a stopped worker a 503 (both with `Retry-After`).
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        match self.tx.try_send(job) {
            Ok(()) => {
                self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(ApiError {
                retry_after: Some(1),
                ..ApiError::status(
                    StatusCode::TOO_MANY_REQUESTS,
                    "the request queue is full; retry shortly",
                )
            }),
            Err(TrySendError::Disconnected(_)) => Err(ApiError {
                retry_after: Some(5),
                ..ApiError::status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the model worker has stopped",
                )
            }),
        }
    }

    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<&ServedTask> {
        self.tasks.iter().find(|t| t.name == name)
    }
}

/// Everything the worker thread owns.
struct Worker {
    model: MultiTaskModel,
    heads: Vec<TaskHead>,
    tok: TextTokenizer,
    norm: Normalizer,
    max_len: Vec<usize>,
    max_batch: usize,
    metrics: Arc<Metrics>,
}

/// Loads the model on a new thread and starts the batcher; returns once the model is loaded
/// (or failed to).
pub fn start(opts: &ServeOptions, metrics: Arc<Metrics>) -> Result<WorkerHandle, String> {
    let (tx, rx) = sync_channel::<Job>(opts.queue.max(1));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let opts = opts.clone();
    let m = metrics.clone();
    std::thread::Builder::new()
        .name("mtgpt-model".into())
        .spawn(move || match load(&opts, m) {
            Ok(w) => {
                let info = (
                    w.heads
                        .iter()
                        .map(|h| ServedTask {
                            name: h.name.clone(),
                            kind: h.kind,
                        })
                        .collect::<Vec<_>>(),
                    w.model.gpt.config.block_size,
                );
                let _ = ready_tx.send(Ok(info));
                w.run(rx, opts.max_wait);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| format!("cannot start the model thread: {e}"))?;
    let (tasks, block_size) = ready_rx
        .recv()
        .map_err(|_| "the model thread stopped while loading".to_string())??;
    Ok(WorkerHandle {
        tx,
        metrics,
        tasks: Arc::new(tasks),
        block_size,
    })
}

fn load(opts: &ServeOptions, metrics: Arc<Metrics>) -> Result<Worker, String> {
    let dir = mtgpt_tasks::resolve_model_dir(&opts.model)
        .map_err(|e| e.to_string())?
        .dir;
    let (model, heads, tok) =
        MultiTaskModel::load_with_tokenizer(&dir, opts.device).map_err(|e| e.to_string())?;
    let config = Config::load_saved(dir.join("mtgpt.toml")).ok();
    let norm = config
        .as_ref()
        .map(|c| Normalizer::from_config(&c.preprocess))
        .unwrap_or_default();
    let block = model.gpt.config.block_size;
    let max_len = heads
        .iter()
        .map(|h| {
            config
                .as_ref()
                .and_then(|c| c.task(&h.name).map(|t| mtgpt_tasks::max_len(t, block)))
                .unwrap_or(block)
        })
        .collect();
    Ok(Worker {
        model,
        heads,
        tok,
        norm,
        max_len,
        max_batch: opts.max_batch.max(1),
        metrics,
    })
}

impl Worker {
    fn run(self, rx: Receiver<Job>, max_wait: std::time::Duration) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            let deadline = Instant::now() + max_wait;
            while jobs.len() < self.max_batch {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match rx.recv_timeout(deadline - now) {
                    Ok(j) => jobs.push(j),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            self.metrics
                .queue_depth
                .fetch_sub(jobs.len(), Ordering::Relaxed);
            self.process(jobs);
        }
    }

    fn head(&self, task: &str) -> Option<usize> {
        self.heads.iter().position(|h| h.name == task)
    }

    /// Runs a gathered set of jobs: per task, predictions in one batch and generations in
    /// one decoding batch.
    fn process(&self, jobs: Vec<Job>) {
        let mut predicts: Vec<(String, Vec<PredictReq>)> = Vec::new();
        let mut gens: Vec<(String, Vec<GenReq>)> = Vec::new();
        for job in jobs {
            match job {
                Job::Predict {
                    task,
                    inputs,
                    reply,
                } => match predicts.iter_mut().find(|(t, _)| *t == task) {
                    Some((_, v)) => v.push((inputs, reply)),
                    None => predicts.push((task, vec![(inputs, reply)])),
                },
                Job::Generate {
                    task,
                    prompt,
                    params,
                    events,
                } => match gens.iter_mut().find(|(t, _)| *t == task) {
                    Some((_, v)) => v.push((prompt, params, events)),
                    None => gens.push((task, vec![(prompt, params, events)])),
                },
            }
        }
        for (task, group) in predicts {
            self.predict(&task, group);
        }
        for (task, group) in gens {
            self.generate(&task, group);
        }
    }

    fn predict(&self, task: &str, group: Vec<PredictReq>) {
        let Some(h) = self.head(task) else {
            for (_, reply) in group {
                let _ = reply.send(Err(ApiError::status(
                    StatusCode::NOT_FOUND,
                    format!("no task `{task}`"),
                )));
            }
            return;
        };
        let head = &self.heads[h];
        // Parse every request's inputs; a request with a bad one is answered at once.
        let mut ok = Vec::new();
        for (inputs, reply) in group {
            let parsed: Result<Vec<_>, ApiError> = inputs
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    parse_input(v, head.kind, &self.norm, Path::new("inputs"), i).map_err(|e| {
                        let msg = e.to_string().replacen(
                            &format!("inputs:{i}: "),
                            &format!("inputs[{i}]: "),
                            1,
                        );
                        ApiError::bad(format!("inputs[{i}]"), msg)
                    })
                })
                .collect();
            match parsed {
                Ok(p) => ok.push((inputs, p, reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        if ok.is_empty() {
            return;
        }
        let examples: Vec<_> = ok
            .iter()
            .flat_map(|(_, p, _)| p.iter().map(|i| i.example.clone()))
            .collect();
        let result =
            Evaluator::new(&self.model, &self.tok, head, self.max_len[h]).and_then(|mut e| {
                e.batch = self.max_batch;
                e.predict(&examples)
            });
        let rows = examples.len();
        let mut chunks = rows.div_ceil(self.max_batch);
        while chunks > 0 {
            self.metrics.batch(rows.min(self.max_batch));
            chunks -= 1;
        }
        match result {
            Ok(preds) => {
                let mut preds = preds.into_iter();
                for (inputs, parsed, reply) in ok {
                    let answers: Result<Vec<Value>, ApiError> = inputs
                        .into_iter()
                        .zip(&parsed)
                        .map(|(v, input)| {
                            let p = preds.next().ok_or_else(|| {
                                ApiError::status(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "missing prediction",
                                )
                            })?;
                            with_prediction(v, input, &p).map_err(|e| {
                                ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                            })
                        })
                        .collect();
                    let _ = reply.send(answers);
                }
            }
            Err(e) => {
                for (_, _, reply) in ok {
                    let _ = reply.send(Err(ApiError::status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("prediction failed: {e}"),
                    )));
                }
            }
        }
    }

    /// The prompt ids of `text` for task `head`: `<|task|> text <|sep|>` for `generate` (as
    /// the task was trained), `<|task|> text` for `lm`.
    fn prompt_ids(&self, head: &TaskHead, text: &str) -> Result<Vec<i64>, ApiError> {
        let sp = self.tok.special();
        let task_id = self.tok.task_id(&head.name).ok_or_else(|| {
            ApiError::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the tokenizer has no <|task:{}|> token", head.name),
            )
        })?;
        let text = self.norm.normalize(text);
        let ids = self
            .tok
            .encode_ids(&text)
            .map_err(|e| ApiError::bad("prompt", e.to_string()))?;
        let mut p = vec![i64::from(task_id)];
        p.extend(ids.into_iter().map(i64::from));
        if head.kind == TaskKind::Generate {
            p.push(i64::from(sp.sep));
        }
        Ok(p)
    }

    fn generate(&self, task: &str, group: Vec<GenReq>) {
        let Some(h) = self.head(task) else {
            for (_, _, ev) in group {
                let _ = ev.send(GenEvent::Failed(ApiError::status(
                    StatusCode::NOT_FOUND,
                    format!("no task `{task}`"),
                )));
            }
            return;
        };
        let head = &self.heads[h];
        let sp = self.tok.special();
        let decode = head.decode();
        let block = self.model.gpt.config.block_size;
        let mut rows = Vec::new();
        for (prompt, params, ev) in group {
            let ids = match self.prompt_ids(head, &prompt) {
                Ok(ids) => ids,
                Err(e) => {
                    let _ = ev.send(GenEvent::Failed(e));
                    continue;
                }
            };
            let mut params = params;
            if !params.max_tokens_set {
                params.max_tokens = params.max_tokens.min(block.saturating_sub(ids.len()));
            }
            if params.max_tokens == 0 || ids.len() + params.max_tokens > block {
                let _ = ev.send(GenEvent::Failed(ApiError::bad(
                    "prompt",
                    format!(
                        "the prompt is {} tokens and max_tokens {}: more than the model's context of {block}",
                        ids.len(),
                        params.max_tokens
                    ),
                )));
                continue;
            }
            let cfg = GenerateConfig {
                max_new_tokens: params.max_tokens,
                greedy: params.temperature == 0.0,
                temperature: if params.temperature > 0.0 {
                    params.temperature
                } else {
                    1.0
                },
                top_p: params.top_p,
                stop_tokens: vec![i64::from(sp.endoftext)],
                seed: params.seed,
                no_repeat_ngram_size: if head.kind == TaskKind::Generate {
                    decode.no_repeat_ngram_size
                } else {
                    0
                },
                repetition_penalty: if head.kind == TaskKind::Generate {
                    decode.repetition_penalty
                } else {
                    1.0
                },
                prefix_prompt: head.attention == Attention::Prefix,
                ..Default::default()
            };
            rows.push((ids, cfg, params.stop, ev));
        }
        if rows.is_empty() {
            return;
        }
        if let Err(e) = self.model.select_task(task) {
            for (_, _, _, ev) in rows {
                let _ = ev.send(GenEvent::Failed(ApiError::status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    e.to_string(),
                )));
            }
            return;
        }
        self.metrics.batch(rows.len());
        let requests: Vec<RowRequest<'_>> = rows
            .iter()
            .map(|(ids, cfg, _, _)| RowRequest { prompt: ids, cfg })
            .collect();
        // Per row: tokens so far, text already sent, and whether a stop string ended it.
        let mut toks: Vec<Vec<u32>> = vec![Vec::new(); rows.len()];
        let mut sent: Vec<usize> = vec![0; rows.len()];
        let mut stopped = vec![false; rows.len()];
        let eot = i64::from(sp.endoftext);
        let started = Instant::now();
        let result = generate_rows(
            &self.model.gpt,
            &requests,
            i64::from(sp.pad),
            &mut |r, tok| {
                if tok == eot {
                    return false;
                }
                toks[r].push(tok as u32);
                let text = self.tok.decode(&toks[r], true).unwrap_or_default();
                // Hold back an unfinished character (a byte-level token may end mid-way).
                let mut end = text.trim_end_matches('\u{fffd}').len();
                let mut go_on = true;
                if let Some(cut) = rows[r].2.iter().filter_map(|s| text.find(s.as_str())).min() {
                    end = cut;
                    go_on = false;
                    stopped[r] = true;
                }
                if end > sent[r] {
                    let delta = text[sent[r]..end].to_string();
                    sent[r] = end;
                    if rows[r].3.send(GenEvent::Delta(delta)).is_err() {
                        return false;
                    }
                }
                go_on
            },
        );
        let elapsed = started.elapsed().as_secs_f64();
        match result {
            Ok(outs) => {
                let total: usize = outs.iter().map(Vec::len).sum();
                self.metrics.generated(total, elapsed);
                for (r, ((ids, cfg, _, ev), out)) in rows.iter().zip(&outs).enumerate() {
                    let hit_eot = out.last() == Some(&eot);
                    let finish = if hit_eot || stopped[r] || out.len() < cfg.max_new_tokens {
                        "stop"
                    } else {
                        "length"
                    };
                    let _ = ev.send(GenEvent::Done {
                        finish_reason: finish,
                        prompt_tokens: ids.len(),
                        completion_tokens: out.len(),
                    });
                }
            }
            Err(e) => {
                for (_, _, _, ev) in &rows {
                    let _ = ev.send(GenEvent::Failed(ApiError::status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("generation failed: {e}"),
                    )));
                }
            }
        }
    }
}
