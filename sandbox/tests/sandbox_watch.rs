//! Watches (issue 2, point 6), deletion with finalizers and garbage collection (point 7), and
//! kube-runtime's watcher + reflector through dropped watches and 410 Gone.

mod sandbox_support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use channel_operator::crd::Channel;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::Resource;
use sandbox_support::*;
use serde_json::json;

/// Reads watch events until `n` arrived (or 5 s passed).
async fn take<S, K>(stream: &mut S, n: usize) -> Vec<WatchEvent<K>>
where
    S: futures::Stream<Item = Result<WatchEvent<K>, kube::Error>> + Unpin,
{
    let mut out = vec![];
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(ev)) => out.push(ev.expect("a watch event")),
            Ok(None) => break,
            Err(_) => panic!("only {} of {n} events arrived: {out:?}", out.len()),
        }
    }
    out
}

fn describe(ev: &WatchEvent<Channel>) -> (String, String) {
    match ev {
        WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.clone().unwrap()),
        WatchEvent::Modified(o) => ("MODIFIED".into(), o.metadata.name.clone().unwrap()),
        WatchEvent::Deleted(o) => ("DELETED".into(), o.metadata.name.clone().unwrap()),
        WatchEvent::Bookmark(_) => ("BOOKMARK".into(), String::new()),
        WatchEvent::Error(e) => ("ERROR".into(), e.message.clone()),
    }
}

fn event_rv(ev: &WatchEvent<Channel>) -> u64 {
    match ev {
        WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => rv(&o.metadata),
        WatchEvent::Bookmark(b) => b.metadata.resource_version.parse().unwrap(),
        WatchEvent::Error(_) => 0,
    }
}

#[tokio::test]
async fn watch_sends_every_change_in_order_from_the_given_resource_version() {
    let (sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let a = channels
        .create(&PostParams::default(), &channel("a", "w-a"))
        .await
        .unwrap();
    let from = a.metadata.resource_version.clone().unwrap();
    channels
        .create(&PostParams::default(), &channel("b", "w-b"))
        .await
        .unwrap();
    let wp = WatchParams::default().disable_bookmarks();
    // changes made before the watch starts are replayed from the history
    let mut stream = channels.watch(&wp, &from).await.unwrap().boxed();
    channels
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"name": "a2"}})),
        )
        .await
        .unwrap();
    channels
        .delete("b", &DeleteParams::default())
        .await
        .unwrap();
    // other namespaces' and resources' changes are not in this watch
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap(),
        )
        .await
        .unwrap();
    channels
        .create(&PostParams::default(), &channel("c", "w-c"))
        .await
        .unwrap();
    let evs = take(&mut stream, 4).await;
    let seen: Vec<(String, String)> = evs.iter().map(describe).collect();
    assert_eq!(
        seen,
        [
            ("ADDED", "b"),
            ("MODIFIED", "a"),
            ("DELETED", "b"),
            ("ADDED", "c")
        ]
        .map(|(t, n)| (t.to_string(), n.to_string()))
    );
    let rvs: Vec<u64> = evs.iter().map(event_rv).collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
    assert!(rvs[0] > from.parse::<u64>().unwrap());

    // resourceVersion "0": the current objects first, as ADDED
    let mut stream = channels.watch(&wp, "0").await.unwrap().boxed();
    let seen: Vec<(String, String)> = take(&mut stream, 2).await.iter().map(describe).collect();
    assert_eq!(
        seen,
        [
            ("ADDED".to_string(), "a".to_string()),
            ("ADDED".into(), "c".into())
        ]
    );

    // drop_watches ends open streams
    sb.faults().drop_watches();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn watch_bookmarks_timeout_and_410_for_compacted_history() {
    let (sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let a = channels
        .create(&PostParams::default(), &channel("a", "w-a"))
        .await
        .unwrap();
    let old = a.metadata.resource_version.clone().unwrap();

    // bookmarks carry the current resourceVersion; timeoutSeconds ends the stream
    let started = std::time::Instant::now();
    let wp = WatchParams::default().timeout(2);
    let evs: Vec<WatchEvent<Channel>> = channels
        .watch(&wp, &old)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert!(!evs.is_empty());
    for ev in &evs {
        match ev {
            WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, old),
            other => panic!("only bookmarks expected: {other:?}"),
        }
    }

    // after compaction, a watch from an older resourceVersion gets one ERROR with 410
    channels
        .create(&PostParams::default(), &channel("b", "w-b"))
        .await
        .unwrap();
    sb.faults().compact_history();
    assert_expired(&watch_all(&channels, &old).await, &old);
}

