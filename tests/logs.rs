//! What the process writes to stderr when it is not a terminal: plain text a log collector or a
//! file can hold, without colour escape codes.

use std::process::{Command, Stdio};

/// Runs `channel-operator controller` against a kubeconfig that does not exist, so it logs its
/// start-up failure and exits; stderr is a pipe.
fn failing_controller_stderr(extra_env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_channel-operator"))
        .arg("controller")
        .env("KUBECONFIG", dir.path().join("missing-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("NO_COLOR")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the controller cannot start without a cluster"
    );
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn text_logs_to_a_pipe_carry_no_colour_codes() {
    let stderr = failing_controller_stderr(&[("LOG_FORMAT", "text")]);
    assert!(stderr.contains("ERROR"), "a logged error line: {stderr:?}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in piped logs: {stderr:?}"
    );
}

#[test]
fn json_logs_to_a_pipe_are_one_json_object_per_line() {
    let stderr = failing_controller_stderr(&[("LOG_FORMAT", "json")]);
    // Every line: a log collector reading JSON lines would choke on any other.
    let logged: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON object ({e}): {l:?}"))
        })
        .collect();
    assert!(logged.iter().all(|v| v.is_object()), "{stderr:?}");
    assert!(
        logged.iter().any(|v| v["level"] == "ERROR"),
        "an ERROR object: {stderr:?}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
