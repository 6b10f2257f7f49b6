//! Sandbox benchmark: `cargo bench --bench sandbox`. Prints
//! 1. objects created per second through the HTTP API (concurrent kube clients),
//! 2. resident memory (VmRSS delta) of the sandbox holding 100,000 small Channels,
//! 3. time for 10 concurrent watchers to each see 10,000 writes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use channel_operator::crd::Channel;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::CustomResourceExt;
use kube_sandbox::Sandbox;
use serde_json::json;

const CLIENTS: usize = 8;
const WATCHERS: usize = 10;

/// `cargo bench` passes `--bench`; `cargo test --all-targets` (CI) runs this binary without
/// it, and then a small smoke run is enough.
fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Objects for the memory figure (SANDBOX_BENCH_OBJECTS overrides for a quick run).
fn objects() -> usize {
    std::env::var("SANDBOX_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full_run() { 100_000 } else { 300 })
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn small_channel(i: usize) -> Channel {
    serde_json::from_value(json!({
        "apiVersion": "airy.co/v1alpha1", "kind": "Channel",
        "metadata": {"name": format!("c-{i}"), "labels": {"bench": "yes"}},
        "spec": {"source": "chat_plugin", "sourceChannelId": format!("site-{i}")},
    }))
    .expect("a valid Channel")
}

/// Creates `count` objects with `CLIENTS` concurrent tasks; returns the elapsed time.
async fn create_all<F>(count: usize, make: F) -> Duration
where
    F: Fn(usize) -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let make = make.clone();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    make(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("creator task");
    }
    start.elapsed()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    #[allow(non_snake_case)]
    let OBJECTS = objects();
    #[allow(non_snake_case)]
    let WRITES: usize = if full_run() { 10_000 } else { 300 };
    let before = rss_kib();
    let sb = Sandbox::start(0).await?;
    sb.install_crd(&Channel::crd()).await?;
    let client = sb.client();

    // 1 + 2: create 100,000 small Channels (schema validation, defaulting, field ownership)
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let api = channels.clone();
    let elapsed = create_all(OBJECTS, move |i| {
        let api = api.clone();
        Box::pin(async move {
            api.create(&PostParams::default(), &small_channel(i))
                .await
                .expect("create");
        })
    })
    .await;
    let after = rss_kib();
    println!(
        "create: {OBJECTS} Channels through the HTTP API with {CLIENTS} concurrent clients in {:.1} s = {:.0} objects/s",
        elapsed.as_secs_f64(),
        OBJECTS as f64 / elapsed.as_secs_f64()
    );
    println!(
        "memory: VmRSS {} MiB before the sandbox, {} MiB holding {OBJECTS} Channels: +{} MiB ({} bytes per object)",
        before / 1024,
        after / 1024,
        (after - before) / 1024,
        (after - before) * 1024 / OBJECTS as u64
    );
    let list = channels
        .list(&kube::api::ListParams::default().limit(1))
        .await?;
    let total_rv: u64 = list.metadata.resource_version.unwrap_or_default().parse()?;
    assert!(total_rv as usize >= OBJECTS);

    // 3: 10 watchers, 10,000 writes
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    // This figure is the fan-out rate, so the watch window holds the whole burst (with the
    // default window a watcher that falls 100 events behind is cut off with a 410, as by
    // kube-apiserver; sandbox_faults tests that).
    sb.faults().set_watch_window("secrets", WRITES);
    let from = total_rv.to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    let mut watchers = vec![];
    for _ in 0..WATCHERS {
        let stream = secrets
            .watch(&WatchParams::default().disable_bookmarks(), &from)
            .await?;
        let seen = seen.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut mine = 0;
            let mut last = 0u64;
            while mine < WRITES {
                match stream.next().await {
                    Some(Ok(WatchEvent::Added(s))) => {
                        let rv: u64 = s.metadata.resource_version.unwrap().parse().unwrap();
                        assert!(rv > last, "events out of order");
                        last = rv;
                        mine += 1;
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(_)) => {}
                    other => panic!("watch ended early after {mine} events: {other:?}"),
                }
            }
        }));
    }
    let start = Instant::now();
    let api = secrets.clone();
    let write_time = create_all(WRITES, move |i| {
        let api = api.clone();
        Box::pin(async move {
            let s: Secret = serde_json::from_value(json!({
                "metadata": {"name": format!("s-{i}")}, "data": {"k": "dmFsdWU="},
            }))
            .expect("a Secret");
            api.create(&PostParams::default(), &s)
                .await
                .expect("create");
        })
    })
    .await;
    for w in watchers {
        w.await.expect("watcher");
    }
    let all_seen = start.elapsed();
    assert_eq!(seen.load(Ordering::Relaxed), WATCHERS * WRITES);
    println!(
        "watch: {WATCHERS} concurrent watchers each saw all {WRITES} writes, in order, {:.2} s after the first write (writes took {:.2} s)",
        all_seen.as_secs_f64(),
        write_time.as_secs_f64()
    );
    sb.shutdown().await;
    Ok(())
}
