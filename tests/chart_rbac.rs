//! The chart's RBAC is enough and no more: the chart is rendered (scripts/render-chart, Helm's
//! own engine), its ServiceAccounts, Roles, ClusterRoles and bindings are applied to the sandbox,
//! and the controller runs AS the chart's ServiceAccount with the environment the chart sets on
//! its container, through every flow (Channels of every source declared with kubectl, a Facebook
//! page with its token Secret against a fake Graph API, Twilio numbers, disconnect, delete,
//! leader election) with not one 403 from the sandbox. `kubectl auth can-i --as` then shows
//! what the chart's identities cannot do.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use channel_operator::controller;
use channel_operator::crd::Channel;
use clap::{Args as _, CommandFactory};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch};
use kube::api::{PatchParams, PostParams};
use kube::CustomResourceExt;
use kube_sandbox::Sandbox;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RELEASE_NS: &str = "channel-operator";
const WATCH_NS: &str = "team-a";
const POD: &str = "channel-operator-6d4f-abcde";
const CONTROLLER_SA: &str = "system:serviceaccount:channel-operator:channel-operator";
const API_SA: &str = "system:serviceaccount:channel-operator:channel-operator-api";
/// Agreed environment (interfaces of the parallel branches) that this build's binary does not
/// read yet: SECRET_NAMESPACES (controller) and API_NAMESPACES (API). Every other variable the
/// chart sets must be one the process reads.
const AGREED_NOT_YET_READ: [&str; 2] = ["SECRET_NAMESPACES", "API_NAMESPACES"];

/// The chart rendered with `values` for release `channel-operator` in `channel-operator`.
fn render(values: &Value) -> Vec<Value> {
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
fn values(graph: &MockServer, twilio: &MockServer, extra: Value) -> Value {
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

fn json_merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                json_merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Applies the chart's identities and RBAC (and its test Secret) as the cluster admin.
async fn apply_identities(admin: &kube::Client, objects: &[Value]) {
    for ns in [RELEASE_NS, WATCH_NS] {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    let kinds = [
        "ServiceAccount",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
        "Secret",
    ];
    for obj in objects
        .iter()
        .filter(|o| kinds.contains(&o["kind"].as_str().unwrap()))
    {
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
fn container<'a>(objects: &'a [Value], name: &str) -> (&'a Value, &'a Value) {
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
fn resolved_env(objects: &[Value], c: &Value) -> Vec<(String, String)> {
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
fn argv(cmd: &clap::Command, sub: &str, env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
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

fn assert_only_agreed_unread(who: &str, unread: &[String]) {
    for name in unread {
        assert!(
            AGREED_NOT_YET_READ.contains(&name.as_str()),
            "the chart sets {name} on the {who} container, which the binary does not read"
        );
    }
}

/// A Graph API that knows one page and a Twilio API that knows one number.
async fn fake_providers() -> (MockServer, MockServer) {
    let graph = MockServer::start().await;
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
async fn kubectl(sb: &Sandbox, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = sb.kubectl(dir, args).await.expect("kubectl runs");
    (out.code, out.stdout, out.stderr)
}

async fn can_i(sb: &Sandbox, dir: &Path, who: &str, verb: &str, what: &str, ns: &str) -> bool {
    let as_ = format!("--as={who}");
    let (code, out, err) = kubectl(sb, dir, &["auth", "can-i", verb, what, "-n", ns, &as_]).await;
    assert!(code <= 1, "kubectl auth can-i failed: {err}");
    out.trim() == "yes"
}

const CHANNELS: &str = "apiVersion: v1
kind: Secret
metadata:
  name: acme-page-token
  namespace: team-a
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

fn ready(ch: &Channel) -> Option<(String, String)> {
    let v = serde_json::to_value(ch).ok()?;
    let c = v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

async fn wait_ready(sb: &Sandbox, channels: &Api<Channel>, name: &str, want: (&str, &str)) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = channels.get(name).await.ok().as_ref().and_then(ready);
        if got.as_ref().map(|(s, r)| (s.as_str(), r.as_str())) == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: Ready {got:?}, want {want:?}; denials: {:?}",
            sb.denials()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A sandbox with the chart (rendered with `extra` values) installed: its identities and RBAC.
async fn install(
    graph: &MockServer,
    twilio: &MockServer,
    extra: Value,
) -> (Sandbox, Vec<Value>, tempfile::TempDir) {
    let objects = render(&values(graph, twilio, extra));
    let sb = Sandbox::start(0).await.unwrap();
    sb.install_crd(&Channel::crd()).await.unwrap();
    apply_identities(&sb.client(), &objects).await;
    (sb, objects, tempfile::tempdir().unwrap())
}

/// Renders the chart with `extra` values, applies its RBAC, runs the controller as the chart's
/// ServiceAccount through every flow, and returns the sandbox (with its record of denials).
async fn controller_flows(extra: Value) -> (Sandbox, tempfile::TempDir, Vec<Value>) {
    let (graph, twilio) = fake_providers().await;
    let (sb, objects, dir) = install(&graph, &twilio, extra).await;
    let admin = sb.client();

    let (pod, c) = container(&objects, "controller");
    let sa = pod["serviceAccountName"].as_str().unwrap();
    let (args, unread) = argv(
        &controller::Args::command(),
        "controller",
        &resolved_env(&objects, c),
    );
    assert_only_agreed_unread("controller", &unread);
    let args = <controller::Args as clap::Parser>::parse_from(args);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = sb.service_account_client(RELEASE_NS, sa);
    let task = tokio::spawn(controller::run_with_listener(client, args, listener));

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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while channels.get_opt("acme-facebook").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Facebook Channel was not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    (sb, dir, objects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_sidecar_install_runs_every_controller_flow_without_a_denial() {
    let (sb, dir, _) = controller_flows(json!({})).await;
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
    assert!(!can_i(&sb, d, CONTROLLER_SA, "get", "leases", RELEASE_NS).await);
    assert!(
        can_i(
            &sb,
            d,
            CONTROLLER_SA,
            "get",
            "leases/channel-operator",
            RELEASE_NS
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_api_install_keeps_the_api_identity_away_from_secrets() {
    let (sb, dir, objects) = controller_flows(json!({"api": {"separate": true}})).await;
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
    let (_, unread) = argv(&channel_operator::api::Args::command(), "api", &env);
    assert_only_agreed_unread("api", &unread);
    let d = dir.path();
    for (verb, ns) in [
        ("get", "kube-system"),
        ("create", "kube-system"),
        ("list", WATCH_NS),
        ("watch", WATCH_NS),
        ("update", WATCH_NS),
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
/// never uses. The default (cluster-wide) install now grants Secrets only in its namespace.
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
    assert!(can_i(&sb, d, CONTROLLER_SA, "get", "secrets", RELEASE_NS).await);
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
    assert_eq!(paths, channel_operator::api::ENDPOINTS);
}
