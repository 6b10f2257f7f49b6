//! The Instagram, WhatsApp Cloud API and Viber providers against wiremock fakes: every call
//! pinned (method, path, query, headers, body) with its count, the failure classes (401/OAuth,
//! 5xx, timeouts, 429) and no token in any message.

mod support;

use std::time::Duration;

use channel_operator::crd::{Channel, Source};
use channel_operator::providers::facebook::SUBSCRIBED_FIELDS;
use channel_operator::providers::whatsapp::NUMBER_FIELDS;
use channel_operator::providers::{ProviderError, Providers};
use channel_operator::reason::Reason;
use channel_operator::secret::SecretString;
use serde_json::json;
use support::channel;
use support::Lifecycle;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PAGE_TOKEN: &str = "EAAB-short-page-token-123";
const USER_TOKEN: &str = "EAAB-whatsapp-user-token-321";
const LONG_TOKEN: &str = "EAAB-long-lived-token-456";
const PAGE_ACCESS: &str = "EAAB-page-access-token-789";
const APP_SECRET: &str = "app-secret-abcdef";
const VIBER_TOKEN: &str = "4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f";
const ACCOUNT: &str = "17841400000000001";
const PAGE: &str = "100000000001";
const NUMBER: &str = "106540352242922";
const WABA: &str = "102290129340398";
const VIBER_ID: &str = "pa:5469875432398472639";
const WEBHOOK: &str = "https://airy.example/viber";

fn providers(server: &MockServer) -> Providers {
    let graph = format!("{}/v24.0", server.uri());
    support::providers::providers(&[
        "--facebook-app-id",
        "app-1",
        "--facebook-app-secret",
        APP_SECRET,
        "--facebook-graph-url",
        &graph,
        "--viber-api-url",
        &server.uri(),
        "--viber-webhook-url",
        WEBHOOK,
        "--provider-timeout-seconds",
        "1",
    ])
}

fn whatsapp(waba: Option<&str>) -> Channel {
    let number = channel(Source::Whatsapp, NUMBER);
    match waba {
        Some(w) => number.business_account(w),
        None => number,
    }
    .build()
}

fn assert_no_token(msg: &str) {
    for t in [
        PAGE_TOKEN,
        USER_TOKEN,
        LONG_TOKEN,
        PAGE_ACCESS,
        APP_SECRET,
        VIBER_TOKEN,
    ] {
        assert!(!msg.contains(t), "message leaks a secret: {msg}");
    }
}

async fn mount_exchange(server: &MockServer, short: &str, times: u64) {
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("grant_type", "fb_exchange_token"))
        .and(query_param("client_id", "app-1"))
        .and(query_param("client_secret", APP_SECRET))
        .and(query_param("fb_exchange_token", short))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": LONG_TOKEN})))
        .expect(times)
        .mount(server)
        .await;
}

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"success": true}))
}

#[tokio::test]
async fn instagram_connects_through_the_linked_page_and_disconnect_unsubscribes_it() {
    let server = MockServer::start().await;
    mount_exchange(&server, PAGE_TOKEN, 1).await;
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{PAGE}")))
        .and(query_param(
            "fields",
            "id,name_with_location_descriptor,access_token,picture,is_webhooks_subscribed",
        ))
        .and(query_param("access_token", LONG_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": PAGE, "name_with_location_descriptor": "Shop (Berlin)",
            "access_token": PAGE_ACCESS, "is_webhooks_subscribed": false
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/me/subscribed_apps"))
        .and(query_param("access_token", PAGE_ACCESS))
        .and(query_param("subscribed_fields", SUBSCRIBED_FIELDS))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v24.0/{PAGE}/subscribed_apps")))
        .and(query_param("access_token", PAGE_ACCESS))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    let p = providers(&server);
    let ch = channel(Source::Instagram, ACCOUNT)
        .instagram_page(PAGE)
        .build();
    let provider = p.for_source(Source::Instagram);
    let out = provider
        .connect(&ch, Some(&SecretString::new(PAGE_TOKEN)))
        .await
        .unwrap();
    assert_eq!(out.page_name.as_deref(), Some("Shop (Berlin)"));
    assert_eq!(
        out.token.as_ref().map(SecretString::expose),
        Some(PAGE_ACCESS)
    );
    provider
        .disconnect(&ch, Some(&SecretString::new(PAGE_ACCESS)))
        .await
        .unwrap();
    // No call reached the account id as a path: the Graph calls go to the page.
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| !r.url.path().contains(ACCOUNT)));
}

