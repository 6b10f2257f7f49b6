//! Discovery (`/version`, `/api`, `/apis`, resource lists) and the OpenAPI v3 documents kubectl
//! reads (it checks there that PATCH supports `fieldValidation`, then validates server-side).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{json, Value};

use super::resources::ResourceType;
use super::store::Store;

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3", "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub fn api_versions(addr: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}],
    })
}

/// group → versions (in registration order, the first is preferred).
fn groups(st: &Store) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &st.resources {
        if r.group.is_empty() {
            continue;
        }
        let vs = out.entry(r.group.clone()).or_default();
        if !vs.contains(&r.version) {
            vs.push(r.version.clone());
        }
    }
    out
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs[0]})
}

pub fn group_list(st: &Store) -> Value {
    let groups: Vec<Value> = groups(st).iter().map(|(g, vs)| group_json(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(st: &Store, name: &str) -> Option<Value> {
    let gs = groups(st);
    let vs = gs.get(name)?;
    let mut g = group_json(name, vs);
    g["kind"] = "APIGroup".into();
    g["apiVersion"] = "v1".into();
    Some(g)
}

fn resource_entry(r: &ResourceType) -> Vec<Value> {
    let mut main = json!({
        "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
        "kind": r.kind, "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    if r.status {
        out.push(json!({
            "name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
            "kind": r.kind, "verbs": ["get", "patch", "update"],
        }));
    }
    out
}

pub fn resource_list(st: &Store, group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&std::sync::Arc<ResourceType>> = st
        .resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = rs.iter().flat_map(|r| resource_entry(r)).collect();
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn gv_path(r: &ResourceType) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

/// `/openapi/v3`: one entry per group-version, with a hash that changes with the served set.
pub fn openapi_v3_index(st: &Store) -> Value {
    let mut paths = serde_json::Map::new();
    for r in &st.resources {
        let p = gv_path(r);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={:016X}", st.registry_gen)}),
        );
    }
    json!({"paths": paths})
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn object_schema(r: &ResourceType) -> Value {
    let mut schema = r
        .schema
        .clone()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "metadata".into(),
            json!({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}),
        );
        props
            .entry("apiVersion")
            .or_insert(json!({"type": "string"}));
        props.entry("kind").or_insert(json!({"type": "string"}));
    }
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
    schema
}

/// The OpenAPI v3 document of one group-version (`api/v1`, `apis/airy.co/v1alpha1`).
pub fn openapi_v3_doc(st: &Store, gv: &str) -> Option<Value> {
    let rs: Vec<_> = st.resources.iter().filter(|r| gv_path(r) == gv).collect();
    if rs.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into(),
        json!({"type": "object", "description": "Standard object's metadata.",
               "x-kubernetes-preserve-unknown-fields": true}),
    );
    for r in rs {
        let id = r.schema_id();
        schemas.insert(id.clone(), object_schema(r));
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{id}")}}}}});
        let op = |action: &str, params: Vec<Value>| {
            json!({
                "operationId": format!("{action}{}", r.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": ok,
            })
        };
        let write_params = || {
            vec![
                param("dryRun"),
                param("fieldManager"),
                param("fieldValidation"),
            ]
        };
        let mut patch_params = write_params();
        patch_params.push(param("force"));
        let base = format!("/{gv}");
        let item = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        paths.insert(
            item.clone(),
            json!({
                "get": op("get", vec![]),
                "put": op("put", write_params()),
                "patch": op("patch", patch_params.clone()),
                "delete": op("delete", vec![param("dryRun")]),
            }),
        );
        paths.insert(
            collection,
            json!({"get": op("list", vec![]), "post": op("post", write_params())}),
        );
        if r.status {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": op("get", vec![]),
                    "put": op("put", write_params()),
                    "patch": op("patch", patch_params),
                }),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
