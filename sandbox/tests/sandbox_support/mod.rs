//! Shared helpers of the sandbox tests.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use channel_operator::crd::Channel;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, WatchEvent, WatchParams};
use kube::core::Status;
use kube::runtime::{reflector, watcher};
use kube::CustomResourceExt;
use kube_sandbox::Sandbox;
use serde_json::{json, Value};

pub async fn sandbox() -> (Sandbox, kube::Client) {
    let sb = Sandbox::start(0).await.expect("sandbox starts");
    sb.install_crd(&Channel::crd()).await.expect("CRD installs");
    let client = sb.client();
    (sb, client)
}

pub fn channel(name: &str, source_id: &str) -> Channel {
    serde_json::from_value(json!({
        "apiVersion": "airy.co/v1alpha1", "kind": "Channel",
        "metadata": {"name": name},
        "spec": {"source": "chat_plugin", "sourceChannelId": source_id, "name": format!("site {name}")},
    }))
    .expect("a valid Channel")
}

/// A Secret with these labels and one key.
pub fn secret(name: &str, labels: Value) -> k8s_openapi::api::core::v1::Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "stringData": {"k": "v"},
    }))
    .expect("a valid Secret")
}

/// The Status of a failed kube call (panics on success or a non-API error).
pub fn status<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub fn rv(meta: &kube::core::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .expect("resourceVersion set")
        .parse()
        .expect("numeric resourceVersion")
}

/// A raw HTTP request: (status code, JSON body, headers).
pub async fn raw(
    sb: &Sandbox,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: Option<String>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", sb.url()));
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request sent");
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body read");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (code, v, headers)
}

/// Asserts that a body is a metav1.Status failure with this code and reason.
pub fn assert_status(body: &Value, code: u16, reason: &str) {
    assert_eq!(body["kind"], "Status", "not a Status: {body}");
    assert_eq!(body["apiVersion"], "v1", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {secs}s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The events of a watch that ends by itself (the sandbox closes it after its ERROR line).
pub async fn watch_all(channels: &Api<Channel>, from: &str) -> Vec<WatchEvent<Channel>> {
    let stream = channels
        .watch(&WatchParams::default().disable_bookmarks(), from)
        .await
        .expect("the watch starts");
    tokio::time::timeout(Duration::from_secs(10), stream.try_collect())
        .await
        .expect("the watch ends")
        .expect("watch events")
}

pub fn assert_expired(evs: &[WatchEvent<Channel>], from: &str) {
    assert_eq!(evs.len(), 1, "{evs:?}");
    match &evs[0] {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410, "{e:?}");
            assert_eq!(e.reason, "Expired", "{e:?}");
            assert!(
                e.message
                    .starts_with(&format!("too old resource version: {from} (")),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 410 ERROR, got {other:?}"),
    }
}

/// A reflector over the Channels of "default"; counts the re-lists and the 410s it saw.
pub struct Reflected {
    pub reader: reflector::Store<Channel>,
    pub inits: Arc<AtomicUsize>,
    pub gone: Arc<AtomicUsize>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Reflected {
    pub fn start(channels: &Api<Channel>) -> Reflected {
        let (reader, writer) = reflector::store::<Channel>();
        let (inits, gone) = (Arc::default(), Arc::default());
        let (i, g): (Arc<AtomicUsize>, Arc<AtomicUsize>) =
            (Clone::clone(&inits), Clone::clone(&gone));
        let stream = reflector(
            writer,
            watcher(channels.clone(), watcher::Config::default()),
        );
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Init) => {
                        i.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(watcher::Error::WatchError(s)) if s.code == 410 => {
                        g.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    _ => {}
                }
            }
        });
        Reflected {
            reader,
            inits,
            gone,
            task,
        }
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.reader
            .state()
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect()
    }

    /// Waits until the local copy holds exactly `want`, then checks it re-listed on the way.
    pub async fn relists_to(&self, want: &BTreeSet<String>) {
        self.converges_to(want).await;
        assert!(
            self.inits.load(Ordering::SeqCst) >= 2,
            "the watcher re-listed"
        );
    }

    /// Waits until the local copy holds exactly `want`.
    pub async fn converges_to(&self, want: &BTreeSet<String>) {
        eventually(20, || async { (self.names() == *want).then_some(()) }).await;
    }
}

impl Drop for Reflected {
    fn drop(&mut self) {
        self.task.abort();
    }
}
