//! Leader election (on, as by default and in the chart) against an apiserver that restarts, is
//! down when the controller starts, or is cut off from the leader by a network partition. The
//! controllers are the real binary as child processes, each authenticating as its own user so
//! the sandbox can partition one of them.
//!
//! The waits here are the assertions (an answer within 10 s of the apiserver's return, a
//! hand-over within the lease duration), so each names its own (`eventually_within`).

mod support;

use std::time::{Duration, Instant};

use channel_operator::controller;
use channel_operator::crd::{Channel, Source};
use kube::api::{Api, ListParams, PostParams};
use support::replica;
use support::*;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

/// These tests time lease hand-overs: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A sandbox and the provider fakes; the replicas are started by each test.
async fn cluster() -> (tokio::sync::MutexGuard<'static, ()>, Env) {
    let turn = ONE_AT_A_TIME.lock().await;
    (turn, Env::builder().no_controller().build().await)
}

fn default_channels(env: &Env) -> Api<Channel> {
    Api::namespaced(env.sb.client(), "default")
}

/// A chat plugin Channel named `name`.
fn chat_plugin(name: &str) -> Channel {
    channel(Source::ChatPlugin, name).named(name).build()
}

/// A create that rides out an apiserver outage, like a user's `kubectl apply` retried.
async fn create(api: &Api<Channel>, ch: &Channel) {
    create_retrying(api, ch, TIMEOUT * 2).await
}

/// Waits at most `within` (the assertion is about that time) until every Channel of `names` is
/// Ready/Connected; fails naming `why` and those that are not.
async fn all_ready(env: &Env, names: &[String], within: Duration, why: &str) {
    let api = default_channels(env);
    eventually_ok(within, why, || async {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| {
                !list.items.iter().any(|c| {
                    c.metadata.name.as_ref() == Some(n)
                        && c.ready_condition()
                            .is_some_and(|r| r.status == "True" && r.reason == "Connected")
                })
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("not Ready/Connected: {missing:?}"))
        }
    })
    .await
}

