//! The resource types the sandbox serves: the built-in ones and those of installed CRDs.

use serde_json::Value;

use super::rbac::GROUP;

/// How objects of one resource are converted between the stored and the served form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// Served as stored (only `apiVersion`/`kind` set to the requested version).
    None,
    /// events.k8s.io/v1 Events are core/v1 Events stored in one place, as in kube-apiserver.
    EventsV1,
}

/// One served group/version/resource.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Whether the `status` subresource is served.
    pub status: bool,
    /// A custom resource (schema validation, merge patch only, generation).
    pub custom: bool,
    /// Whether the objects carry `metadata.generation`.
    pub generation: bool,
    /// The CRD version's `openAPIV3Schema`.
    pub schema: Option<Value>,
    /// The CRD version's `additionalPrinterColumns`.
    pub columns: Option<Value>,
    /// Where the objects live in the store (shared by every version and by converted views).
    pub storage: String,
    pub conversion: Conversion,
    /// Every version of this resource's CRD (the first stored is the storage version).
    pub crd_name: Option<String>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `channels.airy.co`, `secrets`: how the apiserver names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// The OpenAPI schema id, e.g. `co.airy.v1alpha1.Channel`, `io.k8s.api.core.v1.Secret`.
    pub fn schema_id(&self) -> String {
        if self.custom {
            let mut parts: Vec<&str> = self.group.split('.').collect();
            parts.reverse();
            format!("{}.{}.{}", parts.join("."), self.version, self.kind)
        } else {
            let pkg = match self.group.as_str() {
                "" => "io.k8s.api.core".to_string(),
                "apiextensions.k8s.io" => {
                    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".to_string()
                }
                g => format!("io.k8s.api.{}", g.split('.').next().unwrap_or(g)),
            };
            format!("{pkg}.{}.{}", self.version, self.kind)
        }
    }
}

fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        status,
        custom: false,
        generation: false,
        schema: None,
        columns: None,
        storage: format!("{group}/{plural}"),
        conversion: Conversion::None,
        crd_name: None,
    }
}

/// The built-in resources: namespaces, secrets, events (two views), leases, CRDs.
pub fn builtins() -> Vec<ResourceType> {
    let mut events_v1 = builtin(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        &["ev"],
        false,
    );
    events_v1.storage = "/events".into();
    events_v1.conversion = Conversion::EventsV1;
    let mut crds = builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    );
    crds.generation = true;
    crds.categories = vec!["api-extensions".into()];
    vec![
        builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true),
        builtin("", "v1", "secrets", "Secret", true, &[], false),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
        ),
        builtin("", "v1", "events", "Event", true, &["ev"], false),
        events_v1,
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
        ),
        crds,
        builtin(GROUP, "v1", "roles", "Role", true, &[], false),
        builtin(
            GROUP,
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            false,
        ),
        builtin(GROUP, "v1", "rolebindings", "RoleBinding", true, &[], false),
        builtin(
            GROUP,
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
        ),
    ]
}

/// The resource types a CRD serves (one per served version).
pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let list_kind = names["listKind"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind}List"));
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = vec![];
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        out.push(ResourceType {
            group: group.clone(),
            version: v["name"].as_str().unwrap_or_default().to_string(),
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            namespaced,
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status: v["subresources"]["status"].is_object(),
            custom: true,
            generation: true,
            schema: v["schema"].get("openAPIV3Schema").cloned(),
            columns: v.get("additionalPrinterColumns").cloned(),
            storage: format!("{group}/{plural}"),
            conversion: Conversion::None,
            crd_name: crd["metadata"]["name"].as_str().map(str::to_string),
        });
    }
    out
}

/// core/v1 Event (stored form) → events.k8s.io/v1 Event.
pub fn event_to_v1(core: &Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("apiVersion".into(), "events.k8s.io/v1".into());
    out.insert("kind".into(), "Event".into());
    let renames = [
        ("metadata", "metadata"),
        ("involvedObject", "regarding"),
        ("related", "related"),
        ("message", "note"),
        ("reason", "reason"),
        ("type", "type"),
        ("action", "action"),
        ("eventTime", "eventTime"),
        ("series", "series"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
    ];
    for (from, to) in renames {
        if let Some(v) = core.get(from) {
            if !v.is_null() {
                out.insert(to.into(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// events.k8s.io/v1 Event → core/v1 Event (the stored form).
pub fn event_from_v1(v1: &Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("apiVersion".into(), "v1".into());
    out.insert("kind".into(), "Event".into());
    let renames = [
        ("metadata", "metadata"),
        ("regarding", "involvedObject"),
        ("related", "related"),
        ("note", "message"),
        ("reason", "reason"),
        ("type", "type"),
        ("action", "action"),
        ("eventTime", "eventTime"),
        ("series", "series"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ];
    for (from, to) in renames {
        if let Some(v) = v1.get(from) {
            if !v.is_null() {
                out.insert(to.into(), v.clone());
            }
        }
    }
    if !out.contains_key("involvedObject") {
        out.insert("involvedObject".into(), serde_json::json!({}));
    }
    Value::Object(out)
}
