//! What the API must not do for a tenant: follow Graph's `paging.next` to another host with the
//! user's token, or name a Channel of a namespace it does not serve.

mod support;

use serde_json::json;
use support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn explore_never_follows_paging_off_the_graph_origin() {
    let env = Env::with_api().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .expect(0)
        .named("a host other than the Graph API")
        .mount(&elsewhere)
        .await;
    // Same scheme and host, another port: another origin.
    let next = format!(
        "{}/v24.0/me/accounts?access_token={AUTH_TOKEN}&after=2",
        elsewhere.uri()
    );
    Mock::given(method("GET"))
        .and(path("/v24.0/me/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": "p1", "name": "First"}],
            "paging": {"next": next}
        })))
        .mount(&env.graph)
        .await;
    let (s, v) = env
        .post(
            "channels.facebook.explore",
            json!({"auth_token": AUTH_TOKEN}),
        )
        .await;
    assert_eq!(s, 500, "{v}");
    assert!(message(&v).contains("paging.next"), "{v}");
    assert!(!message(&v).contains(&elsewhere.uri()), "{v}");
    elsewhere.verify().await;
}
