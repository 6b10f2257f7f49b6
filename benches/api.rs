//! `cargo bench --bench api`: throughput and latency of the channels API with 10,000 channels in
//! the cache, next to a bare axum handler returning a fixed body of the same size (the ceiling
//! of this machine for this HTTP stack and load generator).
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it makes a short smoke run instead.
//!
//! The cache is filled through the reflector writer (no cluster is needed for reads); the HTTP
//! path is what is measured: a load generator in the same process with 64 keep-alive
//! connections, bounded by time.
//!
//! It also prints the memory the API's cache holds for those channels: the bytes live on the heap
//! after filling it minus those live before (a counting allocator wraps the system one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use channel_operator::api::{self, cache::AnswerCache, AppState, Args};
use channel_operator::crd::{Channel, ChannelSpec, Source};
use clap::Parser;
use kube::runtime::watcher::Event;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, std::sync::atomic::Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live_bytes() -> usize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

static FULL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `cargo bench` passes `--bench`; `cargo test --all-targets` (CI) runs this binary without it,
/// and then a short smoke run checks that the benchmark still works.
fn full() -> bool {
    FULL.load(std::sync::atomic::Ordering::Relaxed)
}
fn channels_n() -> usize {
    if full() {
        10_000
    } else {
        500
    }
}
const GOOGLE: usize = 100;
fn connections() -> usize {
    if full() {
        64
    } else {
        4
    }
}
fn warmup() -> Duration {
    Duration::from_millis(if full() { 500 } else { 50 })
}
fn run_time() -> Duration {
    Duration::from_millis(if full() { 2000 } else { 200 })
}
/// Ceiling and API runs alternate this many times; the median ratio is reported, so that load
/// from other processes on the machine affects both sides alike.
fn rounds() -> usize {
    if full() {
        3
    } else {
        1
    }
}

