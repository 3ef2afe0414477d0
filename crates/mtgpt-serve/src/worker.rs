//! The model worker: one thread owns the model (tch tensors are not shared between threads)
//! and a dynamic batcher in front of it. Requests wait in a bounded queue; while idle the
//! worker takes the first and keeps gathering for `max_wait` or until `max_batch` requests.
//! Each task's inputs run as one batch (classification, tagging, QA, …: the same code as
//! `mtgpt predict`). Generation batches continuously: every task has a running decoding batch
//! ([`mtgpt_model::Decoder`]) that new requests join between two tokens and that finished
//! rows leave, every row with its own settings, streamed token by token, stopping alone when
//! its client goes away.
use crate::api::ApiError;
use crate::metrics::Metrics;
use crate::options::ServeOptions;
use axum::http::StatusCode;
use mtgpt_core::{Attention, Config, TaskKind};
use mtgpt_model::{Decoder, GenerateConfig};
use mtgpt_tasks::{Evaluator, MultiTaskModel, TaskHead, parse_input, with_prediction};
use mtgpt_text::{Normalizer, TextTokenizer};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel,
};
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
/// A generation waiting to join its task's decoding batch.
struct Waiting {
    head: usize,
    key: u64,
    ids: Vec<i64>,
    cfg: GenerateConfig,
}

/// A generation's stream: where its text goes and what was sent.
struct Stream {
    events: mpsc::UnboundedSender<GenEvent>,
    stop: Vec<String>,
    toks: Vec<u32>,
    sent: usize,
    stopped: bool,
    prompt_tokens: usize,
    max_tokens: usize,
}

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
    tx: SyncSender<(Job, Instant)>,
    metrics: Arc<Metrics>,
    /// The tasks served.
    pub tasks: Arc<Vec<ServedTask>>,
    /// The model's context length.
    pub block_size: usize,
}

