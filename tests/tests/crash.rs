//! Crash safety of `mtgpt train` (issue #9): SIGKILL at random moments — some of them while a
//! checkpoint is being written — then `--resume`, until the run finishes; the final weights
//! must equal an uninterrupted run's byte for byte and no checkpoint may ever be unreadable.
//! And disk trouble during a checkpoint: a clear error, the previous checkpoint intact.
//!
//! The normal suite kills 3 times; `crash_test_20_kills` (ignored, `scripts/crash-test.sh`)
//! kills 20 times. `MTGPT_CRASH_SEED=N` repeats a run's kill moments.
use mtgpt_e2e::{mtgpt_bin, repo_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Two tasks (LM + classification), dropout on, a checkpoint every 2 steps: small enough for
/// one run to take seconds in a debug build, rich enough that resume has state to get wrong.
fn write_config(dir: &Path, steps: usize) -> PathBuf {
    let path = dir.join("crash.toml");
    let text = format!(
        r#"name = "crash"
seed = 11

[model]
n_layer = 1
n_head = 2
d_model = 16
block_size = 32
dropout = 0.1

[tokenizer]
kind = "char"
vocab_size = 200

[train]
steps = {steps}
pretrain_steps = 4
batch_size = 4
lr = 3e-3
warmup_steps = 2
eval_every = 10
checkpoint_every = 2
keep_checkpoints = 2

[[task]]
name = "lm_en"
kind = "lm"
train = "data/lm_en/valid.txt"
valid = "data/lm_en/test.txt"

[[task]]
name = "spam"
kind = "classify"
train = "data/spam_en/valid.jsonl"
valid = "data/spam_en/test.jsonl"
labels = ["ham", "spam"]
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

use mtgpt_e2e::path_str as s;

fn train_cmd(config: &Path, out: &Path, resume: bool, extra: &[&str]) -> Command {
    let mut c = Command::new(mtgpt_bin());
    c.args(["-q", "train", "--config", s(config), "--out", s(out)])
        .args(extra)
        .current_dir(repo_root())
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "0");
    if resume {
        c.arg("--resume");
    }
    c
}

fn check_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `step-N` checkpoint folders (not `.tmp` or `.old` ones), oldest first.
fn checkpoints(out: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(out.join("checkpoints"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_prefix("step-"))
                        .is_some_and(|n| n.parse::<usize>().is_ok())
                })
                .collect()
        })
        .unwrap_or_default();
    all.sort();
    all
}

/// Every visible checkpoint must load: both safetensors files whole, trainer.json valid JSON
/// with the step its name says.
fn assert_checkpoints_readable(out: &Path, when: &str) {
    for c in checkpoints(out) {
        for f in ["weights.safetensors", "optimizer.safetensors"] {
            let bytes = std::fs::read(c.join(f))
                .unwrap_or_else(|e| panic!("{when}: {}/{f}: {e}", c.display()));
            if let Err(e) = safetensors::SafeTensors::deserialize(&bytes) {
                panic!("{when}: {}/{f} unreadable: {e}", c.display());
            }
        }
        let text = std::fs::read_to_string(c.join("trainer.json"))
            .unwrap_or_else(|e| panic!("{when}: {}/trainer.json: {e}", c.display()));
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{when}: {}/trainer.json: {e}", c.display()));
        let name = c.file_name().unwrap().to_str().unwrap();
        let step: u64 = name["step-".len()..].parse().unwrap();
        assert_eq!(v["step"].as_u64(), Some(step), "{when}: {}", c.display());
    }
}

/// splitmix64: kill moments from a printed seed, without a rand dependency.
struct Moments(u64);
impl Moments {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Whether a checkpoint is being written right now (`step-N.tmp` exists).
fn writing_checkpoint(out: &Path) -> bool {
    std::fs::read_dir(out.join("checkpoints")).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
    })
}

/// Runs `steps` steps killed `kills` times, then compares with an uninterrupted run.
fn crash_and_compare(steps: usize, kills: usize) {
    let seed = std::env::var("MTGPT_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("MTGPT_CRASH_SEED={seed}");
    let mut rng = Moments(seed);
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), steps);

    let reference = tmp.path().join("reference");
    let t0 = Instant::now();
    let o = train_cmd(&config, &reference, false, &[]).output().unwrap();
    check_ok(&o, "uninterrupted run");
    let full = t0.elapsed();

    let out = tmp.path().join("crashed");
    let mut killed = 0;
    let mut at_checkpoint = 0;
    let mut starts = 0;
    while killed < kills {
        starts += 1;
        assert!(
            starts < kills * 4,
            "the run keeps finishing before it is killed"
        );
        let resume = !checkpoints(&out).is_empty();
        let mut child = train_cmd(&config, &out, resume, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        // Every third kill waits for a checkpoint write to start; the others fall anywhere
        // in the first ~70 % of an uninterrupted run's time.
        let during_write = killed % 3 == 1;
        let deadline = Duration::from_millis(rng.next() % (full.as_millis() as u64 * 7 / 10 + 1));
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if during_write {
                if writing_checkpoint(&out) || started.elapsed() > full * 2 {
                    break None;
                }
                std::thread::sleep(Duration::from_micros(200));
            } else {
                if started.elapsed() >= deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        match finished {
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
                if during_write {
                    at_checkpoint += 1;
                }
            }
            Some(status) => {
                let err = child.wait_with_output().unwrap();
                assert!(
                    status.success(),
                    "a resumed run failed: {}",
                    String::from_utf8_lossy(&err.stderr)
                );
                // It finished first: start over so the remaining kills still happen.
                std::fs::remove_dir_all(&out).unwrap();
            }
        }
        assert_checkpoints_readable(&out, &format!("after kill {killed}"));
    }
    let o = train_cmd(&config, &out, !checkpoints(&out).is_empty(), &[])
        .output()
        .unwrap();
    check_ok(&o, "the final resume");
    eprintln!(
        "{killed} kills ({at_checkpoint} during checkpoint writes), {starts} starts; an uninterrupted run took {full:?}"
    );
    assert_checkpoints_readable(&out, "at the end");

    let last = |d: &Path| checkpoints(d).pop().expect("a final checkpoint");
    for (a, b) in [
        (reference.join("model"), out.join("model")),
        (last(&reference), last(&out)),
    ] {
        for f in [
            "model.safetensors",
            "heads.safetensors",
            "weights.safetensors",
            "optimizer.safetensors",
        ] {
            if a.join(f).exists() || b.join(f).exists() {
                assert!(
                    std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
                    "{f} differs between {} and {} (seed {seed})",
                    a.display(),
                    b.display()
                );
            }
        }
    }
}

