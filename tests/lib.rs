//! Helpers for the end-to-end tests in `tests/tests/`, which drive the real `mtgpt` binary.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of the `mtgpt` binary, built once per test process with the cargo that runs the
/// tests (a no-op when it is up to date).
pub fn mtgpt_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "mtgpt-cli", "--bin", "mtgpt"])
            .current_dir(repo_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building mtgpt failed");
        // Test executables live in target/<profile>/deps/.
        let exe = std::env::current_exe().expect("test exe path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let debug = profile_dir
            .parent()
            .expect("target")
            .join("debug")
            .join("mtgpt");
        assert!(debug.exists(), "{} missing after build", debug.display());
        debug
    })
}

/// Runs `mtgpt ARGS` from the repository root and returns its output.
pub fn mtgpt(args: &[&str]) -> Output {
    Command::new(mtgpt_bin())
        .args(args)
        .current_dir(repo_root())
        .env_remove("RUST_LOG")
        .output()
        .expect("mtgpt starts")
}

/// Runs `mtgpt ARGS` from the repository root with `input` on its standard input.
pub fn mtgpt_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(mtgpt_bin())
        .args(args)
        .current_dir(repo_root())
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mtgpt starts");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("mtgpt reads its input");
    child.wait_with_output().expect("mtgpt ends")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `mtgpt ARGS`, asserts success (showing stderr otherwise) and returns stdout.
pub fn mtgpt_ok(args: &[&str]) -> String {
    let o = mtgpt(args);
    assert!(o.status.success(), "mtgpt {args:?}: {}", stderr(&o));
    stdout(&o)
}

/// A path as the `&str` an argument list needs (test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// The Python reference venv's interpreter (torch, transformers, peft), made once per test
/// process by `scripts/setup-pyref.sh`.
pub fn pyref_python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/setup-pyref.sh"))
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "scripts/setup-pyref.sh failed (it installs torch, transformers and peft from PyPI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(text.lines().last().expect("the python path").trim())
    })
}

/// Runs `tests/hf/SCRIPT ARGS` in the reference venv; its stdout, trimmed (a failure shows
/// the script's stderr).
pub fn pyref(script: &str, args: &[&str]) -> String {
    let out = Command::new(pyref_python())
        .arg(repo_root().join("tests/hf").join(script))
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{script} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A running `mtgpt serve` on a free loopback port (killed when dropped).
pub struct Server {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Server {
    /// Starts `mtgpt serve --model MODEL --addr 127.0.0.1:0 EXTRA…` and reads the address it
    /// prints.
    pub fn start(model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(mtgpt_bin())
            .args([
                "-q",
                "serve",
                "--model",
                path_str(model),
                "--addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env_remove("MTGPT_API_KEY")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, addr }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Writes the small two-task data of the Hugging Face interchange tests into `dir`:
/// `lm.txt` (40 English + Chinese lines) and `cls.jsonl` (40 labelled lines, `pos`/`neg`).
pub fn write_interchange_data(dir: &Path) {
    let mut lm = String::new();
    let mut cls = String::new();
    for i in 0..40 {
        lm.push_str(&format!(
            "To be, or not to be, that is the question {i}. 北京欢迎你，今天天气很好。\n"
        ));
        let (t, l) = if i % 2 == 0 {
            ("今天天气很好，我们去公园", "pos")
        } else {
            ("the slings and arrows of outrageous fortune", "neg")
        };
        cls.push_str(&format!("{{\"text\": \"{t} {i}\", \"label\": \"{l}\"}}\n"));
    }
    std::fs::write(dir.join("lm.txt"), lm).unwrap();
    std::fs::write(dir.join("cls.jsonl"), cls).unwrap();
}

/// The `lm` task's mean loss at every log line of a run's `metrics.jsonl`.
pub fn lm_losses(run: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.pointer("/losses/lm").and_then(|x| x.as_f64()))
        .collect()
}
