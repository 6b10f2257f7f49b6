//! The sandbox through `kube::Client`: resourceVersions, server-set metadata, the status
//! subresource, patch types, lists, validation, error bodies and faults (issue 2, points 1-5,
//! 8, 9 and fault injection).

mod sandbox_support;

use std::time::{Duration, Instant};

use channel_operator::crd::Channel;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use reqwest::Method;
use sandbox_support::*;
use serde_json::json;

fn secret(name: &str, labels: serde_json::Value) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "stringData": {"k": "v"},
    }))
    .unwrap()
}

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
        c.metadata.finalizers.unwrap_or_default(),
        Vec::<String>::new()
    );
    // the same patch again fails its test: 422 and nothing changes
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

#[tokio::test]
async fn list_selectors_pagination_and_scopes() {
    let (sb, client) = sandbox().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
    )
    .await
    .unwrap();
    let def: Api<Secret> = Api::namespaced(client.clone(), "default");
    let other: Api<Secret> = Api::namespaced(client.clone(), "other");
    def.create(
        &PostParams::default(),
        &secret("a", json!({"app": "x", "tier": "web"})),
    )
    .await
    .unwrap();
    def.create(&PostParams::default(), &secret("b", json!({"app": "y"})))
        .await
        .unwrap();
    def.create(&PostParams::default(), &secret("c", json!({"tier": "db"})))
        .await
        .unwrap();
    other
        .create(&PostParams::default(), &secret("d", json!({"app": "x"})))
        .await
        .unwrap();
    let names = |l: kube::core::ObjectList<Secret>| -> Vec<String> {
        l.items
            .into_iter()
            .map(|s| s.metadata.name.unwrap())
            .collect()
    };
    let all: Api<Secret> = Api::all(client.clone());
    let q = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(all.list(&q("app=x")).await.unwrap()), ["a", "d"]);
    assert_eq!(names(all.list(&q("app==x")).await.unwrap()), ["a", "d"]);
    assert_eq!(names(def.list(&q("app!=x")).await.unwrap()), ["b", "c"]);
    assert_eq!(
        names(def.list(&q("app in (x,y)")).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        names(def.list(&q("app notin (x)")).await.unwrap()),
        ["b", "c"]
    );
    assert_eq!(names(def.list(&q("tier")).await.unwrap()), ["a", "c"]);
    assert_eq!(names(def.list(&q("!app")).await.unwrap()), ["c"]);
    assert_eq!(names(def.list(&q("app=x,tier=web")).await.unwrap()), ["a"]);
    let f = |s: &str| ListParams::default().fields(s);
    assert_eq!(names(all.list(&f("metadata.name=b")).await.unwrap()), ["b"]);
    assert_eq!(
        names(all.list(&f("metadata.namespace=other")).await.unwrap()),
        ["d"]
    );
    assert_eq!(
        names(
            all.list(&f("metadata.namespace!=other,metadata.name!=a"))
                .await
                .unwrap()
        ),
        ["b", "c"]
    );
    let err = status(all.list(&f("spec.foo=bar")).await);
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "field label not supported: spec.foo")
    );

    // limit + continue walk every item exactly once, in namespace/name order
    let mut seen = vec![];
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(2);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = all.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        seen.extend(names(page));
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d"]);
    assert_eq!(pages, 2);
    // a continue token from before a compaction has expired: 410
    let first = all.list(&ListParams::default().limit(1)).await.unwrap();
    let t = first.metadata.continue_.unwrap();
    def.create(&PostParams::default(), &secret("e", json!({})))
        .await
        .unwrap();
    sb.faults().compact_history();
    let err = status(
        all.list(&ListParams::default().limit(1).continue_token(&t))
            .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));

    // list kinds
    let (code, body, _) = raw(
        &sb,
        Method::GET,
        "/api/v1/namespaces/default/secrets",
        None,
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(body["kind"], "SecretList");
    assert_eq!(body["apiVersion"], "v1");
    let (_, body, _) = raw(
        &sb,
        Method::GET,
        "/apis/airy.co/v1alpha1/channels",
        None,
        None,
    )
    .await;
    assert_eq!(body["kind"], "ChannelList");
}

