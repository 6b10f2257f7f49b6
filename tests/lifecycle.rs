//! Channels walked through several steps across both halves, the HTTP API and the controller
//! (and kubectl): every answer, the Channel, exactly the Secrets left and the provider calls.

mod support;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facebook_reconnect_with_the_same_token_answers_200() {
    let mut env = Env::builder().controller_later().api(&[]).build().await;
    let token = env.fake_page("again", 2, 1).await;
    env.start_controller().await;
    let page = page_id("again");
    let connect = json!({"page_id": page, "page_token": token});
    let (s, ch) = env.post("channels.facebook.connect", connect.clone()).await;
    assert_eq!(s, 200, "{ch}");
    let id = ch["id"].as_str().unwrap().to_owned();
    let credentials = channel_operator::ownership::credentials_secret_name(&id, &token);
    let derived = channel_operator::ownership::token_secret_name(&id);
    let mut both = vec![credentials.clone(), derived.clone()];
    both.sort();
    assert_eq!(env.secret_names().await, both);
    let (s, v) = env
        .post("channels.facebook.disconnect", json!({"channel_id": id}))
        .await;
    assert_eq!((s, &v), (200, &json!({})));
    // The derived token goes; the user's credentials stay with the Channel that names them.
    assert_eq!(env.secret_names().await, vec![credentials.clone()]);
    let (s, again) = env.post("channels.facebook.connect", connect).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again, ch);
    assert_eq!(env.secret_names().await, both);
    env.finish().await;
}
