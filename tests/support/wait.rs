//! Waiting for something the product does in the background: one policy for every test.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How long any test waits for anything (a Channel to be Ready, a process to answer, a cache
/// to follow): long enough for a loaded 2-core machine, short enough to fail a hung test.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How often a condition is looked at again.
pub const POLL: Duration = Duration::from_millis(25);
/// [`TIMEOUT`] as kubectl's `--timeout` flag.
pub const KUBECTL_TIMEOUT: &str = "--timeout=30s";

/// Polls `f` until it gives a value; panics after [`TIMEOUT`] naming `what`, with `explain()`'s
/// account of the state at that moment.
pub async fn eventually_explained<T, F, Fut, E>(what: impl Display, explain: E, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
    E: Fn() -> String,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out after {} s waiting for {what}{}",
                TIMEOUT.as_secs(),
                explain()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `f` until it gives a value (see [`eventually_explained`]).
pub async fn eventually_some<T, F, Fut>(what: impl Display, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_explained(what, String::new, f).await
}

/// Polls `f` until it holds (see [`eventually_explained`]).
pub async fn eventually<F, Fut>(what: impl Display, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_some(what, || {
        let fut = f();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `url` until it answers 2xx.
pub async fn http_ready(url: &str) {
    let http = reqwest::Client::new();
    eventually(format!("{url} to answer 2xx"), || async {
        http.get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
}
