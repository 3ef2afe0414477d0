//! The HTTP routes: `/v1/tasks/{task}`, `/v1/completions`, `/v1/chat/completions`,
//! `/v1/models`, `/health`, `/metrics`; bearer-token checks, body limits and timeouts.
use crate::api::{ApiError, ChatRequest, CompletionRequest, Sampling, parse};
use crate::metrics::Metrics;
use crate::options::ServeOptions;
use crate::worker::{GenEvent, GenParams, Job, WorkerHandle};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mtgpt_core::TaskKind;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt as _;

/// What every route shares.
#[derive(Clone)]
pub struct AppState {
    /// The model worker.
    pub worker: WorkerHandle,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Limits and the key.
    pub opts: Arc<ServeOptions>,
}

/// The router over `state`.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/tasks/{task}", post(task))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(v1)
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::status(StatusCode::NOT_FOUND, "no such route (see GET /v1/models)")
        })
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Counts every answer by route and status, with its latency.
async fn count(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = match req.uri().path() {
        p if p.starts_with("/v1/tasks/") => "/v1/tasks".to_string(),
        p => p.to_string(),
    };
    let t0 = Instant::now();
    s.metrics.inflight.fetch_add(1, Ordering::Relaxed);
    let r = next.run(req).await;
    s.metrics.inflight.fetch_sub(1, Ordering::Relaxed);
    s.metrics
        .request(&route, r.status().as_u16(), t0.elapsed().as_secs_f64());
    r
}

/// `Authorization: Bearer <key>` on `/v1/*` when the server has a key.
async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.opts.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if g.trim() == key => {}
            Some(_) => {
                return ApiError::status(StatusCode::UNAUTHORIZED, "wrong API key").into_response();
            }
            None => {
                return ApiError::status(
                    StatusCode::UNAUTHORIZED,
                    "missing API key: send `Authorization: Bearer <key>`",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// The body, at most `max_body_bytes` (413 above).
async fn body_bytes(s: &AppState, body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, s.opts.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::status(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes", s.opts.max_body_bytes),
            )
        })
}

async fn models(State(s): State<AppState>) -> impl IntoResponse {
    let data: Vec<Value> = s
        .worker
        .tasks
        .iter()
        .map(|t| json!({"id": t.name, "object": "model", "created": 0, "owned_by": "mtgpt", "kind": t.kind.as_str()}))
        .collect();
    axum::Json(json!({"object": "list", "data": data}))
}

/// Waits for the model worker's next answer at most the request timeout (504 after); the
/// worker dropping the request (`None`) is a 500.
async fn within<T>(
    s: &AppState,
    next: impl std::future::Future<Output = Option<T>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(s.opts.timeout, next).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(ApiError::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model worker dropped the request",
        )),
        Err(_) => Err(ApiError::status(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer within {} s", s.opts.timeout.as_secs_f64()),
        )),
    }
}

