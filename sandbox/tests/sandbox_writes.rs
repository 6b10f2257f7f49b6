//! Writes through `kube::Client`: resourceVersions, server-set metadata and names, the status
//! subresource, and every patch type including server-side apply (issue 2, points 1-4).

mod sandbox_support;

use channel_operator::crd::Channel;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use reqwest::Method;
use sandbox_support::*;
use serde_json::json;

#[tokio::test]
async fn resource_version_is_one_increasing_counter_and_stale_writes_conflict() {
    let (_sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");

    let c1 = channels
        .create(&PostParams::default(), &channel("a", "web-a"))
        .await
        .unwrap();
    let s1 = secrets
        .create(&PostParams::default(), &secret("s", json!({})))
        .await
        .unwrap();
    let l1 = leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "l"}})).unwrap(),
        )
        .await
        .unwrap();
    // one counter across resources: every write returns a bigger value
    assert!(rv(&c1.metadata) < rv(&s1.metadata));
    assert!(rv(&s1.metadata) < rv(&l1.metadata));

    let mut c2 = c1.clone();
    c2.spec.name = Some("renamed".into());
    let c2 = channels
        .replace("a", &PostParams::default(), &c2)
        .await
        .unwrap();
    assert!(rv(&c2.metadata) > rv(&l1.metadata));

    // an update carrying the old resourceVersion is rejected and changes nothing
    let mut stale = c1.clone();
    stale.spec.name = Some("lost update".into());
    let err = status(channels.replace("a", &PostParams::default(), &stale).await);
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on channels.airy.co \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // so is a patch whose body carries a stale resourceVersion
    let stale_rv = c1.metadata.resource_version.clone().unwrap();
    let err = status(
        channels
            .patch(
                "a",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"resourceVersion": stale_rv}, "spec": {"name": "x"}}),
                ),
            )
            .await,
    );
    assert_eq!(err.code, 409);
    let now = channels.get("a").await.unwrap();
    assert_eq!(now.spec.name.as_deref(), Some("renamed"));
    assert_eq!(now.metadata.resource_version, c2.metadata.resource_version);

    // a patch with the current resourceVersion succeeds and bumps it
    let cur = c2.metadata.resource_version.clone().unwrap();
    let c3 = channels
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": cur}, "spec": {"name": "y"}})),
        )
        .await
        .unwrap();
    assert!(rv(&c3.metadata) > rv(&c2.metadata));

    // a no-op write does not bump the resourceVersion
    let c4 = channels
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"name": "y"}})),
        )
        .await
        .unwrap();
    assert_eq!(c4.metadata.resource_version, c3.metadata.resource_version);

    // the list's resourceVersion is the store's current one
    let list = channels.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.metadata.resource_version, c3.metadata.resource_version);
}

#[tokio::test]
async fn server_sets_uid_timestamps_and_generation() {
    let (_sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let mut input = channel("g", "web-g");
    input.metadata.uid = Some("client-chosen".into());
    let c = channels
        .create(&PostParams::default(), &input)
        .await
        .unwrap();
    let uid = c.metadata.uid.clone().unwrap();
    assert_ne!(uid, "client-chosen");
    assert!(uuid::Uuid::parse_str(&uid).is_ok());
    let created = c
        .metadata
        .creation_timestamp
        .clone()
        .expect("creationTimestamp");
    let ts = created.0.as_second();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert_eq!(c.metadata.generation, Some(1));

    // metadata-only changes keep the generation
    let c = channels
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}, "finalizers": ["f/g"]}})),
        )
        .await
        .unwrap();
    assert_eq!(c.metadata.generation, Some(1));
    // status changes keep the generation
    let c = channels
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"connected": true}})),
        )
        .await
        .unwrap();
    assert_eq!(c.metadata.generation, Some(1));
    // a spec change bumps it by one
    let c = channels
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"name": "new"}})),
        )
        .await
        .unwrap();
    assert_eq!(c.metadata.generation, Some(2));
    assert_eq!(c.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(c.metadata.creation_timestamp, Some(created));

    // built-in secrets carry no generation, but uid and creationTimestamp
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let s = secrets
        .create(&PostParams::default(), &secret("s", json!({})))
        .await
        .unwrap();
    assert_eq!(s.metadata.generation, None);
    assert!(s.metadata.uid.is_some() && s.metadata.creation_timestamp.is_some());
    // stringData is folded into data, as the apiserver does
    assert_eq!(s.data.unwrap()["k"].0, b"v");
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
}

