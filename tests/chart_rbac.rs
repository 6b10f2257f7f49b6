//! The chart's RBAC is enough and no more: the chart is rendered (scripts/render-chart, Helm's
//! own engine), its ServiceAccounts, Roles, ClusterRoles and bindings are applied to the sandbox,
//! and the controller and the HTTP API run AS the chart's ServiceAccounts with the environment
//! the chart sets on their containers. The controller goes through every flow (Channels of every
//! source declared with kubectl, a Facebook page with its token Secret against a fake Graph API,
//! Twilio numbers, disconnect, delete, leader election), and so does the API (every connect,
//! list, info, update, every disconnect, explore, a failed connect it undoes, and the deletion of
//! the Channels it created), each in the namespaced sidecar install, the namespaced install and
//! the default cluster-wide install (the API separate in both), with not one 403 from the
//! sandbox. `kubectl auth can-i --as` then shows what the chart's identities cannot do
//! (tests/chart_least_privilege.rs asks every verb in every install mode).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use channel_operator::crd::Channel;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams};
use kube::ResourceExt;
use kube_sandbox::Sandbox;
use serde_json::{json, Value};
use support::chart::*;

/// The HTTP API as a client sees it: its base URL and the bearer token it wants, if any.
struct Http {
    base: String,
    token: Option<&'static str>,
    client: reqwest::Client,
}

impl Http {
    /// POSTs `body` to `endpoint`: the status and the JSON answer.
    async fn post(&self, endpoint: &str, body: Value) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/{endpoint}", self.base))
            .json(&body);
        if let Some(t) = self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// POSTs and expects 200: the answer.
    async fn ok(&self, endpoint: &str, body: Value) -> Value {
        let (s, v) = self.post(endpoint, body).await;
        assert_eq!(s, 200, "{endpoint}: {v}");
        v
    }
}

