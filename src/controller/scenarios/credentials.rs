//! The pinned scenarios of credentials that cannot be used: a missing Secret, a Secret without
//! consent (the same calls, no provider call), and a foreign Secret in the way of the token.

use super::*;

#[tokio::test]
async fn missing_credentials_stall_without_a_provider_call() {
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
async fn a_foreign_secret_in_the_way_is_a_conflict_and_is_never_written_or_deleted() {
    let mut s = Scenario::new(200).await;
    s.reconcile().await.unwrap();
    let foreign = secret(
        "shop-facebook-token",
        "invoice_key",
        "unrelated",
        json!({"labels": {"app.kubernetes.io/managed-by": "channel-operator"}}),
    );
    s.fake
        .secrets
        .lock()
        .unwrap()
        .insert("shop-facebook-token".into(), foreign.clone());
    s.fake.take();
    s.stalls("SecretConflict", "ns/shop-facebook-token").await;
    // Disconnecting and deleting leave it alone too (labelled, but not controlled by the Channel).
    s.edit(|c| c["spec"]["connected"] = false.into());
    s.reconcile().await.unwrap();
    s.api(&[CLAIM_GET, "GET secrets", "PATCH channel/status"]);
    s.edit(|c| c["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z".into());
    s.reconcile().await.unwrap();
    s.api(&[CLAIM_GET, "GET secrets", CLAIM_DELETE, "PATCH channel"]);
    s.provider(&[]).await;
    assert_eq!(
        s.fake.secrets.lock().unwrap()["shop-facebook-token"],
        foreign
    );
}
