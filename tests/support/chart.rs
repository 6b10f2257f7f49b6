//! The chart installed in a sandbox for the RBAC tests: rendered with Helm's own engine
//! (scripts/render-chart), its identities and RBAC applied, the environment of its containers
//! resolved and turned into each process's flags, fake providers, and the controller and API
//! started as the chart's ServiceAccounts.

use std::path::Path;
use std::process::Stdio;

use channel_operator::crd::Channel;
use channel_operator::{api, controller};
use clap::{Args as _, CommandFactory};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::CustomResourceExt;
use kube_sandbox::Sandbox;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
pub const RELEASE_NS: &str = "channel-operator";
pub const WATCH_NS: &str = "team-a";
/// The API's channels namespace of a cluster-wide install: never the release namespace.
pub const CHANNELS_NS: &str = "channel-operator-channels";
/// The state namespace of the release (`stateNamespace` by default): only the controller's —
/// the same name the in-process controller of the other tests is given.
pub use super::state::STATE_NS;
pub const POD: &str = "channel-operator-6d4f-abcde";
pub const CONTROLLER_SA: &str = "system:serviceaccount:channel-operator:channel-operator";
pub const API_SA: &str = "system:serviceaccount:channel-operator:channel-operator-api";

/// The chart rendered with `values` for release `channel-operator` in `channel-operator`.
pub fn render(values: &Value) -> Vec<Value> {
    let out = std::process::Command::new("python3")
        .arg(Path::new(ROOT).join("scripts/render-chart"))
        .args(["--values", &values.to_string(), "--namespace", RELEASE_NS])
        .stderr(Stdio::inherit())
        .output()
        .expect("python3 runs scripts/render-chart");
    assert!(out.status.success(), "scripts/render-chart failed");
    serde_json::from_slice(&out.stdout).expect("render-chart prints a JSON array")
}

/// Values pointing the providers at the fakes, with the test Secret holding their credentials,
/// namespaced to team-a (unless `extra` sets watchNamespace).
pub fn values(graph: &MockServer, twilio: &MockServer, extra: Value) -> Value {
    let mut v = json!({
        "watchNamespace": WATCH_NS,
        "facebook": {"graphUrl": format!("{}/v24.0", graph.uri())},
        "twilio": {"apiUrl": twilio.uri(), "webhookUrl": "https://hooks.example.org/twilio"},
        "testSecret": {"create": true, "stringData": {
            "facebookAppId": "app-1", "facebookAppSecret": "fb-app-secret",
            "twilioAccountSid": "AC1", "twilioAuthToken": "twilio-token"}},
    });
    json_merge(&mut v, extra);
    v
}

pub fn json_merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                json_merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Applies the chart's namespaces (the state namespace), identities and RBAC (and its test
/// Secret) as the cluster admin.
pub async fn apply_identities(admin: &kube::Client, objects: &[Value]) {
    // The state namespace is the chart's own to create unless it is told not to.
    let charts = |name: &str| {
        objects
            .iter()
            .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == name)
    };
    for ns in [RELEASE_NS, WATCH_NS, CHANNELS_NS, STATE_NS] {
        if charts(ns) {
            continue;
        }
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    let kinds = [
        "Namespace",
        "ServiceAccount",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
        "Secret",
    ];
    let mut applied: Vec<&Value> = objects
        .iter()
        .filter(|o| kinds.contains(&o["kind"].as_str().unwrap()))
        .collect();
    // In the order of `kinds`: namespaces before what lives in them, as Helm installs them.
    applied.sort_by_key(|o| kinds.iter().position(|k| o["kind"] == *k));
    for obj in applied {
        let (group, version) = match obj["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", obj["apiVersion"].as_str().unwrap()),
        };
        let gvk = GroupVersionKind::gvk(group, version, obj["kind"].as_str().unwrap());
        let ar = ApiResource::from_gvk(&gvk);
        let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(admin.clone(), ns, &ar),
            None => Api::all_with(admin.clone(), &ar),
        };
        let dynamic: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
        api.create(&PostParams::default(), &dynamic)
            .await
            .unwrap_or_else(|e| panic!("applying {} {}: {e}", obj["kind"], obj["metadata"]));
    }
}

