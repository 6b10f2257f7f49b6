//! The controller under disruption: bursts through forced re-lists, apiserver restarts, a
//! provider that hangs, and a rolling update of two replicas (the real binary, SIGTERM).
//!
//! Every test ends by naming the Channels the controller never brought to their desired state:
//! a Channel silently dropped is the failure these tests exist for.

mod support;

use support::channel;
use support::replica::wait_holder;

use std::time::{Duration, Instant};

use channel_operator::controller;
use channel_operator::crd::{Channel, Source};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_sandbox::Sandbox;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const IN_FLIGHT: usize = 32;

/// The tests here load the machine (bursts, hung connections); one at a time keeps the latency
/// assertions about the controller, not about the neighbouring test.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    sb: Sandbox,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let turn = ONE_AT_A_TIME.lock().await;
        // For a failure's story: RESILIENCE_LOG=debug logs the in-process controller to stderr.
        if let Ok(filter) = std::env::var("RESILIENCE_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .try_init();
        }
        let support::Sandboxed { sb, dir, .. } = support::sandbox().await;
        Cluster {
            _turn: turn,
            sb,
            dir,
        }
    }

    fn channels(&self) -> Api<Channel> {
        Api::namespaced(self.sb.client(), "default")
    }

    /// Runs the controller in this process (no leader election) until the handle is aborted.
    async fn run_controller(&self, extra: &[&str]) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        self.run_controller_with(self.sb.client(), extra).await
    }

    /// [`Cluster::run_controller`] with its own client.
    async fn run_controller_with(
        &self,
        client: kube::Client,
        extra: &[&str],
    ) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        let mut argv = vec![
            "controller",
            "--leader-election",
            "false",
            "--min-backoff-millis",
            "100",
            "--max-backoff-seconds",
            "2",
        ];
        argv.extend_from_slice(extra);
        let args = controller::Args::parse_from(argv);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        tokio::spawn(controller::run_with_listener(client, args, listener))
    }

    /// Creates Channels from `make`, `IN_FLIGHT` at once.
    async fn create_all(&self, names: impl Iterator<Item = Channel>) {
        let api = self.channels();
        futures::stream::iter(names)
            .map(|ch| {
                let api = api.clone();
                async move { create_retrying(&api, &ch).await }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<()>>()
            .await;
    }

    /// Waits (at most `within`: the assertion is about that time) until `done` holds for every
    /// Channel named in `names`; fails naming `why`, how many do not, how many of those the
    /// controller never touched (no finalizer, no status), and a few of them.
    async fn settled(
        &self,
        names: &[String],
        within: Duration,
        why: &str,
        done: impl Fn(Option<&Channel>) -> bool,
    ) {
        let api = self.channels();
        support::eventually_ok(within, why, || async {
            let listed = api.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
            let by_name: std::collections::HashMap<&str, &Channel> = listed
                .items
                .iter()
                .map(|c| (c.metadata.name.as_deref().unwrap_or_default(), c))
                .collect();
            let missing: Vec<(&String, Option<&Channel>)> = names
                .iter()
                .map(|n| (n, by_name.get(n.as_str()).copied()))
                .filter(|(_, c)| !done(*c))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let untouched = missing
                .iter()
                .filter(|(_, c)| {
                    c.is_some_and(|c| {
                        c.status.is_none()
                            && c.metadata.finalizers.as_ref().is_none_or(Vec::is_empty)
                    })
                })
                .count();
            let some: Vec<&String> = missing.iter().take(5).map(|(n, _)| *n).collect();
            Err(format!(
                "{} of {} not so ({untouched} never touched: no finalizer, no status), e.g. {some:?}",
                missing.len(),
                names.len()
            ))
        })
        .await
    }
}

/// A create that rides out a sandbox restart (connection refused, 503) like a user retrying.
async fn create_retrying(api: &Api<Channel>, ch: &Channel) {
    support::create_retrying(api, ch, support::TIMEOUT).await
}

fn chat_plugin(name: &str) -> Channel {
    channel(Source::ChatPlugin, name).named(name).build()
}

fn is_ready_connected(ch: Option<&Channel>) -> bool {
    ch.and_then(|c| c.ready_condition())
        .is_some_and(|r| r.status == "True" && r.reason == "Connected")
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_forced_relists_leaves_no_channel_unreconciled() {
    const N: usize = 1000;
    let cluster = Cluster::start().await;
    let controller = cluster.run_controller(&["--namespace", "default"]).await;
    // While the Channels are created, the watch history is compacted and every watch cut, again
    // and again: each time the controller must re-list, as after a watch falls behind.
    let faults = cluster.sb.faults();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let disrupt = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 200 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                faults.compact_history();
                faults.drop_watches();
                n += 1;
            }
            n
        })
    };
    let names: Vec<String> = (0..N).map(|i| format!("burst-{i}")).collect();
    cluster
        .create_all(names.iter().map(|n| chat_plugin(n)))
        .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let relists = disrupt.await.unwrap();
    assert!(relists > 0, "the watch was never disrupted");
    cluster
        .settled(
            &names,
            Duration::from_secs(60),
            &format!("{N} Channels Ready after {relists} forced re-lists"),
            is_ready_connected,
        )
        .await;
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_provider_does_not_delay_other_sources() {
    let cluster = Cluster::start().await;
    // The Graph API accepts connections and never answers within the provider timeout.
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/v24.0/"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .mount(&graph)
        .await;
    let graph_url = format!("{}/v24.0", graph.uri());
    let secrets: Api<Secret> = Api::namespaced(cluster.sb.client(), "default");
    let token = support::secret("fb-token", "page_token", "user-page-token");
    secrets
        .create(&PostParams::default(), &token)
        .await
        .unwrap();
    let controller = cluster
        .run_controller(&[
            "--facebook-app-id",
            "app-1",
            "--facebook-app-secret",
            "app-secret",
            "--facebook-graph-url",
            &graph_url,
            "--provider-timeout-seconds",
            "10",
        ])
        .await;
    cluster
        .create_all((0..40).map(|i| {
            channel(Source::Facebook, &format!("{}", 2000 + i))
                .named(&format!("fb-{i}"))
                .credentials("fb-token", "page_token")
                .build()
        }))
        .await;
    // Wait until the hung connects are at the Graph API.
    support::eventually_within(
        Duration::from_secs(20),
        "the Facebook connects to reach the Graph API",
        || async { graph.received_requests().await.unwrap_or_default().len() >= 8 },
    )
    .await;
    let names: Vec<String> = (0..10).map(|i| format!("plugin-{i}")).collect();
    cluster
        .create_all(names.iter().map(|n| chat_plugin(n)))
        .await;
    cluster
        .settled(
            &names,
            Duration::from_secs(2),
            "with Facebook hung, 10 chat plugin Channels Ready within 2 s of the last create",
            is_ready_connected,
        )
        .await;
    controller.abort();
}

