//! Counters behind `GET /metrics`, in Prometheus' text format: requests by route and status,
//! request latency and batch size histograms, queue depth, generated tokens and tokens/s.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const LATENCY_BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
const BATCH_BOUNDS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(bounds) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.n += 1;
    }

    fn render(&self, out: &mut String, name: &str, bounds: &[f64]) {
        for (i, b) in bounds.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.n);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.n);
    }
}

/// The server's counters (shared by the routes and the model worker).
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<Histogram>,
    batches: Mutex<Histogram>,
    /// Requests waiting for the model.
    pub queue_depth: AtomicUsize,
    /// HTTP requests being handled (the batcher waits for more only while some may come).
    pub inflight: AtomicUsize,
    generated: AtomicU64,
    /// Microseconds the worker spent generating.
    generate_us: AtomicU64,
}

impl Metrics {
    /// Counts a finished request of `route` with `status` that took `seconds`.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *r.entry((route.to_string(), status)).or_default() += 1;
        drop(r);
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&LATENCY_BOUNDS, seconds);
    }

    /// Counts one forward batch of `rows` rows.
    pub fn batch(&self, rows: usize) {
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&BATCH_BOUNDS, rows as f64);
    }

    /// Counts `tokens` generated in `seconds`.
    pub fn generated(&self, tokens: usize, seconds: f64) {
        self.generated.fetch_add(tokens as u64, Ordering::Relaxed);
        self.generate_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Requests answered with `status` so far (all routes).
    pub fn count(&self, status: u16) -> u64 {
        let r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        r.iter()
            .filter(|((_, s), _)| *s == status)
            .map(|(_, n)| n)
            .sum()
    }

    /// The text of `GET /metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP mtgpt_requests_total Requests answered, by route and status."
        );
        let _ = writeln!(out, "# TYPE mtgpt_requests_total counter");
        let mut errors = 0;
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "mtgpt_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
            if *status >= 400 {
                errors += n;
            }
        }
        let _ = writeln!(
            out,
            "# HELP mtgpt_errors_total Requests answered with a 4xx or 5xx status."
        );
        let _ = writeln!(out, "# TYPE mtgpt_errors_total counter");
        let _ = writeln!(out, "mtgpt_errors_total {errors}");
        let _ = writeln!(
            out,
            "# HELP mtgpt_request_duration_seconds Request latency."
        );
        let _ = writeln!(out, "# TYPE mtgpt_request_duration_seconds histogram");
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(&mut out, "mtgpt_request_duration_seconds", &LATENCY_BOUNDS);
        let _ = writeln!(out, "# HELP mtgpt_batch_size Rows per model batch.");
        let _ = writeln!(out, "# TYPE mtgpt_batch_size histogram");
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(&mut out, "mtgpt_batch_size", &BATCH_BOUNDS);
        let _ = writeln!(
            out,
            "# HELP mtgpt_queue_depth Requests waiting for the model."
        );
        let _ = writeln!(out, "# TYPE mtgpt_queue_depth gauge");
        let _ = writeln!(
            out,
            "mtgpt_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        let tokens = self.generated.load(Ordering::Relaxed);
        let us = self.generate_us.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP mtgpt_generated_tokens_total Tokens generated.");
        let _ = writeln!(out, "# TYPE mtgpt_generated_tokens_total counter");
        let _ = writeln!(out, "mtgpt_generated_tokens_total {tokens}");
        let _ = writeln!(
            out,
            "# HELP mtgpt_generated_tokens_per_second Tokens generated per second of generation."
        );
        let _ = writeln!(out, "# TYPE mtgpt_generated_tokens_per_second gauge");
        let rate = if us > 0 {
            tokens as f64 / (us as f64 / 1e6)
        } else {
            0.0
        };
        let _ = writeln!(out, "mtgpt_generated_tokens_per_second {rate}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_render_as_prometheus_text() {
        let m = Metrics::default();
        m.request("/v1/tasks", 200, 0.003);
        m.request("/v1/tasks", 200, 0.2);
        m.request("/v1/completions", 400, 0.001);
        m.batch(5);
        m.generated(10, 0.5);
        let t = m.render();
        assert!(
            t.contains("mtgpt_requests_total{route=\"/v1/tasks\",status=\"200\"} 2"),
            "{t}"
        );
        assert!(t.contains("mtgpt_errors_total 1"), "{t}");
        assert!(
            t.contains("mtgpt_request_duration_seconds_bucket{le=\"0.005\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("mtgpt_request_duration_seconds_bucket{le=\"+Inf\"} 3"),
            "{t}"
        );
        assert!(t.contains("mtgpt_batch_size_bucket{le=\"4\"} 0"), "{t}");
        assert!(t.contains("mtgpt_batch_size_bucket{le=\"8\"} 1"), "{t}");
        assert!(t.contains("mtgpt_generated_tokens_per_second 20"), "{t}");
        assert_eq!(m.count(200), 2);
    }
}
