//! The pinned scenarios of provider configurations: a Channel no configuration admits reads
//! nothing (no Secret, no claim), claims nothing and calls no provider; a namespace's
//! ProviderConfig adds one read of its Secret per reconcile, its app goes to the provider, and
//! the first effect made through it gives it the finalizer `airy.co/in-use`; a configuration
//! being deleted admits no new connect.

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

/// The ProviderConfig `ns/default` with the app `ns-app`, its secret in the Secret `fb-app`,
/// also served at its path by the fake API server (`deleting`: being deleted).
fn namespace_app(s: &mut Scenario, deleting: bool) -> ProviderConfig {
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
    pc.metadata.uid = Some("uid-config".into());
    pc.metadata.resource_version = Some("2".into());
    if deleting {
        pc.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1).unwrap(),
            ));
        pc.metadata.finalizers = Some(vec!["airy.co/in-use".into()]);
    }
    s.fake.others.lock().unwrap().insert(
        format!("{}/default", super::fake::CONFIGS),
        serde_json::to_value(&pc).unwrap(),
    );
    pc
}

#[tokio::test]
async fn a_namespace_configuration_reads_its_secret_and_connects_with_its_app() {
    let mut s = Scenario::new(200).await;
    let pc = namespace_app(&mut s, false);
    configured(&mut s, vec![pc]);
    s.reconcile().await.unwrap();
    s.api(&["PATCH channel"]);
    s.reconcile().await.unwrap();
    let calls = s.api(&[
        "GET secrets/fb-app",
        CLAIM_GET,
        RECORD_GET,
        CREDENTIALS,
        CLAIM_POST,
        "POST records",
        "GET configs/default",
        "PATCH configs/default",
        ENTRY_GET,
        "POST entries",
        ENTRY_PATCH,
        "PATCH channel/status",
        "POST events",
    ]);
    // Recorded with the configuration (and its uid), before the configuration is protected and
    // anything is made through it; the finalizer added with the resourceVersion read.
    let record = &calls[5].body["metadata"];
    assert_eq!(
        record["labels"]["airy.co/provider-config-uid"],
        "uid-config"
    );
    assert!(record["annotations"]["airy.co/effects"]
        .as_str()
        .unwrap()
        .contains(r#""config":{"kind":"ProviderConfig","namespace":"ns","name":"default","uid":"uid-config"}"#));
    assert_eq!(
        calls[7].body,
        json!({"metadata": {"resourceVersion": "2", "finalizers": ["airy.co/in-use"]}})
    );
    assert_eq!(
        calls[11].body["status"]["effects"][0]["providerConfig"],
        "ProviderConfig ns/default"
    );
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
    s.api(&["GET secrets/fb-app", CLAIM_GET, RECORD_GET, CREDENTIALS]);
    s.provider(&[]).await;
}

/// A configuration being deleted admits no new connect: no claim is taken, nothing recorded,
/// no provider called.
#[tokio::test]
async fn a_configuration_being_deleted_admits_no_new_connect() {
    let mut s = Scenario::new(200).await;
    let pc = namespace_app(&mut s, true);
    configured(&mut s, vec![pc]);
    s.reconcile().await.unwrap();
    s.fake.take();
    let err = s.reconcile().await.unwrap_err();
    assert!(
        err.contains("ProviderConfig ns/default is being deleted"),
        "{err}"
    );
    let calls = s.api(&[
        "GET secrets/fb-app",
        CLAIM_GET,
        RECORD_GET,
        CREDENTIALS,
        "PATCH channel/status",
        "POST events",
    ]);
    assert_eq!(
        summary(&calls[4].body),
        (
            "False/ProviderConfigMissing".into(),
            vec!["Stalled=True".into()]
        )
    );
    s.provider(&[]).await;
    assert!(s.fake.records.lock().unwrap().is_empty());
    assert!(s.fake.claims.lock().unwrap().is_empty());
}