/// The names of the Secrets in `ns`.
async fn secret_names(admin: &kube::Client, ns: &str) -> BTreeSet<String> {
    Api::<Secret>::namespaced(admin.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
        .collect()
}

/// Renders the chart with `extra` values, applies its RBAC, runs the controller and the API as
/// the chart's ServiceAccounts, and drives the API through every endpoint. Returns the sandbox
/// (with its record of denials) and the API's ServiceAccount.
async fn api_flows(extra: Value, token: Option<&'static str>) -> (Sandbox, String) {
    let (graph, twilio) = fake_providers().await;
    let (sb, objects, _dir) = install(&graph, &twilio, extra).await;
    let admin = sb.client();
    let _controller = start_controller(&sb, &objects).await;
    let (_api, base, sa) = start_api(&sb, &objects).await;
    let (_, api_container) = container(&objects, "api");
    let ns = resolved_env(&objects, api_container)
        .into_iter()
        .find(|(n, _)| n == "CHANNELS_NAMESPACE")
        .map(|(_, v)| v)
        .unwrap();
    let http = Http {
        base,
        token,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    };
    let untouched = secret_names(&admin, &ns).await;

    // Every connect, each answered once the controller (as its own identity) reports Ready.
    let plugin = http
        .ok("channels.chatplugin.connect", json!({"name": "website"}))
        .await;
    let google = http
        .ok(
            "channels.google.connect",
            json!({"gbm_id": "gbm-1", "name": "Agent"}),
        )
        .await;
    let sms = http
        .ok(
            "channels.twilio.sms.connect",
            json!({"phone_number": "+491234567", "name": "SMS"}),
        )
        .await;
    let facebook = http
        .ok(
            "channels.facebook.connect",
            json!({"page_id": "1234567890", "page_token": "page-token-1"}),
        )
        .await;
    assert_eq!(facebook["metadata"]["name"], "ACME");
    assert!(!facebook.to_string().contains("page-token-1"), "{facebook}");
    let ids: Vec<&str> = [&plugin, &google, &sms, &facebook]
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    for v in [&plugin, &google, &sms, &facebook] {
        assert_eq!(v["connected"], true, "{v}");
    }
    let channels: Api<Channel> = Api::namespaced(admin.clone(), &ns);
    let fb = channels.get(ids[3]).await.unwrap();
    let first_secret = fb.spec.credentials_secret_ref.unwrap().name;
    assert!(secret_names(&admin, &ns).await.contains(&first_secret));

    // A new page token replaces the page-token Secret: the API writes the new one, the
    // controller deletes the one the Channel no longer names (the API may not).
    http.ok(
        "channels.facebook.connect",
        json!({"page_id": "1234567890", "page_token": "page-token-2"}),
    )
    .await;
    let fb = channels.get(ids[3]).await.unwrap();
    let second_secret = fb.spec.credentials_secret_ref.unwrap().name;
    assert_ne!(first_secret, second_secret);
    eventually_ok(TIMEOUT, "the replaced page-token Secret to go", || async {
        let secrets = secret_names(&admin, &ns).await;
        or_denials(
            &sb,
            secrets.contains(&second_secret) && !secrets.contains(&first_secret),
        )
    })
    .await;

    // A connect the provider refuses: the API removes the Channel, and with it (the garbage
    // collector's) the Secret it created.
    let (s, v) = http
        .post(
            "channels.facebook.connect",
            json!({"page_id": "2345678901", "page_token": REVOKED_TOKEN}),
        )
        .await;
    assert_eq!(s, 500, "{v}");
    let left: BTreeSet<String> = channels
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(left, ids.iter().map(|s| s.to_string()).collect());
    // The Secrets left are the chart's and those of the connected page (its page token and the
    // controller's token Secret): none of the refused connect.
    eventually_ok(
        TIMEOUT,
        "nothing of the refused connect to stay",
        || async {
            let kept = secret_names(&admin, &ns).await;
            let strays: Vec<&String> = kept
                .difference(&untouched)
                .filter(|name| !name.starts_with(ids[3]))
                .collect();
            or_denials(&sb, strays.is_empty())
        },
    )
    .await;

    // Explore, list, info, update.
    let explore = http
        .ok(
            "channels.facebook.explore",
            json!({"auth_token": USER_TOKEN}),
        )
        .await;
    assert_eq!(
        explore,
        json!({"data": [{"page_id": "1234567890", "name": "ACME", "connected": true}]})
    );
    let list = http.ok("channels.list", json!({})).await;
    let listed: BTreeSet<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids.iter().copied().collect());
    let info = http
        .ok("channels.info", json!({"channel_id": ids[1]}))
        .await;
    assert_eq!(info["metadata"]["name"], "Agent");
    let updated = http
        .ok(
            "channels.update",
            json!({"channel_id": ids[1], "name": "Support"}),
        )
        .await;
    assert_eq!(updated["metadata"]["name"], "Support");

    // Every disconnect.
    for (endpoint, id) in [
        "channels.chatplugin.disconnect",
        "channels.google.disconnect",
        "channels.twilio.sms.disconnect",
        "channels.facebook.disconnect",
    ]
    .into_iter()
    .zip(&ids)
    {
        assert_eq!(
            http.ok(endpoint, json!({"channel_id": id})).await,
            json!({})
        );
    }

    // The Channels the API created are deleted; the controller releases them and the API's
    // view follows.
    for id in &ids {
        channels.delete(id, &DeleteParams::default()).await.unwrap();
    }
    for id in &ids {
        wait_gone(&sb, &channels, id).await;
    }
    eventually_ok(TIMEOUT, "the API to list no Channel", || async {
        or_denials(
            &sb,
            http.ok("channels.list", json!({})).await == json!({"data": []}),
        )
    })
    .await;
    (sb, sa)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_sidecar_install_runs_every_api_flow_without_a_denial() {
    let (sb, sa) = api_flows(json!({"api": {"separate": false}}), None).await;
    assert_eq!(
        sa, "channel-operator",
        "the sidecar shares the pod's identity"
    );
    assert_eq!(sb.denials(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_separate_api_install_runs_every_api_flow_without_a_denial() {
    let (sb, sa) = api_flows(json!({}), None).await;
    assert_eq!(sa, "channel-operator-api");
    assert_eq!(sb.denials(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_install_runs_every_api_flow_without_a_denial() {
    let extra = json!({"watchNamespace": "",
                       "testSecret": {"stringData": {"apiTokens": "token-1"}}});
    let (sb, sa) = api_flows(extra, Some("token-1")).await;
    assert_eq!(sa, "channel-operator-api", "the default separates the API");
    assert_eq!(sb.denials(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_sidecar_install_runs_every_controller_flow_without_a_denial() {
    let (sb, dir, _) = controller_flows(json!({"api": {"separate": false}})).await;
    assert_eq!(sb.denials(), Vec::<String>::new());
    let d = dir.path();
    // The pod's one identity: Secrets only in its namespace, nothing cluster-wide.
    assert!(can_i(&sb, d, CONTROLLER_SA, "get", "secrets", WATCH_NS).await);
    assert!(!can_i(&sb, d, CONTROLLER_SA, "get", "secrets", "kube-system").await);
    assert!(!can_i(&sb, d, CONTROLLER_SA, "create", "secrets", "kube-system").await);
    assert!(!can_i(&sb, d, CONTROLLER_SA, "update", "secrets", WATCH_NS).await);
    assert!(
        !can_i(
            &sb,
            d,
            CONTROLLER_SA,
            "update",
            "channels.airy.co",
            WATCH_NS
        )
        .await
    );
    // Leases: the leader Lease by its name in the release namespace, the claims of channel ids
    // in the state namespace (tests/chart_least_privilege.rs asks every verb).
    assert!(can_i(&sb, d, CONTROLLER_SA, "delete", "leases", STATE_NS).await);
    assert!(!can_i(&sb, d, CONTROLLER_SA, "delete", "leases", RELEASE_NS).await);
    assert!(!can_i(&sb, d, CONTROLLER_SA, "get", "leases", WATCH_NS).await);
    assert!(!can_i(&sb, d, CONTROLLER_SA, "list", "leases", RELEASE_NS).await);
    assert!(!can_i(&sb, d, CONTROLLER_SA, "update", "leases", RELEASE_NS).await);
    assert!(
        can_i(
            &sb,
            d,
            CONTROLLER_SA,
            "patch",
            "leases/channel-operator",
            RELEASE_NS
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_api_install_keeps_the_api_identity_away_from_secrets() {
    let (sb, dir, objects) = controller_flows(json!({})).await;
    assert_eq!(sb.denials(), Vec::<String>::new());
    let (pod, api) = container(&objects, "api");
    assert_eq!(pod["serviceAccountName"], "channel-operator-api");
    let env: Vec<(String, String)> = resolved_env(&objects, api);
    for secret in [
        "FACEBOOK_APP_SECRET",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_ACCOUNT_SID",
    ] {
        assert!(
            env.iter().all(|(n, _)| n != secret),
            "the API container gets {secret}"
        );
    }
    let d = dir.path();
    for (verb, ns) in [
        ("get", "kube-system"),
        ("create", "kube-system"),
        ("get", WATCH_NS),
        ("list", WATCH_NS),
        ("watch", WATCH_NS),
        ("update", WATCH_NS),
        ("patch", WATCH_NS),
        ("delete", WATCH_NS),
    ] {
        assert!(
            !can_i(&sb, d, API_SA, verb, "secrets", ns).await,
            "the API may {verb} secrets in {ns}"
        );
    }
    // What it needs: its page-token Secrets and the Channels of its namespace.
    assert!(can_i(&sb, d, API_SA, "create", "secrets", WATCH_NS).await);
    assert!(can_i(&sb, d, API_SA, "create", "channels.airy.co", WATCH_NS).await);
    assert!(!can_i(&sb, d, API_SA, "update", "channels.airy.co", WATCH_NS).await);
    assert!(!can_i(&sb, d, API_SA, "list", "channels.airy.co", "default").await);
    assert!(!can_i(&sb, d, API_SA, "get", "leases", RELEASE_NS).await);
}

/// Reported from a real cluster: in the default install the internet-facing API shared an
/// identity that could read and create Secrets in kube-system, and received provider secrets it
/// never uses. The default (cluster-wide) install now grants Secrets only in its namespaces, the
/// release namespace's read only, and the API its own identity.
#[tokio::test]
async fn default_install_grants_no_secret_outside_its_namespaces() {
    let (graph, twilio) = fake_providers().await;
    let extra = json!({"watchNamespace": "", "api": {"ingress": {"enabled": true}},
                       "testSecret": {"stringData": {"apiTokens": "token-1"}}});
    let (sb, objects, dir) = install(&graph, &twilio, extra).await;
    let d = dir.path();
    for (verb, ns) in [
        ("get", "kube-system"),
        ("create", "kube-system"),
        ("list", "default"),
    ] {
        assert!(
            !can_i(&sb, d, CONTROLLER_SA, verb, "secrets", ns).await,
            "the default identity may {verb} secrets in {ns}"
        );
    }
    // Its Secrets are the API's channels namespace's, and the release namespace's provider
    // Secrets read only (for ClusterProviderConfigs); the API, an identity of its own, reaches
    // none of them.
    assert!(can_i(&sb, d, CONTROLLER_SA, "get", "secrets", CHANNELS_NS).await);
    assert!(can_i(&sb, d, CONTROLLER_SA, "get", "secrets", RELEASE_NS).await);
    assert!(!can_i(&sb, d, CONTROLLER_SA, "patch", "secrets", RELEASE_NS).await);
    assert!(!can_i(&sb, d, API_SA, "get", "secrets", RELEASE_NS).await);
    assert!(!can_i(&sb, d, API_SA, "get", "secrets", CHANNELS_NS).await);
    // Channels are reconciled everywhere.
    assert!(
        can_i(
            &sb,
            d,
            CONTROLLER_SA,
            "watch",
            "channels.airy.co",
            "default"
        )
        .await
    );
    let (_, api) = container(&objects, "api");
    let env = resolved_env(&objects, api);
    for secret in [
        "FACEBOOK_APP_SECRET",
        "FACEBOOK_APP_ID",
        "TWILIO_AUTH_TOKEN",
    ] {
        assert!(
            env.iter().all(|(n, _)| n != secret),
            "the API gets {secret}"
        );
    }
    // The Ingress routes the channels.* endpoints only.
    let ingress = objects.iter().find(|o| o["kind"] == "Ingress").unwrap();
    let paths: Vec<&str> = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, channel_operator::api::endpoints::paths());
}

#[tokio::test]
async fn the_charts_provider_secrets_never_consent_to_be_channel_credentials() {
    use channel_operator::ownership::CREDENTIALS_LABEL;
    let (graph, twilio) = (
        wiremock::MockServer::start().await,
        wiremock::MockServer::start().await,
    );
    for extra in [
        json!({}),
        json!({"watchNamespace": "", "api": {"separate": true}}),
    ] {
        let mut extra = extra;
        json_merge(
            &mut extra,
            json!({"testSecret": {"stringData": {"apiTokens": "t", "jwtSecret": "j"}}}),
        );
        let objects = render(&values(&graph, &twilio, extra));
        let secrets: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Secret").collect();
        assert!(!secrets.is_empty(), "the test Secret is rendered");
        for s in secrets {
            assert!(
                s["metadata"]["labels"].get(CREDENTIALS_LABEL).is_none(),
                "{} must not be usable as a Channel's credentials",
                s["metadata"]["name"]
            );
        }
    }
}

/// Reported from a real cluster: with `api.separate: true` the API's ServiceAccount could get,
/// patch and delete `facebook-app`, the Twilio token and the JWT secret, because they lived in the
/// release namespace, which was also the API's channels namespace. In every install mode no
/// identity the API runs as may touch a Secret of the release namespace now, while it still
/// writes its page-token Secrets in its channels namespace.
#[tokio::test]
async fn no_api_identity_reaches_the_provider_secrets_in_any_install_mode() {
    let (graph, twilio) = fake_providers().await;
    for (mode, extra, channels_ns) in [
        (
            "namespaced sidecar",
            json!({"api": {"separate": false}}),
            WATCH_NS,
        ),
        ("namespaced separate", json!({}), WATCH_NS),
        (
            "cluster-wide sidecar",
            json!({"watchNamespace": "", "api": {"separate": false}}),
            CHANNELS_NS,
        ),
        ("default", json!({"watchNamespace": ""}), CHANNELS_NS),
    ] {
        let mut extra = extra;
        json_merge(
            &mut extra,
            json!({"testSecret": {"stringData": {"apiTokens": "t", "jwtSecret": "j"}}}),
        );
        let (sb, objects, dir) = install(&graph, &twilio, extra).await;
        let d = dir.path();
        let (pod, _) = container(&objects, "api");
        let who = format!(
            "system:serviceaccount:{RELEASE_NS}:{}",
            pod["serviceAccountName"].as_str().unwrap()
        );
        // The provider Secrets are there (the chart's test Secret holds them all).
        let mut provider = secret_names(&sb.client(), RELEASE_NS).await;
        assert!(!provider.is_empty(), "{mode}: no provider Secret");
        // And the ones the README's walk-through creates there.
        provider.extend(["facebook-app", "twilio", "channel-api-auth"].map(String::from));
        for name in &provider {
            for verb in ["get", "patch", "update", "delete"] {
                assert!(
                    !can_i(&sb, d, &who, verb, &format!("secrets/{name}"), RELEASE_NS).await,
                    "{mode}: the API's identity may {verb} the provider Secret {name}"
                );
            }
        }
        for verb in ["list", "watch", "create", "deletecollection"] {
            assert!(
                !can_i(&sb, d, &who, verb, "secrets", RELEASE_NS).await,
                "{mode}: the API's identity may {verb} Secrets in the release namespace"
            );
        }
        // What it needs stays: creating its page-token Secrets in its channels namespace.
        assert!(
            can_i(&sb, d, &who, "create", "secrets", channels_ns).await,
            "{mode}: the API cannot create its page-token Secrets in {channels_ns}"
        );
        sb.shutdown().await;
    }
}