/// `POST /v1/tasks/{task}`: one input object (answered by one object) or a list of them
/// (answered by a list), each answered as `mtgpt predict` answers its line.
async fn task(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = body_bytes(&s, body).await?;
    let Some(t) = s.worker.task(&name) else {
        return Err(ApiError::status(
            StatusCode::NOT_FOUND,
            format!("no task `{name}` (GET /v1/models lists them)"),
        ));
    };
    let v: Value = parse(&bytes)?;
    let (inputs, single) = match v {
        Value::Array(a) => (a, false),
        Value::Object(_) => (vec![v], true),
        _ => {
            return Err(ApiError::bad(
                "body",
                "expected an input object or a list of input objects",
            ));
        }
    };
    if inputs.is_empty() {
        return Err(ApiError::bad("body", "the list of inputs is empty"));
    }
    if inputs.len() > s.opts.max_inputs {
        return Err(ApiError::bad(
            "body",
            format!(
                "{} inputs; at most {} per request",
                inputs.len(),
                s.opts.max_inputs
            ),
        ));
    }
    if matches!(t.kind, TaskKind::Lm) {
        return Err(ApiError::bad(
            "task",
            format!("`{name}` is an lm task; continue text with POST /v1/completions"),
        ));
    }
    let (tx, rx) = oneshot::channel();
    s.worker.submit(Job::Predict {
        task: name,
        inputs,
        reply: tx,
    })?;
    let mut out = within(&s, async { rx.await.ok() }).await??;
    Ok(if single {
        axum::Json(out.remove(0)).into_response()
    } else {
        axum::Json(Value::Array(out)).into_response()
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn request_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{:x}{:04x}",
        now(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Checks the sampling fields and the task; returns the decoding settings.
fn gen_params(
    s: &AppState,
    model: &str,
    sp: &Sampling,
    max_tokens: Option<usize>,
    default_max: usize,
) -> Result<GenParams, ApiError> {
    let Some(t) = s.worker.task(model) else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            ..ApiError::bad(
                "model",
                format!("no model `{model}` (GET /v1/models lists them)"),
            )
        });
    };
    if !matches!(t.kind, TaskKind::Generate | TaskKind::Lm) {
        return Err(ApiError::bad(
            "model",
            format!(
                "`{model}` is a {} task; use POST /v1/tasks/{model}",
                t.kind.as_str()
            ),
        ));
    }
    if sp.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad("n", "only n = 1 is served"));
    }
    if sp
        .logprobs
        .as_ref()
        .is_some_and(|v| !v.is_null() && v != &json!(false))
    {
        return Err(ApiError::bad(
            "logprobs",
            "log-probabilities are not served",
        ));
    }
    let max_tokens_set = max_tokens.is_some();
    let max_tokens = max_tokens.unwrap_or(default_max);
    if max_tokens == 0 || max_tokens > s.opts.max_tokens {
        return Err(ApiError::bad(
            "max_tokens",
            format!(
                "max_tokens {max_tokens} must be in 1..={}",
                s.opts.max_tokens
            ),
        ));
    }
    let temperature = sp.temperature.unwrap_or(1.0);
    if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
        return Err(ApiError::bad(
            "temperature",
            format!("temperature {temperature} must be in [0, 2]"),
        ));
    }
    let top_p = sp.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad(
            "top_p",
            format!("top_p {top_p} must be in (0, 1]"),
        ));
    }
    let stop = sp.stop.clone().map(|x| x.into_vec()).unwrap_or_default();
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::bad("stop", "at most 4 non-empty stop strings"));
    }
    Ok(GenParams {
        max_tokens,
        max_tokens_set,
        temperature,
        top_p,
        stop,
        seed: sp.seed.unwrap_or(0),
    })
}

/// The shape of one streamed or whole answer.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Completion,
    Chat,
}