#[tokio::test]
async fn custom_resources_are_validated_against_the_schema() {
    let (sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client, "default");
    let path = "/apis/airy.co/v1alpha1/namespaces/default/channels";
    let bad = json!({
        "apiVersion": "airy.co/v1alpha1", "kind": "Channel", "metadata": {"name": "bad"},
        "spec": {"source": "fax", "sourceChannelId": "", "imageUrl": "not a url"},
    });
    let (code, body, _) = raw(
        &sb,
        Method::POST,
        path,
        Some("application/json"),
        Some(bad.to_string()),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_status(&body, 422, "Invalid");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Channel.airy.co \"bad\" is invalid: ["),
        "{msg}"
    );
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    for f in ["spec.source", "spec.sourceChannelId", "spec.imageUrl"] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    // like kube-apiserver, a cause's message does not repeat its field (kubectl prefixes it)
    let source = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "spec.source")
        .unwrap();
    assert!(
        source["message"]
            .as_str()
            .unwrap()
            .starts_with("Unsupported value: \"fax\""),
        "{source}"
    );
    assert!(
        msg.contains("spec.source: Unsupported value: \"fax\""),
        "{msg}"
    );
    assert!(channels.get_opt("bad").await.unwrap().is_none());
    // required fields
    let missing = json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel", "metadata": {"name": "m"}, "spec": {"source": "google"}});
    let (code, body, _) = raw(
        &sb,
        Method::POST,
        path,
        Some("application/json"),
        Some(missing.to_string()),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["details"]["causes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "spec.sourceChannelId" && c["reason"] == "FieldValueRequired"),
        "{body}"
    );
    // defaults are applied
    let c = channels
        .create(&PostParams::default(), &channel("ok", "web-ok"))
        .await
        .unwrap();
    assert!(c.spec.connected);
    // unknown fields: Strict fails with 400, Warn (default) warns and prunes, Ignore prunes
    let unknown = |name: &str| {
        json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel", "metadata": {"name": name},
               "spec": {"source": "chat_plugin", "sourceChannelId": "w", "foo": 1}})
        .to_string()
    };
    let (code, body, _) = raw(
        &sb,
        Method::POST,
        &format!("{path}?fieldValidation=Strict"),
        Some("application/json"),
        Some(unknown("u1")),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "strict decoding error: unknown field \"spec.foo\""
    );
    let (code, body, headers) = raw(
        &sb,
        Method::POST,
        path,
        Some("application/json"),
        Some(unknown("u2")),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"].get("foo").is_none());
    let warning = headers
        .get("warning")
        .expect("a Warning header")
        .to_str()
        .unwrap();
    assert_eq!(warning, "299 - \"unknown field \\\"spec.foo\\\"\"");
    let (code, _, headers) = raw(
        &sb,
        Method::POST,
        &format!("{path}?fieldValidation=Ignore"),
        Some("application/json"),
        Some(unknown("u3")),
    )
    .await;
    assert_eq!(code, 201);
    assert!(headers.get("warning").is_none());
    // CEL rules of the CRD are enforced too (transition rule: source is immutable)
    let err = status(
        channels
            .patch(
                "ok",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"sourceChannelId": "changed"}})),
            )
            .await,
    );
    assert_eq!(err.code, 422, "{err:?}");
    assert!(
        err.message.contains("sourceChannelId is immutable"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn every_error_is_a_status() {
    let (sb, client) = sandbox().await;
    let channels: Api<Channel> = Api::namespaced(client, "default");
    channels
        .create(&PostParams::default(), &channel("e", "web-e"))
        .await
        .unwrap();
    let item = "/apis/airy.co/v1alpha1/namespaces/default/channels/e";
    type Case<'a> = (
        Method,
        String,
        Option<&'a str>,
        Option<String>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (Method::GET, "/apis/airy.co/v1alpha1/namespaces/default/channels/none".into(), None, None, 404, "NotFound"),
        (Method::GET, "/apis/airy.co/v9/channels".into(), None, None, 404, "NotFound"),
        (Method::POST, "/apis/airy.co/v1alpha1/namespaces/default/channels".into(), Some("application/json"),
         Some(json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel", "metadata": {"name": "e"}, "spec": {"source": "chat_plugin", "sourceChannelId": "x"}}).to_string()), 409, "AlreadyExists"),
        (Method::POST, "/apis/airy.co/v1alpha1/namespaces/default/channels".into(), Some("application/json"), Some("{not json".into()), 400, "BadRequest"),
        (Method::POST, item.into(), Some("application/json"), Some("{}".into()), 405, "MethodNotAllowed"),
        (Method::PATCH, item.into(), Some("application/xml"), Some("{}".into()), 415, "UnsupportedMediaType"),
        (Method::PATCH, item.into(), Some("application/merge-patch+json"), Some(r#"{"spec":{"source":"fax"}}"#.into()), 422, "Invalid"),
        (Method::GET, "/apis/airy.co/v1alpha1/namespaces/default/channels?labelSelector=a%20in%20(".into(), None, None, 400, "BadRequest"),
    ];
    for (method, path, ct, body, code, reason) in cases {
        let (got, resp, _) = raw(&sb, method.clone(), &path, ct, body).await;
        assert_eq!(got, code, "{method} {path}: {resp}");
        assert_status(&resp, code, reason);
    }
    let (_, resp, _) = raw(
        &sb,
        Method::GET,
        "/apis/airy.co/v1alpha1/namespaces/default/channels/none",
        None,
        None,
    )
    .await;
    assert_eq!(resp["message"], "channels.airy.co \"none\" not found");
    assert_eq!(resp["details"]["name"], "none");
    assert_eq!(resp["details"]["group"], "airy.co");
    assert_eq!(resp["details"]["kind"], "channels");
}

#[tokio::test]
async fn faults_fail_hold_and_clear() {
    let (sb, client) = sandbox().await;
    let faults = sb.faults();
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client, "default");

    faults.fail_next("create", "channels", 2, 500);
    for _ in 0..2 {
        let err = status(
            channels
                .create(&PostParams::default(), &channel("f", "web-f"))
                .await,
        );
        assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    }
    // a failed write writes nothing; other verbs and resources were not affected
    assert!(channels.get_opt("f").await.unwrap().is_none());
    secrets
        .create(&PostParams::default(), &secret("s", json!({})))
        .await
        .unwrap();
    channels
        .create(&PostParams::default(), &channel("f", "web-f"))
        .await
        .unwrap();

    faults.fail_next("*", "*", 1, 409);
    let err = status(secrets.get("s").await);
    assert_eq!(err.code, 409);
    secrets.get("s").await.unwrap();
    // kube::Client retries 503 by itself: one injected 503 is invisible to the caller
    faults.fail_next("get", "secrets", 1, 503);
    secrets.get("s").await.unwrap();
    let (code, body, headers) = raw(
        &sb,
        Method::GET,
        "/api/v1/namespaces/default/secrets/s",
        None,
        None,
    )
    .await;
    assert_eq!(
        code, 200,
        "the 503 was consumed by the client's retry: {body}"
    );
    assert!(headers.get("retry-after").is_none());

    faults.hold_next("get", "secrets", 1, Duration::from_millis(400));
    let t = Instant::now();
    secrets.get("s").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(400));
    let t = Instant::now();
    secrets.get("s").await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(400));

    faults.fail_next("delete", "channels", 1, 409);
    faults.clear();
    channels
        .delete("f", &DeleteParams::default())
        .await
        .unwrap();
    assert!(channels.get_opt("f").await.unwrap().is_none());
}

#[tokio::test]
async fn discovery_and_openapi_describe_the_served_resources() {
    let (sb, _client) = sandbox().await;
    let (_, v, _) = raw(&sb, Method::GET, "/version", None, None).await;
    assert_eq!(v["gitVersion"], "v1.32.0");
    let (_, core, _) = raw(&sb, Method::GET, "/api/v1", None, None).await;
    let names: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for n in ["namespaces", "secrets", "events", "namespaces/status"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let (_, groups, _) = raw(&sb, Method::GET, "/apis", None, None).await;
    let gnames: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for g in [
        "airy.co",
        "apiextensions.k8s.io",
        "coordination.k8s.io",
        "events.k8s.io",
    ] {
        assert!(gnames.contains(&g), "{gnames:?}");
    }
    let (_, airy, _) = raw(&sb, Method::GET, "/apis/airy.co/v1alpha1", None, None).await;
    let ch = &airy["resources"][0];
    assert_eq!(
        (
            ch["name"].as_str(),
            ch["kind"].as_str(),
            ch["namespaced"].as_bool()
        ),
        (Some("channels"), Some("Channel"), Some(true))
    );
    assert_eq!(ch["shortNames"], json!(["ch"]));
    assert_eq!(airy["resources"][1]["name"], "channels/status");
    let (_, idx, _) = raw(&sb, Method::GET, "/openapi/v3", None, None).await;
    let url = idx["paths"]["apis/airy.co/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, doc, _) = raw(&sb, Method::GET, &url, None, None).await;
    assert_eq!(code, 200);
    let patch =
        &doc["paths"]["/apis/airy.co/v1alpha1/namespaces/{namespace}/channels/{name}"]["patch"];
    assert!(patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Channel");
}

#[tokio::test]
async fn events_v1_and_core_events_are_one_storage_and_tables_and_deletecollection_work() {
    let (sb, client) = sandbox().await;
    let v1: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    let ev: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "e1"}, "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "channel-operator", "reportingInstance": "pod-1", "action": "Reconcile",
        "reason": "Connected", "note": "connected at the provider", "type": "Normal",
        "regarding": {"kind": "Channel", "name": "web", "namespace": "default", "apiVersion": "airy.co/v1alpha1"},
    }))
    .unwrap();
    v1.create(&PostParams::default(), &ev).await.unwrap();
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().fields("involvedObject.kind=Channel,involvedObject.name=web");
    let found = core.list(&lp).await.unwrap().items;
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].message.as_deref(),
        Some("connected at the provider")
    );
    assert_eq!(
        found[0].reporting_component.as_deref(),
        Some("channel-operator")
    );
    assert_eq!(
        v1.get("e1").await.unwrap().note.as_deref(),
        Some("connected at the provider")
    );

    // kubectl's Table form
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/namespaces/default/events", sb.url()))
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("as=Table"));
    let table: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"].as_array().unwrap().len(), 1);

    // deletecollection with a label selector
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        secrets
            .create(&PostParams::default(), &secret(n, json!({"app": l})))
            .await
            .unwrap();
    }
    secrets
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=x"),
        )
        .await
        .unwrap();
    let left: Vec<String> = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn crds_are_established_and_deleting_one_stops_serving_its_resources() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let (sb, client) = sandbox().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("channels.airy.co").await.unwrap();
    let status = crd.status.unwrap();
    let conds: Vec<(String, String)> = status
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    assert!(
        conds.contains(&("Established".into(), "True".into())),
        "{conds:?}"
    );
    assert!(
        conds.contains(&("NamesAccepted".into(), "True".into())),
        "{conds:?}"
    );
    assert_eq!(status.accepted_names.unwrap().kind, "Channel");
    let channels: Api<Channel> = Api::namespaced(client.clone(), "default");
    channels
        .create(&PostParams::default(), &channel("c", "w-c"))
        .await
        .unwrap();

    crds.delete("channels.airy.co", &DeleteParams::default())
        .await
        .unwrap();
    let (code, body, _) = raw(
        &sb,
        Method::GET,
        "/apis/airy.co/v1alpha1/namespaces/default/channels",
        None,
        None,
    )
    .await;
    assert_eq!(code, 404, "{body}");
    let (code, _, _) = raw(&sb, Method::GET, "/apis/airy.co/v1alpha1", None, None).await;
    assert_eq!(code, 404);
    // installing it again serves an empty collection: the custom resources went with the CRD
    sb.install_crd(&<Channel as kube::CustomResourceExt>::crd())
        .await
        .unwrap();
    assert!(channels
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}
