//! Unit tests of `plan.rs`: Airy Core channels of each release become the Channels migrate writes.

use super::*;
use crate::channel_id::channel_id_string;

fn ctx(naming: ChatPluginNaming) -> Context {
    Context {
        namespace: "airy".into(),
        naming,
        from: "https://airy.example.org".into(),
    }
}

fn airy(source: &str, scid: &str, id: &str) -> AiryChannel {
    AiryChannel {
        id: id.into(),
        source: source.into(),
        source_channel_id: scid.into(),
        name: Some(format!("{source} channel")),
        image_url: None,
        connected: true,
        page_token: None,
        page_id: None,
    }
}

fn own(source: &str, scid: &str) -> String {
    channel_id_string(source, scid)
}

const RANDOM: &str = "3f2b8c1e-9d4a-4e7b-a1c2-5d6e7f809a1b";

#[test]
fn deterministic_ids_need_no_pin_and_random_chat_plugin_ids_are_pinned() {
    let c = ctx(ChatPluginNaming::Chatplugin);
    let fb = plan_one(&airy("facebook", "123", &own("facebook", "123")), &c).unwrap();
    assert!(!fb.pinned());
    assert_eq!(fb.channel.name_any(), "facebook-123");
    let g = plan_one(&airy("google", "gbm-id", &own("google", "gbm-id")), &c).unwrap();
    assert!(!g.pinned());
    assert_eq!(g.channel.name_any(), "google-gbm-id");
    assert_eq!(g.channel.metadata.namespace.as_deref(), Some("airy"));
    // 0.13 to 0.17: deterministic under the later naming.
    let later = own("chatplugin", "web");
    assert!(!plan_one(&airy("chatplugin", "web", &later), &c)
        .unwrap()
        .pinned());
    // 0.18 and later: random.
    let p = plan_one(&airy("chatplugin", "web", RANDOM), &c).unwrap();
    assert_eq!(p.channel.spec.channel_id.as_deref(), Some(RANDOM));
    assert_eq!(p.channel.channel_id(c.naming), RANDOM);
    // Upper-case ids are kept lower-cased.
    let p = plan_one(&airy("chat_plugin", "web", &RANDOM.to_uppercase()), &c).unwrap();
    assert_eq!(p.channel.spec.channel_id.as_deref(), Some(RANDOM));
    // Under the original naming a 0.13 id is pinned too: the id is kept either way.
    let p = plan_one(
        &airy("chatplugin", "web", &later),
        &ctx(ChatPluginNaming::ChatPlugin),
    );
    assert_eq!(p.unwrap().channel.spec.channel_id, Some(later));
}

#[test]
fn a_provider_resource_keeps_one_id() {
    let c = ctx(ChatPluginNaming::ChatPlugin);
    let e = plan_one(&airy("google", "gbm-id", RANDOM), &c).unwrap_err();
    assert!(e.contains("two ids"), "{e}");
    // Viber: Airy Core's own formula is kept.
    let scid = "pa:5469875432398472639";
    let mut v = airy("viber", scid, &channel_id_string("", scid));
    v.page_token = Some(SecretString::new("viber-bot-token"));
    let p = plan_one(&v, &c).unwrap();
    assert_eq!(p.channel.channel_id(c.naming), channel_id_string("", scid));
}

