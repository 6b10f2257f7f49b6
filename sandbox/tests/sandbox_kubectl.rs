//! The sandbox through the real `kubectl` (v1.32) and the kubeconfig it writes: issue 2, points
//! 1 (resourceVersion conflicts), 4 (patch types, apply), 6 (watch) and 7 (delete, finalizers),
//! plus get/describe/wait/create.

mod sandbox_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use channel_operator::crd::Channel;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Resource;
use kube_sandbox::Sandbox;
use sandbox_support::*;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

struct Kubectl {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn new(sb: &Sandbox) -> Kubectl {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("sandbox").join("kubeconfig");
        sb.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl { dir, kubeconfig }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl; Ok(stdout) on success, Err(stderr) on failure.
    async fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = tokio::time::timeout(Duration::from_secs(30), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .expect("kubectl runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "kubectl {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        self.run(args).await.unwrap_or_else(|e| panic!("{e}"))
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

const CHANNEL: &str = "apiVersion: airy.co/v1alpha1
kind: Channel
metadata:
  name: web
spec:
  source: chat_plugin
  sourceChannelId: site-1
  name: My site
";

#[tokio::test]
async fn kubectl_applies_gets_patches_and_sees_conflicts() {
    let (sb, client) = sandbox().await;
    let k = Kubectl::new(&sb);
    let kubeconfig = std::fs::read_to_string(&k.kubeconfig).unwrap();
    assert!(kubeconfig.contains(&format!("server: {}", sb.url())));
    assert!(kubeconfig.contains("current-context: channel-operator-sandbox"));

    let f = k.file("channel.yaml", CHANNEL);
    assert_eq!(
        k.ok(&["apply", "-f", &f]).await.trim(),
        "channel.airy.co/web created"
    );
    assert_eq!(
        k.ok(&["apply", "-f", &f]).await.trim(),
        "channel.airy.co/web unchanged"
    );
    let f2 = k.file("channel2.yaml", &CHANNEL.replace("My site", "Renamed"));
    assert_eq!(
        k.ok(&["apply", "-f", &f2]).await.trim(),
        "channel.airy.co/web configured"
    );

    let table = k.ok(&["get", "channels"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&header[..3], ["NAME", "SOURCE", "SOURCE"], "{table}");
    assert!(lines.next().unwrap().starts_with("web "), "{table}");
    let yaml = k.ok(&["get", "ch", "web", "-o", "yaml"]).await;
    let obj: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(obj["spec"]["name"], "Renamed");
    assert_eq!(obj["metadata"]["generation"], 2);
    assert_eq!(obj["spec"]["connected"], true, "defaulted by the schema");

    k.ok(&[
        "patch",
        "channel",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"name":"Merged"}}"#,
    ])
    .await;
    k.ok(&["patch", "channel", "web", "--type=json", "-p", r#"[{"op":"test","path":"/spec/name","value":"Merged"},{"op":"add","path":"/spec/imageUrl","value":"https://x.io/a.png"}]"#]).await;
    let json_out = k.ok(&["get", "channel", "web", "-o", "json"]).await;
    let obj: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(obj["spec"]["name"], "Merged");
    assert_eq!(obj["spec"]["imageUrl"], "https://x.io/a.png");
    // a failing JSON-patch test changes nothing
    let err = k
        .run(&[
            "patch",
            "channel",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/name","value":"nope"}]"#,
        ])
        .await
        .unwrap_err();
    assert!(err.contains("The request is invalid"), "{err}");

    // point 1: a replace with a stale resourceVersion is a conflict
    let mut stale = obj.clone();
    stale["spec"]["name"] = "Stale".into();
    k.ok(&[
        "patch",
        "channel",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"name":"Newer"}}"#,
    ])
    .await;
    let sf = k.file("stale.json", &stale.to_string());
    let err = k.run(&["replace", "-f", &sf]).await.unwrap_err();
    assert!(
        err.contains("Operation cannot be fulfilled on channels.airy.co \"web\": the object has been modified"),
        "{err}"
    );

    // invalid objects are rejected with the fields named
    let bad = k.file(
        "bad.yaml",
        &CHANNEL
            .replace("chat_plugin", "fax")
            .replace("name: web", "name: bad"),
    );
    let err = k.run(&["apply", "-f", &bad]).await.unwrap_err();
    assert!(err.contains("spec.source"), "{err}");
    // unknown fields fail kubectl's default strict validation
    let unknown = k.file(
        "unknown.yaml",
        &format!("{CHANNEL}  foo: 1\n").replace("name: web", "name: unknown"),
    );
    let err = k.run(&["apply", "-f", &unknown]).await.unwrap_err();
    assert!(err.contains("unknown field \"spec.foo\""), "{err}");

    // describe shows the events of the object (fieldSelector on involvedObject)
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let web = channels.get("web").await.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let mut ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "web.1"}, "reason": "Connected", "message": "connected at the provider",
        "type": "Normal", "count": 1, "source": {"component": "channel-operator"},
    }))
    .unwrap();
    ev.involved_object = web.object_ref(&());
    events.create(&PostParams::default(), &ev).await.unwrap();
    let described = k.ok(&["describe", "channel", "web"]).await;
    assert!(
        described.contains("Merged") || described.contains("Newer"),
        "{described}"
    );
    assert!(
        described.contains("connected at the provider"),
        "{described}"
    );