#[tokio::test]
async fn instagram_without_its_page_calls_nothing() {
    let server = MockServer::start().await;
    let p = providers(&server);
    // No spec.instagram.pageId.
    let ch = channel(Source::Instagram, ACCOUNT).build();
    let e = p
        .for_source(Source::Instagram)
        .connect(&ch, Some(&SecretString::new(PAGE_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Reason::CredentialsMissing);
    assert!(e.to_string().contains("spec.instagram.pageId"), "{e}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

async fn mount_number(server: &MockServer, token: &str, times: u64) {
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{NUMBER}")))
        .and(query_param("fields", NUMBER_FIELDS))
        .and(query_param("access_token", token))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "display_phone_number": "+49 30 1234567", "verified_name": "Shop GmbH",
            "quality_rating": "GREEN", "id": NUMBER
        })))
        .expect(times)
        .mount(server)
        .await;
}

#[tokio::test]
async fn whatsapp_reads_the_number_subscribes_the_business_account_and_unsubscribes_it() {
    let server = MockServer::start().await;
    mount_exchange(&server, USER_TOKEN, 1).await;
    // Once at connect, once at the re-check.
    mount_number(&server, LONG_TOKEN, 2).await;
    Mock::given(method("POST"))
        .and(path(format!("/v24.0/{WABA}/subscribed_apps")))
        .and(query_param("access_token", LONG_TOKEN))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v24.0/{WABA}/subscribed_apps")))
        .and(query_param("access_token", LONG_TOKEN))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    let p = providers(&server);
    let ch = whatsapp(Some(WABA));
    let provider = p.for_source(Source::Whatsapp);
    let waba = channel_operator::effects::EffectKey::new(
        channel_operator::effects::EffectKind::BusinessAccountSubscription,
        WABA,
        "app-1",
    );
    assert_eq!(provider.effects(&ch), [waba]);
    let out = provider
        .connect(&ch, Some(&SecretString::new(USER_TOKEN)))
        .await
        .unwrap();
    assert_eq!(out.display_phone_number.as_deref(), Some("+49 30 1234567"));
    assert_eq!(out.verified_name.as_deref(), Some("Shop GmbH"));
    assert_eq!(out.quality_rating.as_deref(), Some("GREEN"));
    assert_eq!(
        out.token.as_ref().map(SecretString::expose),
        Some(LONG_TOKEN)
    );
    let stored = SecretString::new(LONG_TOKEN);
    let again = provider.recheck(&ch, Some(&stored)).await.unwrap();
    assert_eq!(again.verified_name.as_deref(), Some("Shop GmbH"));
    provider.disconnect(&ch, Some(&stored)).await.unwrap();
}

