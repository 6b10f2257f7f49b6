//! Controller throughput and memory against the in-memory API server and a fake Graph API.
//!
//! `cargo bench --bench controller` (sizes: `BENCH_SIZES=1000,10000`, the default). For each size:
//! a fresh sandbox; its raw write rates (Secret and Channel creates, 32 in flight, no controller
//! running); the controller (`--namespace default`) started as a
//! child process (`channel-operator controller` with a kubeconfig); N Facebook Channels created
//! (32 in flight); then the seconds until all are Ready, reconciles per second (from the
//! controller's /metrics) and the controller's peak resident memory (VmHWM).
//!
//! Then the same again with disruptions during the creates: the watch history compacted and every
//! watch cut every 2 s (forced re-lists), and one apiserver restart (3 s down) halfway. It prints
//! the all-Ready time and the number of Channels never reconciled (no finalizer, no status; must
//! be 0).

use std::time::{Duration, Instant};

use channel_operator::crd::{Channel, ChannelSpec, SecretKeyRef, Source};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use kube::CustomResourceExt;
use kube_sandbox::Sandbox;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const IN_FLIGHT: usize = 32;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    // `cargo bench` passes --bench; `cargo test --all-targets` (CI) runs this binary without it:
    // then only a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let default_sizes = if full { "1000,10000" } else { "50" };
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| default_sizes.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let graph = MockServer::builder()
        .disable_request_recording()
        .start()
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": "bench-long-lived"})),
        )
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/v24\.0/[0-9]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "name_with_location_descriptor": "Bench page",
            "access_token": "bench-page-access",
            "picture": {"data": {"url": "https://img.example.org/p.png"}}
        })))
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true})),
        )
        .mount(&graph)
        .await;
    println!(
        "controller benchmark (sandbox in-process, controller in a child process, fake Graph API)"
    );
    for n in sizes {
        bench(n, &format!("{}/v24.0", graph.uri()), false).await;
        bench(n, &format!("{}/v24.0", graph.uri()), true).await;
    }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn metric(addr: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

fn channel(i: usize) -> Channel {
    Channel::new(
        &format!("bench-{i}"),
        ChannelSpec {
            credentials_secret_ref: Some(SecretKeyRef {
                name: "bench-page-token".into(),
                key: "page_token".into(),
            }),
            ..ChannelSpec::new(Source::Facebook, format!("{}", 1_000_000 + i))
        },
    )
}

fn secret(name: &str) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.data = Some(
        [(
            "page_token".to_string(),
            k8s_openapi::ByteString(b"bench-user-page-token".to_vec()),
        )]
        .into(),
    );
    s
}

/// Forced re-lists every 2 s and one restart after `restart_after`, until `stop` is set.
async fn disrupt(
    faults: kube_sandbox::Faults,
    restart_after: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    let started = Instant::now();
    let mut restarted = false;
    let mut relists = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && relists < 1000 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !restarted && started.elapsed() >= restart_after {
            faults.restart(Duration::from_secs(3)).await;
            restarted = true;
        } else {
            faults.compact_history();
            faults.drop_watches();
            relists += 1;
        }
    }
    relists
}

