//! A network partition of one client: its requests and watch events are held while the process
//! stays alive and every other client is served; a request it gave up on is never applied, one
//! still waiting at the heal is applied late.

mod sandbox_support;

use std::time::Duration;

use channel_operator::crd::Channel;
use futures::StreamExt;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube_sandbox::Sandbox;
use sandbox_support::*;

#[tokio::test]
async fn a_partitioned_client_hangs_while_others_are_served() {
    let (sb, admin) = sandbox().await;
    let faults = sb.faults();
    let cut_client = sb.client_as("replica-a", &["system:masters"]);
    let cut: Api<Channel> = Api::namespaced(cut_client, "default");
    let other: Api<Channel> = Api::namespaced(admin, "default");
    cut.create(&PostParams::default(), &channel("before", "s-before"))
        .await
        .expect("served before the partition");
    let mut watch = cut
        .watch(&WatchParams::default().disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Added(c)))) => {
            assert_eq!(c.metadata.name.as_deref(), Some("before"))
        }
        other => panic!("expected the ADDED of before, got {other:?}"),
    }

    faults.partition("replica-a");
    // A request of the partitioned client hangs; the client gives up: never applied.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(500),
        cut.create(&PostParams::default(), &channel("abandoned", "s-ab")),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "answered during the partition: {gave_up:?}"
    );
    // Another client is served, and its change is not seen by the partitioned watch.
    other
        .create(&PostParams::default(), &channel("other", "s-other"))
        .await
        .expect("other clients are served");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), watch.next())
            .await
            .is_err(),
        "a partitioned watch got an event"
    );
    // A request still waiting at the heal is applied then.
    let late = tokio::spawn({
        let cut = cut.clone();
        async move {
            cut.create(&PostParams::default(), &channel("late", "s-late"))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!late.is_finished(), "answered during the partition");
    assert!(other.get_opt("late").await.unwrap().is_none());
    let writes_before_heal = faults.writes_by("replica-a").len();
    faults.heal("replica-a");
    late.await.unwrap().expect("applied at the heal");
    match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Added(c)))) => {
            assert_eq!(c.metadata.name.as_deref(), Some("other"))
        }
        other => panic!("the held event should arrive after the heal, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        other.get_opt("abandoned").await.unwrap().is_none(),
        "a request the client gave up on was applied"
    );
    let writes: Vec<String> = faults
        .writes_by("replica-a")
        .into_iter()
        .map(|(_, w)| w)
        .collect();
    assert_eq!(writes_before_heal, 1, "{writes:?}");
    assert_eq!(writes, ["create channels", "create channels"]);
    // The admin's writes (the CRD, "other") are its own.
    let admin: Vec<String> = faults
        .writes_by("kubernetes-admin")
        .into_iter()
        .map(|(_, w)| w)
        .collect();
    assert_eq!(
        admin,
        ["create customresourcedefinitions", "create channels"]
    );
}

#[tokio::test]
async fn a_kubeconfig_as_a_user_authenticates_as_that_user() {
    let sb = Sandbox::start(0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    sb.write_kubeconfig_as(&path, "replica-b", &["system:masters"])
        .unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&path).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let mut n = k8s_openapi::api::core::v1::Namespace::default();
    n.metadata.name = Some("made-by-b".into());
    ns.create(&PostParams::default(), &n).await.unwrap();
    let writes = sb.faults().writes_by("replica-b");
    assert_eq!(writes.len(), 1, "{writes:?}");
}