#[tokio::test]
async fn generate_name_and_name_validation() {
    let (sb, client) = sandbox().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s: Secret = serde_json::from_value(json!({"metadata": {"generateName": "tok-"}})).unwrap();
    let a = secrets.create(&PostParams::default(), &s).await.unwrap();
    let b = secrets.create(&PostParams::default(), &s).await.unwrap();
    let (na, nb) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(na.starts_with("tok-") && na.len() == 9, "{na}");
    assert_ne!(na, nb);

    let err = status(
        secrets
            .create(&PostParams::default(), &secret("Bad_Name", json!({})))
            .await,
    );
    assert_eq!(err.code, 422);
    assert!(err.message.starts_with("Secret \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", err.message);

    // namespaced objects need an existing namespace
    let elsewhere: Api<Secret> = Api::namespaced(client.clone(), "nope");
    let err = status(
        elsewhere
            .create(&PostParams::default(), &secret("s", json!({})))
            .await,
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );

    // dryRun=All writes nothing
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    secrets
        .create(&dry, &secret("dry", json!({})))
        .await
        .unwrap();
    assert!(secrets.get_opt("dry").await.unwrap().is_none());

    // namespaces exist from the start and are cluster-scoped
    let nss: Api<Namespace> = Api::all(client);
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for n in ["default", "kube-system", "kube-public"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    let (code, body, _) = raw(
        &sb,
        Method::GET,
        "/api/v1/namespaces/default/namespaces",
        None,
        None,
    )
    .await;
    assert_eq!(code, 404, "{body}");
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status() {
    let (_sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client, "default");
    let mut input = channel("s", "web-s");
    input.status = Some(serde_json::from_value(json!({"connected": true})).unwrap());
    let c = channels
        .create(&PostParams::default(), &input)
        .await
        .unwrap();
    assert!(c.status.is_none(), "status is dropped on create");

    // a write to /status changes only status
    let mut with_status = c.clone();
    with_status.spec.name = Some("ignored".into());
    with_status.metadata.labels = Some([("ignored".to_string(), "x".to_string())].into());
    with_status.status =
        Some(serde_json::from_value(json!({"connected": true, "id": "abc"})).unwrap());
    let c = channels
        .replace_status("s", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(c.spec.name.as_deref(), Some("site s"));
    assert!(c.metadata.labels.is_none());
    assert_eq!(c.status.as_ref().unwrap().id.as_deref(), Some("abc"));

    // a write to the main resource leaves status alone
    let mut main = c.clone();
    main.spec.name = Some("changed".into());
    main.status = None;
    let c = channels
        .replace("s", &PostParams::default(), &main)
        .await
        .unwrap();
    assert_eq!(c.spec.name.as_deref(), Some("changed"));
    assert_eq!(c.status.as_ref().unwrap().id.as_deref(), Some("abc"));
    let c = channels
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"id": "nope"}})),
        )
        .await
        .unwrap();
    assert_eq!(c.status.as_ref().unwrap().id.as_deref(), Some("abc"));
    let c = channels
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"name": "nope"}, "status": {"id": "def"}})),
        )
        .await
        .unwrap();
    assert_eq!(c.spec.name.as_deref(), Some("changed"));
    assert_eq!(c.status.unwrap().id.as_deref(), Some("def"));
}

