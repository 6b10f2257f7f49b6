//! The API's connection limits over raw TCP: a client that sends nothing, headers or a body
//! dripping in, an idle keep-alive connection are closed by the (shortened) timeouts; idle and
//! slow crowds of 600 connections are shed before a new client waits; one peer holds at most its
//! share; over the connection cap with every connection busy, clients wait without the server
//! accepting (or holding) their connections.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header and body read timeouts of [`short_timeouts`].
const HEADER: Duration = Duration::from_secs(1);
/// The idle timeout of [`short_timeouts`].
const IDLE: Duration = Duration::from_secs(2);

/// An API with one-second header and body timeouts and a two-second idle timeout.
async fn short_timeouts() -> Env {
    Env::builder()
        .no_controller()
        .api(&[
            "--header-read-timeout-seconds",
            "1",
            "--body-read-timeout-seconds",
            "1",
            "--idle-timeout-seconds",
            "2",
        ])
        .build()
        .await
}

fn addr(env: &Env) -> String {
    env.base.trim_start_matches("http://").to_owned()
}

/// How late a connection may be closed after its timeout: the server's timer and this test's
/// reads wait for a loaded machine's scheduler. Measured when it was set: at most 68 ms late
/// for the 1 s timeouts and 100 ms for the 2 s idle timeout, 20 runs of this file on 2 cores
/// with four busy loops besides (load average 10).
const LATE: Duration = Duration::from_millis(500);
/// How early: the idle clock starts when the answer is ready, a moment before the client has
/// read it (never seen earlier than the timeout itself).
const EARLY: Duration = Duration::from_millis(100);

/// Fails unless the connection was closed (`closed` after `start`) at `timeout`: not before
/// it less [`EARLY`], not after it plus [`LATE`].
fn assert_closed_at(closed: Option<Duration>, timeout: Duration, what: &str) {
    let closed = closed.unwrap_or_else(|| panic!("{what}: still open {:?} after", timeout + LATE));
    eprintln!("{what}: closed after {closed:?} (timeout {timeout:?})");
    assert!(
        closed + EARLY >= timeout && closed <= timeout + LATE,
        "{what}: closed after {closed:?}, not at its timeout of {timeout:?}"
    );
}