    // built-ins: create namespace, create secret, client-side apply (strategic merge) twice
    k.ok(&["create", "namespace", "team"]).await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "tok",
        "-n",
        "team",
        "--from-literal=page_token=abc",
    ])
    .await;
    let data = k
        .ok(&[
            "get",
            "secret",
            "tok",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.page_token}",
        ])
        .await;
    assert_eq!(data, "YWJj");
    let sec = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cfg\n  namespace: team\nstringData:\n  a: one\n";
    let sf = k.file("secret.yaml", sec);
    k.ok(&["apply", "-f", &sf]).await;
    let sf = k.file("secret.yaml", &format!("{sec}  b: two\n"));
    assert_eq!(
        k.ok(&["apply", "-f", &sf]).await.trim(),
        "secret/cfg configured"
    );
    let b = k
        .ok(&[
            "get",
            "secret",
            "cfg",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.b}",
        ])
        .await;
    assert_eq!(b, "dHdv");
}

#[tokio::test]
async fn kubectl_server_side_apply() {
    let (sb, _client) = sandbox().await;
    let k = Kubectl::new(&sb);
    let f = k.file("channel.yaml", CHANNEL);
    let out = k.ok(&["apply", "--server-side", "-f", &f]).await;
    assert_eq!(out.trim(), "channel.airy.co/web serverside-applied");
    let f2 = k.file("channel2.yaml", &CHANNEL.replace("My site", "Other"));
    k.ok(&["apply", "--server-side", "-f", &f2]).await;
    let name = k
        .ok(&["get", "ch", "web", "-o", "jsonpath={.spec.name}"])
        .await;
    assert_eq!(name, "Other");
    // another manager taking the field conflicts unless forced
    let f3 = k.file("channel3.yaml", &CHANNEL.replace("My site", "Third"));
    let err = k
        .run(&["apply", "--server-side", "--field-manager=other", "-f", &f3])
        .await
        .unwrap_err();
    assert!(err.contains("conflict"), "{err}");
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        &f3,
    ])
    .await;
    let name = k
        .ok(&["get", "ch", "web", "-o", "jsonpath={.spec.name}"])
        .await;
    assert_eq!(name, "Third");
}

#[tokio::test]
async fn kubectl_watch_sees_changes_in_order() {
    let (sb, client) = sandbox().await;
    let k = Kubectl::new(&sb);
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    channels
        .create(&PostParams::default(), &channel("a", "w-a"))
        .await
        .unwrap();
    let mut child = k
        .command(&[
            "get",
            "channels",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = String::new();
        let mut chunk = [0u8; 4096];
        let events = loop {
            let n = stdout.read(&mut chunk).await.unwrap();
            if n == 0 {
                break vec![];
            }
            buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
            let evs: Vec<Value> = serde_json::Deserializer::from_str(&buf)
                .into_iter::<Value>()
                .map_while(Result::ok)
                .collect();
            if evs.len() >= 4 {
                break evs;
            }
        };
        events
    });
    // kubectl lists first (ADDED a), then watches
    tokio::time::sleep(Duration::from_millis(700)).await;
    channels
        .create(&PostParams::default(), &channel("b", "w-b"))
        .await
        .unwrap();
    channels
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"name": "a2"}})),
        )
        .await
        .unwrap();
    channels.delete("b", &Default::default()).await.unwrap();
    let events = tokio::time::timeout(Duration::from_secs(15), reader)
        .await
        .expect("kubectl printed 4 watch events")
        .unwrap();
    let _ = child.kill().await;
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ADDED", "a"),
            ("ADDED", "b"),
            ("MODIFIED", "a"),
            ("DELETED", "b")
        ]
        .map(|(t, n)| (t.to_string(), n.to_string()))
    );
    let rvs: Vec<u64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
}

#[tokio::test]
async fn kubectl_delete_and_wait_with_finalizers_and_conditions() {
    let (sb, _client) = sandbox().await;
    let k = Kubectl::new(&sb);
    let f = k.file(
        "channel.yaml",
        &CHANNEL.replace(
            "metadata:\n",
            "metadata:\n  finalizers: [channels.airy.co/disconnect]\n",
        ),
    );
    k.ok(&["apply", "-f", &f]).await;

    // wait --for=condition=Ready returns once the status says so
    let waiting = k
        .command(&[
            "wait",
            "--for=condition=Ready",
            "channel/web",
            "--timeout=20s",
        ])
        .output();
    let waiter = tokio::spawn(waiting);
    tokio::time::sleep(Duration::from_millis(500)).await;
    k.ok(&["patch", "channel", "web", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Connected","message":"ok","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#]).await;
    let out = waiter.await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));

    // delete with a finalizer: the object stays with a deletionTimestamp
    k.ok(&["delete", "channel", "web", "--wait=false"]).await;
    let ts = k
        .ok(&[
            "get",
            "channel",
            "web",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ])
        .await;
    assert!(!ts.is_empty());
    let waiter = tokio::spawn(
        k.command(&["wait", "--for=delete", "channel/web", "--timeout=20s"])
            .output(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    k.ok(&[
        "patch",
        "channel",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await;
    let out = waiter.await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = k.run(&["get", "channel", "web"]).await.unwrap_err();
    assert!(err.contains("channels.airy.co \"web\" not found"), "{err}");

    // plain delete (kubectl waits for the deletion with a watch)
    let f = k.file("plain.yaml", &CHANNEL.replace("name: web", "name: plain"));
    k.ok(&["apply", "-f", &f]).await;
    let out = k.ok(&["delete", "-f", &f]).await;
    assert_eq!(out.trim(), "channel.airy.co \"plain\" deleted");
    let err = k.run(&["delete", "channel", "plain"]).await.unwrap_err();
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}