/// The pod spec of the Deployment that runs `container`, and that container.
pub fn container<'a>(objects: &'a [Value], name: &str) -> (&'a Value, &'a Value) {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .map(|d| &d["spec"]["template"]["spec"])
        .find_map(|pod| {
            let c = pod["containers"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == name)?;
            Some((pod, c))
        })
        .unwrap_or_else(|| panic!("no Deployment runs a {name} container"))
}

/// The container's environment as resolved in a pod: values, fieldRefs and secretKeyRefs (of
/// the rendered test Secret).
pub fn resolved_env(objects: &[Value], c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let from = &e["valueFrom"];
            let value = if let Some(v) = e["value"].as_str() {
                v.to_string()
            } else if let Some(field) = from["fieldRef"]["fieldPath"].as_str() {
                match field {
                    "metadata.name" => POD.to_string(),
                    "metadata.namespace" => RELEASE_NS.to_string(),
                    other => panic!("{name}: unexpected fieldRef {other}"),
                }
            } else {
                let r = &from["secretKeyRef"];
                let secret = objects
                    .iter()
                    .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == r["name"])
                    .unwrap_or_else(|| panic!("{name}: Secret {} not rendered", r["name"]));
                let key = r["key"].as_str().unwrap();
                secret["stringData"][key].as_str().unwrap().to_string()
            };
            (name, value)
        })
        .collect()
}

/// Command-line arguments equivalent to `env` for `cmd` (its `env = ...` arguments); logging
/// variables are set up by `main`, not by the subcommand. Returns the argv and the variables the
/// process does not read.
pub fn argv(
    cmd: &clap::Command,
    sub: &str,
    env: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let logging = channel_operator::telemetry::LogArgs::augment_args(clap::Command::new("log"));
    let mut args = vec![sub.to_string()];
    let mut unread = vec![];
    for (name, value) in env {
        let flag = |c: &clap::Command| {
            c.get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
                .and_then(|a| a.get_long().map(str::to_string))
        };
        match flag(cmd) {
            Some(long) => args.extend([format!("--{long}"), value.clone()]),
            None if flag(&logging).is_some() => {}
            None => unread.push(name.clone()),
        }
    }
    (args, unread)
}

/// Every variable the chart sets on a container is one its process reads.
pub fn assert_all_read(who: &str, unread: &[String]) {
    assert!(
        unread.is_empty(),
        "the chart sets {unread:?} on the {who} container, which the binary does not read"
    );
}

/// A Facebook user token that Graph lists pages for (`channels.facebook.explore`).
pub const USER_TOKEN: &str = "user-token";
/// A page token that Graph refuses to exchange.
pub const REVOKED_TOKEN: &str = "revoked-page-token";

/// A Graph API that knows one page (listed for [`USER_TOKEN`], refusing [`REVOKED_TOKEN`]) and a
/// Twilio API that knows one number.
pub async fn fake_providers() -> (MockServer, MockServer) {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("fb_exchange_token", REVOKED_TOKEN))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Error validating access token", "type": "OAuthException", "code": 190}})))
        .with_priority(1)
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/me/accounts"))
        .and(query_param("access_token", USER_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{
            "id": "1234567890", "name_with_location_descriptor": "ACME",
            "access_token": "page-access"}]})))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "long-lived"})),
        )
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/1234567890"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "1234567890", "name_with_location_descriptor": "ACME",
            "access_token": "page-access", "is_webhooks_subscribed": true,
            "picture": {"data": {"url": "https://img.example.org/p.png"}}})))
        .mount(&graph)
        .await;
    Mock::given(path_regex("subscribed_apps$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&graph)
        .await;
    let twilio = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/AC1/IncomingPhoneNumbers.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"incoming_phone_numbers": [{"sid": "PN1", "phone_number": "+491234567"}]}),
        ))
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/2010-04-01/Accounts/AC1/IncomingPhoneNumbers/PN1.json",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"sid": "PN1"})))
        .mount(&twilio)
        .await;
    (graph, twilio)
}

