//! An adoption cut off after each of its writes — by a crash (the process stops) or by a lost
//! answer (the write committed, the controller told it failed) — and completed by the next
//! reconcile of a new process: Ready, its effect recorded as adopted once, no provider call, the
//! adoption record gone, one unsubscribe at the disconnect. And a Channel deleted while its
//! adoption is half done: what its record holds is undone, nothing else.

use super::*;
use crate::controller::scenarios::fake::Fault;

const ADOPTION_DELETE: &str = "DELETE records/adopt-uid-shop";

/// The writes of an adopting reconcile, in order: the claim, the Channel's record, the effect's
/// entry, the adoption record's delete, the status.
const WRITES: [&str; 5] = [
    CLAIM_POST,
    "POST records",
    "POST entries",
    ADOPTION_DELETE,
    "PATCH channel/status",
];

/// A migrated Channel whose adopting reconcile met `fault` at the write `at`; the process is
/// new (a fresh Context). What the cut-off reconcile returned is shown with `at`.
async fn cut_at(at: &'static str, fault: Fault) -> Scenario {
    let mut s = Scenario::new(200).await;
    migrated(&s, Some("app"));
    s.reconcile().await.unwrap();
    s.api(&["PATCH channel"]);
    *s.fake.fault.lock().unwrap() = Some((at, fault));
    let outcome = s.reconcile().await;
    let lines: Vec<String> = s.fake.take().iter().map(fake::line).collect();
    assert!(
        lines.iter().any(|l| l == at),
        "{at} ({fault:?}) never sent: {lines:?}"
    );
    println!("cut at {at} ({fault:?}): {outcome:?}");
    s.provider(&[]).await;
    s.restarted()
}

/// The calls of the reconcile (of a new process) that completes an adoption cut off after the
/// write `at`: what is left of it, each write once; connected in the status, only reads.
fn completing(at: &str) -> Vec<&'static str> {
    let rest: &[&str] = match at {
        CLAIM_POST => &[
            "POST records",
            ENTRY_GET,
            "POST entries",
            ADOPTION_DELETE,
            "PATCH channel/status",
            "POST events",
        ],
        "POST records" => &[
            ENTRY_GET,
            "POST entries",
            ADOPTION_DELETE,
            "PATCH channel/status",
            "POST events",
        ],
        "POST entries" => &[
            ENTRY_GET,
            ADOPTION_DELETE,
            "PATCH channel/status",
            "POST events",
        ],
        // The adoption record used up: the entry held as adopted vouches for the rest.
        ADOPTION_DELETE => &[ENTRY_GET, ENTRY_GET, "PATCH channel/status", "POST events"],
        _ => return READS[..3].to_vec(),
    };
    READS.iter().chain(rest).copied().collect()
}

