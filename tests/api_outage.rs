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
    async fn start(api_flags: &[&str]) -> Env {
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
        let mut argv = vec!["api", "--channels-namespace", "default"];
        argv.extend_from_slice(api_flags);
        let api_args = api::Args::parse_from(argv);
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

    async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the API answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    async fn list(&self) -> (u16, String) {
        let resp = self
            .http
            .post(format!("{}/channels.list", self.base))
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("the API answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// `channel_operator_api_watch_healthy` of the default namespace's watch.
    async fn watch_healthy(&self) -> Option<f64> {
        self.metric("channel_operator_api_watch_healthy{watch_namespace=\"default\"}")
            .await
    }

    async fn watch_restarts(&self) -> Option<f64> {
        self.metric("channel_operator_api_watch_restarts_total{watch_namespace=\"default\"}")
            .await
    }

    /// The value of one sample of the API's /metrics.
    async fn metric(&self, sample: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
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
    let env = Env::start(&[]).await;
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
    eprintln!(
        "connect answered {} {took:?} after the apiserver's return",
        answer.0
    );
    assert!(
        answer.0 == 200 && took <= Duration::from_secs(10),
        "{took:?} after the apiserver's return the connect answered {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_outage_reads_come_from_the_cache_writes_answer_503_at_once_and_staleness_shows()
{
    let env = Env::start(&["--cache-stale-seconds", "5"]).await;
    assert_eq!(env.connect("site-before").await.0, 200);
    assert_eq!(env.watch_healthy().await, Some(1.0));
    let restarts_before = env.watch_restarts().await.unwrap_or(0.0);
    let faults = env.sb.faults();
    let outage = tokio::spawn(async move { faults.restart(Duration::from_secs(12)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Within the stale limit: reads from the cache, writes refused at once, still ready.
    let (status, body) = env.list().await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("site-before"), "{body}");
    let asked = Instant::now();
    let (status, body) = env.connect("site-during").await;
    assert!(
        status == 503 && asked.elapsed() < Duration::from_secs(1),
        "a connect during the outage answered {status} {body} after {:?}",
        asked.elapsed()
    );
    assert_eq!(env.get("/readyz").await.0, 200);
    assert_eq!(env.watch_healthy().await, Some(0.0));
    let stale = env
        .metric("channel_operator_api_cache_stale_seconds")
        .await
        .unwrap();
    assert!(stale > 1.0, "stale for {stale} s");

    // Past the stale limit: not ready, and reads are refused rather than served that old.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(env.get("/readyz").await.0, 503);
    assert_eq!(env.list().await.0, 503);
    assert!(
        env.metric("channel_operator_api_cache_stale_seconds")
            .await
            .unwrap()
            >= 5.0
    );

    outage.await.unwrap();
    let back = Instant::now();
    while env.get("/readyz").await.0 != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(6),
            "not ready 6 s after the apiserver's return"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        env.metric("channel_operator_api_cache_stale_seconds").await,
        Some(0.0)
    );
    assert_eq!(env.watch_healthy().await, Some(1.0));
    let restarts = env.watch_restarts().await.unwrap();
    assert!(
        restarts > restarts_before,
        "restarts {restarts_before} → {restarts}"
    );
    assert_eq!(env.connect("site-after").await.0, 200);
}