/// Reads until the server closes the connection (or `limit` passes from `start`): what it
/// sent, and whether and when (after `start`) it closed.
async fn read_until_closed(
    stream: &mut (impl AsyncRead + Unpin),
    start: Instant,
    limit: Duration,
) -> (String, Option<Duration>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(start.elapsed()),
                )
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_sending_nothing_is_closed_after_the_header_timeout() {
    let env = short_timeouts().await;
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr(&env)).await.unwrap();
    let (got, closed) = read_until_closed(&mut stream, start, HEADER + LATE).await;
    assert_closed_at(closed, HEADER, "a silent connection");
    assert!(got.is_empty(), "{got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_at_one_line_per_half_second_are_cut_off() {
    let env = short_timeouts().await;
    let start = Instant::now();
    let stream = TcpStream::connect(addr(&env)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // Each line comes well within the timeout, the whole head never does.
    let drip = tokio::spawn(async move {
        let _ = write.write_all(b"GET /healthz HTTP/1.1\r\n").await;
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if write
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
        }
        40
    });
    let (got, closed) = read_until_closed(&mut read, start, HEADER + LATE).await;
    assert_closed_at(closed, HEADER, "a head sent a line per 0.5 s");
    assert!(
        !got.contains("200 OK"),
        "the slow request was answered: {got}"
    );
    drip.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_at_one_byte_per_half_second_is_cut_off_with_408() {
    let env = short_timeouts().await;
    let mut stream = TcpStream::connect(addr(&env)).await.unwrap();
    let start = Instant::now();
    stream
        .write_all(
            b"POST /channels.list HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{",
        )
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    let drip = tokio::spawn(async move {
        for _ in 0..39 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    // The body timeout (1 s) counts from the head, sent at `start`.
    let (got, closed) = read_until_closed(&mut read, start, HEADER + LATE).await;
    assert_closed_at(closed, HEADER, "a body sent a byte per 0.5 s");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("body-read-timeout-seconds"), "{got}");
    drip.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let env = short_timeouts().await;
    let mut stream = TcpStream::connect(addr(&env)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    let answered = Instant::now();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Idle: not cut at the one-second header timeout, but at the two-second idle timeout.
    let (_, closed) = read_until_closed(&mut stream, answered, IDLE + LATE).await;
    assert_closed_at(closed, IDLE, "an idle keep-alive connection");
}

/// Sends a chat plugin connect: without a controller it waits the sync timeout, keeping its
/// connection busy.
async fn send_connect(stream: &mut TcpStream, name: &str) {
    let body = format!("{{\"name\":\"{name}\"}}");
    stream
        .write_all(
            format!(
                "POST /channels.chatplugin.connect HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
}

/// The open descriptors of this process (the test's clients and the server's connections).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_wait_unaccepted_while_every_one_is_answered() {
    // No controller: a connect waits the whole sync timeout, its connection busy all along.
    let env = Env::builder()
        .no_controller()
        .api(&["--max-connections", "2", "--sync-timeout-seconds", "3"])
        .build()
        .await;
    // Two clients whose requests are being answered take both slots: neither is idle or slow,
    // so neither is closed for a newcomer.
    let mut holders = Vec::new();
    for i in 0..2 {
        let mut stream = TcpStream::connect(addr(&env)).await.unwrap();
        send_connect(&mut stream, &format!("holder-{i}")).await;
        holders.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = open_fds();
    // 100 more clients: the kernel completes their handshakes, the server accepts none.
    let mut waiting = Vec::new();
    for _ in 0..100 {
        waiting.push(TcpStream::connect(addr(&env)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 100 client sockets, plus one per connection the server accepted (the other tests of this
    // binary run at the same time and open some descriptors too: a margin of 50).
    let added = open_fds().saturating_sub(before);
    assert!(
        added < 100 + 50,
        "the server took a descriptor for each of 100 clients over the cap: {added} new descriptors"
    );
    // A waiting client is served once a slot frees up: when the holders' answers (504 after
    // the sync timeout) are sent.
    let mut last = waiting.pop().unwrap();
    last.write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), last.read(&mut buf))
            .await
            .is_err(),
        "a client over the cap was answered while both slots were busy"
    );
    drop(waiting);
    for holder in &mut holders {
        let (got, _) = read_until_closed(holder, Instant::now(), Duration::from_secs(10)).await;
        assert!(got.starts_with("HTTP/1.1 504"), "{got:?}");
    }
    let (got, _) = read_until_closed(&mut last, Instant::now(), Duration::from_secs(10)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
}

// ---------------------------------------------------------------------------------------------
// Starvation: idle or slow clients holding every connection must not keep a working client
// waiting (issue: 560 idle keep-alive connections locked every client out for 60 s).

/// How many connections the starving clients open: more than the default cap of 512.
const CROWD: usize = 600;

/// A client socket from 127.0.0.`octet` (all of 127/8 reaches the loopback interface), so that
/// the crowd comes from many peers, as it would from many machines.
async fn connect_from(env: &Env, octet: u8) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("127.0.0.{octet}:0").parse().unwrap())
        .unwrap();
    socket.connect(addr(env).parse().unwrap()).await.unwrap()
}

/// The peer of the `i`-th crowd connection: 60 addresses, ten connections each.
fn crowd_peer(i: usize) -> u8 {
    10 + (i % 60) as u8
}

/// One complete `GET /healthz` from a new connection: how long until the answer was read, or
/// `None` when none came within `limit`.
async fn answered_within(env: &Env, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let attempt = async {
        let mut stream = TcpStream::connect(addr(env)).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got).await;
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200")
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(true) => Some(start.elapsed()),
        _ => None,
    }
}

/// Five new clients one after the other while the crowd holds its connections: each must be
/// answered within a second. Prints the times.
async fn new_clients_are_answered_within_a_second(env: &Env, crowd: &str) {
    let mut times = Vec::new();
    for _ in 0..5 {
        let took = answered_within(env, Duration::from_secs(5)).await;
        let took = took.unwrap_or_else(|| {
            panic!("with {CROWD} {crowd} connections open, a new client got no answer within 5 s (earlier clients: {times:?})")
        });
        times.push(took);
    }
    println!("{CROWD} {crowd} connections: new clients answered in {times:?}");
    let slowest = times.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(1),
        "with {CROWD} {crowd} connections open, a new client waited {slowest:?} (all: {times:?})"
    );
}

/// The value of one sample of the API's /metrics, which must have it.
async fn metric(env: &Env, sample: &str) -> f64 {
    api_metric(env, sample)
        .await
        .unwrap_or_else(|| panic!("no sample {sample} in /metrics"))
}

/// The crowd of the report: each client sends one unauthenticated GET /healthz, then stays
/// connected and idle; from 60 addresses (`many_peers`) or all from 127.0.0.1, as the new
/// clients are.
async fn idle_crowd(env: &Env, many_peers: bool) -> Vec<TcpStream> {
    let mut crowd = Vec::new();
    for i in 0..CROWD {
        let octet = if many_peers { crowd_peer(i) } else { 1 };
        let mut stream = connect_from(env, octet).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
            .await
            .unwrap();
        crowd.push(stream);
    }
    // Read what each one got (the ones the server never took get nothing).
    let mut answered = 0;
    for stream in &mut crowd {
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(20), stream.read(&mut buf)).await
        {
            answered += usize::from(n > 0);
        }
    }
    println!("{answered} of {CROWD} idle clients were answered");
    crowd
}

#[tokio::test(flavor = "multi_thread")]
async fn six_hundred_idle_keep_alive_connections_do_not_keep_a_client_waiting() {
    let env = Env::builder().no_controller().api(&[]).build().await;
    let crowd = idle_crowd(&env, true).await;
    new_clients_are_answered_within_a_second(&env, "idle keep-alive").await;
    // Room was made by closing idle connections, and the metric says so.
    let shed = metric(
        &env,
        "channel_operator_api_connections_shed_total{reason=\"idle\"}",
    )
    .await;
    assert!(shed >= 5.0, "idle connections shed: {shed}");
    drop(crowd);
}

#[tokio::test(flavor = "multi_thread")]
async fn six_hundred_idle_connections_of_the_clients_own_address_do_not_keep_it_waiting() {
    let env = Env::builder().no_controller().api(&[]).build().await;
    let crowd = idle_crowd(&env, false).await;
    new_clients_are_answered_within_a_second(&env, "idle keep-alive (one address)").await;
    drop(crowd);
}

#[tokio::test(flavor = "multi_thread")]
async fn six_hundred_dribbled_headers_do_not_keep_a_client_waiting() {
    let env = Env::builder().no_controller().api(&[]).build().await;
    // Each crowd client sends a header line every 300 ms and never finishes its request.
    let mut drips = Vec::new();
    for i in 0..CROWD {
        let mut stream = connect_from(&env, crowd_peer(i)).await;
        drips.push(tokio::spawn(async move {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n").await;
            for n in 0..200 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if stream
                    .write_all(format!("X-Slow-{n}: 1\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }));
    }
    // The crowd has been dribbling for a while when the working clients come.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    new_clients_are_answered_within_a_second(&env, "dribbled-header").await;
    let shed = metric(
        &env,
        "channel_operator_api_connections_shed_total{reason=\"slow\"}",
    )
    .await;
    assert!(shed >= 5.0, "slow connections shed: {shed}");
    for d in drips {
        d.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn six_hundred_dribbled_bodies_do_not_keep_a_client_waiting() {
    let env = Env::builder().no_controller().api(&[]).build().await;
    // Each crowd client sends its headers at once, then a body byte every 300 ms.
    let mut drips = Vec::new();
    for i in 0..CROWD {
        let mut stream = connect_from(&env, crowd_peer(i)).await;
        drips.push(tokio::spawn(async move {
            let _ = stream
                .write_all(b"POST /channels.list HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
                .await;
            for _ in 0..200 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if stream.write_all(b" ").await.is_err() {
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    new_clients_are_answered_within_a_second(&env, "dribbled-body").await;
    for d in drips {
        d.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_peer_cannot_hold_more_than_its_share() {
    // No controller: a connect waits the whole sync timeout, holding its connection busy.
    let env = Env::builder()
        .no_controller()
        .api(&[
            "--max-connections-per-peer",
            "4",
            "--sync-timeout-seconds",
            "4",
        ])
        .build()
        .await;
    let mut busy = Vec::new();
    for i in 0..4 {
        let mut stream = connect_from(&env, 2).await;
        send_connect(&mut stream, &format!("busy-{i}")).await;
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A fifth connection of that peer is closed at once, unanswered ...
    let mut fifth = connect_from(&env, 2).await;
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
        .await;
    let (got, closed) = read_until_closed(&mut fifth, Instant::now(), Duration::from_secs(2)).await;
    assert!(
        closed.is_some() && got.is_empty(),
        "the peer's fifth connection was served: {got:?} {closed:?}"
    );
    // ... while another peer is served.
    let mut other = connect_from(&env, 3).await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (got, _) = read_until_closed(&mut other, Instant::now(), Duration::from_secs(2)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    let refused = metric(
        &env,
        "channel_operator_api_connections_shed_total{reason=\"peer_limit\"}",
    )
    .await;
    assert_eq!(refused, 1.0);
    drop(busy);
}
