//! Token health at the providers (docs/providers.md, "Token health"): Graph's OAuth error 190 recognised
//! in every Graph answer as credentials that no longer work, and the Twilio account's status.

mod support;

use channel_operator::crd::Source;
use channel_operator::providers::ProviderError;
use channel_operator::reason::Reason;
use channel_operator::secret::SecretString;
use support::channel;
use support::providers::{graph_providers, providers};
use support::Lifecycle;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "EAA-stored-token-do-not-leak-190";
const APP_SECRET: &str = "app-secret-do-not-leak-190";
const TWILIO_TOKEN: &str = "twilio-token-do-not-leak-190";

fn oauth_error(subcode: i64) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": {
        "message": format!("Error validating access token: session closed ({TOKEN})"),
        "type": "OAuthException", "code": 190, "error_subcode": subcode}}))
}

fn graph(server: &MockServer) -> channel_operator::providers::Providers {
    graph_providers(&format!("{}/v24.0", server.uri()), APP_SECRET, &[])
}

fn assert_rejected(err: &ProviderError, expired: bool, what: &str) {
    assert!(
        matches!(err, ProviderError::TokenRejected { expired: e, .. } if *e == expired),
        "{what}: {err:?}"
    );
    assert_eq!(err.reason(), Reason::InvalidCredentials, "{what}");
    let verdict = err.credentials_verdict().expect("a verdict on the token");
    assert!(verdict.health.breaks_channel(), "{what}");
    for text in [err.to_string(), verdict.message] {
        assert!(!text.contains("do-not-leak"), "{what} leaks: {text}");
        assert!(text.contains("OAuth error 190"), "{what}: {text}");
    }
}

#[tokio::test]
async fn oauth_error_190_from_any_graph_call_says_the_token_no_longer_works() {
    let server = MockServer::start().await;
    // The re-check of a page (the page read), of a WhatsApp number, and a WhatsApp subscribe.
    Mock::given(method("GET"))
        .and(path("/v24.0/1001"))
        .respond_with(oauth_error(463))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/2002"))
        .respond_with(oauth_error(460))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v24.0/3003/subscribed_apps"))
        .respond_with(oauth_error(467))
        .expect(1)
        .mount(&server)
        .await;
    let p = graph(&server);
    let token = SecretString::new(TOKEN);
    let err = p
        .for_source(Source::Facebook)
        .recheck(&channel(Source::Facebook, "1001").build(), Some(&token))
        .await
        .unwrap_err();
    assert_rejected(&err, true, "page read, subcode 463");
    assert!(err.to_string().contains("subcode 463: it expired"), "{err}");
    let err = p
        .for_source(Source::Whatsapp)
        .recheck(&channel(Source::Whatsapp, "2002").build(), Some(&token))
        .await
        .unwrap_err();
    assert_rejected(&err, false, "number read, subcode 460");
    assert!(err.to_string().contains("password"), "{err}");
    let waba = channel(Source::Whatsapp, "2003")
        .business_account("3003")
        .build();
    let err = p
        .for_source(Source::Whatsapp)
        .disconnect(&waba, Some(&token))
        .await
        .unwrap_err();
    assert_rejected(&err, false, "business account unsubscribe, subcode 467");
}

#[tokio::test]
async fn the_twilio_account_status_is_read_with_the_accounts_credentials() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/AC9.json"))
        .and(basic_auth("AC9", TWILIO_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"sid": "AC9", "status": "suspended", "friendly_name": "shop"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let p = providers(&[
        "--twilio-api-url",
        &server.uri(),
        "--twilio-account-sid",
        "AC9",
        "--twilio-auth-token",
        TWILIO_TOKEN,
        "--twilio-webhook-url",
        "https://hooks.example.org/twilio",
    ]);
    let status = p.twilio().account_status().await.unwrap().unwrap();
    assert_eq!(status, "suspended");
    // Without an account there is nothing to read.
    assert!(providers(&[]).twilio().account_status().await.is_none());
}
