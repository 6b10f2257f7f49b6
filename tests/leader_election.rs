//! Leader election (on, as by default and in the chart) against an apiserver that restarts, is
//! down when the controller starts, or is cut off from the leader by a network partition. The
//! controllers are the real binary as child processes, each authenticating as its own user so
//! the sandbox can partition one of them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use channel_operator::crd::Channel;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use kube::CustomResourceExt;
use kube_sandbox::Sandbox;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// These tests time lease hand-overs: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    sb: Sandbox,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let turn = ONE_AT_A_TIME.lock().await;
        let sb = Sandbox::start(0).await.expect("sandbox starts");
        sb.install_crd(&Channel::crd()).await.expect("CRD installs");
        Cluster {
            _turn: turn,
            sb,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn channels(&self) -> Api<Channel> {
        Api::namespaced(self.sb.client(), "default")
    }

    /// `channel-operator controller` as a process with leader election at its defaults,
    /// authenticating as the user `identity`.
    fn replica(&self, identity: &str, extra: &[&str]) -> tokio::process::Child {
        let kubeconfig: PathBuf = self.dir.path().join(identity);
        self.sb
            .write_kubeconfig_as(&kubeconfig, identity, &["system:masters"])
            .unwrap();
        tokio::process::Command::new(env!("CARGO_BIN_EXE_channel-operator"))
            .args([
                "--log-level",
                &std::env::var("REPLICA_LOG").unwrap_or_else(|_| "warn".into()),
                "controller",
                "--namespace",
                "default",
                "--identity",
                identity,
                "--metrics-addr",
                "127.0.0.1:0",
                "--min-backoff-millis",
                "100",
                "--max-backoff-seconds",
                "2",
            ])
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the controller starts")
    }

    async fn lease_holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.sb.client(), "default");
        leases
            .get_opt("channel-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
    }

    /// Waits until `identity` holds the Lease; returns when it was first seen holding it.
    async fn wait_holder(&self, identity: &str, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            if self.lease_holder().await.as_deref() == Some(identity) {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{identity} did not hold the Lease within {within:?} (holder {:?})",
                self.lease_holder().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The names among `names` that are not Ready/Connected after waiting at most `within`.
    async fn not_ready(&self, names: &[String], within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let missing: Vec<String> = match self.channels().list(&ListParams::default()).await {
                Ok(list) => names
                    .iter()
                    .filter(|n| {
                        !list.items.iter().any(|c| {
                            c.metadata.name.as_ref() == Some(n)
                                && c.ready_condition()
                                    .is_some_and(|r| r.status == "True" && r.reason == "Connected")
                        })
                    })
                    .cloned()
                    .collect(),
                Err(_) => names.to_vec(),
            };
            if missing.is_empty() || Instant::now() > deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn channel(name: &str, source: &str, scid: &str, extra: serde_json::Value) -> Channel {
    let mut spec = serde_json::json!({"source": source, "sourceChannelId": scid});
    if let serde_json::Value::Object(extra) = extra {
        spec.as_object_mut().unwrap().extend(extra);
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "airy.co/v1alpha1", "kind": "Channel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

fn chat_plugin(name: &str) -> Channel {
    channel(name, "chat_plugin", name, serde_json::json!({}))
}

/// A create that rides out an apiserver outage, like a user's `kubectl apply` retried.
async fn create_retrying(api: &Api<Channel>, ch: &Channel) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match api.create(&PostParams::default(), ch).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "could not create: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn assert_running(replica: &mut tokio::process::Child, what: &str) {
    if let Some(status) = replica.try_wait().unwrap() {
        panic!("the controller exited ({status}) {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20s_apiserver_restart_leaves_the_leader_running_and_reconciling() {
    let cluster = Cluster::start().await;
    let mut a = cluster.replica("replica-a", &[]);
    cluster
        .wait_holder("replica-a", Duration::from_secs(30))
        .await;
    create_retrying(&cluster.channels(), &chat_plugin("before")).await;
    assert!(cluster
        .not_ready(&["before".into()], Duration::from_secs(30))
        .await
        .is_empty());

    let faults = cluster.sb.faults();
    let restart = tokio::spawn(async move { faults.restart(Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A change made during the outage (a create retried until the apiserver answers).
    let api = cluster.channels();
    let change = tokio::spawn(async move { create_retrying(&api, &chat_plugin("during")).await });
    restart.await.unwrap();
    let back = Instant::now();
    assert_running(&mut a, "during a 20 s apiserver restart");
    change.await.unwrap();
    let missing = cluster
        .not_ready(
            &["during".into()],
            Duration::from_secs(10).saturating_sub(back.elapsed()),
        )
        .await;
    assert!(
        missing.is_empty(),
        "a change made during the restart was not reconciled within 10 s of the return"
    );
    eprintln!(
        "reconciled {:?} after the apiserver's return",
        back.elapsed()
    );
    assert_running(&mut a, "after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_started_during_an_outage_becomes_leader_after_it() {
    let cluster = Cluster::start().await;
    let faults = cluster.sb.faults();
    let restart = tokio::spawn(async move { faults.restart(Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut a = cluster.replica("replica-a", &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_running(&mut a, "when started while the apiserver was down");
    restart.await.unwrap();
    let back = Instant::now();
    assert_running(&mut a, "while the apiserver was down");
    cluster
        .wait_holder("replica-a", Duration::from_secs(10))
        .await;
    create_retrying(&cluster.channels(), &chat_plugin("after")).await;
    let missing = cluster
        .not_ready(
            &["after".into()],
            Duration::from_secs(15).saturating_sub(back.elapsed()),
        )
        .await;
    assert!(missing.is_empty(), "not reconciled after the outage");
    eprintln!(
        "reconciled {:?} after the apiserver's return",
        back.elapsed()
    );
}

const PAGES: usize = 16;

/// A Graph API fake whose pages never report `is_webhooks_subscribed`: a second connect of a page
/// subscribes it a second time. Each page may be subscribed exactly once.
async fn graph_without_dedup() -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "long"})),
        )
        .mount(&graph)
        .await;
    for i in 0..PAGES {
        let id = format!("{}", 3000 + i);
        Mock::given(method("GET"))
            .and(path(format!("/v24.0/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "id": id, "name_with_location_descriptor": format!("Page {id}"),
                "access_token": format!("page-access-{id}"),
            })))
            .mount(&graph)
            .await;
        Mock::given(method("POST"))
            .and(path("/v24.0/me/subscribed_apps"))
            .and(query_param("access_token", format!("page-access-{id}")))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true})),
            )
            .expect(1)
            .named(format!("subscribe page {id}"))
            .mount(&graph)
            .await;
    }
    graph
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_is_fenced_and_the_standby_connects_every_page_once() {
    let cluster = Cluster::start().await;
    let graph = graph_without_dedup().await;
    let graph_url = format!("{}/v24.0", graph.uri());
    let facebook = [
        "--facebook-app-id",
        "app-1",
        "--facebook-app-secret",
        "app-secret",
        "--facebook-graph-url",
        &graph_url,
    ];
    let secrets: Api<Secret> = Api::namespaced(cluster.sb.client(), "default");
    let mut token = Secret::default();
    token.metadata.name = Some("fb-token".into());
    token.string_data = Some([("page_token".to_string(), "user-page-token".to_string())].into());
    secrets
        .create(&PostParams::default(), &token)
        .await
        .unwrap();
    let mut a = cluster.replica("replica-a", &facebook);
    cluster
        .wait_holder("replica-a", Duration::from_secs(30))
        .await;
    let mut b = cluster.replica("replica-b", &facebook);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The connects in flight at the cut: the leader's first status writes (recording the
    // connect attempt) are slow to be answered, and the partition starts while they wait.
    let faults = cluster.sb.faults();
    faults.hold_next("patch", "channels/status", 8, Duration::from_secs(2));
    let names: Vec<String> = (0..PAGES).map(|i| format!("page-{i}")).collect();
    let credentials =
        serde_json::json!({"credentialsSecretRef": {"name": "fb-token", "key": "page_token"}});
    for (i, name) in names.iter().enumerate() {
        let ch = channel(
            name,
            "facebook",
            &format!("{}", 3000 + i),
            credentials.clone(),
        );
        create_retrying(&cluster.channels(), &ch).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    faults.partition("replica-a");
    let cut = Instant::now();

    let took_over = cluster
        .wait_holder("replica-b", Duration::from_secs(25))
        .await;
    let after = took_over - cut;
    eprintln!("the standby took the Lease {after:?} after the partition began");
    assert!(
        after <= Duration::from_secs(17),
        "the standby took over {after:?} after the partition began (lease duration 15 s)"
    );
    // The partition heals a little later; the old leader's delayed requests arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    faults.heal("replica-a");
    let missing = cluster.not_ready(&names, Duration::from_secs(30)).await;
    assert!(
        missing.is_empty(),
        "not connected by the new leader: {missing:?}"
    );
    // Give the old leader time to do what it would do after the heal.
    let watch_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < watch_until {
        assert_eq!(
            cluster.lease_holder().await.as_deref(),
            Some("replica-b"),
            "the old leader took the Lease back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    graph.verify().await;
}
