//! The faults a real kube-apiserver inflicts: a small watch window (410 Gone for watches that
//! resume from too far back or fall behind), restarts that cut every connection, and slow lists.

mod sandbox_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use channel_operator::crd::Channel;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use reqwest::Method;
use sandbox_support::*;
use serde_json::{json, Value};

async fn create_channels(channels: &Api<Channel>, names: impl IntoIterator<Item = String>) {
    for name in names {
        channels
            .create(
                &PostParams::default(),
                &channel(&name, &format!("src-{name}")),
            )
            .await
            .expect("the Channel is created");
    }
}

/// The resourceVersion of a Channel now.
async fn rv_of(channels: &Api<Channel>, name: &str) -> String {
    let c = channels.get(name).await.expect("the Channel exists");
    c.metadata.resource_version.expect("a resourceVersion")
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn a_watch_from_before_the_window_gets_410_and_one_inside_replays_the_changes() {
    let (sb, client) = sandbox().await;
    sb.faults().set_watch_window("channels", 3);
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    create_channels(&channels, names("a", 0..1)).await;
    let from = rv_of(&channels, "a0").await;
    create_channels(&channels, names("a", 1..3)).await;
    let inside = rv_of(&channels, "a2").await;
    create_channels(&channels, names("a", 3..6)).await;
    // the window is per resource: changes of other resources do not push Channels out of it
    for i in 0..10 {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}})).unwrap(),
            )
            .await
            .unwrap();
    }

    // a0..a5 are six events: a resume from a0 misses a1 and a2, which left the window
    assert_expired(&watch_all(&channels, &from).await, &from);

    // from a2, the three changes since are all in the window
    let mut stream = channels
        .watch(&WatchParams::default().disable_bookmarks(), &inside)
        .await
        .unwrap()
        .boxed();
    let mut added = vec![];
    while added.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(Ok(WatchEvent::Added(c)))) => added.push(c.metadata.name.unwrap()),
            other => panic!("expected ADDED events, got {other:?}"),
        }
    }
    assert_eq!(added, names("a", 3..6));
}

#[tokio::test]
async fn a_watcher_resuming_from_before_the_window_relists_and_misses_nothing() {
    let (sb, client) = sandbox().await;
    let faults = sb.faults();
    faults.set_watch_window("channels", 3);
    let channels: Api<Channel> = Api::namespaced(client, "default");
    create_channels(&channels, names("c", 0..1)).await;
    let reflected = Reflected::start(&channels);
    reflected
        .converges_to(&names("c", 0..1).into_iter().collect())
        .await;

    // the watch ends and its resume is held while six Channels are created: the resume is
    // from before the window
    faults.hold_next("watch", "channels", 1, Duration::from_millis(1500));
    faults.drop_watches();
    create_channels(&channels, names("c", 1..7)).await;
    reflected
        .relists_to(&names("c", 0..7).into_iter().collect())
        .await;
    assert!(
        reflected.gone.load(Ordering::SeqCst) >= 1,
        "the watcher saw a 410"
    );
}

#[tokio::test]
async fn a_watch_client_that_falls_behind_the_window_is_cut_off_with_410() {
    let (sb, client) = sandbox().await;
    sb.faults().set_watch_window("secrets", 10);
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let from = secrets
        .list_metadata(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    // a client that opens a watch and does not read it
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/namespaces/default/secrets?watch=true&resourceVersion={from}",
            sb.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // far more than socket buffers hold: 300 Secrets of 64 KiB
    let payload = "x".repeat(64 * 1024);
    let total = 300;
    for i in 0..total {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": format!("big{i}")},
                    "stringData": {"blob": payload},
                }))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    // now it reads: what was queued, then the 410, then the end of the stream
    let body = tokio::time::timeout(Duration::from_secs(30), resp.text())
        .await
        .expect("the watch ends")
        .expect("the body reads");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON watch event"))
        .collect();
    let (last, events) = lines.split_last().expect("some watch events");
    assert_eq!(last["type"], "ERROR", "{}", last["type"]);
    assert_eq!(last["object"]["code"], 410);
    assert_eq!(last["object"]["reason"], "Expired");
    assert!(events.iter().all(|e| e["type"] == "ADDED"));
    assert!(
        events.len() < total,
        "a client that read nothing got all {} events",
        events.len()
    );
}

