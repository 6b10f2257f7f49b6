//! The channels API through an apiserver outage: its cache catches up within seconds of the
//! apiserver's return, and a connect is answered soon after.

mod http_common;

use std::time::{Duration, Instant};

use channel_operator::crd::Channel;
use channel_operator::{api, controller};
use clap::Parser;
use kube::CustomResourceExt;
use kube_sandbox::Sandbox;

struct Env {
    sb: Sandbox,
    base: String,
    http: reqwest::Client,
    _tasks: Vec<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<anyhow::Result<()>>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Env {
    /// A sandbox, the controller (no leader election) and the API, in this process.
    async fn start() -> Env {
        let sb = Sandbox::start(0).await.expect("sandbox starts");
        sb.install_crd(&Channel::crd()).await.expect("CRD installs");
        let controller_args = controller::Args::parse_from([
            "controller",
            "--leader-election",
            "false",
            "--namespace",
            "default",
        ]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let controller = tokio::spawn(controller::run_with_listener(
            sb.client(),
            controller_args,
            listener,
        ));
        let api_args = api::Args::parse_from(["api", "--channels-namespace", "default"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let api = tokio::spawn(api::serve(sb.client(), api_args, listener));
        http_common::wait_ready(&format!("{base}/readyz")).await;
        Env {
            sb,
            base,
            http: reqwest::Client::new(),
            _tasks: vec![AbortOnDrop(controller), AbortOnDrop(api)],
        }
    }

    async fn connect(&self, name: &str) -> (u16, String) {
        let resp = self
            .http
            .post(format!("{}/channels.chatplugin.connect", self.base))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .expect("the API answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_is_answered_within_10s_of_the_apiservers_return() {
    let env = Env::start().await;
    assert_eq!(env.connect("site-before").await.0, 200);
    env.sb.faults().restart(Duration::from_secs(30)).await;
    let back = Instant::now();
    // A client retrying every half second, as a UI would, from the apiserver's return.
    let answer = loop {
        let (status, body) = env.connect("site-after").await;
        if status == 200 || back.elapsed() > Duration::from_secs(10) {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let took = back.elapsed();
    assert!(
        answer.0 == 200 && took <= Duration::from_secs(10),
        "{took:?} after the apiserver's return the connect answered {answer:?}"
    );
}
