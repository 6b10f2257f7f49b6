//! The pinned scenarios of the claims of channel ids: a Channel whose id another holds, an owner
//! that stays connected, the take-over of an owner's claim once the owner is gone — and the fake
//! API server's side of claims, answering as kube-apiserver does.

use serde_json::{json, Value};

use super::*;

impl Fake {
    /// The claims: create-if-absent, get, and delete with uid and resourceVersion preconditions,
    /// as kube-apiserver answers them.
    pub(super) fn claim(&self, method: &str, name: &str, body: &Value) -> (u16, Value) {
        let status = |code: u16, reason: &str| {
            (
                code,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": reason, "code": code, "message": reason}),
            )
        };
        let mut claims = self.claims.lock().unwrap();
        match method {
            "GET" => match claims.get(name) {
                Some(c) => (200, c.clone()),
                None => status(404, "NotFound"),
            },
            "POST" => {
                let name = body["metadata"]["name"].as_str().unwrap().to_owned();
                if claims.contains_key(&name) {
                    return status(409, "AlreadyExists");
                }
                let mut c = body.clone();
                c["metadata"]["uid"] = format!("uid-{name}").into();
                c["metadata"]["resourceVersion"] = self.next_rv().into();
                claims.insert(name, c.clone());
                (201, c)
            }
            "DELETE" => {
                let Some(c) = claims.get(name) else {
                    return status(404, "NotFound");
                };
                let pre = &body["preconditions"];
                if pre["uid"] != c["metadata"]["uid"]
                    || pre["resourceVersion"] != c["metadata"]["resourceVersion"]
                {
                    return status(409, "Conflict");
                }
                claims.remove(name);
                (
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                )
            }
            _ => panic!("unexpected request {method} on claim {name}"),
        }
    }
}

#[tokio::test]
async fn a_channel_whose_id_another_claimed_is_stalled_without_any_read_or_provider_call() {
    let mut s = Scenario::new(200).await;
    s.reconcile().await.unwrap();
    let theirs = "/apis/airy.co/v1alpha1/namespaces/team-b/channels/theirs";
    s.fake.others.lock().unwrap().insert(
        theirs.into(),
        json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel",
            "metadata": {"name": "theirs", "namespace": "team-b", "uid": "uid-theirs"},
            "spec": {"source": "facebook", "sourceChannelId": "1001"}}),
    );
    s.fake.claims.lock().unwrap().insert(
        CLAIM.into(),
        json!({"metadata": {"name": CLAIM, "uid": "claim-uid", "resourceVersion": "3",
            "annotations": {"airy.co/owner": "team-b/theirs", "airy.co/owner-uid": "uid-theirs"}}}),
    );
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
    s.api(&[CLAIM_GET, "GET secrets", "PATCH channel"]);
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
    s.api(&[CLAIM_GET, READ[0], READ[1]]);
    s.provider(&[]).await;
    assert!(s.fake.channel().status.unwrap().connected);
}

#[tokio::test]
async fn the_claim_of_an_owner_that_is_gone_is_taken_over_with_preconditions() {
    let mut s = Scenario::new(200).await;
    s.reconcile().await.unwrap();
    s.fake.claims.lock().unwrap().insert(
        CLAIM.into(),
        json!({"metadata": {"name": CLAIM, "uid": "claim-uid", "resourceVersion": "3",
            "annotations": {"airy.co/owner": "team-b/gone", "airy.co/owner-uid": "uid-gone"}}}),
    );
    s.fake.take();
    s.reconcile().await.unwrap();
    let calls = s.api(&[
        CLAIM_GET,
        "GET channels of team-b/channels/gone",
        READ[0],
        READ[1],
        CLAIM_DELETE,
        CLAIM_POST,
        "PATCH channel/status",
        "GET secrets/shop-facebook-token",
        "POST secrets",
        "PATCH channel/status",
        "POST events",
    ]);
    s.provider(&CONNECT).await;
    assert_eq!(
        calls[4].body["preconditions"],
        json!({"uid": "claim-uid", "resourceVersion": "3"})
    );
    assert_eq!(
        calls[5].body["metadata"]["annotations"]["airy.co/owner-uid"],
        "uid-shop"
    );
}
