//! Provider implementations against wiremock fakes of the Graph API and Twilio.

mod support;

use std::time::Duration;

use channel_operator::crd::Source;
use channel_operator::providers::facebook::SUBSCRIBED_FIELDS;
use channel_operator::providers::{ProviderError, Providers};
use channel_operator::reason::Reason;
use channel_operator::secret::SecretString;
use support::channel;
use support::providers::{graph_providers, providers};
use support::Lifecycle;
use wiremock::matchers::{basic_auth, body_string, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PAGE_TOKEN: &str = "EAAB-short-page-token-123";
const LONG_TOKEN: &str = "EAAB-long-lived-token-456";
const PAGE_ACCESS: &str = "EAAB-page-access-token-789";
const APP_SECRET: &str = "app-secret-abcdef";
const TWILIO_TOKEN: &str = "twilio-auth-token-xyz";

fn fb_providers(graph: &str) -> Providers {
    graph_providers(graph, APP_SECRET, &["--provider-timeout-seconds", "1"])
}

fn assert_no_token(msg: &str) {
    for t in [
        PAGE_TOKEN,
        LONG_TOKEN,
        PAGE_ACCESS,
        APP_SECRET,
        TWILIO_TOKEN,
    ] {
        assert!(!msg.contains(t), "message leaks a secret: {msg}");
    }
}

async fn mount_exchange(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("grant_type", "fb_exchange_token"))
        .and(query_param("client_id", "app-1"))
        .and(query_param("client_secret", APP_SECRET))
        .and(query_param("fb_exchange_token", PAGE_TOKEN))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": LONG_TOKEN})),
        )
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn facebook_connect_makes_the_three_graph_calls_of_the_spec() {
    let server = MockServer::start().await;
    mount_exchange(&server).await;
    Mock::given(method("GET"))
        .and(path("/v24.0/fb-page-id-1"))
        .and(query_param(
            "fields",
            "id,name_with_location_descriptor,access_token,picture,is_webhooks_subscribed",
        ))
        .and(query_param("access_token", LONG_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "fb-page-id-1",
            "name_with_location_descriptor": "My Page (Berlin)",
            "access_token": PAGE_ACCESS,
            "picture": {"data": {"url": "https://example.org/p.png"}},
            "is_webhooks_subscribed": false
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .and(query_param("access_token", PAGE_ACCESS))
        .and(query_param("subscribed_fields", SUBSCRIBED_FIELDS))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = fb_providers(&format!("{}/v24.0", server.uri()));
    let ch = channel(Source::Facebook, "fb-page-id-1").build();
    let out = p
        .for_source(Source::Facebook)
        .connect(&ch, Some(&SecretString::new(PAGE_TOKEN)))
        .await
        .unwrap();
    assert_eq!(out.page_name.as_deref(), Some("My Page (Berlin)"));
    assert_eq!(
        out.page_image_url.as_deref(),
        Some("https://example.org/p.png")
    );
    assert_eq!(out.token.unwrap().expose(), PAGE_ACCESS);
}

#[tokio::test]
async fn facebook_oauth_error_is_invalid_credentials_with_status_and_message_but_no_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": {"message": format!("Invalid OAuth access token - Cannot parse access token {PAGE_TOKEN}"),
                      "type": "OAuthException", "code": 190}
        })))
        .mount(&server)
        .await;
    let p = fb_providers(&format!("{}/v24.0", server.uri()));
    let err = p
        .for_source(Source::Facebook)
        .connect(
            &channel(Source::Facebook, "1").build(),
            Some(&SecretString::new(PAGE_TOKEN)),
        )
        .await
        .unwrap_err();
    // OAuth error 190: the token no longer works, whatever the call (token health).
    assert!(
        matches!(err, ProviderError::TokenRejected { expired: false, .. }),
        "{err:?}"
    );
    assert_eq!(err.reason(), Reason::InvalidCredentials);
    let msg = err.to_string();
    assert!(msg.contains("HTTP 400"), "{msg}");
    assert!(msg.contains("Invalid OAuth access token"), "{msg}");
    assert!(msg.contains("(OAuth error 190)"), "{msg}");
    assert_no_token(&msg);
}

