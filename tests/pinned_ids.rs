//! `spec.channelId`: a Channel keeps the id Airy Core gave it. Set when the Channel is created, or
//! never; a chat plugin may pin any UUID, other sources only an id Airy Core derives for them;
//! claims, the status and the API use the pinned id like any id.

mod support;

use channel_operator::crd::{Channel, Source};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

const X: &str = "3f2b8c1e-9d4a-4e7b-a1c2-5d6e7f809a1b";
const Y: &str = "0a1b2c3d-0000-4000-8000-000000000000";

fn refused(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422, "{s:?}");
            s.message
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn channel_id_is_set_at_creation_or_never() {
    let sb = sandbox().await;
    let api: Api<Channel> = Api::namespaced(sb.sb.client(), "default");
    let pp = PostParams::default();
    let pinned = channel(Source::ChatPlugin, "shop")
        .named("a")
        .pinned(X)
        .build();
    api.create(&pp, &pinned).await.unwrap();
    let unpinned = channel(Source::ChatPlugin, "shop").named("b").build();
    api.create(&pp, &unpinned).await.unwrap();
    let merge = |v| Patch::Merge(v);
    let p = PatchParams::default();
    for (name, patch, why) in [
        ("a", json!({"spec": {"channelId": Y}}), "changed"),
        ("a", json!({"spec": {"channelId": null}}), "removed"),
        ("b", json!({"spec": {"channelId": X}}), "added later"),
    ] {
        let e = api.patch(name, &p, &merge(patch)).await.expect_err(why);
        assert!(refused(e).contains("channelId is immutable"), "{why}");
    }
    // Other changes of a pinned Channel are fine.
    api.patch("a", &p, &merge(json!({"spec": {"name": "Shop"}})))
        .await
        .unwrap();
    let bad = channel(Source::ChatPlugin, "shop")
        .named("c")
        .pinned("3F2B8C1E-9D4A-4E7B-A1C2-5D6E7F809A1B")
        .build();
    let e = api.create(&pp, &bad).await.unwrap_err();
    assert!(refused(e).contains("spec.channelId"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_ids_are_the_channels_ids_everywhere() {
    let env = Env::with_api().await;
    let api: Api<Channel> = Api::namespaced(env.sb.client(), "default");
    let pp = PostParams::default();
    // Two chat plugins of one website name (as Airy Core makes them), each with its own id.
    for (name, id) in [("shop-x", X), ("shop-y", Y)] {
        let ch = channel(Source::ChatPlugin, "shop")
            .named(name)
            .display_name(name)
            .pinned(id)
            .build();
        api.create(&pp, &ch).await.unwrap();
    }
    env.wait_ready("shop-x").await;
    env.wait_ready("shop-y").await;
    for (name, id) in [("shop-x", X), ("shop-y", Y)] {
        assert_eq!(env.get(name).await["status"]["id"], id);
        let leases: Api<Lease> = Api::namespaced(env.sb.client(), STATE_NS);
        assert!(
            leases
                .get_opt(&format!("claim-{id}"))
                .await
                .unwrap()
                .is_some(),
            "{id}"
        );
    }
    let (status, v) = env.post("channels.list", json!({})).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [Y, X], "ordered by id: {v}");
    let (status, v) = env.post("channels.info", json!({"channel_id": X})).await;
    assert_eq!(
        (status, v["source_channel_id"].as_str()),
        (200, Some("shop"))
    );
    let (status, v) = env
        .post(
            "channels.update",
            json!({"channel_id": X, "name": "Shop X"}),
        )
        .await;
    assert_eq!((status, v["id"].as_str()), (200, Some(X)), "{v}");
    assert_eq!(env.get("shop-x").await["spec"]["name"], "Shop X");
    let (status, v) = env
        .post("channels.chatplugin.disconnect", json!({"channel_id": X}))
        .await;
    assert_eq!((status, v), (200, json!({})));
    assert_eq!(env.get("shop-x").await["spec"]["connected"], false);
    let (_, v) = env.post("channels.list", json!({})).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["data"][0]["id"], Y);

    // A provider resource never gets a second id: InvalidSpec, and the API refuses it too.
    let fb = channel(Source::Facebook, &page_id("fb"))
        .named("fb")
        .credentials("fb-token", "page_token")
        .pinned(X.replace('3', "4").as_str())
        .build();
    let other = fb.spec.channel_id.clone().unwrap();
    api.create(&pp, &fb).await.unwrap();
    let v = env
        .channel_until("fb", "InvalidSpec", |v| {
            v["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["reason"] == "InvalidSpec"))
        })
        .await;
    let ready = v["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["reason"], "InvalidSpec", "{v:#}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("spec.channelId"),
        "{v:#}"
    );
    let (status, v) = env
        .post("channels.facebook.disconnect", json!({"channel_id": other}))
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(message(&v).contains("spec.channelId"), "{v}");
    assert!(env.graph.received_requests().await.unwrap().is_empty());
    env.finish().await;
}
