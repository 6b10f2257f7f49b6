//! The controller end-to-end harness: the real controller (in-process) against the in-memory API
//! server, wiremock fakes of the Graph API and Twilio, driven with the real kubectl.
//!
//! Every test records everything the controller logs (debug level), every Event and every Channel
//! status it sees, and fails if any token string appears in them.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use channel_operator::controller;
use channel_operator::crd::Channel;
use channel_operator::providers::facebook::SUBSCRIBED_FIELDS;
use clap::Parser;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher;
use kube::CustomResourceExt;
use kube_sandbox::Sandbox;
use wiremock::matchers::{basic_auth, body_string, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const APP_SECRET: &str = "fb-app-secret-do-not-leak-0001";
pub const TWILIO_TOKEN: &str = "twilio-auth-token-do-not-leak-0002";
pub const TIMEOUT: &str = "--timeout=30s";

// ---------------------------------------------------------------------------------------------
// Log capture: one global subscriber for the whole test binary, at debug level for every crate.

#[derive(Clone, Default)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        // For debugging a failure: E2E_LOG_FILE=/tmp/e2e.log also writes the logs there.
        if let Some(path) = std::env::var_os("E2E_LOG_FILE") {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = f.write_all(buf);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn logs() -> &'static LogBuf {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuf::default();
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buf
    })
}

pub fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The environment of one test.

pub struct Env {
    pub sb: Sandbox,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    pub graph: MockServer,
    pub twilio: MockServer,
    pub controller: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub metrics_addr: std::net::SocketAddr,
    pub extra_args: Vec<String>,
    pub statuses: Arc<Mutex<Vec<String>>>,
    pub status_watch: tokio::task::JoinHandle<()>,
    pub secrets: Vec<String>,
}

impl Env {
    pub async fn new(extra_args: &[&str]) -> Env {
        logs();
        let sb = Sandbox::start(0).await.expect("sandbox starts");
        sb.install_crd(&Channel::crd()).await.expect("CRD installs");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sb.write_kubeconfig(&kubeconfig).unwrap();
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let status_watch = {
            let statuses = statuses.clone();
            let api: Api<Channel> = Api::all(sb.client());
            tokio::spawn(async move {
                let mut stream = watcher(api, watcher::Config::default()).boxed();
                while let Some(ev) = stream.next().await {
                    if let Ok(watcher::Event::Apply(ch) | watcher::Event::InitApply(ch)) = ev {
                        statuses
                            .lock()
                            .unwrap()
                            .push(serde_json::to_string(&ch.status).unwrap());
                    }
                }
            })
        };
        Env {
            sb,
            kubeconfig,
            dir,
            graph: MockServer::start().await,
            twilio: MockServer::start().await,
            controller: None,
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            statuses,
            status_watch,
            secrets: vec![APP_SECRET.into(), TWILIO_TOKEN.into()],
        }
    }

    pub fn args(&self) -> controller::Args {
        let graph = format!("{}/v24.0", self.graph.uri());
        let twilio = self.twilio.uri();
        let mut argv: Vec<String> = [
            "controller",
            "--facebook-app-id",
            "app-1",
            "--facebook-app-secret",
            APP_SECRET,
            "--facebook-graph-url",
            &graph,
            "--twilio-api-url",
            &twilio,
            "--twilio-account-sid",
            "AC1",
            "--twilio-auth-token",
            TWILIO_TOKEN,
            "--twilio-webhook-url",
            "https://hooks.example.org/twilio",
            "--provider-timeout-seconds",
            "1",
            "--min-backoff-millis",
            "100",
            "--max-backoff-seconds",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !self.extra_args.iter().any(|a| a == "--leader-election") {
            argv.extend(["--leader-election".to_string(), "false".to_string()]);
        }
        argv.extend(self.extra_args.iter().cloned());
        controller::Args::parse_from(argv)
    }

    pub async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.metrics_addr = listener.local_addr().unwrap();
        let client = self.sb.client();
        let args = self.args();
        self.controller = Some(tokio::spawn(controller::run_with_listener(
            client, args, listener,
        )));
    }

