//! `mtgpt serve` as a real process on a free loopback port: answers equal `mtgpt predict`
//! under concurrent clients; the official Python `openai` client gets completions and chat
//! completions, whole and streamed; the README's curl examples work as written; a corpus of bad
//! requests each gets its status and message (and the server answers the next request
//! normally); SIGTERM finishes a request in flight before the server exits.
use mtgpt_e2e::path_str as s;
use mtgpt_e2e::{Server, mtgpt_ok, pyref, repo_root};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tiny model with the demo's task names, trained for a few steps on the shipped valid files.
fn model(dir: &Path) -> PathBuf {
    let root = repo_root();
    let d = |p: &str| root.join(p).display().to_string();
    let cfg = dir.join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"name = "serve"
seed = 1
[model]
n_layer = 1
n_head = 2
d_model = 32
block_size = 64
dropout = 0.0
[tokenizer]
vocab_size = 600
[preprocess]
valid_fraction = 0.1
test_fraction = 0.1
[train]
steps = 400
lr = 3e-3
batch_size = 4
warmup_steps = 1
eval_every = 0
checkpoint_every = 0
[[task]]
name = "lm_en"
kind = "lm"
train = "{lm}"
[[task]]
name = "sentiment_zh"
kind = "classify"
train = "{cls}"
[[task]]
name = "ner_zh"
kind = "tagging"
train = "{ner}"
[[task]]
name = "poem_zh"
kind = "generate"
train = "{poem}"
decode = {{ max_new_tokens = 8 }}
"#,
            lm = d("data/lm_en/valid.txt"),
            cls = d("data/sentiment_zh/valid.jsonl"),
            ner = d("data/ner_zh/valid.jsonl"),
            poem = d("data/poem_zh/valid.jsonl"),
        ),
    )
    .unwrap();
    let run = dir.join("run");
    mtgpt_ok(&[
        "-q",
        "train",
        "--config",
        s(&cfg),
        "--out",
        s(&run),
        "--no-progress",
    ]);
    run.join("model")
}

/// One HTTP/1.1 exchange: `(status, headers, body)` (chunked bodies decoded).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    sock.write_all(req.as_bytes()).unwrap();
    sock.write_all(body).unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut r = rest;
        while let Some((size, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            r = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_string()
    };
    (status, head.to_string(), body)
}

