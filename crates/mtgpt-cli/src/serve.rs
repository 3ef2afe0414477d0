//! `mtgpt serve`: the HTTP API of a model folder (see the `mtgpt-serve` crate).
use clap::Args;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `mtgpt serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model folder, or a run folder (its best/, else model/).
    #[arg(long)]
    model: PathBuf,
    /// Address to listen on (port 0 picks a free one, printed on start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Require `Authorization: Bearer KEY` on /v1/* (also from MTGPT_API_KEY).
    #[arg(long, env = "MTGPT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Most rows in one forward pass (1 turns batching off).
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// Milliseconds the batcher waits for more requests after the first.
    #[arg(long, default_value_t = 5)]
    max_wait_ms: u64,
    /// Requests waiting for the model at most (more get 429 with Retry-After).
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Most inputs in one /v1/tasks request.
    #[arg(long, default_value_t = 64)]
    max_inputs: usize,
    /// Largest max_tokens a completion may ask for.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Seconds before an unanswered request gets 504.
    #[arg(long, default_value_t = 60.0)]
    timeout_s: f64,
}

/// Serves until SIGTERM or Ctrl-C.
pub fn serve(a: &ServeArgs) -> anyhow::Result<()> {
    if !a.addr.ip().is_loopback() && a.api_key.is_none() {
        tracing::warn!(
            "listening on {} without --api-key: anyone who reaches it can use the model",
            a.addr
        );
    }
    if a.max_batch == 0 || a.queue == 0 || a.max_inputs == 0 || a.max_tokens == 0 {
        anyhow::bail!("--max-batch, --queue, --max-inputs and --max-tokens must be at least 1");
    }
    if !(a.timeout_s.is_finite() && a.timeout_s > 0.0) {
        anyhow::bail!("--timeout-s must be a positive number of seconds");
    }
    let mut opts = mtgpt_serve::ServeOptions::new(&a.model);
    opts.addr = a.addr;
    opts.api_key = a.api_key.clone().filter(|k| !k.is_empty());
    opts.max_batch = a.max_batch;
    opts.max_wait = Duration::from_millis(a.max_wait_ms);
    opts.queue = a.queue;
    opts.max_body_bytes = a.max_body_bytes;
    opts.max_inputs = a.max_inputs;
    opts.max_tokens = a.max_tokens;
    opts.timeout = Duration::from_secs_f64(a.timeout_s);
    opts.device = crate::args::device();
    mtgpt_serve::serve(opts, |addr| {
        // The first stdout line, for scripts and tests that asked for port 0.
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
        tracing::info!("serving {} on http://{addr}", a.model.display());
    })?;
    Ok(())
}
