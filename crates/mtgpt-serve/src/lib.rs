//! `mtgpt serve`: an HTTP API for a trained multi-task model on axum and tokio.
//!
//! - `POST /v1/tasks/{task}`: any task kind, the same JSON in and out as `mtgpt predict` (one
//!   input object, or a list);
//! - `POST /v1/completions`, `POST /v1/chat/completions`: OpenAI-compatible, `model` naming a
//!   `generate` or `lm` task, streamed as server-sent events with `stream: true`;
//! - `GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus text).
//!
//! One worker thread owns the model; a dynamic batcher in front of it gathers requests
//! (`max_batch`, `max_wait`) into one forward pass per task. Loopback by default; an optional
//! bearer token; bounded body, inputs, `max_tokens` and queue (429 with `Retry-After` when
//! full); a per-request timeout; graceful shutdown on SIGTERM or Ctrl-C.
#![warn(missing_docs)]

pub mod api;
pub mod metrics;
pub mod options;
pub mod routes;
pub mod worker;

pub use options::ServeOptions;

use std::sync::Arc;

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model could not be loaded.
    #[error("loading the model: {0}")]
    Load(String),
    /// The address could not be bound, or the server failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Loads the model, binds `opts.addr`, calls `on_ready` with the bound address (port 0 picks
/// a free port), and serves until SIGTERM or Ctrl-C, finishing requests in flight.
pub fn serve(opts: ServeOptions, on_ready: impl FnOnce(std::net::SocketAddr)) -> Result<(), Error> {
    let metrics = Arc::new(metrics::Metrics::default());
    let (worker, model_thread) = worker::start(&opts, metrics.clone()).map_err(Error::Load)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.addr).await?;
        on_ready(listener.local_addr()?);
        let state = routes::AppState {
            worker,
            metrics,
            opts: Arc::new(opts),
        };
        axum::serve(listener, routes::router(state))
            .with_graceful_shutdown(shutdown())
            .await
    });
    // Dropping the runtime drops every task and with them the last handles on the worker;
    // the model thread then ends, and is waited for, so the process never exits (running
    // libtorch's static destructors) while that thread still frees tensors.
    drop(rt);
    let _ = model_thread.join();
    served?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