fn channels() -> impl Iterator<Item = Channel> {
    (0..channels_n()).map(|i| {
        let (source, scid) = if i < GOOGLE {
            (Source::Google, format!("agent-{i}"))
        } else {
            match i % 3 {
                0 => (Source::ChatPlugin, format!("website-{i}")),
                1 => (
                    Source::Facebook,
                    format!("{}", 100_000_000_000u64 + i as u64),
                ),
                _ => (Source::TwilioSms, format!("+4915{:08}", i)),
            }
        };
        let id = channel_operator::channel_id::channel_id_string(source.as_str(), &scid);
        let mut ch = Channel::new(
            &id,
            ChannelSpec {
                name: Some(format!("Channel number {i}")),
                image_url: Some(format!("https://cdn.example.org/images/{i}.png")),
                ..ChannelSpec::new(source, scid)
            },
        );
        ch.metadata.namespace = Some("default".into());
        ch.status = Some(channel_operator::crd::ChannelStatus {
            id: Some(ch.channel_id(Default::default())),
            connected: true,
            ..Default::default()
        });
        ch
    })
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn fixed(body: Bytes) -> Router {
    Router::new().route(
        "/fixed",
        post(move || {
            let body = body.clone();
            async move {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    )
}

struct Stats {
    rps: f64,
    p50: Duration,
    p99: Duration,
    bytes: usize,
}

/// Runs `connections()` concurrent request loops against `url` for `run_time()`, each request's body made
/// by `body(n)`.
async fn load(
    client: &reqwest::Client,
    url: &str,
    body: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> Stats {
    let run = |dur: Duration| {
        let mut tasks = Vec::new();
        let conns = connections();
        for c in 0..conns {
            let client = client.clone();
            let url = url.to_owned();
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut bytes = 0;
                let end = Instant::now() + dur;
                let mut n = c;
                while Instant::now() < end {
                    let t = Instant::now();
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body(n))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                    bytes = resp.bytes().await.unwrap().len();
                    lat.push(t.elapsed());
                    n += conns;
                }
                (lat, bytes)
            }));
        }
        tasks
    };
    for t in run(warmup()) {
        t.await.unwrap();
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut bytes = 0;
    for t in run(run_time()) {
        let (lat, b) = t.await.unwrap();
        all.extend(lat);
        bytes = b;
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Stats {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        bytes,
    }
}

fn print(name: &str, s: &Stats) {
    println!(
        "{name:<42} {:>9.0} req/s   p50 {:>8.3} ms   p99 {:>8.3} ms   body {} B",
        s.rps,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.bytes
    );
}

/// Alternates ceiling and API runs `rounds()` times; prints every round and the median ratio.
async fn compare(
    client: &reqwest::Client,
    name: &str,
    ceiling_url: &str,
    api_url: &str,
    body: Arc<dyn Fn(usize) -> String + Send + Sync>,
) {
    let mut ratios = Vec::new();
    for round in 1..=rounds() {
        let ceiling = load(client, ceiling_url, body.clone()).await;
        let api = load(client, api_url, body.clone()).await;
        print(
            &format!("[{round}] ceiling (fixed body, same size)"),
            &ceiling,
        );
        print(&format!("[{round}] {name}"), &api);
        ratios.push(api.rps / ceiling.rps);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "{name} / ceiling: median {:.0}% (rounds: {})",
        100.0 * ratios[ratios.len() / 2],
        ratios
            .iter()
            .map(|r| format!("{:.0}%", 100.0 * r))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn main() {
    FULL.store(
        std::env::args().any(|a| a == "--bench"),
        std::sync::atomic::Ordering::Relaxed,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ids: Arc<Vec<String>> = Arc::new(channels().map(|c| c.channel_id(Default::default())).collect());
        // The channels are made one at a time while filling, so what stays live is the cache's.
        let before = live_bytes();
        let cache = AnswerCache::new();
        cache.apply(&Event::Init);
        for ch in channels() {
            cache.apply(&Event::InitApply(ch));
        }
        cache.apply(&Event::InitDone);
        let held = live_bytes().saturating_sub(before);
        println!(
            "API cache memory at {} channels: {:.2} MiB ({} B per channel; list bodies not built yet)",
            channels_n(),
            held as f64 / (1024.0 * 1024.0),
            held / channels_n()
        );
        let args = Args::parse_from(["api"]);
        // Reads never touch the cluster; the client points nowhere.
        let client = kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap()))
            .unwrap();
        let state = AppState::new(client, cache.clone(), &args).unwrap();
        let api_url = serve(api::router(state, &[]).unwrap()).await;

        let info_body = cache.get(&ids[channels_n() / 2]).unwrap().json.clone();
        let list_body = cache.list_body(Some(Source::Google));
        let fixed_info = serve(fixed(info_body.clone())).await;
        let fixed_list = serve(fixed(list_body.clone())).await;

        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections())
            .build()
            .unwrap();

        println!(
            "channels in cache: {}; {} connections; {:.1} s per run, {} rounds; {} worker threads{}",
            channels_n(),
            connections(),
            run_time().as_secs_f64(),
            rounds(),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            if full() { "" } else { " (smoke run; `cargo bench --bench api` for figures)" }
        );
        let ids2 = ids.clone();
        let info_req: Arc<dyn Fn(usize) -> String + Send + Sync> = Arc::new(move |n| {
            format!("{{\"channel_id\":\"{}\"}}", ids2[n % ids2.len()])
        });
        compare(
            &http,
            "channels.info",
            &format!("{fixed_info}/fixed"),
            &format!("{api_url}/channels.info"),
            info_req,
        )
        .await;
        let list_req: Arc<dyn Fn(usize) -> String + Send + Sync> =
            Arc::new(|_| "{\"source\":\"google\"}".to_owned());
        compare(
            &http,
            &format!("channels.list source=google ({GOOGLE})"),
            &format!("{fixed_list}/fixed"),
            &format!("{api_url}/channels.list"),
            list_req,
        )
        .await;

        // The unfiltered list of all 10,000 channels, one request at a time.
        let mut lat = Vec::new();
        let mut size = 0;
        for i in 0..60 {
            let t = Instant::now();
            let resp = http
                .post(format!("{api_url}/channels.list"))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let body = resp.bytes().await.unwrap();
            if i >= 10 {
                lat.push(t.elapsed());
            }
            size = body.len();
        }
        let n: usize = serde_json::from_slice::<serde_json::Value>(
            &http
                .post(format!("{api_url}/channels.list"))
                .body("{}")
                .header("content-type", "application/json")
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap()["data"]
            .as_array()
            .unwrap()
            .len();
        lat.sort();
        println!(
            "channels.list unfiltered ({n} channels, {size} B): p50 {:.3} ms, p99 {:.3} ms (sequential, {} requests)",
            lat[lat.len() / 2].as_secs_f64() * 1e3,
            lat[(lat.len() * 99 / 100).min(lat.len() - 1)].as_secs_f64() * 1e3,
            lat.len()
        );
    });
}