/// kubectl as the admin: (exit code, stdout, stderr).
pub async fn kubectl(sb: &Sandbox, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = sb.kubectl(dir, args).await.expect("kubectl runs");
    (out.code, out.stdout, out.stderr)
}

pub async fn can_i(sb: &Sandbox, dir: &Path, who: &str, verb: &str, what: &str, ns: &str) -> bool {
    let as_ = format!("--as={who}");
    let (code, out, err) = kubectl(sb, dir, &["auth", "can-i", verb, what, "-n", ns, &as_]).await;
    assert!(code <= 1, "kubectl auth can-i failed: {err}");
    out.trim() == "yes"
}

pub use super::build::ready;
pub use super::wait::{eventually_ok, TIMEOUT};

/// `done` as an answer for [`eventually_ok`]: a wait that times out names the sandbox's denials
/// so far, the usual reason in these tests.
pub fn or_denials(sb: &Sandbox, done: bool) -> Result<(), String> {
    if done {
        Ok(())
    } else {
        Err(format!("denials: {:?}", sb.denials()))
    }
}

pub async fn wait_ready(sb: &Sandbox, channels: &Api<Channel>, name: &str, want: (&str, &str)) {
    let what = format!("{name} to be Ready {want:?}");
    eventually_ok(TIMEOUT, &what, || async {
        let got = channels.get(name).await.ok().as_ref().and_then(ready);
        or_denials(
            sb,
            got.as_ref().map(|(s, r)| (s.as_str(), r.as_str())) == Some(want),
        )
    })
    .await;
}

/// A sandbox with the chart (rendered with `extra` values) installed: its identities and RBAC.
pub async fn install(
    graph: &MockServer,
    twilio: &MockServer,
    extra: Value,
) -> (Sandbox, Vec<Value>, tempfile::TempDir) {
    let objects = render(&values(graph, twilio, extra));
    let sb = Sandbox::start(0).await.unwrap();
    sb.install_crd(&Channel::crd()).await.unwrap();
    for crd in channel_operator::provider_config::crds() {
        sb.install_crd(&crd).await.unwrap();
    }
    apply_identities(&sb.client(), &objects).await;
    (sb, objects, tempfile::tempdir().unwrap())
}

pub use super::env::Running;

/// Starts the controller as the chart's controller container runs it: as its pod's
/// ServiceAccount, with the flags its rendered environment sets.
pub async fn start_controller(sb: &Sandbox, objects: &[Value]) -> Running {
    let (pod, c) = container(objects, "controller");
    let sa = pod["serviceAccountName"].as_str().unwrap();
    let (args, unread) = argv(
        &controller::Args::command(),
        "controller",
        &resolved_env(objects, c),
    );
    assert_all_read("controller", &unread);
    let args = <controller::Args as clap::Parser>::parse_from(args);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = sb.service_account_client(RELEASE_NS, sa);
    Running(tokio::spawn(controller::run_with_listener(
        client, args, listener,
    )))
}

