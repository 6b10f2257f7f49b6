//! The pinned scenarios of the claims of channel ids: a Channel whose id another holds, an owner
//! that stays connected, the take-over of an owner's claim once the owner is gone, and the races
//! the API server decides — a claim created by another between our read and our create, and a
//! claim changed between our read and our guarded delete — each ending `Duplicate` with no
//! provider call after the lost write.

use serde_json::{json, Value};

use super::*;

/// A claim of page 1001 naming `owner` (`namespace/name`, uid `uid-<name>`) at resourceVersion
/// `rv`.
fn claim_of(owner: &str, rv: &str) -> Value {
    let uid = format!("uid-{}", owner.rsplit('/').next().unwrap());
    json!({"metadata": {"name": CLAIM, "uid": format!("claim-uid-{rv}"), "resourceVersion": rv,
        "annotations": {"airy.co/owner": owner, "airy.co/owner-uid": uid}}})
}

/// Channel `team-b/theirs`, which exists.
fn theirs(s: &Scenario) {
    s.fake.others.lock().unwrap().insert(
        "/apis/airy.co/v1alpha1/namespaces/team-b/channels/theirs".into(),
        json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel",
            "metadata": {"name": "theirs", "namespace": "team-b", "uid": "uid-theirs"},
            "spec": {"source": "facebook", "sourceChannelId": "1001"}}),
    );
}

/// The proof's calls: the token exchanged and the page read, nothing changed.
const PROOF: [&str; 2] = ["GET /v24.0/oauth/access_token", "GET /v24.0/1001"];

#[tokio::test]
async fn a_channel_whose_id_another_claimed_is_stalled_without_any_read_or_provider_call() {
    let mut s = Scenario::new(200).await;
    s.reconcile().await.unwrap();
    theirs(&s);
    s.fake
        .claims
        .lock()
        .unwrap()
        .insert(CLAIM.into(), claim_of("team-b/theirs", "3"));
    s.fake.take();
    s.reconcile().await.unwrap();
    let calls = s.api(&[
        CLAIM_GET,
        "GET channels of team-b/channels/theirs",
        "PATCH channel/status",
        "POST events",
    ]);
    s.provider(&[]).await;
    assert_eq!(
        summary(&calls[2].body),
        ("False/Duplicate".into(), vec!["Stalled=True".into()])
    );
    let message = calls[3].body["note"].as_str().unwrap();
    assert!(
        message.contains("another namespace") && !message.contains("team-b"),
        "{message}"
    );
    // Deleted: the claim is not its own to release.
    s.edit(|c| c["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z".into());
    s.reconcile().await.unwrap();
    s.api(&[RECORD_GET, CLAIM_GET, "GET secrets", "PATCH channel"]);
    assert!(s.fake.claims.lock().unwrap().contains_key(CLAIM));
}

#[tokio::test]
async fn a_connected_owner_is_not_demoted_by_an_older_channel_of_its_id() {
    let mut s = Scenario::connected(200).await;
    let mut older = s.fake.channel();
    older.metadata.name = Some("older".into());
    older.metadata.namespace = Some("aaa".into());
    older.metadata.uid = Some("uid-older".into());
    older.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(0).unwrap(),
    ));
    older.status = None;
    s.writer.apply(&watcher::Event::Apply(older));
    s.reconcile().await.unwrap();
    s.api(&[CLAIM_GET, RECORD_GET, CREDENTIALS]);
    s.provider(&[]).await;
    assert!(s.fake.channel().status.unwrap().connected);
}

#[tokio::test]
async fn the_claim_of_an_owner_that_is_gone_is_taken_over_with_preconditions() {
    let mut s = Scenario::new(200).await;
    s.reconcile().await.unwrap();
    s.fake
        .claims
        .lock()
        .unwrap()
        .insert(CLAIM.into(), claim_of("team-b/gone", "3"));
    s.fake.take();
    s.reconcile().await.unwrap();
    let calls = s.api(&[
        CLAIM_GET,
        "GET channels of team-b/channels/gone",
        RECORD_GET,
        CREDENTIALS,
        CLAIM_DELETE,
        CLAIM_POST,
        "POST records",
        ENTRY_GET,
        "POST entries",
        ENTRY_PATCH,
        "PATCH channel/status",
        "POST events",
    ]);
    s.provider(&CONNECT).await;
    assert_eq!(
        calls[4].body["preconditions"],
        json!({"uid": "claim-uid-3", "resourceVersion": "3"})
    );
    assert_eq!(
        calls[5].body["metadata"]["annotations"]["airy.co/owner-uid"],
        "uid-shop"
    );
}

/// Read 404, then another Channel creates the claim first: our create gets 409 AlreadyExists,
/// the claim is read again and the Channel is `Duplicate`. The provider saw only the proof's
/// reads, before the create; nothing after.
#[tokio::test]
async fn a_claim_created_by_another_between_read_and_create_makes_a_duplicate() {
    let mut s = Scenario::new(200).await;
    s.reconcile().await.unwrap();
    theirs(&s);
    *s.fake.race.lock().unwrap() = Some(("POST", claim_of("team-b/theirs", "4")));
    s.fake.take();
    s.reconcile().await.unwrap();
    let calls = s.api(&[
        CLAIM_GET,
        RECORD_GET,
        CREDENTIALS,
        CLAIM_POST,
        CLAIM_GET,
        "GET channels of team-b/channels/theirs",
        "PATCH channel/status",
        "POST events",
    ]);
    s.provider(&PROOF).await;
    assert_eq!(calls[3].body["metadata"]["name"], CLAIM);
    assert_eq!(
        summary(&calls[6].body),
        ("False/Duplicate".into(), vec!["Stalled=True".into()])
    );
    // Nothing of the Channel's was recorded, and the claim is the other's.
    assert!(s.fake.records.lock().unwrap().is_empty());
    assert_eq!(
        s.fake.claims.lock().unwrap()[CLAIM]["metadata"]["annotations"]["airy.co/owner"],
        "team-b/theirs"
    );
}

/// The owner of the claim is gone; between our read and our guarded delete, another Channel
/// took the claim over (a new resourceVersion): the delete gets 409 Conflict, the claim is read
/// again and the Channel is `Duplicate`, with no provider call after the proof.
#[tokio::test]
async fn a_takeover_whose_guarded_delete_meets_a_conflict_makes_a_duplicate() {
    let mut s = Scenario::new(200).await;
    s.reconcile().await.unwrap();
    theirs(&s);
    s.fake
        .claims
        .lock()
        .unwrap()
        .insert(CLAIM.into(), claim_of("team-b/gone", "3"));
    *s.fake.race.lock().unwrap() = Some(("DELETE", claim_of("team-b/theirs", "5")));
    s.fake.take();
    s.reconcile().await.unwrap();
    let calls = s.api(&[
        CLAIM_GET,
        "GET channels of team-b/channels/gone",
        RECORD_GET,
        CREDENTIALS,
        CLAIM_DELETE,
        CLAIM_GET,
        "GET channels of team-b/channels/theirs",
        "PATCH channel/status",
        "POST events",
    ]);
    s.provider(&PROOF).await;
    assert_eq!(
        calls[4].body["preconditions"],
        json!({"uid": "claim-uid-3", "resourceVersion": "3"})
    );
    assert_eq!(
        summary(&calls[7].body),
        ("False/Duplicate".into(), vec!["Stalled=True".into()])
    );
    assert!(s.fake.records.lock().unwrap().is_empty());
}
