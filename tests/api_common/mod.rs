//! A running product for black-box tests: the sandbox API server with the Channel CRD, the real
//! controller (Facebook pointed at a wiremock Graph API), and the channels API on a real port.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use channel_operator::crd::Channel;
use channel_operator::{api, controller};
use clap::Parser;
use kube::api::ListParams;
use kube::{Api, CustomResourceExt};
use kube_sandbox::Sandbox;
use serde_json::Value;
use wiremock::MockServer;

pub const APP_ID: &str = "app-1";
pub const APP_SECRET: &str = "app-secret-xyz";

/// Tokens the tests hand the API and the fake Graph API; none may appear in a response.
pub const PAGE_TOKEN: &str = "EAAB-page-token-1";
pub const LONG_TOKEN: &str = "long-lived-token-1";
pub const PAGE_ACCESS: &str = "page-access-token-1";
pub const AUTH_TOKEN: &str = "user-auth-token-1";

pub const PLUGIN_ID: &str = "625c0084-1043-5727-bfd9-40366ef08a64";
pub const FB_ID: &str = "f405cad8-dd03-5275-be27-a660d4d64949";
pub const SMS_ID: &str = "ed06ae7d-a352-5d78-bc47-7431a8ebab03";
pub const WA_ID: &str = "7fd34ed2-88ae-5797-950d-9ff8a93e6ea2";
pub const GOOGLE_ID: &str = "bda330b6-7049-5190-93af-d5b16b03dd19";

/// Fails when any token of the tests appears in a response.
pub fn no_secret(v: &Value) {
    let s = v.to_string();
    for t in [PAGE_TOKEN, LONG_TOKEN, PAGE_ACCESS, AUTH_TOKEN, APP_SECRET] {
        assert!(!s.contains(t), "a secret leaked into a response: {s}");
    }
}

pub struct AbortOnDrop(pub tokio::task::JoinHandle<anyhow::Result<()>>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Env {
    pub sb: Sandbox,
    pub base: String,
    pub http: reqwest::Client,
    pub graph: MockServer,
    pub controller: Option<AbortOnDrop>,
    pub api: AbortOnDrop,
}

pub struct Opts {
    pub controller: bool,
    pub api_args: Vec<String>,
    /// Counts every request other than GET that the API sends to the cluster.
    pub api_writes: Option<Arc<AtomicUsize>>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            controller: true,
            api_args: vec![],
            api_writes: None,
        }
    }
}

impl Env {
    pub async fn start() -> Env {
        Self::with(Opts::default()).await
    }

    pub async fn with(opts: Opts) -> Env {
        let sb = Sandbox::start(0).await.unwrap();
        sb.install_crd(&Channel::crd()).await.unwrap();
        let graph = MockServer::start().await;
        let graph_url = format!("{}/v24.0", graph.uri());
        let controller = opts.controller.then(|| {
            let args = controller::Args::parse_from([
                "controller",
                "--leader-election",
                "false",
                "--metrics-addr",
                "127.0.0.1:0",
                "--min-backoff-millis",
                "200",
                "--facebook-app-id",
                APP_ID,
                "--facebook-app-secret",
                APP_SECRET,
                "--facebook-graph-url",
                &graph_url,
            ]);
            AbortOnDrop(tokio::spawn(controller::run_with_client(sb.client(), args)))
        });
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
        if !opts.api_args.iter().any(|a| a == "--sync-timeout-seconds") {
            argv.extend(["--sync-timeout-seconds".to_owned(), "10".to_owned()]);
        }
        argv.extend(opts.api_args);
        let args = api::Args::parse_from(argv);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let api_client = match opts.api_writes {
            None => sb.client(),
            Some(counter) => {
                let config = kube::Config::new(sb.url().parse().unwrap());
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
        let api = AbortOnDrop(tokio::spawn(api::serve(api_client, args, listener)));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let env = Env {
            sb,
            base,
            http,
            graph,
            controller,
            api,
        };
        env.wait_ready().await;
        env
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the API never became ready");
    }

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
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, v)
    }

    pub fn channels(&self) -> Api<Channel> {
        Api::all(self.sb.client())
    }

    pub fn secrets(&self) -> Api<k8s_openapi::api::core::v1::Secret> {
        Api::namespaced(self.sb.client(), "default")
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

    /// Polls until `f` holds (the API's cache follows the cluster through a watch).
    pub async fn eventually<F, Fut>(&self, what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..200 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for: {what}");
    }
}

pub fn message(v: &Value) -> &str {
    v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {v}"))
}