/// Starts the HTTP API as the chart's api container runs it (a sidecar of the controller or its
/// own Deployment): as its pod's ServiceAccount, with the flags its rendered environment sets, on
/// a local port. Returns the process, its base URL and the ServiceAccount's name.
pub async fn start_api(sb: &Sandbox, objects: &[Value]) -> (Running, String, String) {
    let (pod, c) = container(objects, "api");
    let sa = pod["serviceAccountName"].as_str().unwrap().to_string();
    let (args, unread) = argv(&api::Args::command(), "api", &resolved_env(objects, c));
    assert_all_read("api", &unread);
    let args = <api::Args as clap::Parser>::parse_from(args);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let client = sb.service_account_client(RELEASE_NS, &sa);
    let running = Running(tokio::spawn(api::serve(client, args, listener)));
    let http = reqwest::Client::new();
    eventually_ok(TIMEOUT, "the API to be ready", || async {
        let ok = http.get(format!("{base}/readyz")).send().await;
        or_denials(sb, ok.is_ok_and(|r| r.status() == 200))
    })
    .await;
    (running, base, sa)
}

/// Channels of every source declared in team-a, the Facebook one with its page token Secret.
pub const CHANNELS: &str = "apiVersion: v1
kind: Secret
metadata:
  name: acme-page-token
  namespace: team-a
  labels: {airy.co/credentials: \"true\"}
stringData:
  page_token: user-page-token
---
apiVersion: airy.co/v1alpha1
kind: Channel
metadata: {name: acme-facebook, namespace: team-a}
spec:
  source: facebook
  sourceChannelId: \"1234567890\"
  credentialsSecretRef: {name: acme-page-token, key: page_token}
---
apiVersion: airy.co/v1alpha1
kind: Channel
metadata: {name: website, namespace: team-a}
spec: {source: chat_plugin, sourceChannelId: site-1, name: Website}
---
apiVersion: airy.co/v1alpha1
kind: Channel
metadata: {name: google, namespace: team-a}
spec: {source: google, sourceChannelId: gbm-1, name: Google}
---
apiVersion: airy.co/v1alpha1
kind: Channel
metadata: {name: sms, namespace: team-a}
spec: {source: twilio.sms, sourceChannelId: \"+491234567\", name: SMS}
---
apiVersion: airy.co/v1alpha1
kind: Channel
metadata: {name: whatsapp, namespace: team-a}
spec: {source: twilio.whatsapp, sourceChannelId: \"whatsapp:+491234567\", name: WhatsApp}
";

/// Renders the chart with `extra` values, applies its RBAC, runs the controller as the chart's
/// ServiceAccount through every flow, and returns the sandbox (with its record of denials).
pub async fn controller_flows(extra: Value) -> (Sandbox, tempfile::TempDir, Vec<Value>) {
    let (graph, twilio) = fake_providers().await;
    let (sb, objects, dir) = install(&graph, &twilio, extra).await;
    let admin = sb.client();
    let _controller = start_controller(&sb, &objects).await;

    let file = dir.path().join("channels.yaml");
    std::fs::write(&file, CHANNELS).unwrap();
    let (code, out, err) = kubectl(&sb, dir.path(), &["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");

    let channels: Api<Channel> = Api::namespaced(admin.clone(), WATCH_NS);
    for name in ["acme-facebook", "website", "google", "sms", "whatsapp"] {
        wait_ready(&sb, &channels, name, ("True", "Connected")).await;
    }
    // Leader election: the Lease in the release namespace names this pod.
    let lease = Api::<Lease>::namespaced(admin.clone(), RELEASE_NS)
        .get("channel-operator")
        .await
        .expect("the controller holds its Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(POD)
    );
    // Disconnect and delete.
    let off = Patch::Merge(json!({"spec": {"connected": false}}));
    channels
        .patch("sms", &PatchParams::default(), &off)
        .await
        .unwrap();
    wait_ready(&sb, &channels, "sms", ("True", "Disconnected")).await;
    channels
        .delete("acme-facebook", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&sb, &channels, "acme-facebook").await;
    (sb, dir, objects)
}

pub async fn wait_gone(sb: &Sandbox, channels: &Api<Channel>, name: &str) {
    let what = format!("the Channel {name} to be released");
    eventually_ok(TIMEOUT, &what, || async {
        or_denials(sb, channels.get_opt(name).await.unwrap().is_none())
    })
    .await;
}
