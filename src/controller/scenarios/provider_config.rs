//! The pinned scenarios of provider configurations: a Channel no configuration admits reads
//! nothing (no Secret, no claim), claims nothing and calls no provider; a namespace's
//! ProviderConfig adds one read of its Secret per reconcile and its app goes to the provider.

use std::sync::Arc;

use super::*;
use crate::crd::SecretKeyRef;
use crate::provider_config::{FacebookApp, ProviderConfig, ProviderConfigSpec};

/// The scenario's Channel under these configurations (the flags' admitting only `op`).
fn configured(s: &mut Scenario, namespaced: Vec<ProviderConfig>) {
    let ctx = Arc::get_mut(&mut s.ctx).expect("the scenario holds the only context");
    ctx.provider_configs = Arc::new(ProviderConfigs::with_objects(
        ctx.providers.clone(),
        FlagsDefault {
            operator_namespace: "op".into(),
            namespaces: vec![],
        },
        namespaced,
        vec![],
    ));
}

#[tokio::test]
async fn a_channel_no_configuration_admits_reads_and_claims_nothing_and_calls_no_provider() {
    let mut s = Scenario::new(200).await;
    configured(&mut s, vec![]);
    s.reconcile().await.unwrap();
    s.api(&["PATCH channel"]);
    let err = s.reconcile().await.unwrap_err();
    assert!(
        err.contains("no provider configuration admits namespace ns"),
        "{err}"
    );
    let calls = s.api(&["PATCH channel/status", "POST events"]);
    s.provider(&[]).await;
    assert_eq!(
        summary(&calls[0].body),
        (
            "False/ProviderConfigMissing".into(),
            vec!["Stalled=True".into()]
        )
    );
    assert_eq!(calls[1].body["reason"], "ProviderConfigMissing");
}

#[tokio::test]
async fn a_namespace_configuration_reads_its_secret_and_connects_with_its_app() {
    let mut s = Scenario::new(200).await;
    s.fake.secrets.lock().unwrap().insert(
        "fb-app".into(),
        secret("fb-app", "app-secret", "ns-app-secret", json!({})),
    );
    let mut pc = ProviderConfig::new(
        "default",
        ProviderConfigSpec {
            facebook: Some(FacebookApp {
                app_id: "ns-app".into(),
                app_secret_ref: SecretKeyRef {
                    name: "fb-app".into(),
                    key: "app-secret".into(),
                },
            }),
            twilio: None,
        },
    );
    pc.metadata.namespace = Some("ns".into());
    pc.metadata.generation = Some(1);
    configured(&mut s, vec![pc]);
    s.reconcile().await.unwrap();
    s.api(&["PATCH channel"]);
    s.reconcile().await.unwrap();
    s.api(&[
        "GET secrets/fb-app",
        "GET claims/claim",
        READ[0],
        READ[1],
        "POST claims",
        "PATCH channel/status",
        "GET secrets/shop-facebook-token",
        "POST secrets",
        "PATCH channel/status",
        "POST events",
    ]);
    let exchange = s
        .graph
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == "/v24.0/oauth/access_token")
        .expect("the token exchange");
    let query: BTreeMap<String, String> = exchange.url.query_pairs().into_owned().collect();
    assert_eq!(
        (query["client_id"].as_str(), query["client_secret"].as_str()),
        ("ns-app", "ns-app-secret")
    );
    s.provider(&CONNECT).await;
    // Connected and unchanged: the configuration's Secret is read again, nothing is called.
    s.reconcile().await.unwrap();
    s.api(&["GET secrets/fb-app", "GET claims/claim", READ[0], READ[1]]);
    s.provider(&[]).await;
}
