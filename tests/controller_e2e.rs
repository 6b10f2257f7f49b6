//! End-to-end: the real controller (in-process) against the in-memory API server, wiremock fakes of
//! the Graph API and Twilio, driven with the real kubectl.
//!
//! Every test records everything the controller logs (debug level), every Event and every Channel
//! status it sees, and fails if any token string appears in them. The harness is
//! `tests/support`.

mod support;

use std::time::Duration;

use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use support::*;

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_connects_and_follows_its_lifecycle() {
    let mut env = Env::new(&[]).await;
    // fb-page-id-1: connected once, renamed (no second connect), disconnected, re-check none.
    let token = env.fake_page("fb-page-id-1", 1, 1).await;
    // twilio.sms and twilio.whatsapp below use the same number: two connects, one disconnect.
    env.fake_twilio_number("+491234567", "PN1", 2, 1).await;
    env.start_controller().await;

    env.apply(&secret_yaml("fb-token", "page_token", &token))
        .await;
    env.apply(&channel_yaml(
        "fb",
        "facebook",
        "fb-page-id-1",
        &fb_extra("fb-token"),
    ))
    .await;
    env.apply(&channel_yaml("sms", "twilio.sms", "+491234567", ""))
        .await;
    env.apply(&channel_yaml("gbm", "google", "gbm-id", "  name: Agent\n"))
        .await;
    env.apply(&channel_yaml(
        "web",
        "chat_plugin",
        "website-identifier-42",
        "  imageUrl: http://example.org/i.png\n",
    ))
    .await;
    for (name, id) in [
        ("fb", "1dba90e5-6e59-5842-837e-2ea09747161b"),
        ("sms", "ed06ae7d-a352-5d78-bc47-7431a8ebab03"),
        ("gbm", "bda330b6-7049-5190-93af-d5b16b03dd19"),
        ("web", "625c0084-1043-5727-bfd9-40366ef08a64"),
    ] {
        env.wait_ready(name).await;
        let v = env.get(name).await;
        assert_eq!(v["status"]["id"], id, "{name}");
        assert_eq!(v["status"]["connected"], true, "{name}");
        assert_eq!(cond(&v, "reason"), "Connected", "{name}");
        assert_eq!(
            v["status"]["observedGeneration"], v["metadata"]["generation"],
            "{name}"
        );
        assert_eq!(
            cond(&v, "observedGeneration"),
            &v["metadata"]["generation"],
            "{name}"
        );
        assert!(v["metadata"]["finalizers"]
            .to_string()
            .contains("channels.airy.co/disconnect"));
    }
    // kubectl's printer columns.
    let table = env.kubectl_ok(&["get", "ch", "gbm"], None).await;
    for header in [
        "SOURCE",
        "SOURCE ID",
        "NAME",
        "CONNECTED",
        "READY",
        "CHANNEL ID",
        "AGE",
    ] {
        assert!(table.contains(header), "{table}");
    }
    assert!(
        table.contains("bda330b6-7049-5190-93af-d5b16b03dd19") && table.contains("True"),
        "{table}"
    );
    let fb = env.get("fb").await;
    assert_eq!(fb["status"]["pageName"], "Page fb-page-id-1");
    assert_eq!(
        fb["status"]["pageImageUrl"],
        "https://img.example.org/fb-page-id-1.png"
    );

    // The page access token lives in the Channel's record in the operator's state namespace,
    // with what was done at the provider; nothing of the operator's in the Channel's namespace.
    let uid = fb["metadata"]["uid"].as_str().unwrap().to_owned();
    let record = record(&env, &uid).await.expect("the record");
    assert_eq!(record.type_.as_deref(), Some("airy.co/channel-record"));
    let labels = record.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "channel-operator");
    assert_eq!(labels["airy.co/channel-uid"], uid);
    assert!(record.data.as_ref().unwrap().contains_key("token"));
    assert!(!env.exists("secret", "fb-facebook-token").await);
    assert_eq!(fb["status"]["effects"][0]["kind"], "PageSubscription");
    assert_eq!(fb["status"]["effects"][0]["account"], "app-1");

    // Rename: a new generation is reconciled, no second connect call (the mock expects exactly 1).
    let ltt = cond(&fb, "lastTransitionTime").clone();
    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "fb",
            "--type=merge",
            "-p",
            r#"{"spec":{"name":"Renamed"}}"#,
        ],
        None,
    )
    .await;
    let v = env
        .channel_until("fb", "generation 2 reconciled", |v| {
            v["status"]["observedGeneration"] == 2 && cond(v, "status") == "True"
        })
        .await;
    assert_eq!(
        cond(&v, "lastTransitionTime"),
        &ltt,
        "Ready did not flip, so its time must not change"
    );

    // connected: false → provider disconnect, token Secret deleted, status updated.
    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "fb",
            "--type=merge",
            "-p",
            r#"{"spec":{"connected":false}}"#,
        ],
        None,
    )
    .await;
    let v = env
        .channel_until("fb", "Disconnected", |v| {
            cond(v, "reason") == "Disconnected" && v["status"]["observedGeneration"] == 3
        })
        .await;
    assert_eq!(v["status"]["connected"], false);
    assert_eq!(cond(&v, "status"), "True");
    no_record(&env, &uid).await;
    assert!(v["status"]["effects"].is_null(), "{v:#}");
    assert!(
        env.exists("secret", "fb-token").await,
        "the user's Secret is not the operator's"
    );

    // Delete: the finalizer disconnects the number first, then the object is gone.
    env.kubectl_ok(
        &["delete", "channel", "sms", "--wait=true", KUBECTL_TIMEOUT],
        None,
    )
    .await;
    env.gone("channel", "sms").await;

    // WhatsApp: the lookup strips the prefix (PN1 mock is for the bare number).
    env.apply(&channel_yaml(
        "wa",
        "twilio.whatsapp",
        "whatsapp:+491234567",
        "  deletionPolicy: Orphan\n",
    ))
    .await;
    env.wait_ready("wa").await;
    assert_eq!(
        env.get("wa").await["status"]["id"],
        "7fd34ed2-88ae-5797-950d-9ff8a93e6ea2"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_rejected_with_a_message_naming_the_field() {
    let env = Env::new(&[]).await;
    for (yaml, field) in [
        (
            channel_yaml("bad-sms", "twilio.sms", "+49 123", ""),
            "sourceChannelId",
        ),
        (
            channel_yaml("bad-wa", "twilio.whatsapp", "+491234567", ""),
            "sourceChannelId",
        ),
        (
            channel_yaml("bad-fb", "facebook", "p1", ""),
            "credentialsSecretRef",
        ),
        (
            channel_yaml("bad-img", "google", "g1", "  imageUrl: ftp://x\n"),
            "imageUrl",
        ),
        (
            channel_yaml("bad-name", "google", "g2", "  name: \"\"\n"),
            "name",
        ),
        (channel_yaml("bad-src", "telegram", "t1", ""), "source"),
    ] {
        let out = tokio::task::block_in_place(|| env.kubectl(&["apply", "-f", "-"], Some(&yaml)));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {yaml}");
        // The field's path, not a word of kubectl's own `The Channel "bad-name" is invalid`.
        let path = format!("spec.{field}");
        assert!(stderr.contains(&path), "{path} not named in: {stderr}");
    }
    // Immutable source channel id.
    env.apply(&channel_yaml("g", "google", "g-1", "")).await;
    let out = tokio::task::block_in_place(|| {
        env.kubectl(
            &[
                "patch",
                "channel",
                "g",
                "--type=merge",
                "-p",
                r#"{"spec":{"sourceChannelId":"g-2"}}"#,
            ],
            None,
        )
    });
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("immutable"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_500_timeout_and_429_end_connected_with_one_subscribe_each() {
    let mut env = Env::new(&[]).await;
    // Each page fails its first exchange differently, then recovers.
    let mut tokens = Vec::new();
    for (page, failure) in [
        ("p500", ResponseTemplate::new(500).set_body_json(serde_json::json!({"error": {"message": "Graph is having a bad day", "type": "FacebookApiException", "code": 2}}))),
        ("ptimeout", ResponseTemplate::new(200).set_delay(Duration::from_secs(3)).set_body_json(serde_json::json!({"access_token": "x"}))),
        ("p429", ResponseTemplate::new(429).insert_header("Retry-After", "1")),
    ] {
        let token = format!("EAAtok-{page}-user-page-token");
        Mock::given(method("GET"))
            .and(path("/v24.0/oauth/access_token"))
            .and(query_param("fb_exchange_token", token.as_str()))
            .respond_with(failure)
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&env.graph)
            .await;
        let t = env.fake_page(page, 1, 0).await;
        assert_eq!(t, token);
        tokens.push((page, token));
    }
    env.start_controller().await;
    for (page, token) in &tokens {
        env.apply(&secret_yaml(&format!("{page}-tok"), "page_token", token))
            .await;
        env.apply(&channel_yaml(
            page,
            "facebook",
            page,
            &fb_extra(&format!("{page}-tok")),
        ))
        .await;
    }
    for (page, _) in &tokens {
        env.wait_ready(page).await;
    }
    let seen = env.statuses.lock().unwrap().join("\n");
    assert!(
        seen.contains("HTTP 500: Graph is having a bad day"),
        "{seen}"
    );
    assert!(seen.contains("timed out"), "{seen}");
    assert!(seen.contains("HTTP 429"), "{seen}");
    let events = env.kubectl_ok(&["get", "events", "-o", "json"], None).await;
    assert!(
        events.contains("Graph is having a bad day"),
        "a failure Event is published"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_drops_conflicts_and_restarts_converge_without_a_second_connect() {
    let mut env = Env::new(&[]).await;
    let mut pages = Vec::new();
    for i in 0..4 {
        let page = format!("crash-{i}");
        let token = env.fake_page(&page, 1, 0).await;
        pages.push((page, token));
    }
    // The orphan's page must never be unsubscribed.
    let orphan_token = env.fake_page("orphan", 1, 0).await;
    env.start_controller().await;
    for (page, token) in &pages {
        env.apply(&secret_yaml(&format!("{page}-tok"), "page_token", token))
            .await;
    }
    env.apply(&secret_yaml("orphan-tok", "page_token", &orphan_token))
        .await;
    let faults = env.sb.faults();
    faults.fail_next("patch", "channels", 3, 409);
    for (i, (page, _)) in pages.iter().enumerate() {
        env.apply(&channel_yaml(
            page,
            "facebook",
            page,
            &fb_extra(&format!("{page}-tok")),
        ))
        .await;
        if i == 1 {
            faults.drop_watches();
        }
        if i == 2 {
            // Crash mid-way, then come back.
            env.kill().await;
            env.start_controller().await;
        }
    }
    for i in 0..20 {
        env.apply(&channel_yaml(
            &format!("web-{i}"),
            "chat_plugin",
            &format!("site-{i}"),
            "",
        ))
        .await;
        if i == 10 {
            env.kill().await;
            faults.drop_watches();
            faults.fail_next("patch", "channels", 2, 409);
            env.start_controller().await;
        }
    }
    for (page, _) in &pages {
        env.wait_ready(page).await;
    }
    for i in 0..20 {
        env.wait_ready(&format!("web-{i}")).await;
    }
    // Restart once more with everything connected: nothing is connected again (mocks expect 1).
    env.kill().await;
    env.start_controller().await;
    env.apply(&channel_yaml(
        "orphan",
        "facebook",
        "orphan",
        &format!("{}  deletionPolicy: Orphan\n", fb_extra("orphan-tok")),
    ))
    .await;
    env.wait_ready("orphan").await;
    // Orphan: deleted without calling the provider (the unsubscribe mock expects 0 calls).
    env.kubectl_ok(&["delete", "channel", "orphan", KUBECTL_TIMEOUT], None)
        .await;
    env.gone("channel", "orphan").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (page, _) in &pages {
        let v = env.get(page).await;
        assert_eq!(cond(&v, "reason"), "Connected", "{page}");
    }
    // Its record went with it (released, not undone); the connected pages keep theirs.
    assert_eq!(state_secrets(&env, "channel-").await.len(), pages.len());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_channels_are_left_alone_until_unpaused() {
    let mut env = Env::new(&[]).await;
    env.start_controller().await;
    env.apply(&channel_yaml("p", "google", "agent-p", "  name: One\n"))
        .await;
    env.wait_ready("p").await;
    env.kubectl_ok(&["annotate", "channel", "p", "airy.co/paused=true"], None)
        .await;
    env.kubectl_ok(
        &[
            "patch",
            "channel",
            "p",
            "--type=merge",
            "-p",
            r#"{"spec":{"connected":false}}"#,
        ],
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let v = env.get("p").await;
    assert_eq!(
        v["status"]["observedGeneration"], 1,
        "a paused Channel's status does not change"
    );
    assert_eq!(v["status"]["connected"], true);
    // Deleting a paused Channel waits for the pause to end.
    env.kubectl_ok(&["delete", "channel", "p", "--wait=false"], None)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        env.exists("channel", "p").await,
        "the finalizer holds a paused Channel"
    );
    env.kubectl_ok(&["annotate", "channel", "p", "airy.co/paused-"], None)
        .await;
    env.gone("channel", "p").await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_are_served() {
    let mut env = Env::new(&[]).await;
    env.start_controller().await;
    env.apply(&channel_yaml("m", "google", "agent-m", "")).await;
    env.wait_ready("m").await;
    let base = format!("http://{}", env.metrics_addr);
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("channel_operator_channels{source=\"google\",state=\"connected\"} 1"),
        "{text}"
    );
    assert!(text.contains("channel_operator_reconciles_total"), "{text}");
    assert!(
        text.contains("channel_operator_reconcile_duration_seconds_count"),
        "{text}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_flag_limits_the_controller_to_one_namespace() {
    let mut env = Env::new(&["--namespace", "team-a"]).await;
    env.kubectl_ok(&["create", "namespace", "team-a"], None)
        .await;
    env.start_controller().await;
    env.apply(&channel_yaml("outside", "google", "agent-out", ""))
        .await;
    env.apply(
        &channel_yaml("inside", "google", "agent-in", "")
            .replace("namespace: default", "namespace: team-a"),
    )
    .await;
    env.kubectl_ok(
        &[
            "wait",
            "--for=condition=Ready",
            "channel/inside",
            "-n",
            "team-a",
            KUBECTL_TIMEOUT,
        ],
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = env.get("outside").await;
    assert!(
        v["status"].is_null(),
        "a Channel outside --namespace is not reconciled: {v:#}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_rechecks_a_connected_page_without_subscribing_again() {
    let mut env = Env::new(&["--resync-seconds", "1"]).await;
    let token = env.fake_page("resync", 1, 0).await;
    env.start_controller().await;
    env.apply(&secret_yaml("resync-tok", "page_token", &token))
        .await;
    env.apply(&channel_yaml(
        "resync",
        "facebook",
        "resync",
        &fb_extra("resync-tok"),
    ))
    .await;
    env.wait_ready("resync").await;
    let page_path = format!("/v24.0/{}", page_id("resync"));
    let page_reads = |reqs: &[wiremock::Request]| {
        reqs.iter()
            .filter(|r| r.method.as_str() == "GET" && r.url.path() == page_path)
            .count()
    };
    let before = page_reads(&env.graph.received_requests().await.unwrap());
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let after = page_reads(&env.graph.received_requests().await.unwrap());
    assert!(
        after > before,
        "a resync reads the page again ({before} → {after})"
    );
    let v = env.get("resync").await;
    assert_eq!(cond(&v, "reason"), "Connected");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_is_down_keeps_the_finalizer_with_a_condition_saying_why() {
    let mut env = Env::new(&[]).await;
    let token = env.fake_page("down", 1, 1).await;
    env.start_controller().await;
    env.apply(&secret_yaml("down-tok", "page_token", &token))
        .await;
    env.apply(&channel_yaml(
        "down",
        "facebook",
        "down",
        &fb_extra("down-tok"),
    ))
    .await;
    env.wait_ready("down").await;
    // Graph fails the unsubscribe three times, then recovers.
    Mock::given(method("DELETE"))
        .and(path(format!("/v24.0/{}/subscribed_apps", page_id("down"))))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            serde_json::json!({"error": {"message": "Service temporarily unavailable", "type": "FacebookApiException", "code": 2}}),
        ))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&env.graph)
        .await;
    env.kubectl_ok(&["delete", "channel", "down", "--wait=false"], None)
        .await;
    let v = env
        .channel_until("down", "the failed disconnect in the status", |v| {
            cond(v, "reason") == "ProviderError"
        })
        .await;
    let message = cond(&v, "message").as_str().unwrap().to_owned();
    assert!(
        message.contains("HTTP 503: Service temporarily unavailable"),
        "{message}"
    );
    assert!(v["metadata"]["deletionTimestamp"].is_string());
    assert!(v["metadata"]["finalizers"]
        .to_string()
        .contains("channels.airy.co/disconnect"));
    // Backoff retries until Graph recovers; then the object is gone.
    env.gone("channel", "down").await;
    assert!(state_secrets(&env, "channel-").await.is_empty());
    assert!(state_leases(&env, "effect-").await.is_empty());
    env.finish().await;
}
