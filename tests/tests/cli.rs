//! The `mtgpt` binary's foundation verbs: --help/--version, info, config check.
use mtgpt_e2e::{mtgpt, stderr, stdout};

#[test]
fn version_and_help() {
    let o = mtgpt(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("mtgpt {}", env!("CARGO_PKG_VERSION"))
    );
    let o = mtgpt(&["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    for verb in ["info", "config"] {
        assert!(help.contains(verb), "{help}");
    }
}

#[test]
fn info_reports_libtorch_2_13() {
    let o = mtgpt(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("libtorch 2.13.0"), "{out}");
    assert!(out.contains("cuda "), "{out}");
    let o = mtgpt(&["--threads", "1", "info", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["libtorch"], "2.13.0");
    assert_eq!(v["threads"], 1);
}

#[test]
fn config_check_accepts_the_demo_and_prints_it_resolved() {
    let o = mtgpt(&[
        "config",
        "check",
        "configs/demo.toml",
        "--set",
        "train.steps=77",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("steps = 77"), "{out}");
    assert!(out.contains("d_ff = 1024"), "defaults are filled in: {out}");
    // The printed config is itself a valid config.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolved.toml");
    std::fs::write(&path, &out).unwrap();
    let o = mtgpt(&["config", "check", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn check_broken(edit: impl Fn(&str) -> String, wants: &[&str]) {
    let demo = std::fs::read_to_string(mtgpt_e2e::repo_root().join("configs/demo.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, edit(&demo)).unwrap();
    let o = mtgpt(&["config", "check", path.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(path.to_str().unwrap()),
        "names the file: {err}"
    );
    for want in wants {
        assert!(err.contains(want), "wanted {want:?} in {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn config_check_rejects_an_unknown_key_with_file_line_and_key() {
    // `n_layer` is on line 13 of the demo config; a typo'd key right after it is line 14.
    check_broken(
        |demo| demo.replacen("n_layer = 4\n", "n_layer = 4\nn_layerz = 6\n", 1),
        &[":14:", "model.n_layerz", "unknown field"],
    );
}

#[test]
fn config_check_rejects_a_wrong_type_with_file_line_and_key() {
    check_broken(
        |demo| demo.replacen("batch_size = 16", "batch_size = \"sixteen\"", 1),
        &["train.batch_size", "invalid type"],
    );
}

#[test]
fn config_check_rejects_bad_values() {
    check_broken(
        |demo| demo.replacen("lr = 3e-4", "lr = nan", 1),
        &["train.lr", "NaN"],
    );
    check_broken(
        |demo| demo.replacen("name = \"spam_en\"", "name = \"lm_en\"", 1),
        &["task[3].name", "another task"],
    );
}

#[test]
fn bad_arguments_fail_cleanly() {
    let o = mtgpt(&["config", "check", "no/such.toml"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no/such.toml"));
    let o = mtgpt(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = mtgpt(&[
        "config",
        "check",
        "configs/demo.toml",
        "--set",
        "train.steps",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("KEY=VALUE"), "{}", stderr(&o));
}
