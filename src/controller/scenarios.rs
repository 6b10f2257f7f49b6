//! The exact Kubernetes API and provider calls of each reconcile scenario, in order.
//!
//! The kube client's transport is a fake API server (a `tower` service recording every request
//! and answering from a small in-memory state); the Graph API is a wiremock fake recording its
//! calls. Each scenario reconciles a Facebook Channel and pins what it sent where.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::provider_configs::ProviderConfigs;
use super::reconcile::{reconcile, Config, Context, EventPublisher};
use crate::crd::{Channel, FINALIZER};
use crate::metrics::Metrics;
use crate::provider_config::FlagsDefault;
use crate::providers::{ProviderArgs, Providers};

const NS: &str = "/api/v1/namespaces/ns/secrets";
const CH: &str = "/apis/airy.co/v1alpha1/namespaces/ns/channels/shop";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";
/// The claims (Leases of the operator's namespace `ops`); page 1001's is `CLAIM`.
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
const CLAIM: &str = "claim-7b11b7fc-c21f-5c84-b68b-771819632259";
const USER_TOKEN: &str = "EAA-user-page-token";
const PAGE_ACCESS: &str = "EAA-page-access-token";

/// One request the fake API server received.
struct Call {
    line: String,
    query: String,
    body: Value,
}

/// An API server with one Channel (`ns/shop`) and some Secrets.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<Call>>,
    channel: Mutex<Value>,
    secrets: Mutex<BTreeMap<String, Value>>,
    claims: Mutex<BTreeMap<String, Value>>,
    /// Channels besides `ns/shop`, by path.
    others: Mutex<BTreeMap<String, Value>>,
    rv: Mutex<u64>,
}

impl Fake {
    fn next_rv(&self) -> String {
        let mut rv = self.rv.lock().unwrap();
        *rv += 1;
        rv.to_string()
    }

    fn answer(&self, method: &str, path: &str, query: &str, body: &Value) -> (u16, Value) {
        let not_found = |name: &str| {
            (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": format!("{name} not found")}),
            )
        };
        let mut secrets = self.secrets.lock().unwrap();
        let mut channel = self.channel.lock().unwrap();
        if let Some(name) = path.strip_prefix(LEASES).map(|p| p.trim_start_matches('/')) {
            return self.claim(method, name, body);
        }
        let secret_name = path.strip_prefix(NS).map(|p| p.trim_start_matches('/'));
        match (method, secret_name) {
            ("GET", Some("")) => {
                let selector = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("labelSelector="));
                let items: Vec<Value> = secrets
                    .values()
                    .filter(|s| {
                        let labels = &s["metadata"]["labels"];
                        selector.is_none_or(|_| {
                            labels["app.kubernetes.io/managed-by"] == "channel-operator"
                        })
                    })
                    .map(|s| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": s["metadata"]}))
                    .collect();
                (
                    200,
                    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": items}),
                )
            }
            ("GET", Some(name)) => match secrets.get(name) {
                Some(s) => (200, s.clone()),
                None => not_found(name),
            },
            ("POST", Some("")) => {
                let mut s = body.clone();
                let name = s["metadata"]["name"].as_str().unwrap().to_owned();
                s["metadata"]["uid"] = format!("uid-{name}").into();
                s["metadata"]["resourceVersion"] = self.next_rv().into();
                secrets.insert(name, s.clone());
                (201, s)
            }
            ("DELETE", Some(name)) => match secrets.remove(name) {
                Some(_) => (
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                ),
                None => not_found(name),
            },
            ("PATCH", None) if path == format!("{CH}/status") => {
                channel["status"] = body["status"].clone();
                channel["metadata"]["resourceVersion"] = self.next_rv().into();
                (200, channel.clone())
            }
            ("PATCH", None) if path == CH => {
                // kube-runtime's finalizer(): a JSON patch that adds or removes ours.
                let finalizers = match body[1]["op"].as_str() {
                    Some("add") => json!([FINALIZER]),
                    _ => json!([]),
                };
                channel["metadata"]["finalizers"] = finalizers;
                channel["metadata"]["resourceVersion"] = self.next_rv().into();
                (200, channel.clone())
            }
            ("POST", None) if path == EVENTS => (201, body.clone()),
            ("GET", None) if path == CH => (200, channel.clone()),
            ("GET", None) if path.starts_with("/apis/airy.co/") => {
                match self.others.lock().unwrap().get(path) {
                    Some(c) => (200, c.clone()),
                    None => not_found(path),
                }
            }
            _ => panic!("unexpected request {method} {path}?{query}"),
        }
    }

