//! End-to-end: the real controller (in-process) against the in-memory API server, wiremock fakes of
//! the Graph API and Twilio, driven with the real kubectl.
//!
//! Every test records everything the controller logs (debug level), every Event and every Channel
//! status it sees, and fails if any token string appears in them.

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

const APP_SECRET: &str = "fb-app-secret-do-not-leak-0001";
const TWILIO_TOKEN: &str = "twilio-auth-token-do-not-leak-0002";
const TIMEOUT: &str = "--timeout=30s";

// ---------------------------------------------------------------------------------------------
// Log capture: one global subscriber for the whole test binary, at debug level for every crate.

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

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

fn logs() -> &'static LogBuf {
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

fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The environment of one test.

struct Env {
    sb: Sandbox,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    graph: MockServer,
    twilio: MockServer,
    controller: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    metrics_addr: std::net::SocketAddr,
    extra_args: Vec<String>,
    statuses: Arc<Mutex<Vec<String>>>,
    status_watch: tokio::task::JoinHandle<()>,
    secrets: Vec<String>,
}

impl Env {
    async fn new(extra_args: &[&str]) -> Env {
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

    fn args(&self) -> controller::Args {
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

    async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.metrics_addr = listener.local_addr().unwrap();
        let client = self.sb.client();
        let args = self.args();
        self.controller = Some(tokio::spawn(controller::run_with_listener(
            client, args, listener,
        )));
    }

    /// Aborts the controller task: a crash at an arbitrary point.
    async fn kill(&mut self) {
        if let Some(h) = self.controller.take() {
            h.abort();
            let _ = h.await;
        }
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
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

    async fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
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

    async fn apply(&self, yaml: &str) {
        self.kubectl_ok(&["apply", "-f", "-"], Some(yaml)).await;
    }

    async fn wait_ready(&self, name: &str) {
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

    async fn get(&self, name: &str) -> serde_json::Value {
        let out = self
            .kubectl_ok(&["get", "channel", name, "-o", "json"], None)
            .await;
        serde_json::from_str(&out).unwrap()
    }

    async fn exists(&self, kind: &str, name: &str) -> bool {
        let out =
            tokio::task::block_in_place(|| self.kubectl(&["get", kind, name, "-o", "name"], None));
        out.status.success()
    }

    /// Polls until `check` holds on the Channel (30 s at most).
    async fn eventually(
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

    async fn gone(&self, kind: &str, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.exists(kind, name).await {
            assert!(Instant::now() < deadline, "{kind}/{name} still exists");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Mounts a fake Facebook page: exchange, page read, subscribe (exactly `subscribes` times) and
    /// unsubscribe (exactly `unsubscribes` times). Returns the user's page token.
    async fn fake_page(&mut self, page: &str, subscribes: u64, unsubscribes: u64) -> String {
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

    async fn fake_twilio_number(&self, number: &str, pn: &str, connects: u64, disconnects: u64) {
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
    async fn assert_no_secret_leaked(&self) {
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

    async fn finish(mut self) {
        self.assert_no_secret_leaked().await;
        self.kill().await;
        self.status_watch.abort();
        self.graph.verify().await;
        self.twilio.verify().await;
        self.sb.shutdown().await;
    }
}

/// The fake page's subscription state.
enum PageState {
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

fn secret_yaml(name: &str, key: &str, value: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ndata:\n  {key}: {b64}\n")
}

/// The numeric Facebook page id (the CRD accepts only digits) the tests' page `name` stands for.
fn page_id(name: &str) -> String {
    let n = name.bytes().fold(1_469_598_103_934_665_603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211)
    });
    format!("{}", n % 1_000_000_000_000)
}

fn channel_yaml(name: &str, source: &str, scid: &str, extra: &str) -> String {
    let scid = if source == "facebook" {
        page_id(scid)
    } else {
        scid.to_owned()
    };
    format!(
        "apiVersion: airy.co/v1alpha1\nkind: Channel\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  source: {source}\n  sourceChannelId: \"{scid}\"\n{extra}"
    )
}

fn fb_extra(secret: &str) -> String {
    format!("  credentialsSecretRef:\n    name: {secret}\n    key: page_token\n")
}

fn cond<'a>(v: &'a serde_json::Value, field: &str) -> &'a serde_json::Value {
    v["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
        .map(|c| &c[field])
        .unwrap_or(&serde_json::Value::Null)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_connects_and_follows_its_lifecycle() {
    let mut env = Env::new(&[]).await;
    // fb-page-id-1: connected once, renamed (no second connect), disconnected, re-check none.
    let token = env.fake_page("fb-page-id-1", 1, 1).await;
    // twilio.sms and twilio.whatsapp below use the same number: two connects, one disconnect.
    env.fake_twilio_number("+491234567", "PN1", 2, 1).await;
    env.start().await;

    env.apply(&secret_yaml("fb-token", "page_token", &token))
        .await;
    env.apply(&channel_yaml(
        "fb",
        "facebook",
        "fb-page-id-1",
        &fb_extra("fb-token"),
    ))
    .await;
    env.apply(&channel_yaml("sms", "twilio.sms", "+491234567", ""))
        .await;
    env.apply(&channel_yaml("gbm", "google", "gbm-id", "  name: Agent\n"))
        .await;
    env.apply(&channel_yaml(
        "web",
        "chat_plugin",
        "website-identifier-42",
        "  imageUrl: http://example.org/i.png\n",
    ))
    .await;
    for (name, id) in [
        ("fb", "1dba90e5-6e59-5842-837e-2ea09747161b"),
        ("sms", "ed06ae7d-a352-5d78-bc47-7431a8ebab03"),
        ("gbm", "bda330b6-7049-5190-93af-d5b16b03dd19"),
        ("web", "625c0084-1043-5727-bfd9-40366ef08a64"),
    ] {
        env.wait_ready(name).await;
        let v = env.get(name).await;
        assert_eq!(v["status"]["id"], id, "{name}");
        assert_eq!(v["status"]["connected"], true, "{name}");
        assert_eq!(cond(&v, "reason"), "Connected", "{name}");
        assert_eq!(
            v["status"]["observedGeneration"], v["metadata"]["generation"],
            "{name}"
        );
        assert_eq!(
            cond(&v, "observedGeneration"),
            &v["metadata"]["generation"],
            "{name}"
        );
        assert!(v["metadata"]["finalizers"]
            .to_string()
            .contains("channels.airy.co/disconnect"));
    }
    // kubectl's printer columns.
    let table = env.kubectl_ok(&["get", "ch", "gbm"], None).await;
    for header in [
        "SOURCE",
        "SOURCE ID",
        "NAME",
        "CONNECTED",
        "READY",
        "CHANNEL ID",
        "AGE",
    ] {
        assert!(table.contains(header), "{table}");
    }
    assert!(
        table.contains("bda330b6-7049-5190-93af-d5b16b03dd19") && table.contains("True"),
        "{table}"
    );
    let fb = env.get("fb").await;
    assert_eq!(fb["status"]["pageName"], "Page fb-page-id-1");
    assert_eq!(
        fb["status"]["pageImageUrl"],
        "https://img.example.org/fb-page-id-1.png"
    );

    // The long-lived page token lives in a Secret the operator owns.
    let secret: serde_json::Value = serde_json::from_str(
        &env.kubectl_ok(&["get", "secret", "fb-facebook-token", "-o", "json"], None)
            .await,
    )
    .unwrap();
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["uid"],
        fb["metadata"]["uid"]
    );
    assert_eq!(secret["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "channel-operator"
    );
    assert_eq!(
        secret["metadata"]["labels"]["airy.co/channel-id"],
        "1dba90e5-6e59-5842-837e-2ea09747161b"
    );
    assert!(secret["data"]["page_access_token"].is_string());

    // Rename: a new generation is reconciled, no second connect call (the mock expects exactly 1).
    let ltt = cond(&fb, "lastTransitionTime").clone();
    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "fb",
            "--type=merge",
            "-p",
            r#"{"spec":{"name":"Renamed"}}"#,
        ],
        None,
    )
    .await;
    let v = env
        .eventually("fb", "generation 2 reconciled", |v| {
            v["status"]["observedGeneration"] == 2 && cond(v, "status") == "True"
        })
        .await;
    assert_eq!(
        cond(&v, "lastTransitionTime"),
        &ltt,
        "Ready did not flip, so its time must not change"
    );

    // connected: false → provider disconnect, token Secret deleted, status updated.
    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "fb",
            "--type=merge",
            "-p",
            r#"{"spec":{"connected":false}}"#,
        ],
        None,
    )
    .await;
    let v = env
        .eventually("fb", "Disconnected", |v| {
            cond(v, "reason") == "Disconnected" && v["status"]["observedGeneration"] == 3
        })
        .await;
    assert_eq!(v["status"]["connected"], false);
    assert_eq!(cond(&v, "status"), "True");
    env.gone("secret", "fb-facebook-token").await;
    assert!(
        env.exists("secret", "fb-token").await,
        "the user's Secret is not the operator's"
    );

    // Delete: the finalizer disconnects the number first, then the object is gone.
    env.kubectl_ok(&["delete", "channel", "sms", "--wait=true", TIMEOUT], None)
        .await;
    env.gone("channel", "sms").await;

    // WhatsApp: the lookup strips the prefix (PN1 mock is for the bare number).
    env.apply(&channel_yaml(
        "wa",
        "twilio.whatsapp",
        "whatsapp:+491234567",
        "  deletionPolicy: Orphan\n",
    ))
    .await;
    env.wait_ready("wa").await;
    assert_eq!(
        env.get("wa").await["status"]["id"],
        "7fd34ed2-88ae-5797-950d-9ff8a93e6ea2"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_duplicate_keeps_the_channel_and_hands_over_when_deleted() {
    let mut env = Env::new(&[]).await;
    env.fake_twilio_number("+4915550001", "PN7", 2, 1).await;
    env.start().await;
    env.apply(&channel_yaml("first", "twilio.sms", "+4915550001", ""))
        .await;
    env.wait_ready("first").await;
    // creationTimestamp has one-second resolution: make "second" strictly newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.apply(&channel_yaml("second", "twilio.sms", "+4915550001", ""))
        .await;
    let v = env
        .eventually("second", "Duplicate", |v| cond(v, "reason") == "Duplicate")
        .await;
    assert_eq!(cond(&v, "status"), "False");
    assert_eq!(v["status"]["connected"], false);
    assert!(
        cond(&v, "message")
            .as_str()
            .unwrap()
            .contains("default/first"),
        "{v:#}"
    );
    // Deleting the owner disconnects it, and the next oldest takes over (connect call number 2).
    env.kubectl_ok(&["delete", "channel", "first", TIMEOUT], None)
        .await;
    env.gone("channel", "first").await;
    env.wait_ready("second").await;
    let v = env.get("second").await;
    assert_eq!(cond(&v, "reason"), "Connected");
    assert_eq!(v["status"]["connected"], true);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_rejected_with_a_message_naming_the_field() {
    let env = Env::new(&[]).await;
    for (yaml, field) in [
        (
            channel_yaml("bad-sms", "twilio.sms", "+49 123", ""),
            "sourceChannelId",
        ),
        (
            channel_yaml("bad-wa", "twilio.whatsapp", "+491234567", ""),
            "sourceChannelId",
        ),
        (
            channel_yaml("bad-fb", "facebook", "p1", ""),
            "credentialsSecretRef",
        ),
        (
            channel_yaml("bad-img", "google", "g1", "  imageUrl: ftp://x\n"),
            "imageUrl",
        ),
        (
            channel_yaml("bad-name", "google", "g2", "  name: \"\"\n"),
            "name",
        ),
        (channel_yaml("bad-src", "telegram", "t1", ""), "source"),
    ] {
        let out = tokio::task::block_in_place(|| env.kubectl(&["apply", "-f", "-"], Some(&yaml)));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {yaml}");
        assert!(stderr.contains(field), "{field} not named in: {stderr}");
    }
    // Immutable source channel id.
    env.apply(&channel_yaml("g", "google", "g-1", "")).await;
    let out = tokio::task::block_in_place(|| {
        env.kubectl(
            &[
                "patch",
                "channel",
                "g",
                "--type=merge",
                "-p",
                r#"{"spec":{"sourceChannelId":"g-2"}}"#,
            ],
            None,
        )
    });
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("immutable"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_500_timeout_and_429_end_connected_with_one_subscribe_each() {
    let mut env = Env::new(&[]).await;
    // Each page fails its first exchange differently, then recovers.
    let mut tokens = Vec::new();
    for (page, failure) in [
        ("p500", ResponseTemplate::new(500).set_body_json(serde_json::json!({"error": {"message": "Graph is having a bad day", "type": "FacebookApiException", "code": 2}}))),
        ("ptimeout", ResponseTemplate::new(200).set_delay(Duration::from_secs(3)).set_body_json(serde_json::json!({"access_token": "x"}))),
        ("p429", ResponseTemplate::new(429).insert_header("Retry-After", "1")),
    ] {
        let token = format!("EAAtok-{page}-user-page-token");
        Mock::given(method("GET"))
            .and(path("/v24.0/oauth/access_token"))
            .and(query_param("fb_exchange_token", token.as_str()))
            .respond_with(failure)
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&env.graph)
            .await;
        let t = env.fake_page(page, 1, 0).await;
        assert_eq!(t, token);
        tokens.push((page, token));
    }
    env.start().await;
    for (page, token) in &tokens {
        env.apply(&secret_yaml(&format!("{page}-tok"), "page_token", token))
            .await;
        env.apply(&channel_yaml(
            page,
            "facebook",
            page,
            &fb_extra(&format!("{page}-tok")),
        ))
        .await;
    }
    for (page, _) in &tokens {
        env.wait_ready(page).await;
    }
    let seen = env.statuses.lock().unwrap().join("\n");
    assert!(
        seen.contains("HTTP 500: Graph is having a bad day"),
        "{seen}"
    );
    assert!(seen.contains("timed out"), "{seen}");
    assert!(seen.contains("HTTP 429"), "{seen}");
    let events = env.kubectl_ok(&["get", "events", "-o", "json"], None).await;
    assert!(
        events.contains("Graph is having a bad day"),
        "a failure Event is published"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_reported_until_the_secret_appears() {
    let mut env = Env::new(&[]).await;
    let token = env.fake_page("late", 1, 0).await;
    env.start().await;
    env.apply(&channel_yaml(
        "late",
        "facebook",
        "late",
        &fb_extra("late-tok"),
    ))
    .await;
    let v = env
        .eventually("late", "CredentialsMissing", |v| {
            cond(v, "reason") == "CredentialsMissing"
        })
        .await;
    assert!(cond(&v, "message")
        .as_str()
        .unwrap()
        .contains("default/late-tok"));
    env.apply(&secret_yaml("late-tok", "page_token", &token))
        .await;
    env.wait_ready("late").await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_drops_conflicts_and_restarts_converge_without_a_second_connect() {
    let mut env = Env::new(&[]).await;
    let mut pages = Vec::new();
    for i in 0..4 {
        let page = format!("crash-{i}");
        let token = env.fake_page(&page, 1, 0).await;
        pages.push((page, token));
    }
    // The orphan's page must never be unsubscribed.
    let orphan_token = env.fake_page("orphan", 1, 0).await;
    env.start().await;
    for (page, token) in &pages {
        env.apply(&secret_yaml(&format!("{page}-tok"), "page_token", token))
            .await;
    }
    env.apply(&secret_yaml("orphan-tok", "page_token", &orphan_token))
        .await;
    let faults = env.sb.faults();
    faults.fail_next("patch", "channels", 3, 409);
    for (i, (page, _)) in pages.iter().enumerate() {
        env.apply(&channel_yaml(
            page,
            "facebook",
            page,
            &fb_extra(&format!("{page}-tok")),
        ))
        .await;
        if i == 1 {
            faults.drop_watches();
        }
        if i == 2 {
            // Crash mid-way, then come back.
            env.kill().await;
            env.start().await;
        }
    }
    for i in 0..20 {
        env.apply(&channel_yaml(
            &format!("web-{i}"),
            "chat_plugin",
            &format!("site-{i}"),
            "",
        ))
        .await;
        if i == 10 {
            env.kill().await;
            faults.drop_watches();
            faults.fail_next("patch", "channels", 2, 409);
            env.start().await;
        }
    }
    for (page, _) in &pages {
        env.wait_ready(page).await;
    }
    for i in 0..20 {
        env.wait_ready(&format!("web-{i}")).await;
    }
    // Restart once more with everything connected: nothing is connected again (mocks expect 1).
    env.kill().await;
    env.start().await;
    env.apply(&channel_yaml(
        "orphan",
        "facebook",
        "orphan",
        &format!("{}  deletionPolicy: Orphan\n", fb_extra("orphan-tok")),
    ))
    .await;
    env.wait_ready("orphan").await;
    // Orphan: deleted without calling the provider (the unsubscribe mock expects 0 calls).
    env.kubectl_ok(&["delete", "channel", "orphan", TIMEOUT], None)
        .await;
    env.gone("channel", "orphan").await;
    env.gone("secret", "orphan-facebook-token").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (page, _) in &pages {
        let v = env.get(page).await;
        assert_eq!(cond(&v, "reason"), "Connected", "{page}");
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_channels_are_left_alone_until_unpaused() {
    let mut env = Env::new(&[]).await;
    env.start().await;
    env.apply(&channel_yaml("p", "google", "agent-p", "  name: One\n"))
        .await;
    env.wait_ready("p").await;
    env.kubectl_ok(&["annotate", "channel", "p", "airy.co/paused=true"], None)
        .await;
    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "p",
            "--type=merge",
            "-p",
            r#"{"spec":{"connected":false}}"#,
        ],
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let v = env.get("p").await;
    assert_eq!(
        v["status"]["observedGeneration"], 1,
        "a paused Channel's status does not change"
    );
    assert_eq!(v["status"]["connected"], true);
    // Deleting a paused Channel waits for the pause to end.
    env.kubectl_ok(&["delete", "channel", "p", "--wait=false"], None)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        env.exists("channel", "p").await,
        "the finalizer holds a paused Channel"
    );
    env.kubectl_ok(&["annotate", "channel", "p", "airy.co/paused-"], None)
        .await;
    env.gone("channel", "p").await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_are_served() {
    let mut env = Env::new(&[]).await;
    env.start().await;
    env.apply(&channel_yaml("m", "google", "agent-m", "")).await;
    env.wait_ready("m").await;
    let base = format!("http://{}", env.metrics_addr);
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("channel_operator_channels{source=\"google\",state=\"connected\"} 1"),
        "{text}"
    );
    assert!(text.contains("channel_operator_reconciles_total"), "{text}");
    assert!(
        text.contains("channel_operator_reconcile_duration_seconds_count"),
        "{text}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_leader_election_run_one_controller() {
    let mut env = Env::new(&[
        "--leader-election",
        "true",
        "--lease-duration-seconds",
        "3",
        "--identity",
        "replica",
    ])
    .await;
    env.fake_twilio_number("+4915550002", "PN8", 1, 0).await;
    env.fake_twilio_number("+4915550003", "PN9", 1, 0).await;
    env.start().await;
    // A second replica with another identity.
    let mut args = env.args();
    args.identity = Some("replica-b".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = listener.local_addr().unwrap();
    let b = tokio::spawn(controller::run_with_listener(
        env.sb.client(),
        args,
        listener,
    ));
    env.apply(&channel_yaml("le", "twilio.sms", "+4915550002", ""))
        .await;
    env.wait_ready("le").await;
    let lease: serde_json::Value = serde_json::from_str(
        &env.kubectl_ok(
            &[
                "get",
                "lease",
                "channel-operator",
                "-n",
                "default",
                "-o",
                "json",
            ],
            None,
        )
        .await,
    )
    .unwrap();
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap().to_owned();
    assert!(holder == "replica" || holder == "replica-b", "{lease:#}");
    // Both are ready: one leading, one standing by.
    for addr in [env.metrics_addr, b_addr] {
        assert_eq!(
            reqwest::get(format!("http://{addr}/readyz"))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // Kill the leader; the other takes over and reconciles a new Channel.
    if holder == "replica" {
        env.kill().await;
    } else {
        b.abort();
    }
    env.apply(&channel_yaml("le2", "twilio.sms", "+4915550003", ""))
        .await;
    env.wait_ready("le2").await;
    b.abort();
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_flag_limits_the_controller_to_one_namespace() {
    let mut env = Env::new(&["--namespace", "team-a"]).await;
    env.kubectl_ok(&["create", "namespace", "team-a"], None)
        .await;
    env.start().await;
    env.apply(&channel_yaml("outside", "google", "agent-out", ""))
        .await;
    env.apply(
        &channel_yaml("inside", "google", "agent-in", "")
            .replace("namespace: default", "namespace: team-a"),
    )
    .await;
    env.kubectl_ok(
        &[
            "wait",
            "--for=condition=Ready",
            "channel/inside",
            "-n",
            "team-a",
            TIMEOUT,
        ],
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = env.get("outside").await;
    assert!(
        v["status"].is_null(),
        "a Channel outside --namespace is not reconciled: {v:#}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_rechecks_a_connected_page_without_subscribing_again() {
    let mut env = Env::new(&["--resync-seconds", "1"]).await;
    let token = env.fake_page("resync", 1, 0).await;
    env.start().await;
    env.apply(&secret_yaml("resync-tok", "page_token", &token))
        .await;
    env.apply(&channel_yaml(
        "resync",
        "facebook",
        "resync",
        &fb_extra("resync-tok"),
    ))
    .await;
    env.wait_ready("resync").await;
    let page_reads = |reqs: &[wiremock::Request]| {
        reqs.iter()
            .filter(|r| r.method.as_str() == "GET" && r.url.path() == "/v24.0/resync")
            .count()
    };
    let before = page_reads(&env.graph.received_requests().await.unwrap());
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let after = page_reads(&env.graph.received_requests().await.unwrap());
    assert!(
        after > before,
        "a resync reads the page again ({before} → {after})"
    );
    let v = env.get("resync").await;
    assert_eq!(cond(&v, "reason"), "Connected");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_is_down_keeps_the_finalizer_with_a_condition_saying_why() {
    let mut env = Env::new(&[]).await;
    let token = env.fake_page("down", 1, 1).await;
    env.start().await;
    env.apply(&secret_yaml("down-tok", "page_token", &token))
        .await;
    env.apply(&channel_yaml(
        "down",
        "facebook",
        "down",
        &fb_extra("down-tok"),
    ))
    .await;
    env.wait_ready("down").await;
    // Graph fails the unsubscribe three times, then recovers.
    Mock::given(method("DELETE"))
        .and(path("/v24.0/down/subscribed_apps"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            serde_json::json!({"error": {"message": "Service temporarily unavailable", "type": "FacebookApiException", "code": 2}}),
        ))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&env.graph)
        .await;
    env.kubectl_ok(&["delete", "channel", "down", "--wait=false"], None)
        .await;
    let v = env
        .eventually("down", "the failed disconnect in the status", |v| {
            cond(v, "reason") == "ProviderError"
        })
        .await;
    let message = cond(&v, "message").as_str().unwrap().to_owned();
    assert!(
        message.contains("HTTP 503: Service temporarily unavailable"),
        "{message}"
    );
    assert!(v["metadata"]["deletionTimestamp"].is_string());
    assert!(v["metadata"]["finalizers"]
        .to_string()
        .contains("channels.airy.co/disconnect"));
    // Backoff retries until Graph recovers; then the object is gone.
    env.gone("channel", "down").await;
    env.gone("secret", "down-facebook-token").await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lease_stops_the_controller() {
    let mut env = Env::new(&[
        "--leader-election",
        "true",
        "--lease-duration-seconds",
        "3",
        "--identity",
        "only",
    ])
    .await;
    env.start().await;
    env.apply(&channel_yaml("before", "google", "agent-before", ""))
        .await;
    env.wait_ready("before").await;
    // Another holder takes the Lease and keeps renewing it (as if this replica were partitioned).
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.sb.client(), "default");
    let intruder = tokio::spawn(async move {
        loop {
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let patch = serde_json::json!({"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 60, "acquireTime": now, "renewTime": now}});
            let _ = leases
                .patch(
                    "channel-operator",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    // Within a lease period the replica notices and stops reconciling.
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.apply(&channel_yaml("after", "google", "agent-after", ""))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = env.get("after").await;
    assert!(
        v["status"].is_null(),
        "a replica without the lease reconciled: {v:#}"
    );
    assert!(log_text().contains("lost the leader lease; stopping the controller identity=only"));
    intruder.abort();
    let base = format!("http://{}", env.metrics_addr);
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200,
        "a standby replica is ready"
    );
    env.finish().await;
}