/// Submits a generation and answers it whole or as server-sent events.
async fn run_generation(
    s: AppState,
    model: String,
    prompt: String,
    params: GenParams,
    stream: bool,
    shape: Shape,
) -> Result<Response, ApiError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    s.worker.submit(Job::Generate {
        task: model.clone(),
        prompt,
        params,
        events: tx,
    })?;
    let id = request_id(if shape == Shape::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    });
    let created = now();
    // The first event decides the status: a failure before any text is an error answer.
    let first = match within(&s, rx.recv()).await? {
        GenEvent::Failed(e) => return Err(e),
        ev => ev,
    };
    let (whole_id, whole_model) = (id.clone(), model.clone());
    let chunk = move |delta: Option<&str>, finish: Option<&str>, first: bool| -> Value {
        match shape {
            Shape::Completion => json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"text": delta.unwrap_or(""), "index": 0, "logprobs": null, "finish_reason": finish}],
            }),
            Shape::Chat => {
                let mut d = serde_json::Map::new();
                if first {
                    d.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = delta {
                    d.insert("content".into(), json!(t));
                }
                json!({
                    "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
                })
            }
        }
    };
    if stream {
        let rest = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let mut is_first = true;
        let events = tokio_stream::iter(std::iter::once(first))
            .chain(rest)
            .map(move |ev| {
                let v = match ev {
                    GenEvent::Delta(t) => chunk(Some(&t), None, std::mem::take(&mut is_first)),
                    GenEvent::Done { finish_reason, .. } => {
                        chunk(None, Some(finish_reason), std::mem::take(&mut is_first))
                    }
                    GenEvent::Failed(e) => e.body(),
                };
                Ok::<Event, Infallible>(Event::default().data(v.to_string()))
            })
            .chain(tokio_stream::iter(std::iter::once(Ok(
                Event::default().data("[DONE]")
            ))));
        return Ok(Sse::new(events).into_response());
    }
    let mut text = String::new();
    let mut ev = first;
    loop {
        match ev {
            GenEvent::Delta(t) => text.push_str(&t),
            GenEvent::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                   "total_tokens": prompt_tokens + completion_tokens});
                let v = match shape {
                    Shape::Completion => json!({
                        "id": whole_id, "object": "text_completion", "created": created,
                        "model": whole_model,
                        "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish_reason}],
                        "usage": usage,
                    }),
                    Shape::Chat => json!({
                        "id": whole_id, "object": "chat.completion", "created": created,
                        "model": whole_model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": finish_reason}],
                        "usage": usage,
                    }),
                };
                return Ok(axum::Json(v).into_response());
            }
            GenEvent::Failed(e) => return Err(e),
        }
        ev = within(&s, rx.recv()).await?;
    }
}

/// `POST /v1/completions` (OpenAI): `model` names a `generate` or `lm` task.
async fn completions(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let bytes = body_bytes(&s, body).await?;
    let req: CompletionRequest = parse(&bytes)?;
    if req.echo == Some(true) {
        return Err(ApiError::bad("echo", "echoing the prompt is not served"));
    }
    let sampling = req.sampling();
    let prompts = req.prompt.into_vec();
    if prompts.len() != 1 {
        return Err(ApiError::bad("prompt", "send one prompt per request"));
    }
    let prompt = prompts.into_iter().next().unwrap_or_default();
    if prompt.trim().is_empty() {
        return Err(ApiError::bad("prompt", "the prompt is empty"));
    }
    let params = gen_params(&s, &req.model, &sampling, sampling.max_tokens, 16)?;
    run_generation(
        s,
        req.model,
        prompt,
        params,
        sampling.stream,
        Shape::Completion,
    )
    .await
}

/// `POST /v1/chat/completions` (OpenAI): the conversation's messages, joined by newlines,
/// are the prompt (a `generate` task's source).
async fn chat(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let bytes = body_bytes(&s, body).await?;
    let req: ChatRequest = parse(&bytes)?;
    if req.messages.is_empty() {
        return Err(ApiError::bad("messages", "at least one message is needed"));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !matches!(
            m.role.as_str(),
            "system" | "user" | "assistant" | "developer"
        ) {
            return Err(ApiError::bad(
                format!("messages[{i}].role"),
                format!(
                    "field `messages[{i}].role`: `{}` is not system, developer, user or assistant",
                    m.role
                ),
            ));
        }
    }
    let prompt: Vec<&str> = req.messages.iter().map(|m| m.content.as_str()).collect();
    let prompt = prompt.join("\n");
    if prompt.trim().is_empty() {
        return Err(ApiError::bad("messages", "the messages are empty"));
    }
    let sampling = req.sampling();
    let max = req.max_completion_tokens.or(sampling.max_tokens);
    let default_max = s.opts.max_tokens.min(64);
    let params = gen_params(&s, &req.model, &sampling, max, default_max)?;
    run_generation(s, req.model, prompt, params, sampling.stream, Shape::Chat).await
}
