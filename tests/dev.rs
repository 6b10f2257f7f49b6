//! `channel-operator dev`, the README's first command, as a new user runs it: start it, connect a
//! chat-plugin channel with curl's request, list it, see it with kubectl, stop it with Ctrl-C.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

/// The value after `prefix` on the first printed line that has it.
fn after<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.strip_prefix(prefix))
}

/// `channel-operator dev` on OS-chosen ports writing `kubeconfig`, not yet waited for.
fn dev_command(kubeconfig: &Path) -> tokio::process::Command {
    dev_command_with(kubeconfig, &[])
}

/// [`dev_command`] with more flags.
fn dev_command_with(kubeconfig: &Path, extra: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_channel-operator"));
    command
        .args([
            "dev",
            "--sandbox-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
        ])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(extra)
        .kill_on_drop(true);
    command
}

/// Where `dev` writing `kubeconfig` logs (appended, so a failure can show it): `dev.log` in the
/// nearest folder above it that exists (dev creates the kubeconfig's own folder).
fn log_path(kubeconfig: &Path) -> std::path::PathBuf {
    let dir = kubeconfig
        .ancestors()
        .skip(1)
        .find(|p| p.is_dir())
        .expect("an existing folder above the kubeconfig");
    dir.join("dev.log")
}

/// Starts `dev` and returns it with the lines it printed once everything is ready. Its log goes
/// to [`log_path`].
async fn start_dev(kubeconfig: &Path) -> (tokio::process::Child, Vec<String>) {
    start_dev_with(kubeconfig, &[], "try: kubectl").await
}

/// Starts `dev` with more flags; ready once it printed a line starting with `ready_line`.
async fn start_dev_with(
    kubeconfig: &Path,
    extra: &[&str],
    ready_line: &str,
) -> (tokio::process::Child, Vec<String>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(kubeconfig))
        .unwrap();
    let mut child = dev_command_with(kubeconfig, extra)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed: Vec<String> = vec![];
    while after(&printed, ready_line).is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("dev prints its addresses")
            .unwrap()
            .unwrap_or_else(|| panic!("dev exited early: {printed:?}"));
        printed.push(line);
    }
    // Keep reading, so what dev prints later (on shutdown) never meets a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, printed)
}

/// Ctrl-C, and a clean exit (else the log of `dev` writing `kubeconfig` is shown).
async fn interrupt(mut child: tokio::process::Child, kubeconfig: &Path) {
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("dev exits after Ctrl-C")
        .unwrap();
    let log = std::fs::read_to_string(log_path(kubeconfig)).unwrap_or_default();
    assert!(status.success(), "{status}; its log:\n{log}");
}

#[tokio::test]
async fn dev_runs_sandbox_controller_and_api_until_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("nested").join("kubeconfig");
    let (child, printed) = start_dev(&kubeconfig).await;
    let shown = after(&printed, "kubeconfig written to ").expect("kubeconfig line");
    assert!(shown.ends_with("nested/kubeconfig"), "{printed:?}");
    assert!(kubeconfig.exists());
    let api = after(&printed, "channels API listening on ")
        .expect("API address line")
        .to_owned();
    assert!(
        after(&printed, "try: curl -s -X POST ").is_some_and(|c| c.contains(&api)),
        "{printed:?}"
    );

    let http = reqwest::Client::new();
    let connected: Value = http
        .post(format!("{api}/channels.chatplugin.connect"))
        .json(&json!({"name": "website-identifier-42"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .expect("connect succeeds")
        .json()
        .await
        .unwrap();
    assert_eq!(
        connected,
        json!({
            "id": "625c0084-1043-5727-bfd9-40366ef08a64",
            "source": "chat_plugin",
            "source_channel_id": "website-identifier-42",
            "connected": true,
            "metadata": {"name": "website-identifier-42"}
        })
    );
    let listed: Value = http
        .post(format!("{api}/channels.list"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!({"data": [connected]}));

    let table = support::kubectl::get_channels(&kubeconfig, &dir.path().join("cache")).await;
    let row = table
        .lines()
        .find(|l| l.starts_with("625c0084-1043-5727-bfd9-40366ef08a64"))
        .unwrap_or_else(|| panic!("kubectl shows the channel:\n{table}"));
    for cell in ["chat_plugin", "website-identifier-42", "true", "True"] {
        assert!(row.contains(cell), "{cell} missing in {row:?}");
    }

    interrupt(child, &kubeconfig).await;
}

#[tokio::test]
async fn dev_sandbox_only_serves_the_crd_and_reconciles_nothing() {
    // What the image's smoke test (scripts/check-image) runs its controller and API against.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let (child, printed) =
        start_dev_with(&kubeconfig, &["--sandbox-only"], "kubeconfig written to ").await;
    assert!(
        after(&printed, "channels API listening on ").is_none()
            && after(&printed, "controller running").is_none(),
        "{printed:?}"
    );

    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let channels: kube::Api<channel_operator::crd::Channel> =
        kube::Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    let example: channel_operator::crd::Channel = serde_yaml::from_str(
        &std::fs::read_to_string("examples/channel-chat-plugin.yaml").unwrap(),
    )
    .unwrap();
    channels
        .create(&Default::default(), &example)
        .await
        .expect("the sandbox serves the Channel CRD");
    // A controller would add its finalizer and Ready within milliseconds; none runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = channels.get("website-chat").await.unwrap();
    assert!(
        stored.status.is_none() && stored.metadata.finalizers.is_none(),
        "reconciled without a controller: {stored:?}"
    );

    interrupt(child, &kubeconfig).await;
}

#[tokio::test]
async fn a_second_dev_does_not_take_over_a_kubeconfig_the_first_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let (first, _) = start_dev(&kubeconfig).await;
    let written = std::fs::read_to_string(&kubeconfig).unwrap();

    // A second instance on other ports, same kubeconfig: refused, with the way out.
    let second = tokio::time::timeout(Duration::from_secs(30), dev_command(&kubeconfig).output())
        .await
        .expect("the second dev exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "second dev started: {stderr}");
    assert!(
        stderr.contains("still running") && stderr.contains("--kubeconfig PATH"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&kubeconfig).unwrap(),
        written,
        "the first instance's kubeconfig is untouched"
    );

    // Once the first is stopped, its leftover kubeconfig is simply replaced.
    interrupt(first, &kubeconfig).await;
    let (third, printed) = start_dev(&kubeconfig).await;
    let url = after(&printed, "Kubernetes API sandbox listening on ")
        .and_then(|l| l.split_whitespace().next())
        .expect("sandbox address line");
    assert!(
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains(&format!("server: {url}\n")),
        "the kubeconfig names the new sandbox {url}"
    );
    interrupt(third, &kubeconfig).await;
}
