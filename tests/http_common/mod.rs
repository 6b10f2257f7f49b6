//! Waiting for a process the test started to serve.

use std::time::Duration;

/// Polls `url` until it answers 2xx; panics after 30 seconds.
pub async fn wait_ready(url: &str) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !http
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} did not answer 2xx within 30 seconds"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
