//! The exact Kubernetes API and provider calls of each reconcile scenario, in order.
//!
//! The kube client's transport is a fake API server (`fake`: a `tower` service recording every
//! request and answering from a small in-memory state); the Graph API is a wiremock fake
//! recording its calls. Each scenario reconciles a Facebook Channel and pins what it sent where.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::watcher;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::provider_configs::ProviderConfigs;
use super::reconcile::{reconcile, Config, Context, EventPublisher};
use crate::crd::FINALIZER;
use crate::metrics::Metrics;
use crate::provider_config::FlagsDefault;
use crate::providers::{ProviderArgs, Providers};
use fake::{client, Call, Fake};

/// The claim of page 1001 (a Lease of the state namespace `ops`).
const CLAIM: &str = "claim-7b11b7fc-c21f-5c84-b68b-771819632259";
/// The record of the Channel `ns/shop` (a Secret of the state namespace `ops`).
const RECORD: &str = "channel-uid-shop";
const USER_TOKEN: &str = "EAA-user-page-token";
const PAGE_ACCESS: &str = "EAA-page-access-token";

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
    debug_token_valid(&server).await;
    server
}

/// Graph's `debug_token` about any token: valid, never expiring, with every permission the Graph
/// sources need.
async fn debug_token_valid(server: &MockServer) {
    use crate::crd::Source;
    use crate::credentials_health::required_scopes;
    let scopes: Vec<&str> = [Source::Instagram, Source::Whatsapp]
        .into_iter()
        .flat_map(required_scopes)
        .copied()
        .collect();
    Mock::given(method("GET"))
        .and(path("/v24.0/debug_token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"data": {"is_valid": true, "expires_at": 0, "scopes": scopes}}),
            ),
        )
        .mount(server)
        .await;
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
    /// What the Context was built with, to build a new process's ([`Scenario::restarted`]).
    flags: Vec<String>,
    resync: Duration,
}

impl Scenario {
    /// A Facebook Channel `ns/shop` (page `1001`, credentials in Secret `shop-tok`).
    async fn new(subscribe_status: u16) -> Scenario {
        Scenario::rechecked_after(subscribe_status, Duration::from_secs(600)).await
    }

