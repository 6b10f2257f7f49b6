//! The API's connection limits over raw TCP: a client that sends nothing, headers or a body
//! dripping in, an idle keep-alive connection are closed by the (shortened) timeouts; over the
//! connection cap, clients wait without the server accepting (or holding) their connections.

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

/// The open descriptors of this process (the test's clients and the server's connections).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_wait_unaccepted() {
    let env = Env::builder()
        .no_controller()
        .api(&["--max-connections", "2"])
        .build()
        .await;
    // Two silent clients take both slots.
    let mut holders = Vec::new();
    for _ in 0..2 {
        holders.push(TcpStream::connect(addr(&env)).await.unwrap());
    }
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
    // A waiting client is served once a slot frees up.
    let mut last = waiting.pop().unwrap();
    last.write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), last.read(&mut buf))
            .await
            .is_err(),
        "a client over the cap was answered"
    );
    drop(waiting);
    drop(holders);
    let (got, _) = read_until_closed(&mut last, Instant::now(), Duration::from_secs(10)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
}