#[test]
fn page_tokens_go_to_secrets_and_a_missing_one_is_named_for_its_owner() {
    let c = ctx(ChatPluginNaming::ChatPlugin);
    let mut fb = airy("facebook", "1234567890", &own("facebook", "1234567890"));
    fb.page_token = Some(SecretString::new("EAAtok-1"));
    fb.image_url = Some("https://img.example.org/p.png".into());
    let p = plan_one(&fb, &c).unwrap();
    let Some(Credentials::Write { name, token }) = &p.credentials else {
        panic!("{:?}", p.credentials)
    };
    assert_eq!(
        name,
        &credentials_secret_name("facebook-1234567890", "EAAtok-1")
    );
    assert_eq!(token.expose(), "EAAtok-1");
    let r = p.channel.spec.credentials_secret_ref.as_ref().unwrap();
    assert_eq!(
        (r.name.as_str(), r.key.as_str()),
        (name.as_str(), PAGE_TOKEN_KEY)
    );
    let applied = p.applied().to_string();
    assert!(!applied.contains("EAAtok-1"), "{applied}");
    assert!(applied.contains("https://img.example.org/p.png"));
    assert!(!applied.contains("deletionPolicy") && !applied.contains("status"));
    // Before 0.37 Airy Core lists no token: the Channel names a Secret its owner creates.
    fb.page_token = None;
    let p = plan_one(&fb, &c).unwrap();
    assert_eq!(
        p.credentials,
        Some(Credentials::Missing {
            name: "facebook-1234567890-credentials".into()
        })
    );
    // Sources without credentials ignore a token.
    let mut g = airy("google", "gbm-id", &own("google", "gbm-id"));
    g.page_token = Some(SecretString::new("x"));
    assert_eq!(plan_one(&g, &c).unwrap().credentials, None);
}

#[test]
fn instagram_needs_its_linked_page() {
    let c = ctx(ChatPluginNaming::ChatPlugin);
    let mut ig = airy(
        "instagram",
        "17841400000000001",
        &own("instagram", "17841400000000001"),
    );
    ig.page_token = Some(SecretString::new("EAAtok-ig"));
    let e = plan_one(&ig, &c).unwrap_err();
    assert!(e.contains("metadata.page_id"), "{e}");
    ig.page_id = Some("100000000001".into());
    let p = plan_one(&ig, &c).unwrap();
    assert_eq!(
        p.channel.spec.instagram.as_ref().unwrap().page_id,
        "100000000001"
    );
    ig.page_id = Some("not-a-page".into());
    assert!(plan_one(&ig, &c).unwrap_err().contains("pageId"));
}

#[test]
fn names_and_images_channel_operator_refuses_are_dropped_with_a_note() {
    let c = ctx(ChatPluginNaming::ChatPlugin);
    let mut g = airy("google", "gbm-id", &own("google", "gbm-id"));
    g.name = Some("Pay\u{202E}lapyap".into());
    g.image_url = Some("javascript:alert(1)".into());
    g.connected = false;
    let p = plan_one(&g, &c).unwrap();
    assert_eq!(
        (
            p.channel.spec.name.as_ref(),
            p.channel.spec.image_url.as_ref()
        ),
        (None, None)
    );
    assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
    assert!(!p.channel.spec.connected);
}

#[test]
fn unknown_sources_bad_ids_and_repeats_are_skipped_with_why() {
    let c = ctx(ChatPluginNaming::ChatPlugin);
    let google = airy("google", "gbm-id", &own("google", "gbm-id"));
    let list = [
        airy("sms-gateway", "x", RANDOM),
        airy("chatplugin", "web", "not-a-uuid"),
        google.clone(),
        google,
        airy("chatplugin", "web", RANDOM),
        airy("chatplugin", "web", "0a1b2c3d-0000-4000-8000-000000000000"),
    ];
    let unreadable = [Unreadable {
        position: 7,
        why: "missing field `id`".into(),
    }];
    let (planned, skipped) = plan_all(&list, &unreadable, &c);
    assert_eq!(
        planned.len(),
        3,
        "two chat plugins sharing a website name both move"
    );
    let whys: Vec<&str> = skipped.iter().map(|s| s.why.as_str()).collect();
    assert_eq!(skipped.len(), 4, "{whys:?}");
    assert!(whys[0].contains("missing field"));
    assert_eq!(skipped[0].what, "entry 7 of the list");
    assert!(whys[1].contains("not one channel-operator connects"));
    assert!(whys[2].contains("not a UUID"));
    assert!(whys[3].contains("listed the same channel before"));
}
