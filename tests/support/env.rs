//! The one test environment: the in-memory API server with the Channel CRD, wiremock fakes of
//! the Graph API and Twilio, the real controller and the channels HTTP API (each in this process,
//! each optional), kubectl on a kubeconfig, and a record of every Channel status seen.
//!
//! `Env::new(args)` then `env.start_controller()` runs the controller (the provider fakes are
//! mounted in between); `Env::with_api()` runs everything at once; `Env::builder()` picks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use channel_operator::crd::Channel;
use channel_operator::{api, controller};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::CustomResourceExt;
use kube_sandbox::Sandbox;
use serde_json::Value;
use wiremock::MockServer;

use super::fakes::{
    self, App, PageTokens, TwilioAccount, APP_SECRET, FLAGS_APP, FLAGS_TWILIO, TWILIO_SID,
    TWILIO_TOKEN, TWILIO_WEBHOOK,
};
use super::logs::{log_text, logs};
use super::wait::{
    eventually, eventually_ok, eventually_some, http_ready, KUBECTL_TIMEOUT, TIMEOUT,
};

/// A process of the product (controller or API) running as a task; aborted when dropped, so a
/// failing test stops it too.
pub struct Running(pub tokio::task::JoinHandle<anyhow::Result<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A sandbox with the Channel CRD, and a kubeconfig for it in a temporary directory: what every
/// environment starts from (tests that run the product as a process start from it directly).
pub struct Sandboxed {
    pub sb: Sandbox,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

/// Creates namespace `name`.
pub async fn create_namespace(client: &kube::Client, name: &str) {
    let ns = k8s_openapi::api::core::v1::Namespace {
        metadata: kube::core::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(&kube::api::PostParams::default(), &ns)
        .await
        .unwrap();
}

/// Starts a [`Sandboxed`].
pub async fn sandbox() -> Sandboxed {
    let sb = Sandbox::start(0).await.expect("sandbox starts");
    sb.install_crd(&Channel::crd()).await.expect("CRD installs");
    for crd in channel_operator::provider_config::crds() {
        sb.install_crd(&crd).await.expect("CRD installs");
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sb.write_kubeconfig(&kubeconfig).unwrap();
    Sandboxed {
        sb,
        dir,
        kubeconfig,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum When {
    Now,
    Later,
    Never,
}

/// What an [`Env`] runs.
pub struct Builder {
    controller: When,
    controller_args: Vec<String>,
    api: bool,
    api_args: Vec<String>,
    api_writes: Option<Arc<AtomicUsize>>,
    twilio: bool,
}

impl Builder {
    /// More controller flags.
    pub fn controller_args(mut self, args: &[&str]) -> Self {
        self.controller_args
            .extend(args.iter().map(|s| s.to_string()));
        self
    }
    /// No controller: the test plays its part (or checks what happens without it).
    pub fn no_controller(mut self) -> Self {
        self.controller = When::Never;
        self
    }
    /// The controller is started by the test ([`Env::start_controller`]), after mounting fakes.
    pub fn controller_later(mut self) -> Self {
        self.controller = When::Later;
        self
    }
    /// Runs the channels HTTP API too, with these flags besides the defaults.
    pub fn api(mut self, args: &[&str]) -> Self {
        self.api = true;
        self.api_args.extend(args.iter().map(|s| s.to_string()));
        self
    }
    /// Counts every request other than GET that the API sends to the cluster.
    pub fn count_api_writes(mut self, counter: Arc<AtomicUsize>) -> Self {
        self.api_writes = Some(counter);
        self
    }
    /// Without Twilio credentials: Twilio channels connect without a call.
    pub fn no_twilio(mut self) -> Self {
        self.twilio = false;
        self
    }

    pub async fn build(self) -> Env {
        logs();
        let Sandboxed {
            sb,
            dir,
            kubeconfig,
        } = sandbox().await;
        create_namespace(&sb.client(), super::state::STATE_NS).await;
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let status_watch = {
            let statuses = statuses.clone();
            let api: Api<Channel> = Api::all(sb.client());
            tokio::spawn(async move {
                // With a backoff: without one the watcher retries in a hot loop while the
                // apiserver is down (a restart fault), logging each attempt.
                let mut stream = watcher(api, watcher::Config::default())
                    .default_backoff()
                    .boxed();
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
        let mut env = Env {
            sb,
            kubeconfig,
            dir,
            graph: MockServer::start().await,
            twilio: MockServer::start().await,
            controller: None,
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            api: None,
            base: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            controller_args: self.controller_args,
            twilio_credentials: self.twilio,
            statuses,
            status_watch,
            tokens: vec![APP_SECRET.into(), TWILIO_TOKEN.into()],
            pages: HashMap::new(),
        };
        if self.controller == When::Now {
            env.start_controller().await;
        }
        if self.api {
            env.start_api(self.api_args, self.api_writes).await;
        }
        env
    }
}

/// The environment of one test.
pub struct Env {
    pub sb: Sandbox,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    pub graph: MockServer,
    pub twilio: MockServer,
    pub controller: Option<Running>,
    pub metrics_addr: std::net::SocketAddr,
    pub api: Option<Running>,
    /// The API's base URL (`http://127.0.0.1:port`), once it runs.
    pub base: String,
    pub http: reqwest::Client,
    controller_args: Vec<String>,
    twilio_credentials: bool,
    /// Every Channel status the watch saw, serialized.
    pub statuses: Arc<Mutex<Vec<String>>>,
    status_watch: tokio::task::JoinHandle<()>,
    /// Strings that must never appear in a log line, an Event, a status or a response.
    pub tokens: Vec<String>,
    /// Each fake page's app subscription.
    pages: HashMap<String, Arc<AtomicBool>>,
}

impl Env {
    pub fn builder() -> Builder {
        Builder {
            controller: When::Now,
            controller_args: vec![],
            api: false,
            api_args: vec![],
            api_writes: None,
            twilio: true,
        }
    }

    /// Sandbox and fakes; the controller (with `controller_args`) starts at
    /// [`Env::start_controller`].
    pub async fn new(controller_args: &[&str]) -> Env {
        Env::builder()
            .controller_args(controller_args)
            .controller_later()
            .build()
            .await
    }

    /// Everything running: sandbox, fakes, controller and the HTTP API; Twilio channels connect
    /// without a provider call (no Twilio credentials), so only the Graph API needs fakes.
    pub async fn with_api() -> Env {
        Env::builder().no_twilio().api(&[]).build().await
    }

    /// The controller's arguments: the fakes as providers, short backoffs and timeouts.
    pub fn controller_args(&self) -> controller::Args {
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
            "--twilio-webhook-url",
            TWILIO_WEBHOOK,
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
        if self.twilio_credentials {
            argv.extend(
                [
                    "--twilio-account-sid",
                    TWILIO_SID,
                    "--twilio-auth-token",
                    TWILIO_TOKEN,
                ]
                .map(String::from),
            );
        }
        if !self
            .controller_args
            .iter()
            .any(|a| a == "--state-namespace")
        {
            // The operator's private state, apart from the Channels of `default` (the chart
            // gives it a namespace of its own too).
            argv.extend(["--state-namespace", super::state::STATE_NS].map(String::from));
        }
        if !self
            .controller_args
            .iter()
            .any(|a| a == "--leader-election")
        {
            argv.extend(["--leader-election".to_string(), "false".to_string()]);
        }
        argv.extend(self.controller_args.iter().cloned());
        controller::Args::parse_from(argv)
    }

    /// Starts the controller in this process, its metrics on a free port.
    pub async fn start_controller(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.metrics_addr = listener.local_addr().unwrap();
        let client = self.sb.client();
        let args = self.controller_args();
        self.controller = Some(Running(tokio::spawn(controller::run_with_listener(
            client, args, listener,
        ))));
    }

    /// Aborts the controller task: a crash at an arbitrary point.
    pub async fn kill(&mut self) {
        if let Some(mut r) = self.controller.take() {
            r.0.abort();
            let _ = (&mut r.0).await;
        }
    }

    /// Starts the HTTP API (namespace `default`, Graph at the fake), and waits until it is ready.
    pub async fn start_api(&mut self, extra: Vec<String>, writes: Option<Arc<AtomicUsize>>) {
        let graph_url = format!("{}/v24.0", self.graph.uri());
        let mut argv: Vec<String> = [
            "api",
            "--addr",
            "127.0.0.1:0",
            "--channels-namespace",
            "default",
            "--facebook-graph-url",
            &graph_url,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !extra.iter().any(|a| a == "--sync-timeout-seconds") {
            argv.extend(["--sync-timeout-seconds".to_owned(), "10".to_owned()]);
        }
        argv.extend(extra);
        let args = api::Args::parse_from(argv);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.base = format!("http://{}", listener.local_addr().unwrap());
        let client = match writes {
            None => self.sb.client(),
            Some(counter) => {
                let config = kube::Config::new(self.sb.url().parse().unwrap());
                let count = tower::util::MapRequestLayer::new(
                    move |req: http::Request<kube::client::Body>| {
                        if req.method() != http::Method::GET {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        req
                    },
                );
                kube::client::ClientBuilder::try_from(config)
                    .unwrap()
                    .with_layer(&count)
                    .build()
            }
        };
        self.api = Some(Running(tokio::spawn(api::serve(client, args, listener))));
        http_ready(&format!("{}/readyz", self.base)).await;
    }

    // -----------------------------------------------------------------------------------------
    // kubectl, as a user runs it.

    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                input.write_all(s.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl, failing the test if it fails; its stdout.
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

    /// `kubectl wait --for=condition=Ready channel/<name>`.
    pub async fn wait_ready(&self, name: &str) {
        let what = format!("channel/{name}");
        self.kubectl_ok(
            &["wait", "--for=condition=Ready", &what, KUBECTL_TIMEOUT],
            None,
        )
        .await;
    }

    /// `kubectl get channel <name> -o json`.
    pub async fn get(&self, name: &str) -> Value {
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

    /// Polls Channel `name` (namespace `default`) until `check` holds on its JSON form.
    pub async fn channel_until(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let api: Api<Channel> = Api::namespaced(self.sb.client(), "default");
        eventually_ok(TIMEOUT, format!("{name}: {what}"), || async {
            let v = api
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .map(|ch| serde_json::to_value(&ch).unwrap());
            match v {
                Some(v) if check(&v) => Ok(v),
                Some(v) => Err(format!("last: {v:#}")),
                None => Err("no such Channel".to_owned()),
            }
        })
        .await
    }

    /// Waits until `kind/name` no longer exists.
    pub async fn gone(&self, kind: &str, name: &str) {
        eventually(format!("{kind}/{name} to be gone"), || async {
            !self.exists(kind, name).await
        })
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Provider fakes.

    /// Mounts a fake Facebook page for the user's first token of `page`: exchange, page read,
    /// subscribe (exactly `subscribes` times) and unsubscribe (exactly `unsubscribes` times).
    /// Returns the user's page token.
    pub async fn fake_page(&mut self, page: &str, subscribes: u64, unsubscribes: u64) -> String {
        self.fake_page_token(page, 1, subscribes, unsubscribes)
            .await
            .page_token
    }

    /// Like [`Env::fake_page`] for the user's token number `n` of the page (other credentials
    /// for the same page, which shares its app subscription); `subscribes` may be a range.
    pub async fn fake_page_token(
        &mut self,
        page: &str,
        n: u32,
        subscribes: impl Into<wiremock::Times>,
        unsubscribes: u64,
    ) -> PageTokens {
        self.fake_app_page(FLAGS_APP, page, n, subscribes, unsubscribes)
            .await
    }

    /// Like [`Env::fake_page_token`] with the Facebook app `app` (a provider configuration's):
    /// its tokens, and its own subscription of the page.
    pub async fn fake_app_page(
        &mut self,
        app: App,
        page: &str,
        n: u32,
        subscribes: impl Into<wiremock::Times>,
        unsubscribes: u64,
    ) -> PageTokens {
        let tokens = PageTokens::of_app(page, n, app);
        self.tokens.extend(tokens.all());
        self.tokens.push(app.secret.to_owned());
        let key = format!("{page}@{}", app.id);
        let state = self.pages.entry(key).or_default().clone();
        fakes::page(
            &self.graph,
            app,
            page,
            &tokens,
            state,
            subscribes,
            unsubscribes,
        )
        .await;
        tokens
    }

    /// Mounts a fake Twilio number of the flags' account (see [`fakes::twilio_number`]).
    pub async fn fake_twilio_number(
        &self,
        number: &str,
        pn: &str,
        connects: u64,
        disconnects: u64,
    ) {
        self.fake_twilio_number_in(FLAGS_TWILIO, number, pn, connects, disconnects)
            .await
    }

    /// Mounts a fake Twilio number of `account` (see [`fakes::twilio_number`]).
    pub async fn fake_twilio_number_in(
        &self,
        account: TwilioAccount,
        number: &str,
        pn: &str,
        connects: u64,
        disconnects: u64,
    ) {
        fakes::twilio_number(&self.twilio, account, number, pn, connects, disconnects).await
    }

    /// Every provider call no fake expects fails the test (at [`Env::finish`]).
    pub async fn nothing_else(&self) {
        fakes::nothing_else(&self.graph).await;
        fakes::nothing_else(&self.twilio).await;
    }

    // -----------------------------------------------------------------------------------------
    // The cluster, read directly.

    /// Creates namespace `name` (a tenant's).
    pub async fn namespace(&self, name: &str) {
        create_namespace(&self.sb.client(), name).await
    }

    pub fn channels(&self) -> Api<Channel> {
        Api::all(self.sb.client())
    }

    /// The Secrets of namespace `default`.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.sb.client(), "default")
    }

    /// The names of the Secrets in namespace `default`, sorted.
    pub async fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .secrets()
            .list_metadata(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        names.sort();
        names
    }

    /// The channels' list resourceVersion and the secrets': changes with every write.
    pub async fn write_marks(&self) -> (String, String, usize, usize) {
        let ch = self.channels().list(&ListParams::default()).await.unwrap();
        let s = self.secrets().list(&ListParams::default()).await.unwrap();
        (
            ch.metadata.resource_version.unwrap_or_default(),
            s.metadata.resource_version.unwrap_or_default(),
            ch.items.len(),
            s.items.len(),
        )
    }

    /// Waits until Channel `name` of `default` is gone and returns nothing.
    pub async fn channel_gone(&self, name: &str) {
        let api: Api<Channel> = Api::namespaced(self.sb.client(), "default");
        eventually_some(format!("Channel {name} to be gone"), || async {
            matches!(api.get_opt(name).await, Ok(None)).then_some(())
        })
        .await
    }

    // -----------------------------------------------------------------------------------------
    // The HTTP API.

    /// POSTs JSON; returns status and JSON body (asserting the response is JSON).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
            None,
        )
        .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        auth: Option<&str>,
    ) -> (u16, Value) {
        assert!(!self.base.is_empty(), "the API is not running");
        let mut req = self.http.post(format!("{}/{}", self.base, path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(ct.as_deref(), Some("application/json"), "{path}: {status}");
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        let text = v.to_string();
        for s in &self.tokens {
            assert!(
                !text.contains(s.as_str()),
                "{path}: a token leaked into the answer: {text}"
            );
        }
        (status, v)
    }

    // -----------------------------------------------------------------------------------------
    // The end of a test.

    /// Fails if a token appears in the logs, the Events or any status seen.
    pub async fn assert_no_secret_leaked(&self) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let events = self
            .kubectl_ok(&["get", "events", "-A", "-o", "json"], None)
            .await;
        let statuses = self.statuses.lock().unwrap().join("\n");
        let logs = log_text();
        assert!(!statuses.is_empty(), "no status was recorded");
        for s in &self.tokens {
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

    /// Checks that nothing leaked and that every provider fake got exactly its expected calls,
    /// then stops everything.
    pub async fn finish(mut self) {
        self.assert_no_secret_leaked().await;
        self.api.take();
        self.kill().await;
        self.status_watch.abort();
        self.graph.verify().await;
        self.twilio.verify().await;
        self.sb.shutdown().await;
    }
}
