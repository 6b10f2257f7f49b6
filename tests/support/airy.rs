//! A fake running Airy Core for `channel-operator migrate`: `POST /channels.list` answering the
//! list shape of a release, behind its bearer token (403 for a wrong one, 401 for none, as Airy
//! Core's token filter does), and the `migrate` command run as a process against it.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{json, Value};

use super::env::Running;

/// The token the fake Airy Core accepts.
pub const AIRY_TOKEN: &str = "airy-system-token-do-not-leak-0003";

/// One channel in the shape of an Airy Core release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Up to 0.8: flat `name` and `image_url`, connected channels only.
    Flat,
    /// 0.9: `metadata`, no `connected`.
    Metadata,
    /// 0.10 and later: `metadata` and `connected` (0.37 and later: page tokens in `metadata`).
    Connected,
}

/// A channel of Airy Core's list: `metadata` holds name, image_url and whatever the release adds.
pub fn listed(release: Release, id: &str, source: &str, scid: &str, metadata: Value) -> Value {
    let mut ch = json!({"id": id, "source": source, "source_channel_id": scid});
    match release {
        Release::Flat => {
            for key in ["name", "image_url"] {
                if let Some(v) = metadata.get(key) {
                    ch[key] = v.clone();
                }
            }
        }
        Release::Metadata => ch["metadata"] = metadata,
        Release::Connected => {
            ch["metadata"] = metadata;
            ch["connected"] = json!(true);
        }
    }
    ch
}

/// A channel of Airy Core's list with a name and nothing else in its metadata.
pub fn named(release: Release, id: &str, source: &str, scid: &str, name: &str) -> Value {
    listed(release, id, source, scid, json!({ "name": name }))
}

/// The fake Airy Core: its URL, the list it answers (changeable), and how many requests it got.
pub struct FakeAiry {
    pub url: String,
    pub list: Arc<Mutex<Value>>,
    pub requests: Arc<AtomicUsize>,
    _server: Running,
}

/// Starts a fake Airy Core answering `{"data": channels}` to [`AIRY_TOKEN`].
pub async fn fake_airy(channels: Vec<Value>) -> FakeAiry {
    let list = Arc::new(Mutex::new(json!({ "data": channels })));
    let requests = Arc::new(AtomicUsize::new(0));
    let (l, r) = (list.clone(), requests.clone());
    let app = axum::Router::new().route(
        "/channels.list",
        post(move |headers: HeaderMap, body: String| {
            let (l, r) = (l.clone(), r.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                assert!(
                    serde_json::from_str::<Value>(&body).is_ok_and(|b| b.is_object()),
                    "channels.list gets a JSON object: {body}"
                );
                match auth.as_deref() {
                    None => (StatusCode::UNAUTHORIZED, String::new()),
                    Some(a) if a == format!("Bearer {AIRY_TOKEN}") => {
                        (StatusCode::OK, l.lock().unwrap().to_string())
                    }
                    Some(_) => (StatusCode::FORBIDDEN, String::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = Running(tokio::spawn(async move {
        axum::serve(listener, app).await?;
        Ok(())
    }));
    FakeAiry {
        url,
        list,
        requests,
        _server: server,
    }
}

impl FakeAiry {
    /// Replaces the channels the list answers.
    pub fn set(&self, channels: Vec<Value>) {
        *self.list.lock().unwrap() = json!({ "data": channels });
    }
}

/// What a `migrate` process did.
#[derive(Debug)]
pub struct Migrated {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Migrated {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `channel-operator migrate <args>` with `kubeconfig` (when given) as its cluster, and
/// `vars` in its environment (none of the caller's AIRY_TOKEN, CHATPLUGIN_NAMING, KUBECONFIG).
pub async fn migrate(kubeconfig: Option<&Path>, args: &[&str], vars: &[(&str, &str)]) -> Migrated {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_channel-operator"));
    cmd.arg("migrate")
        .args(args)
        .env_remove("AIRY_TOKEN")
        .env_remove("CHATPLUGIN_NAMING")
        .env_remove("KUBECONFIG")
        .env_remove("STATE_NAMESPACE")
        .env("LOG_LEVEL", "warn")
        .envs(vars.iter().copied())
        .kill_on_drop(true);
    match kubeconfig {
        Some(k) => cmd.env("KUBECONFIG", k),
        // No cluster: a kubeconfig that does not exist.
        None => cmd.env("KUBECONFIG", "/nonexistent/kubeconfig"),
    };
    let out = cmd.output().await.expect("migrate runs");
    Migrated {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `channels.list` answer reduced to what must be equal between Airy Core and the API: id,
/// source, source channel id, name, image and connected state, sorted by id.
pub fn comparable(list: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = list["data"]
        .as_array()
        .expect("a channel list")
        .iter()
        .map(|c| {
            let name = c["metadata"]["name"].clone();
            let image = c["metadata"]
                .get("image_url")
                .cloned()
                .unwrap_or(Value::Null);
            json!({
                "id": c["id"], "source": c["source"], "source_channel_id": c["source_channel_id"],
                "name": name, "image_url": image, "connected": c["connected"],
            })
        })
        .collect();
    out.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    out
}