    /// Aborts the controller task: a crash at an arbitrary point.
    pub async fn kill(&mut self) {
        if let Some(h) = self.controller.take() {
            h.abort();
            let _ = h.await;
        }
    }

    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut cmd = std::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs");
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                input.write_all(s.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    }

    pub async fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        // kubectl blocks; let the runtime move other tasks (the controller) off this worker.
        let out = tokio::task::block_in_place(|| self.kubectl(args, stdin));
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub async fn apply(&self, yaml: &str) {
        self.kubectl_ok(&["apply", "-f", "-"], Some(yaml)).await;
    }

    pub async fn wait_ready(&self, name: &str) {
        self.kubectl_ok(
            &[
                "wait",
                "--for=condition=Ready",
                &format!("channel/{name}"),
                TIMEOUT,
            ],
            None,
        )
        .await;
    }

    pub async fn get(&self, name: &str) -> serde_json::Value {
        let out = self
            .kubectl_ok(&["get", "channel", name, "-o", "json"], None)
            .await;
        serde_json::from_str(&out).unwrap()
    }

    pub async fn exists(&self, kind: &str, name: &str) -> bool {
        let out =
            tokio::task::block_in_place(|| self.kubectl(&["get", kind, name, "-o", "name"], None));
        out.status.success()
    }

    /// Polls until `check` holds on the Channel (30 s at most).
    pub async fn eventually(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let api: Api<Channel> = Api::namespaced(self.sb.client(), "default");
            if let Ok(Some(ch)) = api.get_opt(name).await {
                let v = serde_json::to_value(&ch).unwrap();
                if check(&v) {
                    return v;
                }
                if Instant::now() > deadline {
                    panic!("{name}: timed out waiting for {what}; last: {v:#}");
                }
            } else if Instant::now() > deadline {
                panic!("{name}: timed out waiting for {what}; object absent");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn gone(&self, kind: &str, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.exists(kind, name).await {
            assert!(Instant::now() < deadline, "{kind}/{name} still exists");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Mounts a fake Facebook page: exchange, page read, subscribe (exactly `subscribes` times) and
    /// unsubscribe (exactly `unsubscribes` times). Returns the user's page token.
    pub async fn fake_page(&mut self, page: &str, subscribes: u64, unsubscribes: u64) -> String {
        let id = page_id(page);
        let page_token = format!("EAAtok-{page}-user-page-token");
        let long = format!("EAAtok-{page}-long-lived");
        let access = format!("EAAtok-{page}-page-access");
        self.secrets
            .extend([page_token.clone(), long.clone(), access.clone()]);
        Mock::given(method("GET"))
            .and(path("/v24.0/oauth/access_token"))
            .and(query_param("fb_exchange_token", page_token.as_str()))
            .and(query_param("client_secret", APP_SECRET))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": long})),
            )
            .mount(&self.graph)
            .await;
        // A stateful page: subscribing sets is_webhooks_subscribed, unsubscribing clears it.
        let subscribed = Arc::new(AtomicBool::new(false));
        let body = serde_json::json!({
            "id": id, "name_with_location_descriptor": format!("Page {page}"),
            "access_token": access, "picture": {"data": {"url": format!("https://img.example.org/{page}.png")}}
        });
        Mock::given(method("GET"))
            .and(path(format!("/v24.0/{id}")))
            .and(query_param("access_token", long.as_str()))
            .respond_with(PageState::Read(subscribed.clone(), body.clone()))
            .mount(&self.graph)
            .await;
        // The page read with its own page token (what a resync re-check uses).
        Mock::given(method("GET"))
            .and(path(format!("/v24.0/{id}")))
            .and(query_param("access_token", access.as_str()))
            .respond_with(PageState::Read(subscribed.clone(), body))
            .mount(&self.graph)
            .await;
        Mock::given(method("POST"))
            .and(path("/v24.0/me/subscribed_apps"))
            .and(query_param("access_token", access.as_str()))
            .and(query_param("subscribed_fields", SUBSCRIBED_FIELDS))
            .respond_with(PageState::Set(subscribed.clone(), true))
            .expect(subscribes)
            .named(format!("subscribe {page}"))
            .mount(&self.graph)
            .await;
        Mock::given(method("DELETE"))
            .and(path(format!("/v24.0/{id}/subscribed_apps")))
            .and(query_param("access_token", access.as_str()))
            .respond_with(PageState::Set(subscribed, false))
            .expect(unsubscribes)
            .named(format!("unsubscribe {page}"))
            .mount(&self.graph)
            .await;
        page_token
    }

    pub async fn fake_twilio_number(
        &self,
        number: &str,
        pn: &str,
        connects: u64,
        disconnects: u64,
    ) {
        Mock::given(method("GET"))
            .and(path("/2010-04-01/Accounts/AC1/IncomingPhoneNumbers.json"))
            .and(query_param("PhoneNumber", number))
            .and(basic_auth("AC1", TWILIO_TOKEN))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"incoming_phone_numbers": [{"sid": pn, "phone_number": number}]}),
            ))
            .mount(&self.twilio)
            .await;
        Mock::given(method("POST"))
            .and(path(format!(
                "/2010-04-01/Accounts/AC1/IncomingPhoneNumbers/{pn}.json"
            )))
            .and(body_string(
                "SmsUrl=https%3A%2F%2Fhooks.example.org%2Ftwilio",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": pn})))
            .expect(connects)
            .named(format!("twilio connect {number}"))
            .mount(&self.twilio)
            .await;
        Mock::given(method("POST"))
            .and(path(format!(
                "/2010-04-01/Accounts/AC1/IncomingPhoneNumbers/{pn}.json"
            )))
            .and(body_string("SmsUrl="))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": pn})))
            .expect(disconnects)
            .named(format!("twilio disconnect {number}"))
            .mount(&self.twilio)
            .await;
    }

    /// Fails if a token appears in the logs, the Events or any status seen.
    pub async fn assert_no_secret_leaked(&self) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let events = self
            .kubectl_ok(&["get", "events", "-A", "-o", "json"], None)
            .await;
        let statuses = self.statuses.lock().unwrap().join("\n");
        let logs = log_text();
        assert!(!statuses.is_empty(), "no status was recorded");
        for s in &self.secrets {
            assert!(
                !logs.contains(s.as_str()),
                "a token appears in the logs: {s}"
            );
            assert!(
                !events.contains(s.as_str()),
                "a token appears in an Event: {s}"
            );
            assert!(
                !statuses.contains(s.as_str()),
                "a token appears in a status: {s}"
            );
        }
    }