#[tokio::test]
async fn merge_and_json_patches() {
    let (sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client, "default");
    channels
        .create(&PostParams::default(), &channel("p", "web-p"))
        .await
        .unwrap();
    let c = channels
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["a/b"]}, "spec": {"imageUrl": "https://x.io/i.png"}})),
        )
        .await
        .unwrap();
    assert_eq!(c.spec.image_url.as_deref(), Some("https://x.io/i.png"));
    assert_eq!(c.metadata.finalizers, Some(vec!["a/b".to_string()]));
    // JSON patch with `test`, the way kube-runtime's finalizer helper removes a finalizer
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "a/b"},
        {"op": "remove", "path": "/metadata/finalizers/0"},
    ]))
    .unwrap();
    let c = channels
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(ok.clone()))
        .await
        .unwrap();
    assert_eq!(
        c.metadata.finalizers.clone().unwrap_or_default(),
        Vec::<String>::new()
    );
    // a patch whose test fails after an add: 422, and nothing of it is stored
    let half: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/labels", "value": {"half": "applied"}},
        {"op": "test", "path": "/metadata/finalizers/0", "value": "a/b"},
    ]))
    .unwrap();
    let err = status(
        channels
            .patch("p", &PatchParams::default(), &Patch::<()>::Json(half))
            .await,
    );
    assert_eq!(err.code, 422, "{err:?}");
    let after = channels.get("p").await.unwrap();
    assert_eq!(after.metadata.resource_version, c.metadata.resource_version);
    assert_eq!(after.metadata.labels, c.metadata.labels);
    assert_eq!(
        serde_json::to_value(&after).unwrap(),
        serde_json::to_value(&c).unwrap()
    );
    // the same patch again fails its test: 422
    let err = status(
        channels
            .patch("p", &PatchParams::default(), &Patch::<()>::Json(ok))
            .await,
    );
    assert_eq!(err.code, 422, "{err:?}");
    // patching a missing object: 404
    let err = status(
        channels
            .patch(
                "missing",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {}})),
            )
            .await,
    );
    assert_eq!(err.code, 404);
    assert_eq!(err.message, "channels.airy.co \"missing\" not found");
    // strategic merge patch is not served for custom resources: 415
    let (code, body, _) = raw(
        &sb,
        Method::PATCH,
        "/apis/airy.co/v1alpha1/namespaces/default/channels/p",
        Some("application/strategic-merge-patch+json"),
        Some(r#"{"spec":{"name":"x"}}"#.into()),
    )
    .await;
    assert_eq!(code, 415);
    assert_status(&body, 415, "UnsupportedMediaType");
}

#[tokio::test]
async fn kube_runtime_finalizer_helper_adds_and_removes_its_finalizer() {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{finalizer, Event};
    let (_sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client, "default");
    let created = channels
        .create(&PostParams::default(), &channel("fin", "web-fin"))
        .await
        .unwrap();
    assert!(created.metadata.finalizers.is_none());
    // First pass: the helper adds its finalizer with a JSON patch that tests
    // `/metadata/finalizers == null` on an object that has no finalizers (kube-apiserver accepts it).
    let reconcile = |event: Event<Channel>| async move {
        Ok::<_, std::convert::Infallible>(match event {
            Event::Apply(_) | Event::Cleanup(_) => Action::await_change(),
        })
    };
    finalizer(
        &channels,
        "test.airy.co/f",
        std::sync::Arc::new(created),
        reconcile,
    )
    .await
    .expect("the finalizer is added");
    let c = channels.get("fin").await.unwrap();
    assert_eq!(
        c.metadata.finalizers,
        Some(vec!["test.airy.co/f".to_string()])
    );
    // Deleting marks it; the helper's cleanup pass removes the finalizer and the object goes.
    channels.delete("fin", &Default::default()).await.unwrap();
    let marked = channels.get("fin").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    finalizer(
        &channels,
        "test.airy.co/f",
        std::sync::Arc::new(marked),
        reconcile,
    )
    .await
    .expect("cleanup removes the finalizer");
    let gone = channels.get_opt("fin").await.unwrap();
    assert!(gone.is_none(), "{gone:?}");
}

