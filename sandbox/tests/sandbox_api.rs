//! The sandbox through `kube::Client` beyond writes: lists and selectors, validation, error
//! bodies, discovery, events and tables, and CRDs (issue 2, points 5, 8 and 9).

mod sandbox_support;

use channel_operator::crd::Channel;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use reqwest::Method;
use sandbox_support::*;
use serde_json::json;

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
    // defaults are applied: a body without `connected` or `deletionPolicy` (the typed client
    // would send both) is stored with the schema's defaults
    let bare = json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel", "metadata": {"name": "ok"},
                      "spec": {"source": "chat_plugin", "sourceChannelId": "web-ok"}});
    let (code, body, _) = raw(
        &sb,
        Method::POST,
        path,
        Some("application/json"),
        Some(bare.to_string()),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["connected"], true, "{body}");
    assert_eq!(body["spec"]["deletionPolicy"], "Disconnect", "{body}");
    let stored = channels.get("ok").await.unwrap();
    assert!(stored.spec.connected);
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