/// One replica of `channel-operator controller` as a process, its Twilio provider at `twilio`.
fn replica(cluster: &Cluster, identity: &str, twilio: &str) -> tokio::process::Child {
    support::replica::spawn_replica(
        &cluster.sb,
        cluster.dir.path(),
        identity,
        &[
            "--twilio-account-sid",
            "AC1",
            "--twilio-auth-token",
            "twilio-token",
            "--twilio-webhook-url",
            "https://hooks.example.org/twilio",
            "--twilio-api-url",
            twilio,
        ],
        &[],
    )
}

/// Mounts a Twilio number whose webhook may be set exactly once.
async fn twilio_number(twilio: &MockServer, i: usize) -> Channel {
    let number = format!("+49155500{i:02}");
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/AC1/IncomingPhoneNumbers.json"))
        .and(wiremock::matchers::query_param("PhoneNumber", number.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"incoming_phone_numbers": [{"sid": format!("PN{i}"), "phone_number": number}]}),
        ))
        .mount(twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/2010-04-01/Accounts/AC1/IncomingPhoneNumbers/PN{i}.json"
        )))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": format!("PN{i}")})),
        )
        .expect(1)
        .named(format!("connect {number}"))
        .mount(twilio)
        .await;
    channel(Source::TwilioSms, &number)
        .named(&format!("sms-{i}"))
        .build()
}