#[tokio::test]
async fn server_side_apply_creates_merges_and_reports_conflicts() {
    let (sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client, "default");
    let applied = json!({
        "apiVersion": "airy.co/v1alpha1", "kind": "Channel",
        "metadata": {"name": "ssa"},
        "spec": {"source": "chat_plugin", "sourceChannelId": "web-ssa", "name": "first"},
    });
    // creates when absent
    let c = channels
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(c.spec.name.as_deref(), Some("first"));
    assert_eq!(c.metadata.generation, Some(1));
    // another manager sets a field alice does not own: merged
    let c = channels
        .patch(
            "ssa",
            &PatchParams::apply("bob"),
            &Patch::Apply(json!({
                "apiVersion": "airy.co/v1alpha1", "kind": "Channel", "metadata": {"name": "ssa"},
                "spec": {"imageUrl": "https://x.io/a.png"},
            })),
        )
        .await
        .unwrap();
    assert_eq!(c.spec.name.as_deref(), Some("first"));
    assert_eq!(c.spec.image_url.as_deref(), Some("https://x.io/a.png"));
    // bob changing alice's field conflicts...
    let take = json!({
        "apiVersion": "airy.co/v1alpha1", "kind": "Channel", "metadata": {"name": "ssa"},
        "spec": {"name": "bob's"},
    });
    let err = status(
        channels
            .patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&take))
            .await,
    );
    assert_eq!(err.code, 409);
    assert!(
        err.message.starts_with("Apply failed with 1 conflict"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("\"alice\"") && err.message.contains(".spec.name"),
        "{}",
        err.message
    );
    // ...unless forced
    let c = channels
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&take),
        )
        .await
        .unwrap();
    assert_eq!(c.spec.name.as_deref(), Some("bob's"));
    // status through apply on the status subresource
    let c = channels
        .patch_status(
            "ssa",
            &PatchParams::apply("channel-operator"),
            &Patch::Apply(json!({
                "apiVersion": "airy.co/v1alpha1", "kind": "Channel", "metadata": {"name": "ssa"},
                "status": {"id": "xyz", "connected": true},
            })),
        )
        .await
        .unwrap();
    assert_eq!(c.status.unwrap().id.as_deref(), Some("xyz"));
    assert_eq!(c.spec.name.as_deref(), Some("bob's"));
    // fieldManager is required for apply
    let (code, body, _) = raw(
        &sb,
        Method::PATCH,
        "/apis/airy.co/v1alpha1/namespaces/default/channels/ssa",
        Some("application/apply-patch+yaml"),
        Some("apiVersion: airy.co/v1alpha1\nkind: Channel\nmetadata:\n  name: ssa\n".into()),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("fieldManager: Required value"));
}

#[tokio::test]
async fn strategic_merge_patch_for_built_in_secrets() {
    let (sb, client) = sandbox().await;
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    secrets
        .create(&PostParams::default(), &secret("smp", json!({"a": "1"})))
        .await
        .unwrap();
    let s = secrets
        .patch(
            "smp",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"metadata": {"labels": {"b": "2"}}, "stringData": {"k2": "v2"}}),
            ),
        )
        .await
        .unwrap();
    let labels = s.metadata.labels.unwrap();
    assert_eq!((labels["a"].as_str(), labels["b"].as_str()), ("1", "2"));
    let data = s.data.unwrap();
    assert_eq!(data["k"].0, b"v");
    assert_eq!(data["k2"].0, b"v2");
    // built-in kinds drop unknown fields like the apiserver's typed decoding, Strict rejects them
    let typo = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "typo", "lables": {"a": "b"}},
                      "data": {"k": "dg=="}, "tpye": "Opaque"})
    .to_string();
    let path = "/api/v1/namespaces/default/secrets";
    let (code, body, _) = raw(
        &sb,
        Method::POST,
        &format!("{path}?fieldValidation=Strict"),
        Some("application/json"),
        Some(typo.clone()),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("unknown field \"metadata.lables\"") && msg.contains("unknown field \"tpye\""),
        "{msg}"
    );
    let (code, body, headers) = raw(
        &sb,
        Method::POST,
        path,
        Some("application/json"),
        Some(typo),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(
        body.get("tpye").is_none() && body["metadata"].get("lables").is_none(),
        "{body}"
    );
    assert_eq!(headers.get_all("warning").iter().count(), 2);
    let (code, body, _) = raw(
        &sb,
        Method::PATCH,
        "/api/v1/namespaces/default/secrets/smp",
        Some("text/plain"),
        Some("{}".into()),
    )
    .await;
    assert_status(&body, 415, "UnsupportedMediaType");
    assert_eq!(code, 415);
}
