//! Waiting for something the product does in the background: one policy, one polling loop
//! ([`eventually_ok`]) for every test and benchmark. A wait whose length is the assertion (a
//! hand-over within the lease duration, an answer within 10 s of the apiserver's return) names
//! it ([`eventually_within`]); every other wait gets [`TIMEOUT`]. A write retried through an
//! outage ([`create_retrying`]) is a wait too.

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

/// Polls `f` until it answers `Ok`, and returns that value; `f` is called at least once. After
/// `within` it panics naming `what` and the last `Err`, which says how things stood (the
/// Channels still missing, the Lease's holder, the last error).
pub async fn eventually_ok<T, E, F, Fut>(within: Duration, what: impl Display, mut f: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match f().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `f` until it holds; panics after `within` naming `what`.
pub async fn eventually_within<F, Fut>(within: Duration, what: impl Display, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_ok(within, what, || {
        let fut = f();
        async move { fut.await.then_some(()).ok_or("it did not happen") }
    })
    .await
}

/// Polls `f` until it holds; panics after [`TIMEOUT`] naming `what`.
pub async fn eventually<F, Fut>(what: impl Display, f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(TIMEOUT, what, f).await
}

/// Polls `f` until it gives a value; panics after [`TIMEOUT`] naming `what`.
pub async fn eventually_some<T, F, Fut>(what: impl Display, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_ok(TIMEOUT, what, || {
        let fut = f();
        async move { fut.await.ok_or("nothing yet") }
    })
    .await
}

/// The opposite wait: `f` holds at every look throughout `period` (and at least once), else the
/// test fails naming `what`.
pub async fn consistently<F, Fut>(period: Duration, what: impl Display, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + period;
    loop {
        assert!(f().await, "{what}");
        if tokio::time::Instant::now() >= until {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `url` until it answers 2xx, for at most `within`.
pub async fn http_ready_within(within: Duration, url: &str) {
    let http = reqwest::Client::new();
    eventually_ok(within, format!("{url} to answer 2xx"), || async {
        match http.get(url).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// Polls `url` until it answers 2xx.
pub async fn http_ready(url: &str) {
    http_ready_within(TIMEOUT, url).await
}

/// Creates `object` as a user retrying `kubectl create` through an apiserver outage: until it is
/// accepted or found to exist already (an earlier try whose answer was lost), for at most
/// `within`.
pub async fn create_retrying<K>(api: &kube::Api<K>, object: &K, within: Duration)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let what = format!("the create of {:?}", object.meta().name);
    let pp = kube::api::PostParams::default();
    eventually_ok(within, what, || async {
        match api.create(&pp, object).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await
}