/// Asserts what an adoption leaves: the Channel Ready and connected, its one effect recorded as
/// adopted in its status, its record (with the token Airy Core listed) and its entry (held by
/// it once), the adoption record gone, the claim kept.
fn adopted(s: &Scenario) {
    let status = s.fake.channel.lock().unwrap()["status"].clone();
    assert_eq!(
        summary(&json!({"status": status})),
        ("True/Connected".into(), vec![])
    );
    assert_eq!(status["connected"], true);
    let effects = status["effects"].as_array().unwrap();
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert_eq!(
        (
            &effects[0]["resource"],
            &effects[0]["account"],
            &effects[0]["origin"]
        ),
        (&json!("1001"), &json!("app"), &json!("Adopted"))
    );
    recorded_as_airy_cores(s);
    let records = s.fake.records.lock().unwrap();
    assert_eq!(records.keys().collect::<Vec<_>>(), [RECORD]);
    let leases = s.fake.claims.lock().unwrap();
    let entries: Vec<&Value> = leases
        .iter()
        .filter(|(k, _)| k.starts_with("effect-"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(entries.len(), 1);
    assert!(leases.contains_key(CLAIM));
    let entry = &entries[0]["metadata"]["annotations"];
    assert_eq!(entry["airy.co/origin"], "Adopted");
    let holders: Value = serde_json::from_str(entry["airy.co/holders"].as_str().unwrap()).unwrap();
    assert_eq!(
        holders,
        json!([{"uid": "uid-shop", "namespace": "ns", "name": "shop"}])
    );
    assert!(entry.get("airy.co/undoing").is_none());
}

#[tokio::test]
async fn an_adoption_cut_off_after_any_write_is_completed_by_a_new_process_without_a_provider_call()
{
    for fault in [Fault::Stop, Fault::Lost] {
        for at in WRITES {
            let mut s = cut_at(at, fault).await;
            s.reconcile().await.unwrap();
            let calls: Vec<String> = s.fake.take().iter().map(fake::line).collect();
            s.provider(&[]).await;
            adopted(&s);
            assert_eq!(calls, completing(at), "after {at} ({fault:?})");
            then_like_any(&mut s).await;
        }
    }
}

#[tokio::test]
async fn a_channel_deleted_while_its_adoption_is_half_done_undoes_what_it_holds_and_nothing_else() {
    for (at, fault) in WRITES
        .iter()
        .flat_map(|at| [(*at, Fault::Stop), (*at, Fault::Lost)])
    {
        let mut s = cut_at(at, fault).await;
        unsubscribe_with_airys_token(&s).await;
        s.edit(|c| c["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z".into());
        s.reconcile().await.unwrap();
        let calls: Vec<String> = s.fake.take().iter().map(fake::line).collect();
        let release = [RECORD_GET, CLAIM_GET, ADOPTION_DELETE];
        let end = ["GET secrets", CLAIM_DELETE, "PATCH channel"];
        // The entry is the Channel's holding: its last holder undoes it once, with the token
        // Airy Core listed. A record without it holds nothing yet: the subscription stays Airy
        // Core's, untouched (as for a Channel never adopted).
        let (undo, provider): (&[&str], &[&str]) = match at {
            CLAIM_POST => (&[], &[]),
            "POST records" => (
                &[
                    ENTRY_GET,
                    "PATCH channel/status",
                    "DELETE records/channel",
                    "POST events",
                ],
                &[],
            ),
            _ => (
                &[
                    ENTRY_GET,
                    ENTRY_PATCH,
                    "DELETE entries/effect",
                    "PATCH channel/status",
                    "DELETE records/channel",
                    "POST events",
                ],
                &["DELETE /v24.0/1001/subscribed_apps"],
            ),
        };
        let want: Vec<&str> = release.iter().chain(undo).chain(&end).copied().collect();
        assert_eq!(calls, want, "deleted after {at} ({fault:?})");
        s.provider(provider).await;
        if !provider.is_empty() {
            let undone = s.graph.received_requests().await.unwrap().pop().unwrap();
            let token = format!("access_token={USER_TOKEN}");
            assert!(
                undone.url.query().unwrap().contains(&token),
                "{}",
                undone.url
            );
        }
        // Nothing of the Channel is left: no record, no adoption record, no claim, no entry.
        assert!(s.fake.records.lock().unwrap().is_empty(), "after {at}");
        assert!(s.fake.claims.lock().unwrap().is_empty(), "after {at}");
        assert_eq!(
            s.fake.channel.lock().unwrap()["metadata"]["finalizers"],
            json!([])
        );
    }
}

#[tokio::test]
async fn a_cut_off_connect_of_a_channel_migrate_marked_is_proven_and_made_again_never_adopted() {
    // migrate's marks without an adoption record: connected with proof, cut off after the entry
    // is created (the subscription made, that not recorded). Its record and entry are not an
    // adoption's: the new process proves and makes it again.
    let mut s = Scenario::new(200).await;
    migrated(&s, None);
    s.reconcile().await.unwrap();
    s.fake.take();
    *s.fake.fault.lock().unwrap() = Some(("POST entries", Fault::Stop));
    s.reconcile().await.unwrap_err();
    s.fake.take();
    s.provider(&CONNECT).await;
    let mut s = s.restarted();
    s.reconcile().await.unwrap();
    let made = [
        ENTRY_GET,
        ENTRY_PATCH,
        "PATCH channel/status",
        "POST events",
    ];
    let calls = s.api(&[&READS[..], &made].concat());
    s.provider(&CONNECT).await;
    assert_eq!(calls[6].body["status"]["effects"][0]["origin"], "Made");
}