/// The Lease's spec now.
async fn lease(env: &Env) -> k8s_openapi::api::coordination::v1::LeaseSpec {
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(env.sb.client(), "default")
        .get(replica::LEASE)
        .await
        .unwrap()
        .spec
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20s_apiserver_restart_leaves_the_leader_running_and_reconciling() {
    let (_turn, env) = cluster().await;
    let mut a = env.replica("replica-a", &[]);
    env.wait_holder("replica-a", TIMEOUT).await;
    create(&default_channels(&env), &chat_plugin("before")).await;
    all_ready(&env, &["before".into()], TIMEOUT, "before the restart").await;
    let held = lease(&env).await;

    let faults = env.sb.faults();
    let restart = tokio::spawn(async move { faults.restart(Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A change made during the outage (a create retried until the apiserver answers).
    let api = default_channels(&env);
    let change = tokio::spawn(async move { create(&api, &chat_plugin("during")).await });
    restart.await.unwrap();
    let back = Instant::now();
    assert_running(&mut a, "during a 20 s apiserver restart");
    change.await.unwrap();
    all_ready(
        &env,
        &["during".into()],
        Duration::from_secs(10).saturating_sub(back.elapsed()),
        "a change made during the restart reconciled within 10 s of the return",
    )
    .await;
    eprintln!(
        "reconciled {:?} after the apiserver's return",
        back.elapsed()
    );
    // The leader kept its Lease: it renews it again, as the holder that acquired it before the
    // restart (the same acquireTime, no transition), not as one taking it anew.
    let renewed = eventually_ok(TIMEOUT, "the Lease renewed after the return", || async {
        let now = lease(&env).await;
        if now.renew_time > held.renew_time {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;
    assert_eq!(
        (
            &renewed.holder_identity,
            &renewed.acquire_time,
            renewed.lease_transitions
        ),
        (
            &Some("replica-a".to_owned()),
            &held.acquire_time,
            held.lease_transitions
        ),
        "the leader did not keep its Lease through the restart: before {held:?}, after {renewed:?}"
    );
    assert_running(&mut a, "after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_started_during_an_outage_becomes_leader_after_it() {
    let (_turn, env) = cluster().await;
    let faults = env.sb.faults();
    let restart = tokio::spawn(async move { faults.restart(Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut a = env.replica("replica-a", &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_running(&mut a, "when started while the apiserver was down");
    restart.await.unwrap();
    let back = Instant::now();
    assert_running(&mut a, "while the apiserver was down");
    env.wait_holder("replica-a", Duration::from_secs(10)).await;
    create(&default_channels(&env), &chat_plugin("after")).await;
    all_ready(
        &env,
        &["after".into()],
        Duration::from_secs(15).saturating_sub(back.elapsed()),
        "reconciled within 15 s of the outage's end",
    )
    .await;
    eprintln!(
        "reconciled {:?} after the apiserver's return",
        back.elapsed()
    );
}

const PAGES: usize = 16;

/// Mounts on the Graph fake pages that never report `is_webhooks_subscribed`: a second connect
/// of a page subscribes it a second time. Each page may be subscribed exactly once.
async fn pages_without_dedup(env: &Env) {
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "long"})),
        )
        .mount(&env.graph)
        .await;
    for i in 0..PAGES {
        let id = format!("{}", 3000 + i);
        Mock::given(method("GET"))
            .and(path(format!("/v24.0/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "id": id, "name_with_location_descriptor": format!("Page {id}"),
                "access_token": format!("page-access-{id}"),
            })))
            .mount(&env.graph)
            .await;
        Mock::given(method("POST"))
            .and(path("/v24.0/me/subscribed_apps"))
            .and(query_param("access_token", format!("page-access-{id}")))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true})),
            )
            .expect(1)
            .named(format!("subscribe page {id}"))
            .mount(&env.graph)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_is_fenced_and_the_standby_connects_every_page_once() {
    let (_turn, env) = cluster().await;
    pages_without_dedup(&env).await;
    env.secrets()
        .create(
            &PostParams::default(),
            &secret("fb-token", "page_token", "user-page-token"),
        )
        .await
        .unwrap();
    let mut a = env.replica("replica-a", &[]);
    env.wait_holder("replica-a", TIMEOUT).await;
    let mut b = env.replica("replica-b", &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The connects in flight at the cut: the leader's first status writes (recording the
    // connect attempt) are slow to be answered, and the partition starts while they wait. They
    // fill the leader's provider share (8), so no other page is connecting at the cut.
    let faults = env.sb.faults();
    let fired = faults.fired();
    faults.hold_next("patch", "channels/status", 8, Duration::from_secs(5));
    let names: Vec<String> = (0..PAGES).map(|i| format!("page-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let ch = channel(Source::Facebook, &format!("{}", 3000 + i))
            .named(name)
            .credentials("fb-token", "page_token")
            .build();
        create(&default_channels(&env), &ch).await;
    }
    // Cut as soon as all eight are held (a fixed sleep instead let a loaded machine finish
    // some of them first: a page subscribed just before the cut, with its outcome unrecorded,
    // is one the new leader must subscribe again).
    eventually("the leader's eight connect attempts to be held", || async {
        faults.fired() >= fired + 8
    })
    .await;
    faults.partition("replica-a");
    let cut = Instant::now();

    let took_over = env.wait_holder("replica-b", Duration::from_secs(25)).await;
    let after = took_over - cut;
    eprintln!("the standby took the Lease {after:?} after the partition began");
    assert!(
        after <= Duration::from_secs(17),
        "the standby took over {after:?} after the partition began (lease duration 15 s)"
    );
    // The partition heals a little later; the old leader's delayed requests arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    faults.heal("replica-a");
    all_ready(
        &env,
        &names,
        TIMEOUT,
        "every page connected by the new leader",
    )
    .await;
    // Give the old leader time to do what it would do after the heal.
    env.holder_stays(
        "replica-b",
        Duration::from_secs(6),
        "the old leader took the Lease back",
    )
    .await;
    let b_first = faults
        .writes_by("replica-b")
        .first()
        .map(|(t, _)| *t)
        .expect("the new leader wrote");
    let late: Vec<String> = faults
        .writes_by("replica-a")
        .into_iter()
        .filter(|(t, _)| *t >= b_first)
        .map(|(t, w)| format!("{w} at +{:?}", t - b_first))
        .collect();
    assert!(
        late.is_empty(),
        "the old leader wrote after the standby took over: {late:?}"
    );
    if let Some((last, _)) = faults.writes_by("replica-a").last() {
        eprintln!(
            "the old leader's last write was applied {:?} before the new leader's first",
            b_first - *last
        );
    }
    assert_running(&mut a, "after its partition");
    assert_running(&mut b, "as the new leader");
    // Every page subscribed exactly once.
    env.graph.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_renewed_by_a_holder_with_a_skewed_clock_is_not_taken() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut env = Env::new(&[
        "--leader-election",
        "true",
        "--lease-duration-seconds",
        "2",
        "--identity",
        "candidate",
    ])
    .await;
    // Another replica holds the Lease and renews it twice a second, but its clock is 26 years
    // behind: every renewTime it writes lies far in the past.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.sb.client(), "default");
    let renew = |i: u64| {
        let at = k8s_openapi::jiff::Timestamp::from_second(946_684_800 + i as i64).unwrap();
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": replica::LEASE, "namespace": "default"},
            "spec": {"holderIdentity": "skewed", "leaseDurationSeconds": 2,
                     "acquireTime": "2000-01-01T00:00:00.000000Z", "renewTime": at.to_string()},
        })
    };
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(renew(0)).unwrap(),
        )
        .await
        .unwrap();
    let renewing = tokio::spawn({
        let leases = leases.clone();
        async move {
            for i in 1.. {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = leases
                    .patch(
                        replica::LEASE,
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&renew(i)),
                    )
                    .await;
            }
        }
    });
    env.start_controller().await;
    create(&default_channels(&env), &chat_plugin("skew")).await;
    // Three lease durations: the holder is renewing, so the candidate must keep off.
    env.holder_stays(
        "skewed",
        Duration::from_secs(6),
        "a Lease being renewed was taken because its renewTime lies in the past",
    )
    .await;
    let skew = default_channels(&env).get("skew").await.unwrap();
    assert!(skew.status.is_none(), "a standby reconciled: {skew:?}");
    // The holder stops renewing: taken once the lease duration has passed without a change.
    renewing.abort();
    let stopped = Instant::now();
    env.wait_holder("candidate", Duration::from_secs(4)).await;
    eprintln!("taken {:?} after the last renewal", stopped.elapsed());
    all_ready(
        &env,
        &["skew".into()],
        TIMEOUT,
        "reconciled by the new holder",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Replicas in this process: one reconciles, the other stands by; a lease taken away stops it.

/// `channel_operator_reconciles_total` of the controller serving metrics on `addr`.
async fn reconciles(addr: std::net::SocketAddr) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("channel_operator_reconciles_total "))
        .unwrap_or_else(|| panic!("no reconciles_total in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_leader_election_run_one_controller() {
    let mut env = Env::new(&[
        "--leader-election",
        "true",
        "--lease-duration-seconds",
        "3",
        "--identity",
        "replica",
    ])
    .await;
    env.fake_twilio_number("+4915550002", "PN8", 1, 0).await;
    env.fake_twilio_number("+4915550003", "PN9", 1, 0).await;
    env.start_controller().await;
    // A second replica with another identity.
    let mut args = env.controller_args();
    args.identity = Some("replica-b".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = listener.local_addr().unwrap();
    let b = tokio::spawn(controller::run_with_listener(
        env.sb.client(),
        args,
        listener,
    ));
    env.apply(&channel_yaml("le", "twilio.sms", "+4915550002", ""))
        .await;
    env.wait_ready("le").await;
    let lease: serde_json::Value = serde_json::from_str(
        &env.kubectl_ok(
            &[
                "get",
                "lease",
                "channel-operator",
                "-n",
                "default",
                "-o",
                "json",
            ],
            None,
        )
        .await,
    )
    .unwrap();
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap().to_owned();
    assert!(holder == "replica" || holder == "replica-b", "{lease:#}");
    // Both are ready: one leading, one standing by.
    for addr in [env.metrics_addr, b_addr] {
        assert_eq!(
            reqwest::get(format!("http://{addr}/readyz"))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // Only the leader reconciles: the standby has run none.
    let (leader, standby) = if holder == "replica" {
        (env.metrics_addr, b_addr)
    } else {
        (b_addr, env.metrics_addr)
    };
    assert!(reconciles(leader).await >= 1.0, "the leader reconciled");
    assert_eq!(reconciles(standby).await, 0.0, "the standby stays idle");
    // Kill the leader; the other takes over and reconciles a new Channel.
    if holder == "replica" {
        env.kill().await;
    } else {
        b.abort();
    }
    env.apply(&channel_yaml("le2", "twilio.sms", "+4915550003", ""))
        .await;
    env.wait_ready("le2").await;
    b.abort();
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lease_stops_the_controller() {
    let mut env = Env::new(&[
        "--leader-election",
        "true",
        "--lease-duration-seconds",
        "3",
        "--identity",
        "only",
    ])
    .await;
    env.start_controller().await;
    env.apply(&channel_yaml("before", "google", "agent-before", ""))
        .await;
    env.wait_ready("before").await;
    // Another holder takes the Lease and keeps renewing it (as if this replica were partitioned).
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.sb.client(), "default");
    let intruder = tokio::spawn(async move {
        loop {
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let patch = serde_json::json!({"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 60, "acquireTime": now, "renewTime": now}});
            let _ = leases
                .patch(
                    "channel-operator",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    // Within a lease period the replica notices and stops reconciling.
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.apply(&channel_yaml("after", "google", "agent-after", ""))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = env.get("after").await;
    assert!(
        v["status"].is_null(),
        "a replica without the lease reconciled: {v:#}"
    );
    assert!(log_text().contains("lost the leader lease; stopping the controller identity=only"));
    intruder.abort();
    let base = format!("http://{}", env.metrics_addr);
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200,
        "a standby replica is ready"
    );
    env.finish().await;
}