#[tokio::test]
async fn whatsapp_without_a_business_account_subscribes_nothing_and_has_nothing_to_undo() {
    let server = MockServer::start().await;
    mount_exchange(&server, USER_TOKEN, 1).await;
    mount_number(&server, LONG_TOKEN, 1).await;
    let p = providers(&server);
    let ch = whatsapp(None);
    let provider = p.for_source(Source::Whatsapp);
    assert_eq!(provider.effects(&ch), []);
    provider
        .connect(&ch, Some(&SecretString::new(USER_TOKEN)))
        .await
        .unwrap();
    provider
        .disconnect(&ch, Some(&SecretString::new(LONG_TOKEN)))
        .await
        .unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn whatsapp_number_the_token_cannot_read_fails_with_metas_message_and_no_token() {
    let server = MockServer::start().await;
    mount_exchange(&server, USER_TOKEN, 1).await;
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{NUMBER}")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": format!("Invalid OAuth access token {LONG_TOKEN}"),
            "type": "OAuthException", "code": 190
        }})))
        .expect(1)
        .mount(&server)
        .await;
    let p = providers(&server);
    let e = p
        .for_source(Source::Whatsapp)
        .connect(&whatsapp(Some(WABA)), Some(&SecretString::new(USER_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Reason::InvalidCredentials);
    let msg = e.to_string();
    assert!(
        msg.contains("reading the WhatsApp number: HTTP 400"),
        "{msg}"
    );
    assert!(msg.contains("Invalid OAuth access token"), "{msg}");
    assert_no_token(&msg);
}

#[tokio::test]
async fn whatsapp_5xx_429_and_timeouts_are_provider_errors_without_tokens() {
    for (answer, retry) in [
        (ResponseTemplate::new(503), None),
        (
            ResponseTemplate::new(429).insert_header("Retry-After", "7"),
            Some(Duration::from_secs(7)),
        ),
        (
            ResponseTemplate::new(200).set_delay(Duration::from_secs(3)),
            None,
        ),
    ] {
        let server = MockServer::start().await;
        mount_exchange(&server, USER_TOKEN, 1).await;
        Mock::given(method("GET"))
            .and(path(format!("/v24.0/{NUMBER}")))
            .respond_with(answer)
            .mount(&server)
            .await;
        let e = providers(&server)
            .for_source(Source::Whatsapp)
            .connect(&whatsapp(None), Some(&SecretString::new(USER_TOKEN)))
            .await
            .unwrap_err();
        assert_eq!(e.reason(), Reason::ProviderError, "{e}");
        if let Some(after) = retry {
            assert!(
                matches!(e, ProviderError::RateLimited { retry_after: Some(a), .. } if a == after),
                "{e:?}"
            );
        }
        assert_no_token(&e.to_string());
        assert!(!e.to_string().contains("http://"), "{e}");
    }
}

async fn mount_account(server: &MockServer, answer: serde_json::Value, times: u64) {
    Mock::given(method("POST"))
        .and(path("/pa/get_account_info"))
        .and(header("X-Viber-Auth-Token", VIBER_TOKEN))
        .and(body_json(json!({})))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(times)
        .mount(server)
        .await;
}

fn account() -> serde_json::Value {
    json!({"status": 0, "status_message": "ok", "id": VIBER_ID, "name": "Shop Bot",
        "icon": "https://media.viber.example/icon.jpg", "uri": "shopbot"})
}

#[tokio::test]
async fn viber_reads_the_account_sets_the_webhook_and_clears_it() {
    let server = MockServer::start().await;
    // Once at connect, once at the re-check.
    mount_account(&server, account(), 2).await;
    Mock::given(method("POST"))
        .and(path("/pa/set_webhook"))
        .and(header("X-Viber-Auth-Token", VIBER_TOKEN))
        .and(body_json(
            json!({"url": WEBHOOK, "send_name": true, "send_photo": true}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": 0, "status_message": "ok"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/pa/set_webhook"))
        .and(header("X-Viber-Auth-Token", VIBER_TOKEN))
        .and(body_json(json!({"url": ""})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": 0, "status_message": "ok"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = providers(&server);
    let ch = channel(Source::Viber, VIBER_ID).build();
    let provider = p.for_source(Source::Viber);
    let token = SecretString::new(VIBER_TOKEN);
    let out = provider.connect(&ch, Some(&token)).await.unwrap();
    assert_eq!(out.page_name.as_deref(), Some("Shop Bot"));
    assert_eq!(
        out.page_image_url.as_deref(),
        Some("https://media.viber.example/icon.jpg")
    );
    assert_eq!(
        out.token.as_ref().map(SecretString::expose),
        Some(VIBER_TOKEN)
    );
    let again = provider.recheck(&ch, Some(&token)).await.unwrap();
    assert_eq!(again.page_name.as_deref(), Some("Shop Bot"));
    provider.disconnect(&ch, Some(&token)).await.unwrap();
}

#[tokio::test]
async fn viber_refuses_a_token_of_another_account_before_setting_any_webhook() {
    let server = MockServer::start().await;
    mount_account(&server, account(), 1).await;
    let p = providers(&server);
    let e = p
        .for_source(Source::Viber)
        .connect(
            &channel(Source::Viber, "pa:1111").build(),
            Some(&SecretString::new(VIBER_TOKEN)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Reason::InvalidCredentials);
    assert!(e.to_string().contains(VIBER_ID), "{e}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn viber_failures_are_classified_without_the_token() {
    let cases = [
        (
            ResponseTemplate::new(200).set_body_json(
                json!({"status": 2, "status_message": format!("invalidAuthToken {VIBER_TOKEN}")}),
            ),
            Reason::InvalidCredentials,
        ),
        (
            ResponseTemplate::new(401).set_body_string(VIBER_TOKEN),
            Reason::InvalidCredentials,
        ),
        (
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": 12, "status_message": "tooManyRequests"})),
            Reason::ProviderError,
        ),
        (
            ResponseTemplate::new(429).insert_header("Retry-After", "3"),
            Reason::ProviderError,
        ),
        (ResponseTemplate::new(502), Reason::ProviderError),
        (
            ResponseTemplate::new(200).set_delay(Duration::from_secs(3)),
            Reason::ProviderError,
        ),
    ];
    for (answer, reason) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/pa/get_account_info"))
            .respond_with(answer)
            .mount(&server)
            .await;
        let e = providers(&server)
            .for_source(Source::Viber)
            .connect(
                &channel(Source::Viber, VIBER_ID).build(),
                Some(&SecretString::new(VIBER_TOKEN)),
            )
            .await
            .unwrap_err();
        assert_eq!(e.reason(), reason, "{e}");
        assert!(
            e.to_string().starts_with("viber: reading the account"),
            "{e}"
        );
        assert_no_token(&e.to_string());
        // Nothing but the account read: no webhook was set.
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn viber_without_a_webhook_url_or_token_calls_nothing() {
    let server = MockServer::start().await;
    let p = support::providers::providers(&["--viber-api-url", &server.uri()]);
    let ch = channel(Source::Viber, VIBER_ID).build();
    let e = p
        .for_source(Source::Viber)
        .connect(&ch, Some(&SecretString::new(VIBER_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Reason::CredentialsMissing);
    assert!(e.to_string().contains("--viber-webhook-url"), "{e}");
    let e = providers(&server)
        .for_source(Source::Viber)
        .connect(&ch, None)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Reason::CredentialsMissing);
    assert!(server.received_requests().await.unwrap().is_empty());
}