async fn bench(n: usize, graph_url: &str, disrupted: bool) {
    let sb = Sandbox::start(0).await.expect("sandbox");
    sb.install_crd(&Channel::crd()).await.expect("crd");
    for crd in channel_operator::provider_config::crds() {
        sb.install_crd(&crd).await.expect("crd");
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sb.write_kubeconfig(&kubeconfig).unwrap();
    let client = sb.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");

    // The sandbox's own write rate, with the same concurrency the channel creates use.
    let writes = if n < 1000 { 100 } else { 2000usize };
    let t = Instant::now();
    futures::stream::iter(0..writes)
        .map(|i| {
            let secrets = secrets.clone();
            async move {
                secrets
                    .create(&PostParams::default(), &secret(&format!("rate-{i}")))
                    .await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await
        .expect("secret creates");
    let write_rate = writes as f64 / t.elapsed().as_secs_f64();
    // And its Channel create rate (schema validation, CEL) in a namespace the controller ignores.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut ns = k8s_openapi::api::core::v1::Namespace::default();
    ns.metadata.name = Some("bench-rate".into());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let rate_channels: Api<Channel> = Api::namespaced(client.clone(), "bench-rate");
    let t = Instant::now();
    futures::stream::iter(0..writes)
        .map(|i| {
            let rate_channels = rate_channels.clone();
            async move {
                rate_channels
                    .create(&PostParams::default(), &channel(i))
                    .await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await
        .expect("channel creates");
    let channel_write_rate = writes as f64 / t.elapsed().as_secs_f64();
    secrets
        .create(&PostParams::default(), &secret("bench-page-token"))
        .await
        .unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_channel-operator"))
        .args([
            "--log-level",
            "warn",
            "controller",
            "--leader-election",
            "false",
            "--namespace",
            "default",
            "--metrics-addr",
            &metrics_addr,
            "--facebook-app-id",
            "bench-app",
            "--facebook-app-secret",
            "bench-app-secret",
            "--facebook-graph-url",
            graph_url,
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("controller starts");
    let pid = child.id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = reqwest::get(format!("http://{metrics_addr}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the controller never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reconciles_before = metric(&metrics_addr, "channel_operator_reconciles_total")
        .await
        .unwrap_or(0.0);

    let t0 = Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Halfway through the creates (at the rate measured above).
    let restart_after = Duration::from_secs_f64(n as f64 / channel_write_rate / 2.0);
    let disruption =
        disrupted.then(|| tokio::spawn(disrupt(sb.faults(), restart_after, stop.clone())));
    futures::stream::iter(0..n)
        .map(|i| {
            let channels = channels.clone();
            async move {
                // A create the restart cut off is sent again, as a client would.
                loop {
                    match channels.create(&PostParams::default(), &channel(i)).await {
                        Ok(_) => return,
                        Err(kube::Error::Api(e)) if e.code == 409 => return,
                        Err(_) if disrupted => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => panic!("channel create: {e}"),
                    }
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    let created = t0.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let relists = match disruption {
        Some(task) => task.await.unwrap_or(0),
        None => 0,
    };

    let mut peak_kib = 0;
    let timeout = Duration::from_secs(60 + n as u64 / 10);
    let mut never_reconciled;
    let all_ready = loop {
        peak_kib = peak_kib.max(vm_hwm_kib(pid).unwrap_or(0));
        let list = channels.list(&ListParams::default()).await.expect("list");
        never_reconciled = list
            .items
            .iter()
            .filter(|c| c.status.is_none() && c.metadata.finalizers.is_none())
            .count();
        let ready = list
            .items
            .iter()
            .filter(|c| {
                c.ready_condition()
                    .is_some_and(|r| r.status == "True" && r.reason == "Connected")
            })
            .count();
        if ready == n {
            break t0.elapsed().as_secs_f64();
        }
        if t0.elapsed() > timeout {
            println!(
                "  n={n}: only {ready} of {n} Ready after {:?}",
                t0.elapsed()
            );
            break f64::NAN;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let reconciles = metric(&metrics_addr, "channel_operator_reconciles_total")
        .await
        .unwrap_or(f64::NAN)
        - reconciles_before;
    peak_kib = peak_kib.max(vm_hwm_kib(pid).unwrap_or(0));
    let _ = child.kill().await;

    if disrupted {
        println!("channels={n}, disrupted: {relists} forced re-lists and one apiserver restart (3 s) during the creates");
    } else {
        println!("channels={n}");
    }
    println!("  sandbox write rate:           {write_rate:.0} creates/s ({writes} Secrets, {IN_FLIGHT} in flight)");
    println!("  sandbox Channel create rate:  {channel_write_rate:.0} creates/s ({writes} Channels, no controller)");
    println!(
        "  create {n} Channels:          {created:.2} s ({:.0} creates/s)",
        n as f64 / created
    );
    println!(
        "  all Ready after:              {all_ready:.2} s ({:.0} Channels/s)",
        n as f64 / all_ready
    );
    println!(
        "  reconciles:                   {reconciles:.0} ({:.0}/s)",
        reconciles / all_ready
    );
    println!("  never reconciled:             {never_reconciled}");
    println!(
        "  controller peak RSS (VmHWM):  {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    sb.shutdown().await;
    // A run that did not finish has no figures: the smoke run in `cargo test` fails with it.
    assert!(
        all_ready.is_finite(),
        "n={n}: not every Channel was Ready within {timeout:?}"
    );
    assert_eq!(
        never_reconciled, 0,
        "n={n}: Channels the controller never reconciled"
    );
}