/// Creates a Twilio SMS Channel per number index and waits until every one is connected.
async fn connect_numbers(
    cluster: &Cluster,
    twilio: &MockServer,
    numbers: std::ops::Range<usize>,
    by: &str,
) {
    let mut channels = Vec::new();
    for i in numbers {
        channels.push(twilio_number(twilio, i).await);
    }
    let names: Vec<String> = channels
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    cluster.create_all(channels.into_iter()).await;
    let why = format!("connected by {by}");
    cluster
        .settled(&names, Duration::from_secs(30), &why, is_ready_connected)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_leader_hands_over_the_lease_at_once_and_connects_nothing_twice() {
    let cluster = Cluster::start().await;
    let twilio = MockServer::start().await;
    let mut a = replica(&cluster, "replica-a", &twilio.uri());
    wait_holder(&cluster.sb, "replica-a", Duration::from_secs(30)).await;
    let _b = replica(&cluster, "replica-b", &twilio.uri());
    connect_numbers(&cluster, &twilio, 0..5, "the leader").await;

    // A rolling update: the leader gets SIGTERM.
    let signalled = Instant::now();
    let pid = a.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // Waited for longer than the assertion allows, to say how long the hand-over took.
    let took_over =
        wait_holder(&cluster.sb, "replica-b", Duration::from_secs(20)).await - signalled;
    assert!(
        took_over <= Duration::from_secs(2),
        "the standby held the Lease only after {took_over:?}; {:?}",
        Api::<Lease>::namespaced(cluster.sb.client(), "default")
            .get("channel-operator")
            .await
    );
    let status = tokio::time::timeout(Duration::from_secs(25), a.wait())
        .await
        .expect("the old leader exits within its shutdown timeout")
        .unwrap();
    assert!(status.success(), "the old leader exited with {status}");

    connect_numbers(&cluster, &twilio, 5..10, "the new leader").await;
    // Every number's webhook was set exactly once (the mocks' expectations).
    twilio.verify().await;
}

fn is_disconnected_for_generation(ch: Option<&Channel>) -> bool {
    ch.is_some_and(|c| {
        c.ready_condition().is_some_and(|r| {
            r.status == "True"
                && r.reason == "Disconnected"
                && r.observed_generation == c.metadata.generation
        }) && c.status.as_ref().is_some_and(|s| !s.connected)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_apiserver_restart_creates_disconnects_and_deletes_are_reconciled_at_once() {
    let cluster = Cluster::start().await;
    let controller = cluster.run_controller(&["--namespace", "default"]).await;
    let to_disconnect: Vec<String> = (0..10).map(|i| format!("off-{i}")).collect();
    let to_delete: Vec<String> = (0..10).map(|i| format!("gone-{i}")).collect();
    let before: Vec<String> = to_disconnect.iter().chain(&to_delete).cloned().collect();
    cluster
        .create_all(before.iter().map(|n| chat_plugin(n)))
        .await;
    cluster
        .settled(
            &before,
            Duration::from_secs(30),
            "Ready before the restart",
            is_ready_connected,
        )
        .await;

    // The apiserver restarts (every watch cut, history compacted, connections refused for 20 s,
    // as in the reported outage), then the changes arrive.
    cluster.sb.faults().restart(Duration::from_secs(20)).await;
    let back = Instant::now();
    let created: Vec<String> = (0..10).map(|i| format!("new-{i}")).collect();
    cluster
        .create_all(created.iter().map(|n| chat_plugin(n)))
        .await;
    let api = cluster.channels();
    let patch = serde_json::json!({"spec": {"connected": false}});
    for name in &to_disconnect {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    for name in &to_delete {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }

    // Each within 10 s of the apiserver's return.
    let left = || Duration::from_secs(10).saturating_sub(back.elapsed());
    cluster
        .settled(&created, left(), "created: Ready", is_ready_connected)
        .await;
    cluster
        .settled(
            &to_disconnect,
            left(),
            "disconnected",
            is_disconnected_for_generation,
        )
        .await;
    cluster
        .settled(&to_delete, left(), "deleted", |c| c.is_none())
        .await;
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_outside_the_secret_namespaces_are_reported_not_read() {
    let cluster = Cluster::start().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.sb.client());
    let mut ns = k8s_openapi::api::core::v1::Namespace::default();
    ns.metadata.name = Some("team-b".into());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(cluster.sb.client(), "team-b");
    let mut token = support::secret("fb-token", "page_token", "user-page-token");
    token.metadata.namespace = Some("team-b".into());
    secrets
        .create(&PostParams::default(), &token)
        .await
        .unwrap();
    // Every request path the controller sends.
    let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = {
        let paths = paths.clone();
        tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
            paths.lock().unwrap().push(req.uri().path().to_owned());
            req
        })
    };
    let client =
        kube::client::ClientBuilder::try_from(kube::Config::new(cluster.sb.url().parse().unwrap()))
            .unwrap()
            .with_layer(&record)
            .build();
    let controller = cluster
        // The flags' provider accounts admit team-b: the Secret scope is what this test is about.
        .run_controller_with(
            client,
            &[
                "--secret-namespaces",
                "default",
                "--default-provider-namespaces",
                "team-b",
            ],
        )
        .await;
    let ch = channel(Source::Facebook, "1001")
        .named("fb")
        .namespace("team-b")
        .credentials("fb-token", "page_token")
        .build();
    let api: Api<Channel> = Api::namespaced(cluster.sb.client(), "team-b");
    api.create(&PostParams::default(), &ch).await.unwrap();
    let ready = support::eventually_some("a verdict on the Channel", || async {
        api.get("fb").await.unwrap().ready_condition().cloned()
    })
    .await;
    assert_eq!(ready.status, "False", "{ready:?}");
    assert_eq!(ready.reason, "CredentialsMissing", "{ready:?}");
    assert!(
        ready
            .message
            .contains("not configured to read Secrets in namespace team-b"),
        "{ready:?}"
    );
    controller.abort();
    let paths = paths.lock().unwrap().clone();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/api/v1/namespaces/default/secrets")),
        "the recording saw the Secret watch of default: {paths:?}"
    );
    let read: Vec<&String> = paths
        .iter()
        .filter(|p| {
            p.starts_with("/api/v1/namespaces/team-b/secrets") || p.starts_with("/api/v1/secrets")
        })
        .collect();
    assert!(
        read.is_empty(),
        "Secrets read outside --secret-namespaces: {read:?}"
    );
}
