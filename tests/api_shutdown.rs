//! A rollout of `channel-operator api`: SIGTERM while a synchronous connect waits for the
//! controller's verdict. The request in flight gets its answer; the process exits cleanly.

mod support;

use std::time::Duration;

use channel_operator::crd::Channel;
use kube::CustomResourceExt;
use kube_sandbox::Sandbox;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_the_connect_in_flight_before_exiting() {
    let sb = Sandbox::start(0).await.expect("sandbox starts");
    sb.install_crd(&Channel::crd()).await.expect("CRD installs");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sb.write_kubeconfig(&kubeconfig).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut api = tokio::process::Command::new(env!("CARGO_BIN_EXE_channel-operator"))
        .args([
            "--log-level",
            "warn",
            "api",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--channels-namespace",
            "default",
            "--sync-timeout-seconds",
            "3",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    support::http_ready(&format!("{base}/readyz")).await;
    let http = reqwest::Client::new();
    // No controller runs: the connect waits for a verdict until --sync-timeout-seconds.
    let connect = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/channels.chatplugin.connect");
        async move {
            http.post(url)
                .json(&serde_json::json!({"name": "rollout-site"}))
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = api.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let answered = connect.await.unwrap();
    let status = answered
        .as_ref()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string());
    assert_eq!(
        status,
        Ok(504),
        "the connect in flight got no answer from the draining API"
    );
    let exit = tokio::time::timeout(Duration::from_secs(15), api.wait())
        .await
        .expect("the API exits after draining")
        .unwrap();
    assert!(exit.success(), "the API exited with {exit}");
    sb.shutdown().await;
}
