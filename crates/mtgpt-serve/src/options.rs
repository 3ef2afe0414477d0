//! `mtgpt serve`'s settings.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The model folder.
    pub model: PathBuf,
    /// Where to listen (loopback by default; port 0 picks a free one).
    pub addr: SocketAddr,
    /// When set, every `/v1/*` request needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Most rows in one forward pass.
    pub max_batch: usize,
    /// How long the batcher waits for more requests after the first.
    pub max_wait: Duration,
    /// Requests waiting for the model at most; more are answered 429.
    pub queue: usize,
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Most inputs in one task request.
    pub max_inputs: usize,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens: usize,
    /// A request still unanswered after this is answered 504.
    pub timeout: Duration,
    /// The libtorch device.
    pub device: tch::Device,
}

impl ServeOptions {
    /// Defaults for `model`: loopback port 8080, batches of 32 gathered for 5 ms, 256 queued
    /// requests, 1 MiB bodies, 64 inputs, 256 new tokens, 60 s.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        ServeOptions {
            model: model.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_key: None,
            max_batch: 32,
            max_wait: Duration::from_millis(5),
            queue: 256,
            max_body_bytes: 1 << 20,
            max_inputs: 64,
            max_tokens: 256,
            timeout: Duration::from_secs(60),
            device: tch::Device::Cpu,
        }
    }
}
