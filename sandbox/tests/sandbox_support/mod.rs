//! Shared helpers of the sandbox tests.
#![allow(dead_code)]

use channel_operator::crd::Channel;
use kube::core::Status;
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