#[tokio::test]
async fn watch_selectors_turn_matching_changes_into_added_and_deleted() {
    let (_sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let label = |name: &str, app: &str| {
        let mut c = channel(name, &format!("w-{name}"));
        c.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        c
    };
    channels
        .create(&PostParams::default(), &label("x1", "x"))
        .await
        .unwrap();
    let wp = WatchParams::default().labels("app=x").disable_bookmarks();
    let mut stream = channels.watch(&wp, "0").await.unwrap().boxed();
    channels
        .create(&PostParams::default(), &label("y1", "y"))
        .await
        .unwrap();
    channels
        .patch(
            "x1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
        )
        .await
        .unwrap();
    channels
        .patch(
            "y1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
        )
        .await
        .unwrap();
    let seen: Vec<(String, String)> = take(&mut stream, 3).await.iter().map(describe).collect();
    assert_eq!(
        seen,
        [("ADDED", "x1"), ("DELETED", "x1"), ("ADDED", "y1")]
            .map(|(t, n)| (t.to_string(), n.to_string()))
    );
    // field selector on the name, as `kubectl wait` uses it
    let wp = WatchParams::default()
        .fields("metadata.name=y1")
        .disable_bookmarks();
    let mut stream = channels.watch(&wp, "0").await.unwrap().boxed();
    let seen: Vec<(String, String)> = take(&mut stream, 1).await.iter().map(describe).collect();
    assert_eq!(seen, [("ADDED".to_string(), "y1".to_string())]);
}

#[tokio::test]
async fn finalizers_delay_deletion_until_they_are_removed() {
    let (_sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let mut c = channel("f", "w-f");
    c.metadata.finalizers = Some(vec!["channels.airy.co/disconnect".into()]);
    let created = channels.create(&PostParams::default(), &c).await.unwrap();
    let wp = WatchParams::default().disable_bookmarks();
    let mut stream = channels
        .watch(&wp, created.metadata.resource_version.as_deref().unwrap())
        .await
        .unwrap()
        .boxed();
    let resp = channels
        .delete("f", &DeleteParams::default())
        .await
        .unwrap();
    let obj = resp
        .left()
        .expect("the object is returned while finalizers remain");
    assert!(obj.metadata.deletion_timestamp.is_some());
    let still = channels.get("f").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    // a second delete changes nothing
    channels
        .delete("f", &DeleteParams::default())
        .await
        .unwrap();
    // no new finalizers while deleting
    let err = status(
        channels
            .patch(
                "f",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"finalizers": ["channels.airy.co/disconnect", "other/x"]}}),
                ),
            )
            .await,
    );
    assert_eq!(err.code, 422);
    let remove: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": ["channels.airy.co/disconnect"]},
        {"op": "replace", "path": "/metadata/finalizers", "value": []},
    ]))
    .unwrap();
    channels
        .patch("f", &PatchParams::default(), &Patch::<()>::Json(remove))
        .await
        .unwrap();
    let evs = take(&mut stream, 2).await;
    let seen: Vec<(String, String)> = evs.iter().map(describe).collect();
    assert_eq!(
        seen,
        [
            ("MODIFIED".to_string(), "f".to_string()),
            ("DELETED".into(), "f".into())
        ]
    );
    if let WatchEvent::Modified(o) = &evs[0] {
        assert!(o.metadata.deletion_timestamp.is_some());
    }
    assert!(channels.get_opt("f").await.unwrap().is_none());
}

fn owned_secret(name: &str, owners: &[&Channel]) -> Secret {
    let refs: Vec<_> = owners
        .iter()
        .map(|o| o.controller_owner_ref(&()).unwrap())
        .collect();
    let mut s: Secret = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    s.metadata.owner_references = Some(refs);
    s
}