    /// The requests since the last call, as `METHOD path`, and forgets them.
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn channel(&self) -> Channel {
        serde_json::from_value(self.channel.lock().unwrap().clone()).unwrap()
    }
}

fn client(fake: Arc<Fake>) -> Client {
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        let fake = fake.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let method = parts.method.to_string();
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().unwrap_or_default().to_owned();
            let (status, answer) = fake.answer(&method, &path, &query, &body);
            fake.calls.lock().unwrap().push(Call {
                line: format!("{method} {path}"),
                query,
                body,
            });
            let answer = Bytes::from(serde_json::to_vec(&answer).unwrap());
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(answer))
                    .unwrap(),
            )
        }
    });
    Client::new(service, "ns")
}

/// A fake Graph API for page `1001`: subscribing answers `subscribe_status`.
async fn graph(subscribe_status: u16) -> MockServer {
    let server = MockServer::start().await;
    let ok = |body: Value| ResponseTemplate::new(200).set_body_json(body);
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("fb_exchange_token", USER_TOKEN))
        .respond_with(ok(json!({"access_token": "EAA-long-lived"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/1001"))
        .respond_with(ok(
            json!({"id": "1001", "name_with_location_descriptor": "Shop",
            "access_token": PAGE_ACCESS, "is_webhooks_subscribed": false}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .respond_with(
            ResponseTemplate::new(subscribe_status)
                .set_body_json(json!({"success": subscribe_status == 200})),
        )
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v24.0/1001/subscribed_apps"))
        .and(query_param("access_token", PAGE_ACCESS))
        .respond_with(ok(json!({"success": true})))
        .mount(&server)
        .await;
    server
}

/// The Graph calls after the first `seen`, as `METHOD path`; `seen` moves past them.
async fn graph_calls(server: &MockServer, seen: &Mutex<usize>) -> Vec<String> {
    let all = server.received_requests().await.unwrap();
    let mut seen = seen.lock().unwrap();
    let calls = all[*seen..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    *seen = all.len();
    calls
}

struct Scenario {
    fake: Arc<Fake>,
    graph: MockServer,
    graph_seen: Mutex<usize>,
    ctx: Arc<Context>,
    writer: crate::controller::feed::StoreWriter,
}

impl Scenario {
    /// A Facebook Channel `ns/shop` (page `1001`, credentials in Secret `shop-tok`).
    async fn new(subscribe_status: u16) -> Scenario {
        let fake = Arc::new(Fake::default());
        *fake.channel.lock().unwrap() = json!({
            "apiVersion": "airy.co/v1alpha1", "kind": "Channel",
            "metadata": {"name": "shop", "namespace": "ns", "uid": "uid-shop", "generation": 1,
                "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"source": "facebook", "sourceChannelId": "1001",
                "credentialsSecretRef": {"name": "shop-tok", "key": "page_token"}}
        });
        fake.secrets.lock().unwrap().insert(
            "shop-tok".into(),
            secret("shop-tok", "page_token", USER_TOKEN, consenting()),
        );
        *fake.rv.lock().unwrap() = 10;
        let graph = graph(subscribe_status).await;
        let url = format!("{}/v24.0", graph.uri());
        Scenario::build(
            fake,
            graph,
            Duration::from_secs(600),
            &[
                "--facebook-app-id",
                "app",
                "--facebook-app-secret",
                "app-secret",
                "--facebook-graph-url",
                &url,
            ],
        )
    }

    /// A Scenario over the fake API server's state, with providers built from `flags`, whose
    /// calls go to `provider`, re-checking connected channels after `resync`.
    fn build(fake: Arc<Fake>, provider: MockServer, resync: Duration, flags: &[&str]) -> Scenario {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            p: ProviderArgs,
        }
        let args =
            <P as clap::Parser>::parse_from(std::iter::once("p").chain(flags.iter().copied()));
        let client = client(fake.clone());
        let providers = Providers::new(&args.p).unwrap();
        let shared = providers.clone();
        let (store, writer) = crate::controller::feed::channel_store(
            64,
            Arc::new(move |ch: &Channel| shared.for_source(ch.spec.source).shared_resource(ch)),
        );
        // The flags' accounts admit the Channel's namespace (the operator's): no configuration
        // objects, so no calls besides the ones pinned here.
        let provider_configs = Arc::new(ProviderConfigs::flags_only(
            providers.clone(),
            FlagsDefault {
                operator_namespace: "ns".into(),
                namespaces: vec![],
            },
        ));
        let ctx = Arc::new(Context::new(
            client.clone(),
            providers,
            EventPublisher::new(client, "test".into()),
            Arc::new(Metrics::new()),
            store,
            Config {
                min_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_secs(1),
                resync,
                secret_access: crate::controller::watch::SecretAccess::All,
                naming: Default::default(),
                claim_namespace: "ops".into(),
            },
            provider_configs,
        ));
        Scenario {
            fake,
            graph: provider,
            graph_seen: Mutex::new(0),
            ctx,
            writer,
        }
    }

    /// Reconciles the Channel as the fake API server has it now.
    async fn reconcile(&mut self) -> Result<(), String> {
        let ch = self.fake.channel();
        self.writer.apply(&watcher::Event::Apply(ch.clone()));
        reconcile(Arc::new(ch), self.ctx.clone())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Asserts the API server calls (`METHOD path`, paths relative to the Channel, Secrets and
    /// Events collections) since the last check, and returns them.
    fn api(&self, want: &[&str]) -> Vec<Call> {
        let calls = self.fake.take();
        let lines: Vec<String> = calls
            .iter()
            .map(|c| {
                c.line
                    .replace(CH, "channel")
                    .replace(NS, "secrets")
                    .replace(EVENTS, "events")
                    .replace(LEASES, "claims")
                    .replace("/apis/airy.co/v1alpha1/namespaces/", "channels of ")
            })
            // One claim per Channel: its name (the channel id) is not repeated.
            .map(|l| match l.find("claims/claim-") {
                Some(i) => l[..i + "claims/claim".len()].to_owned(),
                None => l,
            })
            .collect();
        assert_eq!(lines, want);
        calls
    }

    async fn provider(&self, want: &[&str]) {
        assert_eq!(graph_calls(&self.graph, &self.graph_seen).await, want);
    }

    fn edit(&self, f: impl FnOnce(&mut Value)) {
        f(&mut self.fake.channel.lock().unwrap());
    }

    /// Reconciles a Channel that fails with `reason` (a message naming `naming`): the Secrets are
    /// read, the status says Stalled, an Event tells, and no provider is called.
    async fn stalls(&mut self, reason: &str, naming: &str) {
        let err = self.reconcile().await.unwrap_err();
        assert!(err.contains(naming), "{err}");
        // The claim is taken first: the Channel is the first to declare the channel id.
        let calls = self.api(&[
            CLAIM_GET,
            READ[0],
            READ[1],
            CLAIM_POST,
            "PATCH channel/status",
            "POST events",
        ]);
        self.provider(&[]).await;
        assert_eq!(
            summary(&calls[4].body),
            (format!("False/{reason}"), vec!["Stalled=True".into()])
        );
        assert_eq!(calls[5].body["reason"], reason);
    }

    /// Reconciles until the finalizer is in and the channel connected.
    async fn connected(subscribe_status: u16) -> Scenario {
        let mut s = Scenario::new(subscribe_status).await;
        s.reconcile().await.unwrap();
        s.reconcile().await.unwrap();
        s.fake.take();
        graph_calls(&s.graph, &s.graph_seen).await;
        s
    }
}

/// The metadata of a Secret that consents to be a Channel's credentials.
fn consenting() -> Value {
    use crate::ownership::{CREDENTIALS_CONSENT, CREDENTIALS_LABEL};
    json!({"labels": {CREDENTIALS_LABEL: CREDENTIALS_CONSENT}})
}

fn secret(name: &str, key: &str, value: &str, metadata: Value) -> Value {
    use base64::Engine;
    let mut meta = json!({"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "resourceVersion": "5"});
    meta.as_object_mut()
        .unwrap()
        .extend(metadata.as_object().unwrap().clone());
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta,
        "data": {key: base64::engine::general_purpose::STANDARD.encode(value)}})
}

fn condition<'a>(status: &'a Value, ty: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

/// `(Ready status, reason)` and the other conditions that are present.
fn summary(body: &Value) -> (String, Vec<String>) {
    let st = &body["status"];
    let ready = condition(st, "Ready").unwrap();
    let others = ["Reconciling", "Stalled"]
        .into_iter()
        .filter_map(|t| condition(st, t).map(|c| format!("{t}={}", c["status"].as_str().unwrap())))
        .collect();
    (
        format!(
            "{}/{}",
            ready["status"].as_str().unwrap(),
            ready["reason"].as_str().unwrap()
        ),
        others,
    )
}

const READ: [&str; 2] = ["GET secrets/shop-tok", "GET secrets/shop-facebook-token"];
const CLAIM_GET: &str = "GET claims/claim";
const CLAIM_POST: &str = "POST claims";
const CLAIM_DELETE: &str = "DELETE claims/claim";
/// The Kubernetes calls of a first connect that keeps a token: the claim of the channel id first.
const CONNECT_API: [&str; 9] = [
    CLAIM_GET,
    READ[0],
    READ[1],
    CLAIM_POST,
    "PATCH channel/status",
    "GET secrets/shop-facebook-token",
    "POST secrets",
    "PATCH channel/status",
    "POST events",
];

const CONNECT: [&str; 3] = [
    "GET /v24.0/oauth/access_token",
    "GET /v24.0/1001",
    "POST /v24.0/me/subscribed_apps",
];

#[tokio::test]
async fn a_new_channel_gets_the_finalizer_then_connects_and_keeps_its_token() {
    let mut s = Scenario::new(200).await;
    s.reconcile().await.unwrap();
    let calls = s.api(&["PATCH channel"]);
    assert_eq!(
        calls[0].body[1],
        json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
    );
    s.provider(&[]).await;

    s.reconcile().await.unwrap();
    let calls = s.api(&CONNECT_API);
    s.provider(&CONNECT).await;
    // The claim of page 1001, created before anything else is written, names the Channel.
    let claim = &calls[3].body["metadata"];
    assert_eq!(claim["name"], CLAIM);
    assert_eq!(claim["annotations"]["airy.co/owner"], "ns/shop");
    assert_eq!(claim["annotations"]["airy.co/owner-uid"], "uid-shop");
    // Before the provider: the attempt, in progress.
    assert_eq!(
        calls[4].body["status"]["connectAttempted"],
        "facebook/1001;secret=shop-tok/page_token@5"
    );
    assert_eq!(
        summary(&calls[4].body),
        ("False/Progressing".into(), vec!["Reconciling=True".into()])
    );
    assert!(
        calls[4].query.contains("force=true")
            && calls[4].query.contains("fieldManager=channel-operator")
    );
    // The token Secret: created (not applied), labelled, controlled by the Channel.
    let created = &calls[6].body;
    assert_eq!(created["metadata"]["name"], "shop-facebook-token");
    assert_eq!(
        created["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "channel-operator"
    );
    assert_eq!(created["metadata"]["ownerReferences"][0]["uid"], "uid-shop");
    assert_eq!(
        created["metadata"]["ownerReferences"][0]["controller"],
        true
    );
    // After: connected, the attempt resolved.
    let st = &calls[7].body["status"];
    assert_eq!(summary(&calls[7].body), ("True/Connected".into(), vec![]));
    assert_eq!(st["connected"], true);
    assert!(st["connectAttempted"].is_null());
    assert_eq!(st["pageName"], "Shop");
    assert_eq!(calls[8].body["reason"], "Connected");
    assert!(
        !serde_json::to_string(&calls.iter().map(|c| &c.body).collect::<Vec<_>>())
            .unwrap()
            .contains(USER_TOKEN)
    );
}

#[tokio::test]
async fn an_unchanged_connected_channel_is_only_read() {
    let mut s = Scenario::connected(200).await;
    s.reconcile().await.unwrap();
    s.api(&[CLAIM_GET, READ[0], READ[1]]);
    s.provider(&[]).await;
}

#[tokio::test]
async fn connected_false_unsubscribes_then_deletes_the_owned_token() {
    let mut s = Scenario::connected(200).await;
    s.edit(|c| {
        c["spec"]["connected"] = false.into();
        c["metadata"]["generation"] = 2.into();
    });
    s.reconcile().await.unwrap();
    let calls = s.api(&[
        CLAIM_GET,
        "GET secrets/shop-facebook-token",
        "PATCH channel/status",
        "POST events",
        "GET secrets",
        "DELETE secrets/shop-facebook-token",
        "PATCH channel/status",
    ]);
    s.provider(&["DELETE /v24.0/1001/subscribed_apps"]).await;
    assert_eq!(
        summary(&calls[2].body),
        ("False/Progressing".into(), vec!["Reconciling=True".into()])
    );
    assert!(
        calls[4]
            .query
            .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dchannel-operator"),
        "{}",
        calls[4].query
    );
    assert_eq!(
        calls[5].body["preconditions"]["uid"],
        "uid-shop-facebook-token"
    );
    assert_eq!(
        summary(&calls[6].body),
        ("True/Disconnected".into(), vec![])
    );
    assert_eq!(calls[6].body["status"]["observedGeneration"], 2);
    // Disconnected, the Channel keeps the channel id.
    assert!(s.fake.claims.lock().unwrap().contains_key(CLAIM));
    // The credentials Secret is the user's: kept.
    assert!(s.fake.secrets.lock().unwrap().contains_key("shop-tok"));
}

#[tokio::test]
async fn deletion_unsubscribes_with_disconnect_and_only_releases_with_orphan() {
    for (policy, provider) in [
        ("Disconnect", vec!["DELETE /v24.0/1001/subscribed_apps"]),
        ("Orphan", vec![]),
    ] {
        let mut s = Scenario::connected(200).await;
        s.edit(|c| {
            c["spec"]["deletionPolicy"] = policy.into();
            c["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z".into();
        });
        s.reconcile().await.unwrap();
        let want: &[&str] = if policy == "Disconnect" {
            &[
                CLAIM_GET,
                "GET secrets/shop-facebook-token",
                "PATCH channel/status",
                "POST events",
                "GET secrets",
                "DELETE secrets/shop-facebook-token",
                CLAIM_DELETE,
                "PATCH channel",
            ]
        } else {
            &[
                CLAIM_GET,
                "GET secrets",
                "DELETE secrets/shop-facebook-token",
                CLAIM_DELETE,
                "PATCH channel",
            ]
        };
        let calls = s.api(want);
        s.provider(&provider).await;
        let release = &calls.last().unwrap().body;
        assert_eq!(
            release[1],
            json!({"op": "remove", "path": "/metadata/finalizers/0"})
        );
        // The claim goes last before the finalizer, guarded: only the claim that was read.
        let pre = &calls[calls.len() - 2].body["preconditions"];
        assert_eq!(pre["uid"], format!("uid-{CLAIM}"));
        assert!(pre["resourceVersion"].is_string(), "{pre}");
        assert!(s.fake.claims.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_ambiguous_connect_is_recorded_and_undone_at_deletion() {
    let mut s = Scenario::new(500).await;
    s.reconcile().await.unwrap();
    s.fake.take();
    let err = s.reconcile().await.unwrap_err();
    assert!(err.contains("HTTP 500"), "{err}");
    let calls = s.api(&[
        CLAIM_GET,
        READ[0],
        READ[1],
        CLAIM_POST,
        "PATCH channel/status",
        "PATCH channel/status",
        "POST events",
    ]);
    s.provider(&CONNECT).await;
    let failed = &calls[5].body;
    assert_eq!(
        summary(failed),
        (
            "False/ProviderError".into(),
            vec!["Reconciling=True".into()]
        )
    );
    assert_eq!(failed["status"]["connected"], false);
    assert!(
        failed["status"]["connectAttempted"].is_string(),
        "{failed:#}"
    );
    // Deleted (as the HTTP API does after a failed connect): the page access token is derived
    // again from the credentials, the page unsubscribed, then the finalizer released.
    s.edit(|c| c["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z".into());
    s.reconcile().await.unwrap();
    s.api(&[
        CLAIM_GET,
        "GET secrets/shop-facebook-token",
        "GET secrets/shop-tok",
        "PATCH channel/status",
        "POST events",
        "GET secrets",
        CLAIM_DELETE,
        "PATCH channel",
    ]);
    s.provider(&[
        "GET /v24.0/oauth/access_token",
        "GET /v24.0/1001",
        "DELETE /v24.0/1001/subscribed_apps",
    ])
    .await;
}

mod claims;
mod credentials;
mod on_demand;
mod provider_config;
mod sources;