#[test]
fn killed_three_times_and_resumed_equals_an_uninterrupted_run() {
    crash_and_compare(30, 3);
}

/// The full harness of issue #9: 20 kills. About two minutes in a debug build on 2 cores.
#[test]
#[ignore = "slow; run by scripts/crash-test.sh"]
fn crash_test_20_kills() {
    crash_and_compare(120, 20);
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A 4-step run with checkpoints at steps 2 and 4, resumed to 8 steps under `trouble`: the
/// checkpoint at step 6 must fail with `want` in the message, step 4 must stay byte for byte,
/// and once the trouble is gone the same resume must finish.
fn checkpoint_trouble(
    name: &str,
    trouble: impl FnOnce(&Path, &mut Command),
    undo: impl FnOnce(&Path),
    want: &[&str],
) {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), 4);
    let out = tmp.path().join(name);
    let quick = [
        "--set",
        "train.pretrain_steps=0",
        "--set",
        "train.eval_every=0",
    ];
    let o = train_cmd(&config, &out, false, &quick).output().unwrap();
    check_ok(&o, "first run");
    let ckpt = out.join("checkpoints");
    let step4 = ckpt.join("step-00000004");
    let before = files_of(&step4);

    let more = [&quick[..], &["--set", "train.steps=8"]].concat();
    let mut cmd = train_cmd(&config, &out, true, &more);
    trouble(&ckpt, &mut cmd);
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{name}: the run did not fail");
    assert_ne!(o.status.code(), Some(101), "{name}: panicked: {err}");
    assert!(
        err.contains(&format!(
            "writing checkpoint {}: ",
            s(&ckpt.join("step-00000006"))
        )) && err.contains("the earlier checkpoints are untouched"),
        "{name}: {err}"
    );
    for w in want {
        assert!(err.contains(w), "{name}: no {w:?} in: {err}");
    }
    undo(&ckpt);
    assert_eq!(files_of(&step4), before, "{name}: step 4 changed");
    assert!(!ckpt.join("step-00000006").exists(), "{name}");
    assert_checkpoints_readable(&out, name);

    let o = train_cmd(&config, &out, true, &more).output().unwrap();
    check_ok(&o, "resume after the trouble");
    assert!(ckpt.join("step-00000008/trainer.json").exists());
    assert_checkpoints_readable(&out, name);
}

/// A full disk, as near as a test can get without mounting a file system: the file-size
/// limit (`ulimit -f`, with SIGXFSZ ignored) makes the write of the checkpoint's weights fail
/// half way, as ENOSPC would. The first run's files are all smaller than the limit.
#[test]
fn a_write_failing_half_way_leaves_the_previous_checkpoint_intact() {
    checkpoint_trouble(
        "full",
        |_, cmd| {
            let prog = cmd.get_program().to_owned();
            let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
            let mut sh = Command::new("bash");
            sh.arg("-c")
                .arg("trap '' XFSZ; ulimit -f 16; exec \"$0\" \"$@\"")
                .arg(prog)
                .args(args)
                .current_dir(repo_root())
                .env("RUST_BACKTRACE", "0");
            *cmd = sh;
        },
        |_| {},
        &["File too large"],
    );
}

/// A read-only checkpoints folder. Root ignores file modes, so when a probe file can still
/// be created there (tests running as root) the folder's next entry is blocked instead: a
/// regular file sits where the checkpoint's `.tmp` folder must go.
#[test]
fn a_read_only_checkpoint_folder_leaves_the_previous_checkpoint_intact() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |dir: &Path, m: u32| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m)).unwrap()
    };
    checkpoint_trouble(
        "read-only",
        |ckpt, _| {
            mode(ckpt, 0o555);
            let probe = ckpt.join("probe");
            if std::fs::write(&probe, b"").is_ok() {
                // Running as root: the mode does not stop writes.
                std::fs::remove_file(&probe).unwrap();
                std::fs::write(ckpt.join("step-00000006.tmp"), b"in the way").unwrap();
            }
        },
        |ckpt| {
            mode(ckpt, 0o755);
            let _ = std::fs::remove_file(ckpt.join("step-00000006.tmp"));
        },
        &["step-00000006.tmp"],
    );
}