#[tokio::test]
async fn dependents_of_deleted_owners_are_garbage_collected() {
    let (_sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let a = channels
        .create(&PostParams::default(), &channel("a", "w-a"))
        .await
        .unwrap();
    let b = channels
        .create(&PostParams::default(), &channel("b", "w-b"))
        .await
        .unwrap();
    let o = channels
        .create(&PostParams::default(), &channel("o", "w-o"))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &owned_secret("only-a", &[&a]))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &owned_secret("a-and-b", &[&a, &b]))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &owned_secret("only-o", &[&o]))
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "user-made"}})).unwrap(),
        )
        .await
        .unwrap();

    channels
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    eventually(5, || async {
        secrets
            .get_opt("only-a")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    // a dependent with a live owner stays, without the dangling reference
    let ab = secrets.get("a-and-b").await.unwrap();
    let refs = ab.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "b");
    // Orphan keeps the dependent and removes the reference
    channels.delete("o", &DeleteParams::orphan()).await.unwrap();
    let orphan = secrets.get("only-o").await.unwrap();
    assert!(orphan
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());
    assert!(secrets.get_opt("user-made").await.unwrap().is_some());
    // a built-in's DELETE answers a Status Success, a custom resource's the object
    let r = secrets
        .delete("user-made", &DeleteParams::default())
        .await
        .unwrap();
    assert!(r.is_right(), "{r:?}");
    let r = channels
        .delete("b", &DeleteParams::default())
        .await
        .unwrap();
    assert!(r.is_left(), "{r:?}");
    eventually(5, || async {
        secrets
            .get_opt("a-and-b")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents() {
    let (_sb, client) = sandbox().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "gone"}})).unwrap(),
    )
    .await
    .unwrap();
    let channels: Api<Channel> = Api::namespaced(client.clone(), "gone");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "gone");
    channels
        .create(&PostParams::default(), &channel("c", "w-c"))
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut held = channel("held", "w-h");
    held.metadata.finalizers = Some(vec!["x/y".into()]);
    channels
        .create(&PostParams::default(), &held)
        .await
        .unwrap();

    nss.delete("gone", &DeleteParams::default()).await.unwrap();
    assert!(secrets.get_opt("s").await.unwrap().is_none());
    assert!(channels.get_opt("c").await.unwrap().is_none());
    // the namespace terminates until the last finalizer is gone; no new content meanwhile
    let ns = nss.get("gone").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let err = status(
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "new"}})).unwrap(),
            )
            .await,
    );
    assert_eq!(err.code, 403);
    channels
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(nss.get_opt("gone").await.unwrap().is_none());
}

#[tokio::test]
async fn reflector_survives_dropped_watches_and_410_without_losing_or_duplicating() {
    let (sb, client) = sandbox().await;
    let faults = sb.faults();
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let reflected = Reflected::start(&channels);
    let (reader, inits) = (reflected.reader.clone(), reflected.inits.clone());
    // the store equals the server's list: same names, same resourceVersions, no duplicates
    let converged = || {
        let reader = reader.clone();
        let channels = channels.clone();
        async move {
            let server: BTreeSet<(String, String)> = channels
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| {
                    (
                        c.metadata.name.unwrap(),
                        c.metadata.resource_version.unwrap(),
                    )
                })
                .collect();
            let state = reader.state();
            let local: BTreeSet<(String, String)> = state
                .iter()
                .map(|c| {
                    (
                        c.metadata.name.clone().unwrap(),
                        c.metadata.resource_version.clone().unwrap(),
                    )
                })
                .collect();
            (state.len() == server.len() && local == server).then_some(server.len())
        }
    };
    for i in 0..5 {
        channels
            .create(
                &PostParams::default(),
                &channel(&format!("c{i}"), &format!("w{i}")),
            )
            .await
            .unwrap();
    }
    assert_eq!(eventually(10, converged).await, 5);
    assert_eq!(inits.load(Ordering::SeqCst), 1);

    // a dropped watch: the watcher re-watches from its last resourceVersion
    faults.drop_watches();
    for i in 5..8 {
        channels
            .create(
                &PostParams::default(),
                &channel(&format!("c{i}"), &format!("w{i}")),
            )
            .await
            .unwrap();
    }
    channels
        .delete("c0", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(eventually(10, converged).await, 7);

    // a 410: the re-watch is held while changes happen and the history is compacted
    faults.hold_next("watch", "channels", 1, Duration::from_millis(500));
    faults.drop_watches();
    tokio::time::sleep(Duration::from_millis(100)).await;
    channels
        .delete("c1", &DeleteParams::default())
        .await
        .unwrap();
    channels
        .patch(
            "c2",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"name": "changed"}})),
        )
        .await
        .unwrap();
    channels
        .create(&PostParams::default(), &channel("c8", "w8"))
        .await
        .unwrap();
    faults.compact_history();
    assert_eq!(eventually(10, converged).await, 7);
    assert!(
        inits.load(Ordering::SeqCst) >= 2,
        "the watcher re-listed after the 410"
    );
    let c2 = reader
        .state()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("c2"))
        .unwrap();
    assert_eq!(c2.spec.name.as_deref(), Some("changed"));
}
