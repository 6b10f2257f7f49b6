//! What the HTTP API tests share: the channel ids of the sources' test inputs, the tokens they
//! hand the API and the fake Graph API, reading an error answer and the API's metrics.

use serde_json::Value;

use super::fakes::APP_SECRET;

/// The operator's Facebook app id in tests.
pub const APP_ID: &str = "app-1";

/// Tokens the API tests hand the API and the fake Graph API; none may appear in a response.
pub const PAGE_TOKEN: &str = "EAAB-page-token-1";
pub const LONG_TOKEN: &str = "long-lived-token-1";
pub const PAGE_ACCESS: &str = "page-access-token-1";
pub const AUTH_TOKEN: &str = "user-auth-token-1";

/// Channel ids (as Airy Core computes them) of the API tests' inputs.
pub const PLUGIN_ID: &str = "625c0084-1043-5727-bfd9-40366ef08a64";
pub const FB_ID: &str = "f405cad8-dd03-5275-be27-a660d4d64949";
pub const SMS_ID: &str = "ed06ae7d-a352-5d78-bc47-7431a8ebab03";
pub const WA_ID: &str = "7fd34ed2-88ae-5797-950d-9ff8a93e6ea2";
pub const GOOGLE_ID: &str = "bda330b6-7049-5190-93af-d5b16b03dd19";

/// Fails when any token of the tests appears in a response.
pub fn no_secret(v: &Value) {
    let s = v.to_string();
    for t in [PAGE_TOKEN, LONG_TOKEN, PAGE_ACCESS, AUTH_TOKEN, APP_SECRET] {
        assert!(!s.contains(t), "a secret leaked into a response: {s}");
    }
}

/// The `message` of an error answer.
pub fn message(v: &Value) -> &str {
    v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {v}"))
}

/// The value of one sample of the API's /metrics (`name{labels}`), if it has one.
pub async fn api_metric(env: &super::Env, sample: &str) -> Option<f64> {
    let text = env
        .http
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .expect("the API answers")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
}

/// The controller's /metrics text.
pub async fn controller_metrics(env: &super::Env) -> String {
    env.http
        .get(format!("http://{}/metrics", env.metrics_addr))
        .send()
        .await
        .expect("the controller's metrics answer")
        .text()
        .await
        .unwrap_or_default()
}