fn post(addr: &str, path: &str, key: Option<&str>, body: &str) -> (u16, Value) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut h = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        h.push(("Authorization", a));
    }
    let (status, _, body) = http(addr, "POST", path, &h, body.as_bytes());
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// Whether two answers agree: the same labels, tags and texts; numbers (probabilities) within
/// 1e-6 — a row's floats may round differently in a batch of other rows.
fn same_answer(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN)).abs() < 1e-6
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_answer(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_answer(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn the_server_answers_like_predict_speaks_openai_and_survives_bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = model(dir);

    // `mtgpt predict` on 24 test inputs: what the server must answer.
    let lines: Vec<String> =
        std::fs::read_to_string(repo_root().join("data/sentiment_zh/test.jsonl"))
            .unwrap()
            .lines()
            .take(24)
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                json!({"text": v["text"]}).to_string()
            })
            .collect();
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let want: Vec<Value> = mtgpt_ok(&[
        "-q",
        "predict",
        "--model",
        s(&m),
        "--task",
        "sentiment_zh",
        "--input",
        s(&input),
    ])
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(want.len(), 24);

    let server = Server::start(&m, &["--max-batch", "8"]);
    let addr = server.addr.clone();
    // 8 concurrent clients, 3 requests each: every answer is predict's.
    std::thread::scope(|sc| {
        for c in 0..8 {
            let (addr, lines, want) = (&addr, &lines, &want);
            sc.spawn(move || {
                for k in 0..3 {
                    let i = c * 3 + k;
                    let (st, got) = post(addr, "/v1/tasks/sentiment_zh", None, &lines[i]);
                    assert_eq!(st, 200, "{got}");
                    assert!(
                        same_answer(&got, &want[i]),
                        "input {i}: {got} vs {}",
                        want[i]
                    );
                }
            });
        }
    });
    // A list in, a list out.
    let (st, got) = post(
        &addr,
        "/v1/tasks/sentiment_zh",
        None,
        &format!("[{}]", lines.join(",")),
    );
    assert_eq!(st, 200);
    assert!(same_answer(&got, &Value::Array(want.clone())), "{got}");
    // Tagging too.
    let ner = r#"{"tokens": ["张", "三", "在", "北", "京"]}"#;
    std::fs::write(dir.join("ner.jsonl"), format!("{ner}\n")).unwrap();
    let want_ner: Value = serde_json::from_str(
        mtgpt_ok(&[
            "-q",
            "predict",
            "--model",
            s(&m),
            "--task",
            "ner_zh",
            "--input",
            s(&dir.join("ner.jsonl")),
        ])
        .trim(),
    )
    .unwrap();
    let (st, got) = post(&addr, "/v1/tasks/ner_zh", None, ner);
    assert!(
        st == 200 && same_answer(&got, &want_ner),
        "{got} vs {want_ner}"
    );

    // The README's curl examples, as written (address of this server).
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let block = readme
        .split("<!-- serve-examples -->")
        .nth(1)
        .and_then(|b| b.split("```").nth(1))
        .expect("the README's serve examples");
    let curls: Vec<&str> = block.lines().filter(|l| l.starts_with("curl ")).collect();
    assert!(curls.len() >= 5, "{block}");
    for c in curls {
        let cmd = c.replace("127.0.0.1:8080", &addr);
        let o = Command::new("bash").args(["-c", &cmd]).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && !out.trim().is_empty(), "{cmd}: {out}");
        assert!(!out.contains("\"error\""), "{cmd}: {out}");
    }

    // The official Python client.
    let report: Value = serde_json::from_str(&pyref(
        "openai_ref.py",
        &[
            "check",
            &format!("http://{addr}/v1"),
            "unused",
            "lm_en",
            "The history of the",
        ],
    ))
    .unwrap();
    assert!(
        report["models"]
            .as_array()
            .unwrap()
            .contains(&json!("poem_zh")),
        "{report}"
    );
    assert!(
        !report["completion"]["text"].as_str().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(report["completion"]["object"], "text_completion");
    assert_eq!(
        report["completion"]["text"], report["completion_stream"]["text"],
        "{report}"
    );
    assert!(
        report["completion_stream"]["chunks"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["chat"]["role"], "assistant");
    assert_eq!(
        report["chat"]["content"], report["chat_stream"]["content"],
        "{report}"
    );
    assert!(["stop", "length"].contains(&report["chat"]["finish_reason"].as_str().unwrap()));
    assert_eq!(report["unknown_model"], 404, "{report}");

    // Bad requests: each its status and message; the server keeps serving.
    let completion =
        |extra: &str| format!(r#"{{"model": "poem_zh", "prompt": "滿目江山"{extra}}}"#);
    let long = "好".repeat(400);
    let many = format!("[{}]", vec![r#"{"text": "好"}"#; 65].join(","));
    let big = format!(r#"{{"text": "{}"}}"#, "x".repeat(2 << 20));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/v1/completions",
            r#"{"model": "poem_zh", "#.into(),
            400,
            "malformed JSON",
        ),
        (
            "/v1/completions",
            completion(r#", "max_tokens": "ten""#),
            400,
            "max_tokens",
        ),
        (
            "/v1/completions",
            completion(r#", "max_tokens": 100000"#),
            400,
            "max_tokens 100000",
        ),
        (
            "/v1/completions",
            completion(r#", "temperature": -1"#),
            400,
            "temperature",
        ),
        ("/v1/completions", completion(r#", "n": 2"#), 400, "n = 1"),
        (
            "/v1/completions",
            format!(r#"{{"model": "poem_zh", "prompt": "{long}", "max_tokens": 8}}"#),
            400,
            "context",
        ),
        (
            "/v1/completions",
            r#"{"model": "poem_zh", "prompt": ""}"#.into(),
            400,
            "empty",
        ),
        ("/v1/completions", r#"{"prompt": "x"}"#.into(), 400, "model"),
        (
            "/v1/completions",
            r#"{"model": "sentiment_zh", "prompt": "x"}"#.into(),
            400,
            "/v1/tasks/sentiment_zh",
        ),
        (
            "/v1/chat/completions",
            r#"{"model": "poem_zh", "messages": [{"role": "robot", "content": "x"}]}"#.into(),
            400,
            "messages[0].role",
        ),
        (
            "/v1/chat/completions",
            r#"{"model": "poem_zh", "messages": [{"role": "user", "content": 3}]}"#.into(),
            400,
            "messages[0].content",
        ),
        (
            "/v1/tasks/nope",
            r#"{"text": "x"}"#.into(),
            404,
            "no task `nope`",
        ),
        ("/v1/tasks/sentiment_zh", "[]".into(), 400, "empty"),
        (
            "/v1/tasks/sentiment_zh",
            r#"{"txt": "x"}"#.into(),
            400,
            "inputs[0]: field `text`: missing",
        ),
        (
            "/v1/tasks/sentiment_zh",
            r#"{"text": 5}"#.into(),
            400,
            "expected a string",
        ),
        ("/v1/tasks/sentiment_zh", "7".into(), 400, "input object"),
        ("/v1/tasks/sentiment_zh", many, 400, "at most 64"),
        ("/v1/tasks/sentiment_zh", big, 413, "larger than"),
        (
            "/v1/tasks/ner_zh",
            r#"{"tokens": []}"#.into(),
            400,
            "tokens",
        ),
        (
            "/v1/tasks/lm_en",
            r#"{"text": "x"}"#.into(),
            400,
            "/v1/completions",
        ),
    ];
    for (path, body, status, msg) in &cases {
        let (st, v) = post(&addr, path, None, body);
        assert_eq!(st, *status, "{path} {}: {v}", &body[..body.len().min(80)]);
        let m = v["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains(msg), "{path}: {m:?} should mention {msg:?}");
        // ...and the next request is answered normally.
        assert_eq!(
            post(&addr, "/v1/tasks/sentiment_zh", None, &lines[0]).0,
            200
        );
    }
    // A client that goes away in the middle of a stream.
    {
        let mut sock = TcpStream::connect(&addr).unwrap();
        let body =
            r#"{"model": "poem_zh", "prompt": "滿目江山", "max_tokens": 40, "stream": true}"#;
        write!(
            sock,
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut first = [0u8; 64];
        let _ = sock.read(&mut first).unwrap();
    }
    assert_eq!(
        post(&addr, "/v1/tasks/sentiment_zh", None, &lines[1]),
        (200, want[1].clone())
    );
    let (st, _, health) = http(&addr, "GET", "/health", &[], b"");
    assert_eq!((st, health.contains("ok")), (200, true));
    let (_, _, metrics) = http(&addr, "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("mtgpt_requests_total{route=\"/v1/tasks\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("mtgpt_batch_size_bucket"), "{metrics}");
    assert!(
        !metrics.lines().any(|l| l.contains("status=\"5")),
        "a 5xx was answered: {metrics}"
    );
    let status = server.stop();
    assert!(
        status.success(),
        "mtgpt serve exited with {status:?} after SIGTERM"
    );

    // With a key: 401 without it or with a wrong one; the right one passes.
    let server = Server::start(&m, &["--api-key", "sekret"]);
    let addr = server.addr.clone();
    let (st, v) = post(&addr, "/v1/tasks/sentiment_zh", None, &lines[0]);
    assert_eq!(st, 401, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing API key")
    );
    assert_eq!(
        post(&addr, "/v1/tasks/sentiment_zh", Some("nope"), &lines[0]).0,
        401
    );
    assert_eq!(
        post(&addr, "/v1/tasks/sentiment_zh", Some("sekret"), &lines[0]),
        (200, want[0].clone())
    );
    let report: Value = serde_json::from_str(&pyref(
        "openai_ref.py",
        &[
            "check",
            &format!("http://{addr}/v1"),
            "sekret",
            "lm_en",
            "The history of the",
        ],
    ))
    .unwrap();
    assert_eq!(report["wrong_key"], 401, "{report}");

    let status = server.stop();
    assert!(
        status.success(),
        "mtgpt serve exited with {status:?} after SIGTERM"
    );

    // SIGTERM while two requests are in flight — one still sending its body, one held by
    // the batcher for its 1.5 s wait (the other being in flight, it waits for company): both
    // are answered after the signal, the stream ends with [DONE], the server exits 0.
    let server = Server::start(&m, &["--api-key", "sekret", "--max-wait-ms", "1500"]);
    let a1 = server.addr.clone();
    let slow = std::thread::spawn(move || {
        let mut sock = TcpStream::connect(&a1).unwrap();
        let body = r#"{"text": "今天天气很好"}"#.as_bytes();
        write!(
            sock,
            "POST /v1/tasks/sentiment_zh HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer sekret\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        sock.write_all(&body[..5]).unwrap();
        std::thread::sleep(Duration::from_millis(700));
        sock.write_all(&body[5..]).unwrap();
        let mut out = String::new();
        sock.read_to_string(&mut out).unwrap();
        out
    });
    std::thread::sleep(Duration::from_millis(150));
    let t0 = std::time::Instant::now();
    let a2 = server.addr.clone();
    let held = std::thread::spawn(move || {
        let body =
            r#"{"model": "poem_zh", "prompt": "滿目江山", "max_tokens": 40, "stream": true}"#;
        http(
            &a2,
            "POST",
            "/v1/completions",
            &[("Authorization", "Bearer sekret")],
            body.as_bytes(),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let status = server.stop();
    let (st, _, body) = held.join().unwrap();
    assert_eq!(st, 200);
    assert!(body.contains("data: [DONE]"), "{body}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "answered before the signal: {:?}",
        t0.elapsed()
    );
    let out = slow.join().unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(status.success(), "{status}");
}