impl WorkerHandle {
    /// Queues a job: a full queue is a 429, a stopped worker a 503 (both with `Retry-After`).
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        match self.tx.try_send((job, Instant::now())) {
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
/// (or failed to), with the thread's handle: it ends once every [`WorkerHandle`] is dropped
/// and the work it holds is answered.
pub fn start(
    opts: &ServeOptions,
    metrics: Arc<Metrics>,
) -> Result<(WorkerHandle, std::thread::JoinHandle<()>), String> {
    let (tx, rx) = sync_channel::<(Job, Instant)>(opts.queue.max(1));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let opts = opts.clone();
    let m = metrics.clone();
    let thread = std::thread::Builder::new()
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
    let handle = WorkerHandle {
        tx,
        metrics,
        tasks: Arc::new(tasks),
        block_size,
    };
    Ok((handle, thread))
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
    /// The batcher: gathers requests (blocking while idle, without waiting while sequences
    /// decode), answers predictions, lets new generations join their task's running decoding
    /// batch when they fit, and advances every running batch by one token.
    fn run(self, rx: Receiver<(Job, Instant)>, max_wait: std::time::Duration) {
        let gpt = &self.model.gpt;
        gpt.with_compute_copies(|| {
            let pad = i64::from(self.tok.special().pad);
            let mut decoders: Vec<(usize, Decoder<'_>)> = Vec::new();
            let mut streams: HashMap<u64, Stream> = HashMap::new();
            let mut pending: VecDeque<Waiting> = VecDeque::new();
            let mut next_key = 0u64;
            let mut open = true;
            loop {
                let busy = !pending.is_empty() || decoders.iter().any(|(_, d)| !d.is_empty());
                if !busy && !open {
                    break;
                }
                let mut jobs = Vec::new();
                if !busy {
                    // The wait counts from when the first request arrived: one that queued
                    // while the model was busy is not held any longer.
                    let deadline = match rx.recv() {
                        Ok((j, at)) => {
                            jobs.push(j);
                            at + max_wait
                        }
                        Err(_) => break,
                    };
                    // Gather until the batch is full or the wait is over; a lone request (no
                    // other in flight) is not held waiting for others.
                    while jobs.len() < self.max_batch
                        && self.metrics.inflight.load(Ordering::Relaxed) > 1
                    {
                        let now = Instant::now();
                        // Past the deadline, what is queued already still joins.
                        let wait = deadline.saturating_duration_since(now);
                        let got = if wait.is_zero() {
                            rx.try_recv().map_err(|e| match e {
                                TryRecvError::Empty => RecvTimeoutError::Timeout,
                                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                            })
                        } else {
                            rx.recv_timeout(wait)
                        };
                        match got {
                            Ok((j, _)) => jobs.push(j),
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => {
                                open = false;
                                break;
                            }
                        }
                    }
                } else {
                    while jobs.len() < self.max_batch {
                        match rx.try_recv() {
                            Ok((j, _)) => jobs.push(j),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                open = false;
                                break;
                            }
                        }
                    }
                }
                self.metrics
                    .queue_depth
                    .fetch_sub(jobs.len(), Ordering::Relaxed);
                let mut predicts: Vec<(String, Vec<PredictReq>)> = Vec::new();
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
                        } => {
                            if let Some(w) = self.prepare(&task, &prompt, params, &events, next_key)
                            {
                                streams.insert(next_key, w.1);
                                pending.push_back(w.0);
                                next_key += 1;
                            }
                        }
                    }
                }
                for (task, group) in predicts {
                    self.predict(&task, group);
                }
                self.admit(&mut decoders, &mut pending, &mut streams, pad);
                for (h, dec) in decoders.iter_mut().filter(|(_, d)| !d.is_empty()) {
                    self.step(*h, dec, &mut streams);
                }
            }
        });
    }

    /// Moves waiting generations into their task's running batch while they fit (context
    /// and `max_batch` rows); one prefill per task.
    fn admit<'w>(
        &'w self,
        decoders: &mut Vec<(usize, Decoder<'w>)>,
        pending: &mut VecDeque<Waiting>,
        streams: &mut HashMap<u64, Stream>,
        pad: i64,
    ) {
        let mut heads: Vec<usize> = pending.iter().map(|w| w.head).collect();
        heads.dedup();
        for h in heads {
            if !decoders.iter().any(|(x, _)| *x == h) {
                decoders.push((h, Decoder::new(&self.model.gpt, pad)));
            }
            let dec = &mut decoders
                .iter_mut()
                .find(|(x, _)| *x == h)
                .expect("just added")
                .1;
            let mut batch: Vec<Waiting> = Vec::new();
            let mut rest = VecDeque::new();
            while let Some(w) = pending.pop_front() {
                let longest = batch
                    .iter()
                    .map(|b| b.ids.len())
                    .chain(std::iter::once(w.ids.len()))
                    .max()
                    .unwrap_or(0);
                let room = batch
                    .iter()
                    .map(|b| b.cfg.max_new_tokens)
                    .chain(std::iter::once(w.cfg.max_new_tokens))
                    .max()
                    .unwrap_or(0);
                if w.head == h
                    && dec.len() + batch.len() < self.max_batch
                    && dec.fits(longest, room)
                {
                    batch.push(w);
                } else {
                    rest.push_back(w);
                }
            }
            *pending = rest;
            if batch.is_empty() {
                continue;
            }
            let task = &self.heads[h].name;
            let rows: Vec<(u64, &[i64], GenerateConfig)> = batch
                .iter()
                .map(|w| (w.key, w.ids.as_slice(), w.cfg.clone()))
                .collect();
            let admitted = unpanic(&format!("prefill of task `{task}`"), || {
                self.model
                    .select_task(task)
                    .map_err(|e| e.to_string())
                    .and_then(|()| dec.admit(&rows).map_err(|e| e.to_string()))
            });
            if let Err(e) = admitted {
                if let Unwound::Panic(_) = e {
                    // The running rows may be half-changed too: they fail with the new ones.
                    let keys = dec.keys();
                    *dec = Decoder::new(&self.model.gpt, pad);
                    for st in keys.iter().filter_map(|k| streams.remove(k)) {
                        let _ = st.events.send(GenEvent::Failed(ApiError::status(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("generation failed: {e}"),
                        )));
                    }
                }
                for w in &batch {
                    if let Some(st) = streams.remove(&w.key) {
                        let _ = st.events.send(GenEvent::Failed(ApiError::status(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("generation failed: {e}"),
                        )));
                    }
                }
                continue;
            }
            self.metrics.batch(dec.len());
        }
    }

    /// One token for every row of task `h`'s running batch, streamed; finished rows are
    /// answered with `Done`.
    fn step<'w>(&'w self, h: usize, dec: &mut Decoder<'w>, streams: &mut HashMap<u64, Stream>) {
        let eot = i64::from(self.tok.special().endoftext);
        let keys = dec.keys();
        let t0 = Instant::now();
        let mut produced = 0usize;
        let what = format!("decoding step of task `{}`", self.heads[h].name);
        let stepped = unpanic(&what, || {
            self.model
                .select_task(&self.heads[h].name)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    dec.step(&mut |key, tok| {
                        produced += 1;
                        let Some(st) = streams.get_mut(&key) else {
                            return false;
                        };
                        if tok == eot {
                            return false;
                        }
                        st.toks.push(tok as u32);
                        let text = self.tok.decode(&st.toks, true).unwrap_or_default();
                        // Hold back an unfinished character (a byte-level token may end mid-way).
                        let mut end = text.trim_end_matches('\u{fffd}').len();
                        let mut go_on = true;
                        if let Some(cut) =
                            st.stop.iter().filter_map(|s| text.find(s.as_str())).min()
                        {
                            end = cut;
                            go_on = false;
                            st.stopped = true;
                        }
                        if end > st.sent {
                            let delta = text[st.sent..end].to_string();
                            st.sent = end;
                            if st.events.send(GenEvent::Delta(delta)).is_err() {
                                return false;
                            }
                        }
                        go_on
                    })
                    .map_err(|e| e.to_string())
                })
        });
        self.metrics.generated(produced, t0.elapsed().as_secs_f64());
        match stepped {
            Ok(done) => {
                for (key, out) in done {
                    if let Some(st) = streams.remove(&key) {
                        let finish = if out.last() == Some(&eot)
                            || st.stopped
                            || out.len() < st.max_tokens
                        {
                            "stop"
                        } else {
                            "length"
                        };
                        let _ = st.events.send(GenEvent::Done {
                            finish_reason: finish,
                            prompt_tokens: st.prompt_tokens,
                            completion_tokens: out.len(),
                        });
                    }
                }
            }
            Err(e) => {
                // The batch is lost: answer every row of it (other tasks' batches go on).
                *dec = Decoder::new(&self.model.gpt, i64::from(self.tok.special().pad));
                for st in keys.iter().filter_map(|k| streams.remove(k)) {
                    let _ = st.events.send(GenEvent::Failed(ApiError::status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("generation failed: {e}"),
                    )));
                }
            }
        }
    }

    fn head(&self, task: &str) -> Option<usize> {
        self.heads.iter().position(|h| h.name == task)
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
        let result = unpanic(&format!("prediction of task `{task}`"), || {
            Evaluator::new(&self.model, &self.tok, head, self.max_len[h])
                .and_then(|mut e| {
                    e.batch = self.max_batch;
                    // The same answers as `mtgpt predict`, whatever shares the batch.
                    e.invariant = true;
                    e.predict(&examples)
                })
                .map_err(|e| e.to_string())
        });
        // One forward pass per `max_batch` rows (Evaluator::batch), the last one smaller.
        for start in (0..examples.len()).step_by(self.max_batch) {
            self.metrics
                .batch((examples.len() - start).min(self.max_batch));
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

    /// A generation request made ready to join a batch: its prompt ids and settings, and its
    /// stream's state; `None` when it was answered with an error already.
    fn prepare(
        &self,
        task: &str,
        prompt: &str,
        params: GenParams,
        events: &mpsc::UnboundedSender<GenEvent>,
        key: u64,
    ) -> Option<(Waiting, Stream)> {
        let fail = |e: ApiError| {
            let _ = events.send(GenEvent::Failed(e));
            None
        };
        let Some(h) = self.head(task) else {
            return fail(ApiError::status(
                StatusCode::NOT_FOUND,
                format!("no task `{task}`"),
            ));
        };
        let head = &self.heads[h];
        let decode = head.decode();
        let block = self.model.gpt.config.block_size;
        let ids = match self.prompt_ids(head, prompt) {
            Ok(ids) => ids,
            Err(e) => return fail(e),
        };
        let mut params = params;
        if !params.max_tokens_set {
            params.max_tokens = params.max_tokens.min(block.saturating_sub(ids.len()));
        }
        if params.max_tokens == 0 || ids.len() + params.max_tokens > block {
            return fail(ApiError::bad(
                "prompt",
                format!(
                    "the prompt is {} tokens and max_tokens {}: more than the model's context of {block}",
                    ids.len(),
                    params.max_tokens
                ),
            ));
        }
        let generate = head.kind == TaskKind::Generate;
        let cfg = GenerateConfig {
            max_new_tokens: params.max_tokens,
            greedy: params.temperature == 0.0,
            temperature: if params.temperature > 0.0 {
                params.temperature
            } else {
                1.0
            },
            top_p: params.top_p,
            stop_tokens: vec![i64::from(self.tok.special().endoftext)],
            seed: params.seed,
            no_repeat_ngram_size: if generate {
                decode.no_repeat_ngram_size
            } else {
                0
            },
            repetition_penalty: if generate {
                decode.repetition_penalty
            } else {
                1.0
            },
            // The task's floor, within the request's own budget.
            min_new_tokens: if generate {
                decode.min_new_tokens.min(params.max_tokens)
            } else {
                0
            },
            prefix_prompt: head.attention == Attention::Prefix,
            ..Default::default()
        };
        let stream = Stream {
            events: events.clone(),
            stop: params.stop,
            toks: Vec::new(),
            sent: 0,
            stopped: false,
            prompt_tokens: ids.len(),
            max_tokens: params.max_tokens,
        };
        Some((
            Waiting {
                head: h,
                key,
                ids,
                cfg,
            },
            stream,
        ))
    }
}

/// Runs one model call of the worker thread, turning a panic inside it (libtorch errors
/// surface as panics in `tch`) into an error for the requests of that call, logged with
/// `what`, so the model thread and every other request go on.
fn unpanic<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, Unwound> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(Unwound::Error),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("model thread: {what} panicked: {msg}");
            Err(Unwound::Panic(format!("internal error in {what}: {msg}")))
        }
    }
}

/// Why a guarded model call failed.
enum Unwound {
    /// It returned an error.
    Error(String),
    /// It panicked (its state may be half-changed).
    Panic(String),
}

impl std::fmt::Display for Unwound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unwound::Error(e) | Unwound::Panic(e) => f.write_str(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Unwound, unpanic};

    #[test]
    fn a_panicking_model_call_becomes_an_error_and_the_thread_goes_on() {
        let r: Result<(), Unwound> = unpanic("probe", || panic!("shape mismatch {}", 3));
        match r {
            Err(Unwound::Panic(m)) => {
                assert!(m.contains("probe") && m.contains("shape mismatch 3"))
            }
            _ => panic!("a panic must come back as Unwound::Panic"),
        }
        let e: Result<(), Unwound> = unpanic("probe", || Err("bad".into()));
        assert!(matches!(e, Err(Unwound::Error(m)) if m == "bad"));
        assert!(matches!(unpanic("probe", || Ok(7)), Ok(7)));
    }
}
