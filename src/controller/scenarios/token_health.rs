//! The calls of a re-check of a Graph Channel (docs/channel.md, "Credentials health"): one
//! `debug_token` about the token the channel uses, before the channel's own read; while the
//! token does not work, that one call and nothing else — no page read, no subscribe — until it
//! works again (repaired at Facebook: no new Secret), then the channel is back by itself.

use std::sync::atomic::{AtomicI64, Ordering};

use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, ResponseTemplate};

use super::*;

/// What Graph's `debug_token` says of the page's token: valid (0) or invalidated with an OAuth
/// subcode, flipped at run time.
#[derive(Clone, Default)]
struct Token(Arc<AtomicI64>);

impl Token {
    async fn mount(s: &Scenario) -> Token {
        let token = Token::default();
        Mock::given(method("GET"))
            .and(path("/v24.0/debug_token"))
            .respond_with(token.clone())
            .with_priority(1)
            .mount(&s.graph)
            .await;
        token
    }

    fn invalidate(&self, subcode: i64) {
        self.0.store(subcode, Ordering::SeqCst);
    }

    fn repair(&self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

impl wiremock::Respond for Token {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let scopes = crate::credentials_health::required_scopes(crate::crd::Source::Facebook);
        let data = match self.0.load(Ordering::SeqCst) {
            0 => json!({"is_valid": true, "expires_at": 0, "scopes": scopes}),
            subcode => json!({"is_valid": false, "expires_at": 0, "scopes": [],
                "error": {"code": 190, "subcode": subcode,
                    "message": "Error validating access token: the session has been invalidated"}}),
        };
        ResponseTemplate::new(200).set_body_json(json!({ "data": data }))
    }
}

/// `(status, reason)` of condition `type_` in a status patch's body.
fn condition(body: &Value, type_: &str) -> (String, String) {
    let c = body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {body:#}"));
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.into(), reason.into())
}

#[tokio::test]
async fn a_recheck_asks_debug_token_once_and_nothing_else_while_the_token_does_not_work() {
    let mut s = Scenario::rechecked_after(200, Duration::ZERO).await;
    let token = Token::mount(&s).await;
    s.reconcile().await.unwrap();
    s.api(&["PATCH channel"]);
    s.reconcile().await.unwrap();
    let calls = s.api(&CONNECT_API);
    s.provider(&CONNECT).await;
    let connected = &calls[8].body;
    assert_eq!(
        condition(connected, "CredentialsHealthy"),
        pair("True", "Valid")
    );
    assert!(connected["status"]["credentials"]["checkedAt"].is_string());
    assert!(connected["status"]["credentials"]["expiresAt"].is_null());

    // A re-check: what Graph says of the token, then the page; the same found: nothing written.
    s.reconcile().await.unwrap();
    s.api(&[CLAIM_GET, RECORD_GET, CREDENTIALS]);
    s.provider(&[DEBUG_TOKEN, "GET /v24.0/1001"]).await;

    // The user changed their password: one debug_token, no page read, no subscribe.
    token.invalidate(460);
    s.reconcile().await.unwrap();
    let calls = s.api(&[
        CLAIM_GET,
        RECORD_GET,
        CREDENTIALS,
        "POST events",
        "PATCH channel/status",
        "POST events",
    ]);
    s.provider(&[DEBUG_TOKEN]).await;
    assert_eq!(calls[3].body["reason"], "Invalidated");
    assert_eq!(calls[3].body["type"], "Warning");
    let stopped = &calls[4].body;
    assert_eq!(
        condition(stopped, "Ready"),
        pair("False", "InvalidCredentials")
    );
    assert_eq!(
        condition(stopped, "Stalled"),
        pair("True", "InvalidCredentials")
    );
    assert_eq!(
        condition(stopped, "CredentialsHealthy"),
        pair("False", "Invalidated")
    );
    assert_eq!(calls[5].body["reason"], "InvalidCredentials");
    let all = serde_json::to_string(&calls.iter().map(|c| &c.body).collect::<Vec<_>>()).unwrap();
    assert!(all.contains("password"), "{all}");
    assert!(
        !all.contains(USER_TOKEN) && !all.contains(PAGE_ACCESS),
        "{all}"
    );

    // Re-checked again, still invalid: the one call, no write, no Event.
    s.reconcile().await.unwrap();
    s.api(&[CLAIM_GET, RECORD_GET, CREDENTIALS]);
    s.provider(&[DEBUG_TOKEN]).await;

    // Repaired at Facebook: back by itself with the same Secret, without a subscribe.
    token.repair();
    s.reconcile().await.unwrap();
    s.provider(&[DEBUG_TOKEN, "GET /v24.0/1001"]).await;
    let calls = s.api(&[
        CLAIM_GET,
        RECORD_GET,
        CREDENTIALS,
        "POST events",
        "PATCH channel/status",
    ]);
    assert_eq!(
        (&calls[3].body["reason"], &calls[3].body["type"]),
        (&json!("Valid"), &json!("Normal"))
    );
    assert_eq!(
        condition(&calls[4].body, "Ready"),
        pair("True", "Connected")
    );
    assert_eq!(
        condition(&calls[4].body, "CredentialsHealthy"),
        pair("True", "Valid")
    );
}

#[tokio::test]
async fn a_token_already_invalid_at_connect_is_not_proven_again_until_it_works() {
    let mut s = Scenario::rechecked_after(200, Duration::ZERO).await;
    let token = Token::mount(&s).await;
    token.invalidate(467);
    s.reconcile().await.unwrap();
    s.reconcile().await.unwrap();
    s.fake.take();
    // The proof (exchange, page read), one debug_token about the page access token: no subscribe.
    s.provider(&[
        "GET /v24.0/oauth/access_token",
        "GET /v24.0/1001",
        DEBUG_TOKEN,
    ])
    .await;
    let ch = s.fake.channel.lock().unwrap().clone();
    assert_eq!(condition(&ch, "Ready"), pair("False", "InvalidCredentials"));
    assert_eq!(
        condition(&ch, "CredentialsHealthy"),
        pair("False", "Invalidated")
    );
    assert!(
        s.fake.records.lock().unwrap().get(RECORD).is_none(),
        "nothing recorded, nothing made"
    );

    // The same Secret: no proof again, only the re-check's debug_token about the token refused.
    s.reconcile().await.unwrap();
    s.api(&[CLAIM_GET, RECORD_GET, CREDENTIALS]);
    s.provider(&[DEBUG_TOKEN]).await;

    // Repaired at Facebook: connected with the same Secret (the debug_token just asked is the
    // connect's).
    token.repair();
    s.reconcile().await.unwrap();
    s.provider(&[DEBUG_TOKEN, CONNECT[0], CONNECT[1], CONNECT[3]])
        .await;
    let ch = s.fake.channel.lock().unwrap().clone();
    assert_eq!(condition(&ch, "Ready"), pair("True", "Connected"));
    assert_eq!(condition(&ch, "CredentialsHealthy"), pair("True", "Valid"));
}
