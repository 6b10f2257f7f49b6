//! `channel-operator migrate` beyond the five channels: the list shapes of Airy Core's releases,
//! what it never overwrites (ids held elsewhere, Channels and Secrets it did not write, fields
//! changed since), a changed token, progress, and the error exits.

mod support;

use channel_operator::channel_id::channel_id_string;
use channel_operator::crd::{Channel, Source};
use channel_operator::ownership::credentials_secret_name;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use support::airy::{fake_airy, listed, migrate, named, Release, AIRY_TOKEN};
use support::*;

const RANDOM_A: &str = "3f2b8c1e-9d4a-4e7b-a1c2-5d6e7f809a1b";
const RANDOM_B: &str = "0a1b2c3d-0000-4000-8000-000000000000";

fn args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--from",
        url,
        "--namespace",
        "default",
        "--token",
        AIRY_TOKEN,
    ];
    a.extend_from_slice(extra);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_shapes_of_every_release_are_read() {
    let fb = page_id("old");
    let (flat, meta, conn) = (Release::Flat, Release::Metadata, Release::Connected);
    let shapes = [
        // Up to 0.8: flat, the original chat plugin name and its deterministic id.
        (
            flat,
            channel_id_string("chat_plugin", "web"),
            "chat_plugin",
            "web",
            "web",
        ),
        (
            flat,
            channel_id_string("facebook", &fb),
            "facebook",
            &fb,
            "Old page",
        ),
        // 0.9: metadata.
        (meta, GOOGLE_ID.into(), "google", "gbm-id", "Agent"),
        // 0.13 to 0.17: the later name, still a deterministic id.
        (
            conn,
            channel_id_string("chatplugin", "web"),
            "chatplugin",
            "web",
            "web 2",
        ),
        // 0.18 and later: random ids, two on one website name.
        (conn, RANDOM_A.into(), "chatplugin", "shop", "shop"),
        (conn, RANDOM_B.into(), "chatplugin", "shop", "shop"),
        // 0.26 to 0.36: Instagram without its linked page.
        (
            conn,
            channel_id_string("instagram", "1784"),
            "instagram",
            "1784",
            "IG",
        ),
        // A source of Airy Core's sources API.
        (conn, RANDOM_A.into(), "my-sms-gateway", "x", "x"),
    ];
    let mut channels: Vec<_> = shapes
        .iter()
        .map(|(release, id, source, scid, name)| named(*release, id, source, scid, name))
        .collect();
    channels[0]["image_url"] = json!("https://img.example.org/web.png");
    let airy = fake_airy(channels).await;
    let run = migrate(None, &args(&airy.url, &["--dry-run", "-o", "yaml"]), &[]).await;
    assert_eq!(run.code, Some(1), "two channels are not moved: {run:#?}");
    let out = &run.stdout;
    assert_eq!(out.matches("kind: Channel").count(), 6, "{out}");
    // Pinned: the later chat plugin's deterministic id (this installation names it chat_plugin)
    // and the random ones; not the original one.
    for pinned in [
        channel_id_string("chatplugin", "web"),
        RANDOM_A.into(),
        RANDOM_B.into(),
    ] {
        assert!(
            out.contains(&format!("channelId: {pinned}")),
            "{pinned}: {out}"
        );
    }
    assert!(!out.contains(&format!(
        "channelId: {}",
        channel_id_string("chat_plugin", "web")
    )));
    assert!(
        out.contains("name: Old page") && out.contains("imageUrl: https://img.example.org/web.png")
    );
    let err = &run.stderr;
    for said in [
        "--chatplugin-naming chatplugin",
        &format!("needs credentials: facebook-{fb} names the Secret facebook-{fb}-credentials"),
        "skipped: instagram 1784",
        "metadata.page_id",
        "skipped: my-sms-gateway x",
        "2 of Airy Core's channels were not moved (2 skipped, 0 failed)",
    ] {
        assert!(err.contains(said), "{said}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_migrate_did_not_write_is_never_overwritten() {
    let env = Env::builder().no_controller().build().await;
    env.namespace("team-b").await;
    let pp = PostParams::default();
    let team_b: Api<Channel> = Api::namespaced(env.sb.client(), "team-b");
    let theirs = channel(Source::Google, "gbm-id")
        .named("agent")
        .namespace("team-b")
        .build();
    let theirs = team_b.create(&pp, &theirs).await.unwrap();
    let default: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    let users = channel(Source::TwilioSms, "+491234567")
        .named("twilio-sms-491234567")
        .build();
    let users = default.create(&pp, &users).await.unwrap();
    let token = "EAAtok-foreign-secret-test";
    let fb = page_id("fb");
    let fb_secret = credentials_secret_name(&format!("facebook-{fb}"), token);
    let user_secret = env
        .secrets()
        .create(
            &pp,
            &unconsented_secret(&fb_secret, "page_token", "the user's"),
        )
        .await
        .unwrap();
    let airy = fake_airy(vec![
        named(Release::Connected, GOOGLE_ID, "google", "gbm-id", "Agent"),
        named(
            Release::Connected,
            SMS_ID,
            "twilio.sms",
            "+491234567",
            "SMS",
        ),
        listed(
            Release::Connected,
            &channel_id_string("facebook", &fb),
            "facebook",
            &fb,
            json!({"name": "Page", "page_token": token}),
        ),
        named(Release::Connected, RANDOM_A, "chatplugin", "shop", "shop"),
    ])
    .await;
    let run = migrate(
        Some(&env.kubeconfig),
        &args(&airy.url, &["--apply", "--progress-seconds", "0"]),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    for said in [
        "migrate: 1/4 channels",
        "1 written, 0 unchanged",
        &format!("skipped: google gbm-id ({GOOGLE_ID}): channel id {GOOGLE_ID} is held by the Channel agent of namespace team-b"),
        "skipped: twilio.sms +491234567",
        "a Channel named twilio-sms-491234567 exists in namespace default and was not written by migrate",
        &format!("a Secret named {fb_secret} exists in namespace default and was not written by migrate"),
        "3 of Airy Core's channels were not moved (3 skipped, 0 failed)",
    ] {
        assert!(run.stderr.contains(said), "{said}: {}", run.stderr);
    }
    assert!(!run.stderr.contains(token));
    assert_eq!(
        team_b.get("agent").await.unwrap().resource_version(),
        theirs.resource_version()
    );
    let now = default.get("twilio-sms-491234567").await.unwrap();
    assert_eq!(now.resource_version(), users.resource_version());
    let now: Secret = env.secrets().get(&fb_secret).await.unwrap();
    assert_eq!(now.resource_version(), user_secret.resource_version());
    assert!(default
        .get_opt(&format!("facebook-{fb}"))
        .await
        .unwrap()
        .is_none());
    assert!(default
        .get_opt(&format!("chatplugin-shop-{}", &RANDOM_A[..8]))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_run_follows_airy_core_but_keeps_changes_made_since() {
    let env = Env::builder().no_controller().build().await;
    let fb = page_id("fb");
    let fb_id = channel_id_string("facebook", &fb);
    let fb_name = format!("facebook-{fb}");
    let plugin = |image: &str| {
        listed(
            Release::Connected,
            RANDOM_A,
            "chatplugin",
            "shop",
            json!({"name": "shop", "image_url": image}),
        )
    };
    let page = |token: &str| {
        listed(
            Release::Connected,
            &fb_id,
            "facebook",
            &fb,
            json!({"name": "Page", "page_token": token}),
        )
    };
    let agent = named(Release::Connected, GOOGLE_ID, "google", "gbm-id", "Agent");
    let airy = fake_airy(vec![
        plugin("https://img.example.org/1.png"),
        page("EAAtok-first"),
        agent.clone(),
    ])
    .await;
    let apply = args(&airy.url, &["--apply"]);
    let run = migrate(Some(&env.kubeconfig), &apply, &[]).await;
    assert!(run.ok(), "{run:#?}");
    // Someone renames the Google agent in the cluster; Airy Core changes the image and the token.
    let default: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    default
        .patch(
            "google-gbm-id",
            &edit,
            &Patch::Merge(json!({"spec": {"name": "Renamed"}})),
        )
        .await
        .unwrap();
    airy.set(vec![
        plugin("https://img.example.org/2.png"),
        page("EAAtok-second"),
        agent,
    ]);
    let run = migrate(Some(&env.kubeconfig), &apply, &[]).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr.contains("2 written, 0 unchanged"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "the Channel google-gbm-id was changed in the cluster since migrate wrote it"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        default
            .get("google-gbm-id")
            .await
            .unwrap()
            .spec
            .name
            .as_deref(),
        Some("Renamed")
    );
    let plugin_name = format!("chatplugin-shop-{}", &RANDOM_A[..8]);
    let ch = default.get(&plugin_name).await.unwrap();
    assert_eq!(
        ch.spec.image_url.as_deref(),
        Some("https://img.example.org/2.png")
    );
    // The new token's Secret is named; the old one, migrate's, is gone.
    let (old, new) = (
        credentials_secret_name(&fb_name, "EAAtok-first"),
        credentials_secret_name(&fb_name, "EAAtok-second"),
    );
    let ch = default.get(&fb_name).await.unwrap();
    assert_eq!(ch.spec.credentials_secret_ref.unwrap().name, new);
    assert!(env.secrets().get_opt(&new).await.unwrap().is_some());
    assert!(env.secrets().get_opt(&old).await.unwrap().is_none());
    assert!(!run.stderr.contains("EAAtok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_airy_core_or_cluster_exits_non_zero_saying_why() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let mock = MockServer::start().await;
    let answers = [
        (
            "/unauth",
            ResponseTemplate::new(401),
            "refused the token (HTTP 401)",
        ),
        (
            "/login",
            ResponseTemplate::new(302).insert_header("location", "/login?next=x"),
            "a redirect to its login page",
        ),
        (
            "/broken",
            ResponseTemplate::new(500),
            "answered HTTP 500 to channels.list",
        ),
        (
            "/html",
            ResponseTemplate::new(200).set_body_string("<html></html>"),
            "not a channel list: not JSON",
        ),
    ];
    for (prefix, response, _) in &answers {
        Mock::given(method("POST"))
            .and(path(format!("{prefix}/channels.list")))
            .respond_with(response.clone())
            .mount(&mock)
            .await;
    }
    for (prefix, _, said) in &answers {
        let url = format!("{}{prefix}", mock.uri());
        let run = migrate(None, &args(&url, &["--dry-run"]), &[]).await;
        assert_eq!(run.code, Some(1), "{prefix}: {run:#?}");
        assert!(run.stderr.contains(said), "{prefix}: {}", run.stderr);
        assert!(!run.stderr.contains(AIRY_TOKEN));
    }
    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = migrate(None, &args(&url, &["--dry-run"]), &[]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains(&format!("cannot reach Airy Core at {url}/channels.list")),
        "{}",
        run.stderr
    );
    // No token at all; an empty token file.
    let run = migrate(
        None,
        &["--from", &url, "--namespace", "default", "--dry-run"],
        &[],
    )
    .await;
    assert!(
        run.code == Some(1) && run.stderr.contains("no Airy Core token"),
        "{run:#?}"
    );
    // A usable Airy Core, but no cluster, then a namespace that does not exist.
    let airy = fake_airy(vec![named(
        Release::Connected,
        GOOGLE_ID,
        "google",
        "gbm-id",
        "Agent",
    )])
    .await;
    let run = migrate(None, &args(&airy.url, &["--apply"]), &[]).await;
    assert!(
        run.code == Some(1) && run.stderr.contains("cluster of the current kubeconfig"),
        "{run:#?}"
    );
    let sb = sandbox().await;
    let mut a = vec!["--from", &airy.url, "--namespace", "nowhere", "--apply"];
    let file = sb.dir.path().join("empty");
    std::fs::write(&file, "\n").unwrap();
    a.extend(["--token-file", file.to_str().unwrap()]);
    let run = migrate(Some(&sb.kubeconfig), &a, &[]).await;
    assert!(
        run.code == Some(1) && run.stderr.contains("token is empty"),
        "{run:#?}"
    );
    let run = migrate(Some(&sb.kubeconfig), &a[..5], &[("AIRY_TOKEN", AIRY_TOKEN)]).await;
    assert!(
        run.code == Some(1) && run.stderr.contains("the namespace nowhere does not exist"),
        "{run:#?}"
    );
}