#[tokio::test]
async fn facebook_rate_limit_honours_retry_after_and_5xx_is_a_provider_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "7"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            serde_json::json!({"error": {"message": "An unexpected error has occurred", "type": "FacebookApiException", "code": 2}}),
        ))
        .mount(&server)
        .await;
    let p = fb_providers(&format!("{}/v24.0", server.uri()));
    let fb = p.for_source(Source::Facebook);
    let ch = channel(Source::Facebook, "1").build();
    let err = fb
        .connect(&ch, Some(&SecretString::new(PAGE_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::RateLimited {
            message: "facebook: exchanging the page token for a long-lived token: HTTP 429: Too Many Requests".into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
    let err = fb
        .connect(&ch, Some(&SecretString::new(PAGE_TOKEN)))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Failed(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("HTTP 500: An unexpected error has occurred"),
        "{err}"
    );
    assert_eq!(err.reason(), Reason::ProviderError);
}

#[tokio::test]
async fn facebook_timeout_and_refused_connection_never_show_the_url() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let p = fb_providers(&format!("{}/v24.0", server.uri()));
    let ch = channel(Source::Facebook, "1").build();
    let err = p
        .for_source(Source::Facebook)
        .connect(&ch, Some(&SecretString::new(PAGE_TOKEN)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_no_token(&err.to_string());

    // A port nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let p = fb_providers(&format!("http://{addr}/v24.0"));
    let err = p
        .for_source(Source::Facebook)
        .connect(&ch, Some(&SecretString::new(PAGE_TOKEN)))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Failed(_)));
    assert!(err.to_string().contains("could not connect"), "{err}");
    assert_no_token(&err.to_string());
}

#[tokio::test]
async fn facebook_without_token_or_app_credentials_makes_no_call() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let p = fb_providers(&format!("{}/v24.0", server.uri()));
    let ch = channel(Source::Facebook, "1").build();
    let err = p
        .for_source(Source::Facebook)
        .connect(&ch, None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::CredentialsMissing);
    let err = p
        .for_source(Source::Facebook)
        .connect(&ch, Some(&SecretString::new("")))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::CredentialsMissing);
    let no_app = providers(&["--facebook-graph-url", &server.uri()]);
    let err = no_app
        .for_source(Source::Facebook)
        .connect(&ch, Some(&SecretString::new(PAGE_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::CredentialsMissing);
    assert!(err.to_string().contains("--facebook-app-id"), "{err}");
}

#[tokio::test]
async fn facebook_disconnect_deletes_the_page_subscription_with_the_stored_token() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/v24.0/fb-page-id-1/subscribed_apps"))
        .and(query_param("access_token", PAGE_ACCESS))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = fb_providers(&format!("{}/v24.0", server.uri()));
    let ch = channel(Source::Facebook, "fb-page-id-1").build();
    p.for_source(Source::Facebook)
        .disconnect(&ch, Some(&SecretString::new(PAGE_ACCESS)))
        .await
        .unwrap();
    let err = p
        .for_source(Source::Facebook)
        .disconnect(&ch, None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::CredentialsMissing);
}

#[tokio::test]
async fn facebook_proves_the_page_token_without_subscribing() {
    let server = MockServer::start().await;
    mount_exchange(&server).await;
    Mock::given(method("GET"))
        .and(path("/v24.0/fb-page-id-1"))
        .and(query_param("access_token", LONG_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "fb-page-id-1", "access_token": PAGE_ACCESS, "is_webhooks_subscribed": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let p = fb_providers(&format!("{}/v24.0", server.uri()));
    let ch = channel(Source::Facebook, "fb-page-id-1").build();
    let fb = p.for_source(Source::Facebook);
    let proof = fb
        .prove(&ch, Some(&SecretString::new(PAGE_TOKEN)))
        .await
        .unwrap();
    assert_eq!(proof.outcome.token.unwrap().expose(), PAGE_ACCESS);
    assert!(proof.already, "Graph says the app is subscribed already");
    // Without credentials: nothing to prove it with, and no call.
    let err = fb.prove(&ch, None).await.unwrap_err();
    assert_eq!(err.reason(), Reason::CredentialsMissing);
    assert_no_token(&err.to_string());
    // Sources with nothing to prove make no call and keep no token.
    let google = p.for_source(Source::Google);
    assert!(!google.proves());
    let none = google
        .prove(&channel(Source::Google, "agent").build(), None)
        .await
        .unwrap();
    assert!(none.outcome.token.is_none());
}

#[tokio::test]
async fn twilio_without_credentials_makes_no_call() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let p = providers(&["--twilio-api-url", &server.uri()]);
    let ch = channel(Source::TwilioSms, "+491234567").build();
    p.for_source(Source::TwilioSms)
        .connect(&ch, None)
        .await
        .unwrap();
    p.for_source(Source::TwilioSms)
        .disconnect(&ch, None)
        .await
        .unwrap();
    for source in [Source::Google, Source::ChatPlugin] {
        let out = p
            .for_source(source)
            .connect(&channel(source, "x").build(), None)
            .await
            .unwrap();
        assert!(out.token.is_none());
    }
}

fn twilio_providers(url: &str) -> Providers {
    providers(&[
        "--twilio-api-url",
        url,
        "--twilio-account-sid",
        "AC123",
        "--twilio-auth-token",
        TWILIO_TOKEN,
        "--twilio-webhook-url",
        "https://hooks.example.org/twilio",
    ])
}

#[tokio::test]
async fn twilio_points_and_clears_the_numbers_webhook() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/AC123/IncomingPhoneNumbers.json"))
        .and(query_param("PhoneNumber", "+491234567"))
        .and(basic_auth("AC123", TWILIO_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"incoming_phone_numbers": [{"sid": "PN42", "phone_number": "+491234567"}]}),
        ))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/2010-04-01/Accounts/AC123/IncomingPhoneNumbers/PN42.json",
        ))
        .and(basic_auth("AC123", TWILIO_TOKEN))
        .and(body_string(
            "SmsUrl=https%3A%2F%2Fhooks.example.org%2Ftwilio",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": "PN42"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/2010-04-01/Accounts/AC123/IncomingPhoneNumbers/PN42.json",
        ))
        .and(body_string("SmsUrl="))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": "PN42"})))
        .expect(1)
        .mount(&server)
        .await;
    let p = twilio_providers(&server.uri());
    // The WhatsApp form is looked up without its prefix.
    let ch = channel(Source::TwilioWhatsapp, "whatsapp:+491234567").build();
    p.for_source(Source::TwilioWhatsapp)
        .connect(&ch, None)
        .await
        .unwrap();
    p.for_source(Source::TwilioWhatsapp)
        .disconnect(&ch, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn twilio_unknown_number_and_bad_auth_are_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("PhoneNumber", "+491111111"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"incoming_phone_numbers": []})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(query_param("PhoneNumber", "+492222222"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            serde_json::json!({"code": 20003, "message": "Authenticate", "status": 401}),
        ))
        .mount(&server)
        .await;
    let p = twilio_providers(&server.uri());
    let err = p
        .for_source(Source::TwilioSms)
        .connect(&channel(Source::TwilioSms, "+491111111").build(), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("+491111111 is not an incoming phone number"),
        "{err}"
    );
    let err = p
        .for_source(Source::TwilioSms)
        .connect(&channel(Source::TwilioSms, "+492222222").build(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::InvalidCredentials(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("HTTP 401: Authenticate"), "{err}");
    assert_no_token(&err.to_string());
}

#[tokio::test]
async fn facebook_does_not_subscribe_a_page_that_is_already_subscribed() {
    let server = MockServer::start().await;
    mount_exchange(&server).await;
    Mock::given(method("GET"))
        .and(path("/v24.0/p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "name_with_location_descriptor": "P2", "access_token": PAGE_ACCESS, "is_webhooks_subscribed": true
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let p = fb_providers(&format!("{}/v24.0", server.uri()));
    let out = p
        .for_source(Source::Facebook)
        .connect(
            &channel(Source::Facebook, "p2").build(),
            Some(&SecretString::new(PAGE_TOKEN)),
        )
        .await
        .unwrap();
    assert_eq!(out.token.unwrap().expose(), PAGE_ACCESS);
}