    /// Like [`Scenario::new`], re-checking the connected channel after `resync`.
    async fn rechecked_after(subscribe_status: u16, resync: Duration) -> Scenario {
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
            resync,
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
        let (store, writer) = crate::controller::feed::channel_store(64);
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
                credentials_warning: Duration::from_secs(7 * 86_400),
                min_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_secs(1),
                resync,
                secret_access: crate::controller::watch::SecretAccess::All,
                naming: Default::default(),
                state_namespace: "ops".into(),
            },
            provider_configs,
        ));
        Scenario {
            fake,
            graph: provider,
            graph_seen: Mutex::new(0),
            ctx,
            writer,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            resync,
        }
    }

    /// The scenario as a new process sees it after a crash or a restart: the API server's and
    /// the provider's state as they are, a fresh Context (nothing remembered), the fault gone.
    fn restarted(self) -> Scenario {
        *self.fake.fault.lock().unwrap() = None;
        *self.fake.cut.lock().unwrap() = false;
        let seen = *self.graph_seen.lock().unwrap();
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let s = Scenario::build(self.fake.clone(), self.graph, self.resync, &flags);
        *s.graph_seen.lock().unwrap() = seen;
        s
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

    /// Asserts the API server calls since the last check (as [`fake::line`] writes them), and
    /// returns them.
    fn api(&self, want: &[&str]) -> Vec<Call> {
        let calls = self.fake.take();
        let lines: Vec<String> = calls.iter().map(fake::line).collect();
        assert_eq!(lines, want);
        calls
    }

    async fn provider(&self, want: &[&str]) {
        assert_eq!(graph_calls(&self.graph, &self.graph_seen).await, want);
    }

    fn edit(&self, f: impl FnOnce(&mut Value)) {
        f(&mut self.fake.channel.lock().unwrap());
    }

    /// Reconciles a Channel that fails with `reason` (a message naming `naming`): the credentials
    /// are read, the status says Stalled, an Event tells; no claim is taken and no provider is
    /// called.
    async fn stalls(&mut self, reason: &str, naming: &str) {
        let err = self.reconcile().await.unwrap_err();
        assert!(err.contains(naming), "{err}");
        let calls = self.api(&[
            CLAIM_GET,
            RECORD_GET,
            CREDENTIALS,
            "PATCH channel/status",
            "POST events",
        ]);
        self.provider(&[]).await;
        assert_eq!(
            summary(&calls[3].body),
            (format!("False/{reason}"), vec!["Stalled=True".into()])
        );
        assert_eq!(calls[4].body["reason"], reason);
        assert!(self.fake.claims.lock().unwrap().is_empty(), "no claim");
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

const CREDENTIALS: &str = "GET secrets/shop-tok";
const CLAIM_GET: &str = "GET claims/claim";
const CLAIM_POST: &str = "POST claims";
const CLAIM_DELETE: &str = "DELETE claims/claim";
const RECORD_GET: &str = "GET records/channel";
const ENTRY_GET: &str = "GET entries/effect";
const ENTRY_PATCH: &str = "PATCH entries/effect";
/// The Kubernetes calls of a first connect that makes an effect: the claim of the channel id
/// once the credentials worked, the record before the provider call, the effect's entry created
/// then marked made, the status, the Event.
const CONNECT_API: [&str; 10] = [
    CLAIM_GET,
    RECORD_GET,
    CREDENTIALS,
    CLAIM_POST,
    "POST records",
    ENTRY_GET,
    "POST entries",
    ENTRY_PATCH,
    "PATCH channel/status",
    "POST events",
];

/// The Kubernetes calls of an undo by the last holder: the entry marked as being undone (then
/// the provider call), the entry deleted, the record deleted.
const UNDO_API: [&str; 5] = [
    RECORD_GET,
    CLAIM_GET,
    ENTRY_GET,
    ENTRY_PATCH,
    "DELETE entries/effect",
];

/// A Facebook connect: the proof (exchange, page read), one `debug_token` about the page access
/// token, the subscription.
const CONNECT: [&str; 4] = [
    "GET /v24.0/oauth/access_token",
    "GET /v24.0/1001",
    DEBUG_TOKEN,
    "POST /v24.0/me/subscribed_apps",
];

/// Graph's `debug_token`: asked once at connect and at every re-check of a Graph Channel.
const DEBUG_TOKEN: &str = "GET /v24.0/debug_token";

/// The calls of `UNDO_API` followed by `rest`.
fn undo_then(rest: &[&'static str]) -> Vec<&'static str> {
    UNDO_API.iter().chain(rest).copied().collect()
}

/// The Secret at `name` of the fake's state namespace, decoded: (annotations, data).
fn record_of(s: &Scenario) -> (Value, BTreeMap<String, String>) {
    use base64::Engine;
    let records = s.fake.records.lock().unwrap();
    let r = records.get(RECORD).expect("the record");
    let data = r["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            (k.clone(), String::from_utf8(bytes).unwrap())
        })
        .collect();
    (r["metadata"]["annotations"].clone(), data)
}

#[tokio::test]
async fn a_new_channel_gets_the_finalizer_then_records_and_makes_its_effect() {
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
    // The claim of page 1001, created once the token worked (exchanged, the page read), names
    // the Channel.
    let claim = &calls[3].body["metadata"];
    assert_eq!(claim["name"], CLAIM);
    assert_eq!(claim["annotations"]["airy.co/owner"], "ns/shop");
    assert_eq!(claim["annotations"]["airy.co/owner-uid"], "uid-shop");
    // Before the provider: the record, in the state namespace, saying what is about to be made
    // with which app, and keeping the page access token for the undo.
    let record = &calls[4].body;
    assert_eq!(record["metadata"]["name"], RECORD);
    assert_eq!(record["type"], "airy.co/channel-record");
    assert_eq!(
        record["metadata"]["labels"]["airy.co/channel-uid"],
        "uid-shop"
    );
    assert_eq!(
        record["metadata"]["annotations"]["airy.co/channel"],
        "ns/shop"
    );
    let effects: Value = serde_json::from_str(
        record["metadata"]["annotations"]["airy.co/effects"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        effects,
        json!([{"kind": "PageSubscription", "resource": "1001", "account": "app", "config": {}}])
    );
    let (_, data) = record_of(&s);
    assert_eq!(data["token"], PAGE_ACCESS);
    assert_eq!(data["undo"], PAGE_ACCESS);
    // The entry of the page's subscription with the app: this Channel its first holder, made.
    let entry = &calls[6].body["metadata"]["annotations"];
    assert!(entry["airy.co/holders"]
        .as_str()
        .unwrap()
        .contains("uid-shop"));
    assert!(entry.get("airy.co/origin").is_none());
    assert_eq!(
        calls[7].body["metadata"]["annotations"]["airy.co/origin"],
        "Made"
    );
    // After: connected (by server-side apply), the effect shown in words, no token.
    assert!(
        calls[8].query.contains("force=true")
            && calls[8].query.contains("fieldManager=channel-operator")
    );
    let st = &calls[8].body["status"];
    assert_eq!(summary(&calls[8].body), ("True/Connected".into(), vec![]));
    assert_eq!(st["connected"], true);
    assert!(st["connectAttempted"].is_null());
    assert_eq!(st["pageName"], "Shop");
    assert_eq!(
        st["effects"],
        json!([{"kind": "PageSubscription", "resource": "1001", "account": "app",
            "providerConfig": "flags", "origin": "Made",
            "description": "the Facebook app app is subscribed to the page 1001"}])
    );
    assert_eq!(calls[9].body["reason"], "Connected");
    // Nothing is written to the Channel's namespace; no token outside the record.
    let bodies = |c: &[&Call]| {
        serde_json::to_string(&c.iter().map(|c| &c.body).collect::<Vec<_>>()).unwrap()
    };
    let all: Vec<&Call> = calls.iter().collect();
    assert!(!bodies(&all).contains(USER_TOKEN));
    let outside: Vec<&Call> = calls
        .iter()
        .filter(|c| fake::line(c) != "POST records")
        .collect();
    assert!(!bodies(&outside).contains(PAGE_ACCESS));
}

#[tokio::test]
async fn an_unchanged_connected_channel_is_only_read() {
    let mut s = Scenario::connected(200).await;
    s.reconcile().await.unwrap();
    s.api(&[CLAIM_GET, RECORD_GET, CREDENTIALS]);
    s.provider(&[]).await;
}

#[tokio::test]
async fn connected_false_undoes_the_recorded_effect_then_deletes_the_record() {
    let mut s = Scenario::connected(200).await;
    s.edit(|c| {
        c["spec"]["connected"] = false.into();
        c["metadata"]["generation"] = 2.into();
    });
    s.reconcile().await.unwrap();
    let calls = s.api(&undo_then(&[
        "PATCH channel/status",
        "DELETE records/channel",
        "POST events",
    ]));
    s.provider(&["DELETE /v24.0/1001/subscribed_apps"]).await;
    // The last holder marks itself as undoing in the write that empties the entry.
    let entry = &calls[3].body["metadata"]["annotations"];
    assert_eq!(entry["airy.co/holders"], "[]");
    assert!(entry["airy.co/undoing"]
        .as_str()
        .unwrap()
        .contains("uid-shop"));
    // Each delete is guarded by what was read.
    for i in [4, 6] {
        let pre = &calls[i].body["preconditions"];
        assert!(
            pre["uid"].is_string() && pre["resourceVersion"].is_string(),
            "{pre}"
        );
    }
    // Disconnected in the status before the record goes.
    assert_eq!(
        summary(&calls[5].body),
        ("True/Disconnected".into(), vec![])
    );
    assert_eq!(calls[5].body["status"]["observedGeneration"], 2);
    // Disconnected, the Channel keeps the channel id; nothing else of it is left.
    let claims = s.fake.claims.lock().unwrap();
    assert_eq!(claims.keys().collect::<Vec<_>>(), [CLAIM]);
    assert!(s.fake.records.lock().unwrap().is_empty());
    // The credentials Secret is the user's: kept.
    assert!(s.fake.secrets.lock().unwrap().contains_key("shop-tok"));
}

#[tokio::test]
async fn deletion_undoes_with_disconnect_and_only_releases_with_orphan() {
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
        let rest: &[&str] = if policy == "Disconnect" {
            &[
                "PATCH channel/status",
                "DELETE records/channel",
                "POST events",
                "GET secrets",
                CLAIM_DELETE,
                "PATCH channel",
            ]
        } else {
            &[
                "DELETE records/channel",
                "GET secrets",
                CLAIM_DELETE,
                "PATCH channel",
            ]
        };
        let calls = s.api(&undo_then(rest));
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
        assert!(s.fake.records.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_effect_whose_outcome_is_unknown_is_undone_from_the_record_at_deletion() {
    let mut s = Scenario::new(500).await;
    s.reconcile().await.unwrap();
    s.fake.take();
    let err = s.reconcile().await.unwrap_err();
    assert!(err.contains("HTTP 500"), "{err}");
    let calls = s.api(&[
        CLAIM_GET,
        RECORD_GET,
        CREDENTIALS,
        CLAIM_POST,
        "POST records",
        ENTRY_GET,
        "POST entries",
        "PATCH channel/status",
        "POST events",
    ]);
    s.provider(&CONNECT).await;
    let failed = &calls[7].body;
    assert_eq!(
        summary(failed),
        (
            "False/ProviderError".into(),
            vec!["Reconciling=True".into()]
        )
    );
    assert_eq!(failed["status"]["connected"], false);
    // The effect the record holds, shown while its outcome is unknown.
    assert_eq!(failed["status"]["effects"][0]["resource"], "1001");
    assert!(failed["status"]["effects"][0]["origin"].is_null());
    // Deleted (as the HTTP API does after a failed connect): the page is unsubscribed with the
    // recorded page access token, then the finalizer released.
    s.edit(|c| c["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z".into());
    s.reconcile().await.unwrap();
    s.api(&undo_then(&[
        "PATCH channel/status",
        "DELETE records/channel",
        "POST events",
        "GET secrets",
        CLAIM_DELETE,
        "PATCH channel",
    ]));
    s.provider(&["DELETE /v24.0/1001/subscribed_apps"]).await;
}

mod adopt;
mod claims;
mod credentials;
mod fake;
mod on_demand;
mod provider_config;
mod sources;
mod token_health;
