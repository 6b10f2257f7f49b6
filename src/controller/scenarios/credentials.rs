//! The pinned scenarios of credentials that cannot be used: a missing Secret, a Secret without
//! consent (the same calls, no claim, no provider call), and a Secret of the operator's old
//! token name that is not the Channel's (never read, written or deleted).

use super::*;

#[tokio::test]
async fn missing_credentials_stall_without_a_claim_or_a_provider_call() {
    let mut s = Scenario::new(200).await;
    s.reconcile().await.unwrap();
    s.fake.secrets.lock().unwrap().clear();
    s.fake.take();
    s.stalls("CredentialsMissing", "ns/shop-tok").await;
}

#[tokio::test]
async fn credentials_without_consent_stall_like_missing_ones_without_a_provider_call() {
    let mut s = Scenario::new(200).await;
    s.reconcile().await.unwrap();
    // The same Secret, token and all, without the label: read once (metadata decides), unused.
    s.fake.secrets.lock().unwrap().insert(
        "shop-tok".into(),
        secret("shop-tok", "page_token", USER_TOKEN, json!({})),
    );
    s.fake.take();
    s.stalls("CredentialsMissing", "ns/shop-tok").await;
}

#[tokio::test]
async fn a_secret_with_the_old_token_name_that_is_not_ours_is_never_touched() {
    let mut s = Scenario::new(200).await;
    s.reconcile().await.unwrap();
    let foreign = secret(
        "shop-facebook-token",
        "page_access_token",
        "unrelated",
        json!({"labels": {"app.kubernetes.io/managed-by": "channel-operator"}}),
    );
    s.fake
        .secrets
        .lock()
        .unwrap()
        .insert("shop-facebook-token".into(), foreign.clone());
    s.fake.take();
    // Connected as if it were not there: the token is the record's.
    s.reconcile().await.unwrap();
    s.api(&CONNECT_API);
    s.provider(&CONNECT).await;
    s.edit(|c| c["spec"]["connected"] = false.into());
    s.reconcile().await.unwrap();
    s.api(&undo_then(&[
        "PATCH channel/status",
        "DELETE records/channel",
        "POST events",
    ]));
    s.edit(|c| c["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z".into());
    s.reconcile().await.unwrap();
    s.api(&[
        RECORD_GET,
        CLAIM_GET,
        "GET secrets",
        CLAIM_DELETE,
        "PATCH channel",
    ]);
    assert_eq!(
        s.fake.secrets.lock().unwrap()["shop-facebook-token"],
        foreign
    );
}