#[tokio::test]
async fn a_restart_cuts_watches_refuses_connections_and_comes_back_with_every_resume_410() {
    let (sb, client) = sandbox().await;
    let faults = sb.faults();
    let channels: Api<Channel> = Api::namespaced(client, "default");
    create_channels(&channels, names("r", 0..2)).await;
    let before = channels.get("r0").await.unwrap();
    let from = before.metadata.resource_version.clone().unwrap();
    let reflected = Reflected::start(&channels);
    reflected
        .converges_to(&names("r", 0..2).into_iter().collect())
        .await;
    let mut watch = channels
        .watch(&WatchParams::default().disable_bookmarks(), &from)
        .await
        .unwrap()
        .boxed();
    // r1's ADDED (it came after r0)
    match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Added(c)))) => assert_eq!(c.metadata.name.as_deref(), Some("r1")),
        other => panic!("expected r1's ADDED, got {other:?}"),
    }

    let restart = tokio::spawn({
        let faults = faults.clone();
        async move { faults.restart(Duration::from_secs(3)).await }
    });
    // the running watch is cut (an error or the end of the stream, no further event)
    match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
        Ok(None | Some(Err(_))) => {}
        other => panic!("the watch should have been cut, got {other:?}"),
    }
    // while down, connections are refused
    let refused = eventually(2, || async {
        match tokio::net::TcpStream::connect(sb.addr()).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    });
    refused.await;
    assert!(
        channels.get("r0").await.is_err(),
        "a request while down fails"
    );
    restart.await.unwrap();

    // served again, on the same address, objects intact
    let after = channels.get("r0").await.unwrap();
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    // a resume from before the restart gets 410, however recent
    let latest = rv_of(&channels, "r1").await;
    assert_expired(&watch_all(&channels, &latest).await, &latest);
    // the watcher re-lists and follows new changes
    create_channels(&channels, names("r", 2..3)).await;
    reflected
        .relists_to(&names("r", 0..3).into_iter().collect())
        .await;
}

#[tokio::test]
async fn slow_lists_answer_every_page_after_the_delay() {
    let (sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client, "default");
    create_channels(&channels, names("p", 0..3)).await;
    let delay = Duration::from_millis(400);
    sb.faults().slow_lists("channels", delay);
    let started = tokio::time::Instant::now();
    let mut pages = 0;
    let mut seen = vec![];
    let mut lp = ListParams::default().limit(1);
    loop {
        let page = channels.list(&lp).await.unwrap();
        pages += 1;
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(seen, names("p", 0..3));
    assert_eq!(pages, 3);
    assert!(started.elapsed() >= delay * 3, "{:?}", started.elapsed());
}

#[tokio::test]
async fn faults_fail_hold_and_clear() {
    let (sb, client) = sandbox().await;
    let faults = sb.faults();
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client, "default");

    faults.fail_next("create", "channels", 2, 500);
    for _ in 0..2 {
        let err = status(
            channels
                .create(&PostParams::default(), &channel("f", "web-f"))
                .await,
        );
        assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    }
    // a failed write writes nothing; other verbs and resources were not affected
    assert!(channels.get_opt("f").await.unwrap().is_none());
    secrets
        .create(&PostParams::default(), &secret("s", json!({})))
        .await
        .unwrap();
    channels
        .create(&PostParams::default(), &channel("f", "web-f"))
        .await
        .unwrap();

    faults.fail_next("*", "*", 1, 409);
    let err = status(secrets.get("s").await);
    assert_eq!(err.code, 409);
    secrets.get("s").await.unwrap();
    // kube::Client retries 503 by itself: one injected 503 is invisible to the caller
    faults.fail_next("get", "secrets", 1, 503);
    secrets.get("s").await.unwrap();
    let (code, body, headers) = raw(
        &sb,
        Method::GET,
        "/api/v1/namespaces/default/secrets/s",
        None,
        None,
    )
    .await;
    assert_eq!(
        code, 200,
        "the 503 was consumed by the client's retry: {body}"
    );
    assert!(headers.get("retry-after").is_none());

    faults.hold_next("get", "secrets", 1, Duration::from_millis(400));
    let t = Instant::now();
    secrets.get("s").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(400));
    let t = Instant::now();
    secrets.get("s").await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(400));

    faults.fail_next("delete", "channels", 1, 409);
    faults.clear();
    channels
        .delete("f", &DeleteParams::default())
        .await
        .unwrap();
    assert!(channels.get_opt("f").await.unwrap().is_none());
}

#[tokio::test]
async fn the_audit_log_records_who_requested_what_once_started() {
    let (sb, client) = sandbox().await;
    let faults = sb.faults();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(&PostParams::default(), &secret("before", json!({})))
        .await
        .unwrap();
    assert!(faults.audit().is_empty(), "recorded before it was started");
    faults.start_audit();
    secrets.get("before").await.unwrap();
    Api::<Secret>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    let lines: Vec<String> = faults
        .audit()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {}/{}",
                e.user, e.verb, e.resource, e.namespace, e.name
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            "kubernetes-admin get secrets default/before",
            "kubernetes-admin list secrets /",
        ]
    );
}
