//! The channels API through an apiserver outage: its cache catches up within seconds of the
//! apiserver's return, writes answer 503 at once while it cannot follow the cluster, reads come
//! from the cache until it is too old, and the watch's health and staleness are metrics.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// GET on the API's port: status and body text.
async fn get(env: &Env, path: &str) -> (u16, String) {
    let resp = env
        .http
        .get(format!("{}{path}", env.base))
        .send()
        .await
        .expect("the API answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// `channel_operator_api_watch_healthy` of the default namespace's watch.
async fn watch_healthy(env: &Env) -> Option<f64> {
    api_metric(
        env,
        "channel_operator_api_watch_healthy{watch_namespace=\"default\"}",
    )
    .await
}

async fn watch_restarts(env: &Env) -> Option<f64> {
    api_metric(
        env,
        "channel_operator_api_watch_restarts_total{watch_namespace=\"default\"}",
    )
    .await
}

async fn stale_seconds(env: &Env) -> Option<f64> {
    api_metric(env, "channel_operator_api_cache_stale_seconds").await
}

async fn connect(env: &Env, name: &str) -> u16 {
    env.post("channels.chatplugin.connect", json!({ "name": name }))
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_is_answered_within_10s_of_the_apiservers_return() {
    let env = Env::builder().api(&[]).build().await;
    assert_eq!(connect(&env, "site-before").await, 200);
    env.sb.faults().restart(Duration::from_secs(30)).await;
    let back = Instant::now();
    // A client retrying from the apiserver's return, as a UI would.
    eventually_ok(
        Duration::from_secs(10),
        "a connect answered 200 within 10 s of the apiserver's return",
        || async {
            match env
                .post("channels.chatplugin.connect", json!({"name": "site-after"}))
                .await
            {
                (200, _) if back.elapsed() <= Duration::from_secs(10) => Ok(()),
                answer => Err(format!("{:?} after the return: {answer:?}", back.elapsed())),
            }
        },
    )
    .await;
    eprintln!(
        "connect answered 200 {:?} after the apiserver's return",
        back.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_outage_reads_come_from_the_cache_writes_answer_503_at_once_and_staleness_shows()
{
    let env = Env::builder()
        .api(&["--cache-stale-seconds", "5"])
        .build()
        .await;
    assert_eq!(connect(&env, "site-before").await, 200);
    assert_eq!(watch_healthy(&env).await, Some(1.0));
    let restarts_before = watch_restarts(&env).await.unwrap_or(0.0);
    let faults = env.sb.faults();
    let outage = tokio::spawn(async move { faults.restart(Duration::from_secs(12)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Within the stale limit: reads from the cache, writes refused at once, still ready.
    let (status, body) = env.post("channels.list", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("site-before"), "{body}");
    let asked = Instant::now();
    let (status, body) = env
        .post(
            "channels.chatplugin.connect",
            json!({"name": "site-during"}),
        )
        .await;
    assert!(
        status == 503 && asked.elapsed() < Duration::from_secs(1),
        "a connect during the outage answered {status} {body} after {:?}",
        asked.elapsed()
    );
    assert_eq!(get(&env, "/readyz").await.0, 200);
    assert_eq!(watch_healthy(&env).await, Some(0.0));
    let stale = stale_seconds(&env).await.unwrap();
    assert!(stale > 1.0, "stale for {stale} s");

    // Past the stale limit: not ready, and reads are refused rather than served that old.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(get(&env, "/readyz").await.0, 503);
    assert_eq!(env.post("channels.list", json!({})).await.0, 503);
    assert!(stale_seconds(&env).await.unwrap() >= 5.0);

    outage.await.unwrap();
    eventually_within(
        Duration::from_secs(6),
        "ready within 6 s of the apiserver's return",
        || async { get(&env, "/readyz").await.0 == 200 },
    )
    .await;
    assert_eq!(stale_seconds(&env).await, Some(0.0));
    assert_eq!(watch_healthy(&env).await, Some(1.0));
    let restarts = watch_restarts(&env).await.unwrap();
    assert!(
        restarts > restarts_before,
        "restarts {restarts_before} → {restarts}"
    );
    assert_eq!(connect(&env, "site-after").await, 200);
}
