//! The chat plugin's later name (`--chatplugin-naming chatplugin`): chat plugin channels get the
//! ids Airy Core derives from `chatplugin` and the API answers with that source; list filters and
//! disconnect paths take both names under either naming; other sources are unchanged.

mod support;

use support::router as r;
use support::*;

use serde_json::json;

/// `chatplugin` + `website-identifier-42`, computed independently (SHA-1 in Python).
const LATER_PLUGIN_ID: &str = "88b93949-a32f-502c-b56a-67c877c01ba5";

fn ids(v: &serde_json::Value) -> Vec<(String, String)> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["source"].as_str().unwrap().to_owned(),
                c["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_api_answers_with_the_naming_of_the_installation_and_filters_by_both_names() {
    let later = r::app_with(&["--chatplugin-naming", "chatplugin"], r::fixtures());
    let original = r::app();
    for (app, source, id) in [
        (&later, "chatplugin", LATER_PLUGIN_ID),
        (&original, "chat_plugin", PLUGIN_ID),
    ] {
        for filter in ["chatplugin", "chat_plugin"] {
            let (status, v) = r::post_json(app, "/channels.list", json!({"source": filter})).await;
            assert_eq!(status, 200);
            assert_eq!(ids(&v), [(source.to_owned(), id.to_owned())], "{filter}");
        }
        let (status, v) = r::post_json(app, "/channels.info", json!({"channel_id": id})).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["source"], source);
        // Both disconnect paths take the chat plugin channel (the cluster is unreachable here,
        // so the disconnect itself answers 503 rather than 400 "not a chat plugin channel").
        for path in [
            "/channels.chatplugin.disconnect",
            "/channels.chat_plugin.disconnect",
        ] {
            let (status, v) = r::post_json(app, path, json!({"channel_id": id})).await;
            assert_eq!(status, 503, "{path}: {v}");
        }
    }
    // The original id is not a channel under the later naming; other sources keep their ids.
    let (status, _) =
        r::post_json(&later, "/channels.info", json!({"channel_id": PLUGIN_ID})).await;
    assert_eq!(status, 404);
    let (status, v) = r::post_json(&later, "/channels.info", json!({"channel_id": WA_ID})).await;
    assert_eq!(
        (status.as_u16(), v["source"].as_str()),
        (200, Some("twilio.whatsapp"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_and_api_give_chat_plugins_the_later_ids() {
    let naming = ["--chatplugin-naming", "chatplugin"];
    let env = Env::builder()
        .no_twilio()
        .controller_args(&naming)
        .api(&naming)
        .build()
        .await;
    let (status, v) = env
        .post(
            "channels.chatplugin.connect",
            json!({"name": "website-identifier-42"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], LATER_PLUGIN_ID);
    assert_eq!(v["source"], "chatplugin");
    // The resource keeps the CRD's source; its id is the later one.
    let ch = env.get(LATER_PLUGIN_ID).await;
    assert_eq!(ch["spec"]["source"], "chat_plugin");
    assert_eq!(ch["status"]["id"], LATER_PLUGIN_ID);
    let (status, v) = env
        .post(
            "channels.chat_plugin.disconnect",
            json!({"channel_id": LATER_PLUGIN_ID}),
        )
        .await;
    assert_eq!((status, v), (200, json!({})));
    env.finish().await;
}