    pub async fn finish(mut self) {
        self.assert_no_secret_leaked().await;
        self.kill().await;
        self.status_watch.abort();
        self.graph.verify().await;
        self.twilio.verify().await;
        self.sb.shutdown().await;
    }
}

/// The fake page's subscription state.
pub enum PageState {
    Read(Arc<AtomicBool>, serde_json::Value),
    Set(Arc<AtomicBool>, bool),
}

impl wiremock::Respond for PageState {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        match self {
            PageState::Read(state, body) => {
                let mut body = body.clone();
                body["is_webhooks_subscribed"] = state.load(Ordering::SeqCst).into();
                ResponseTemplate::new(200).set_body_json(body)
            }
            PageState::Set(state, value) => {
                state.store(*value, Ordering::SeqCst);
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true}))
            }
        }
    }
}

pub fn secret_yaml(name: &str, key: &str, value: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ndata:\n  {key}: {b64}\n")
}

/// The numeric Facebook page id (the CRD accepts only digits) the tests' page `name` stands for.
pub fn page_id(name: &str) -> String {
    let n = name.bytes().fold(1_469_598_103_934_665_603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211)
    });
    format!("{}", n % 1_000_000_000_000)
}

pub fn channel_yaml(name: &str, source: &str, scid: &str, extra: &str) -> String {
    let scid = if source == "facebook" {
        page_id(scid)
    } else {
        scid.to_owned()
    };
    format!(
        "apiVersion: airy.co/v1alpha1\nkind: Channel\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  source: {source}\n  sourceChannelId: \"{scid}\"\n{extra}"
    )
}

pub fn fb_extra(secret: &str) -> String {
    format!("  credentialsSecretRef:\n    name: {secret}\n    key: page_token\n")
}

pub fn cond<'a>(v: &'a serde_json::Value, field: &str) -> &'a serde_json::Value {
    v["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
        .map(|c| &c[field])
        .unwrap_or(&serde_json::Value::Null)
}
