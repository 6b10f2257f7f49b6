//! The pinned scenarios of a Channel `migrate` moved from Airy Core: adopted on the word of the
//! adoption record in the state namespace — the claim still created, no provider call — then
//! undone from its record like any Channel's; migrate's label without a record that matches
//! adopts nothing (the Channel is proven and connected as any).

use super::*;
use crate::adoption::{Adoption, Record};
use crate::crd::Source;
use crate::effects::{EffectKey, EffectKind};
use crate::secret::SecretString;

/// The adoption record of `ns/shop` in the state namespace.
const ADOPTION: &str = "adopt-uid-shop";
const ADOPTION_GET: &str = "GET records/adopt-uid-shop";
/// The reads of a reconcile of a migrated Channel not connected yet: its claim, its record, its
/// credentials, its adoption record.
const READS: [&str; 4] = [CLAIM_GET, RECORD_GET, CREDENTIALS, ADOPTION_GET];

/// Marks the Channel as migrate's (label and annotation); with `app`, puts the adoption record saying Airy Core's app
/// `app` subscribed page 1001 (with the token the Channel's credentials hold) in the state
/// namespace.
fn migrated(s: &Scenario, app: Option<&str>) {
    s.edit(|c| {
        c["metadata"]["labels"] = json!({"airy.co/migrated": "true"});
        c["metadata"]["annotations"] = json!({"airy.co/migrated-from": "https://airy.example.org"});
    });
    let Some(app) = app else { return };
    let record = Record {
        uid: "uid-shop".into(),
        adoption: Adoption {
            namespace: "ns".into(),
            name: "shop".into(),
            source: Source::Facebook,
            source_channel_id: "1001".into(),
            channel_id: CLAIM.trim_start_matches("claim-").into(),
            from: "https://airy.example.org".into(),
            effects: vec![EffectKey::new(EffectKind::PageSubscription, "1001", app)],
        },
        token: SecretString::new(USER_TOKEN),
    };
    let mut secret = serde_json::to_value(record.to_secret("ops")).unwrap();
    secret["metadata"]["uid"] = "uid-adoption".into();
    secret["metadata"]["resourceVersion"] = s.fake.next_rv().into();
    s.fake
        .records
        .lock()
        .unwrap()
        .insert(ADOPTION.into(), secret);
}

/// Graph's answer to removing the subscription with the token Airy Core listed.
async fn unsubscribe_with_airys_token(s: &Scenario) {
    Mock::given(method("DELETE"))
        .and(path("/v24.0/1001/subscribed_apps"))
        .and(query_param("access_token", USER_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&s.graph)
        .await;
}

#[tokio::test]
async fn adopt_is_no_provider_call_and_a_disconnect_undoes_what_airy_core_made() {
    let mut s = Scenario::new(200).await;
    migrated(&s, Some("app"));
    s.reconcile().await.unwrap();
    s.api(&["PATCH channel"]);

    s.reconcile().await.unwrap();
    let adopting = [
        CLAIM_POST,
        "POST records",
        ENTRY_GET,
        "POST entries",
        "DELETE records/adopt-uid-shop",
        "PATCH channel/status",
        "POST events",
    ];
    let calls = s.api(&[&READS[..], &adopting].concat());
    s.provider(&[]).await;
    // The claim is still the apiserver's create-if-absent.
    assert_eq!(calls[4].body["metadata"]["name"], CLAIM);
    recorded_as_airy_cores(&s);
    // The entry: held by this Channel, adopted; the adoption record used up, guarded.
    let entry = &calls[7].body["metadata"]["annotations"];
    assert_eq!(entry["airy.co/origin"], "Adopted");
    assert_eq!(
        calls[8].body["preconditions"],
        json!({"uid": "uid-adoption", "resourceVersion": "11"})
    );
    assert!(!s.fake.records.lock().unwrap().contains_key(ADOPTION));
    assert_eq!(summary(&calls[9].body), ("True/Connected".into(), vec![]));
    assert_eq!(calls[9].body["status"]["effects"][0]["origin"], "Adopted");
    assert_eq!(
        calls[10].body["note"]
            .as_str()
            .map(|n| n.contains("adopted")),
        Some(true)
    );
    then_like_any(&mut s).await;
}

/// Asserts the Channel's record: the page subscription with Airy Core's app, and the token
/// Airy Core listed, for re-checks and the undo.
fn recorded_as_airy_cores(s: &Scenario) {
    let (annotations, data) = record_of(s);
    let effects: Value =
        serde_json::from_str(annotations["airy.co/effects"].as_str().unwrap()).unwrap();
    assert_eq!(
        effects,
        json!([{"kind": "PageSubscription", "resource": "1001", "account": "app", "config": {}}])
    );
    assert_eq!(
        (data["token"].as_str(), data["undo"].as_str()),
        (USER_TOKEN, USER_TOKEN)
    );
}

/// After an adoption: connected, the Channel is only read (no adoption record looked for, no
/// provider call); disconnected, the subscription Airy Core made is removed once, with the
/// recorded token, and nothing of the Channel is left in the state namespace's records.
async fn then_like_any(s: &mut Scenario) {
    s.reconcile().await.unwrap();
    s.api(&[CLAIM_GET, RECORD_GET, CREDENTIALS]);
    s.provider(&[]).await;

    unsubscribe_with_airys_token(s).await;
    s.edit(|c| {
        c["spec"]["connected"] = false.into();
        c["metadata"]["generation"] = 2.into();
    });
    s.reconcile().await.unwrap();
    s.api(&undo_then(&[
        "PATCH channel/status",
        "DELETE records/channel",
        "POST events",
    ]));
    s.provider(&["DELETE /v24.0/1001/subscribed_apps"]).await;
    assert!(s.fake.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn migrates_marks_without_a_record_that_matches_adopt_nothing() {
    // The label and annotation alone (a tenant can write them), and a record of another Facebook app than the
    // one the Channel's configuration uses: proven, claimed, connected as any Channel.
    for app in [None, Some("airy-core-app")] {
        let mut s = Scenario::new(200).await;
        migrated(&s, app);
        s.reconcile().await.unwrap();
        s.fake.take();
        s.reconcile().await.unwrap();
        let mut want = CONNECT_API.to_vec();
        want.insert(3, ADOPTION_GET);
        let calls = s.api(&want);
        s.provider(&CONNECT).await;
        assert_eq!(calls[9].body["status"]["effects"][0]["origin"], "Made");
        // A record that does not match is left, unused, until its Channel goes.
        assert_eq!(
            s.fake.records.lock().unwrap().contains_key(ADOPTION),
            app.is_some()
        );
        s.edit(|c| {
            c["spec"]["deletionPolicy"] = "Orphan".into();
            c["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z".into();
        });
        s.reconcile().await.unwrap();
        s.api(&[
            RECORD_GET,
            CLAIM_GET,
            "DELETE records/adopt-uid-shop",
            ENTRY_GET,
            ENTRY_PATCH,
            "DELETE entries/effect",
            "DELETE records/channel",
            "GET secrets",
            CLAIM_DELETE,
            "PATCH channel",
        ]);
        s.provider(&[]).await;
        assert!(s.fake.records.lock().unwrap().is_empty());
    }
}

mod restart;
