//! HTTP handling: routing of Kubernetes REST paths, the verbs, watch streams and faults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::authn::{self, UserInfo};
use super::discovery;
use super::patch::{self, ManagedFields};
use super::rbac;
use super::resources::{self, Conversion, ResourceType};
use super::schema;
use super::selector::{FieldSelector, LabelSelector};
use super::status::{json_response, ApiError};
use super::store::{self, Event, EventType, Store, CRDS, NAMESPACES};
use super::table;

/// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(1);
/// Events a watch may fall behind before it is closed (the client re-watches).
const WATCH_BUFFER: usize = 1024;

/// One pending fault.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub verb: String,
    pub resource: String,
    pub remaining: usize,
    pub action: FaultAction,
}

#[derive(Clone, Debug)]
pub enum FaultAction {
    Fail(u16),
    Hold(Duration),
}

/// State shared by every request.
pub struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<Vec<FaultRule>>,
    pub addr: SocketAddr,
    pub auth: authn::Auth,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lock_faults(&self) -> MutexGuard<'_, Vec<FaultRule>> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Consumes the faults matching this request: (hold, fail).
    fn take_faults(&self, verb: &str, resource: &str) -> (Option<Duration>, Option<u16>) {
        let mut rules = self.lock_faults();
        let (mut hold, mut fail) = (None, None);
        for rule in rules.iter_mut() {
            let verb_ok = rule.verb == "*" || rule.verb == verb;
            let res_ok = rule.resource == "*"
                || rule.resource == resource
                || resource.split('/').next() == Some(rule.resource.as_str());
            if !verb_ok || !res_ok || rule.remaining == 0 {
                continue;
            }
            match rule.action {
                FaultAction::Hold(d) if hold.is_none() => {
                    hold = Some(d);
                    rule.remaining -= 1;
                }
                FaultAction::Fail(c) if fail.is_none() => {
                    fail = Some(c);
                    rule.remaining -= 1;
                }
                _ => {}
            }
        }
        rules.retain(|r| r.remaining > 0);
        (hold, fail)
    }
}

type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Query {
    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Runs a function of the sandbox-pure modules; a panic there becomes a 500 InternalError, as
/// kube-apiserver's panic recovery answers.
fn pure<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, ApiError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        ApiError::internal(format!("{what} failed: {msg}"))
    })
}

fn is_true(q: &Query, key: &str) -> bool {
    matches!(q.get(key).map(String::as_str), Some("true" | "1"))
}

/// The entry point of every request.
pub async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query());
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = parts.method.clone();
    let headers = parts.headers;
    let read_only = method == Method::GET;
    let user = match sh.auth.identify(&sh.lock(), &headers) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let result = match segs.as_slice() {
        ["version"] if read_only => Ok(json_response(200, discovery::version().to_string())),
        ["healthz" | "livez" | "readyz", ..] if read_only => Ok((
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            "ok",
        )
            .into_response()),
        ["openapi", "v3"] if read_only => Ok(json_response(
            200,
            discovery::openapi_v3_index(&sh.lock()).to_string(),
        )),
        ["openapi", "v3", rest @ ..] if read_only => {
            let gv = rest.join("/");
            match discovery::openapi_v3_doc(&sh.lock(), &gv) {
                Some(doc) => Ok(json_response(200, doc.to_string())),
                None => Err(ApiError::path_not_found()),
            }
        }
        ["api"] if read_only => Ok(json_response(
            200,
            discovery::api_versions(sh.addr).to_string(),
        )),
        ["apis"] if read_only => Ok(json_response(
            200,
            discovery::group_list(&sh.lock()).to_string(),
        )),
        ["apis", group] if read_only => match discovery::group(&sh.lock(), group) {
            Some(g) => Ok(json_response(200, g.to_string())),
            None => Err(ApiError::path_not_found()),
        },
        ["apis", "authorization.k8s.io", "v1", plural @ ("selfsubjectaccessreviews" | "subjectaccessreviews")]
            if method == Method::POST =>
        {
            match axum::body::to_bytes(body, 1024 * 1024).await {
                Ok(b) => parse_body(&headers, &b)
                    .and_then(|review| {
                        rbac::access_review(&sh.auth, &sh.lock(), &user, plural, review)
                    })
                    .map(|r| json_response(201, r.to_string())),
                Err(e) => Err(ApiError::bad_request(format!(
                    "reading the request body: {e}"
                ))),
            }
        }
        ["api", version, rest @ ..] => {
            let target = Target::parse("", version, rest);
            resource_request(&sh, &user, target, method, &query, &headers, body).await
        }
        ["apis", group, version, rest @ ..] => {
            let target = Target::parse(group, version, rest);
            resource_request(&sh, &user, target, method, &query, &headers, body).await
        }
        _ if read_only => Err(ApiError::path_not_found()),
        _ => Err(ApiError::method_not_allowed()),
    };
    result.unwrap_or_else(|e| e.into_response())
}

/// What a resource path names.
struct Target {
    group: String,
    version: String,
    watch_path: bool,
    ns: Option<String>,
    plural: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    extra: bool,
}

impl Target {
    fn parse(group: &str, version: &str, rest: &[&str]) -> Target {
        let mut rest = rest.to_vec();
        let watch_path = rest.first() == Some(&"watch");
        if watch_path {
            rest.remove(0);
        }
        let mut ns = None;
        let namespace_sub = rest.len() == 3 && matches!(rest[2], "status" | "finalize");
        if rest.len() >= 3 && rest[0] == "namespaces" && !namespace_sub {
            ns = Some(rest[1].to_string());
            rest.drain(0..2);
        }
        Target {
            group: group.into(),
            version: version.into(),
            watch_path,
            ns,
            plural: rest.first().map(|s| s.to_string()),
            name: rest.get(1).map(|s| s.to_string()),
            sub: rest.get(2).map(|s| s.to_string()),
            extra: rest.len() > 3,
        }
    }
}

/// The request context passed to the verbs.
struct Ctx<'a> {
    rt: Arc<ResourceType>,
    ns: String,
    query: &'a Query,
    manager: String,
    warnings: Vec<String>,
    /// Served form differs from stored form (conversion or another version of a CRD).
    render: bool,
    table: bool,
}

impl Ctx<'_> {
    fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }

    /// Stored form → served form.
    fn out(&self, mut obj: Value) -> Value {
        match self.rt.conversion {
            Conversion::EventsV1 => resources::event_to_v1(&obj),
            Conversion::None => {
                if self.render {
                    obj["apiVersion"] = self.rt.api_version().into();
                    obj["kind"] = self.rt.kind.clone().into();
                }
                obj
            }
        }
    }

    /// Served form (a request body) → stored form.
    fn ingest(&self, obj: Value) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        if let Some(av) = obj["apiVersion"].as_str() {
            if av != self.rt.api_version() {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    self.rt.api_version()
                )));
            }
        }
        if let Some(kind) = obj["kind"].as_str() {
            if kind != self.rt.kind {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({kind}) does not match the expected kind ({})",
                    self.rt.kind
                )));
            }
        }
        let mut obj = match self.rt.conversion {
            Conversion::EventsV1 => resources::event_from_v1(&obj),
            Conversion::None => obj,
        };
        if self.rt.conversion == Conversion::None {
            obj["apiVersion"] = self.rt.api_version().into();
            obj["kind"] = self.rt.kind.clone().into();
        }
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        Ok(obj)
    }

    fn respond(&self, code: u16, obj: Value) -> Response {
        let body = if self.table {
            self.table_of(std::slice::from_ref(&obj), json!({}))
                .to_string()
        } else {
            obj.to_string()
        };
        let mut resp = json_response(code, body);
        if self.table {
            resp.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static(TABLE_CONTENT_TYPE),
            );
        }
        for w in &self.warnings {
            if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", quote(w))) {
                resp.headers_mut().append("Warning", v);
            }
        }
        resp
    }

    fn columns(&self) -> Vec<table::Column> {
        if self.rt.custom {
            table::custom_columns(self.rt.columns.as_ref())
        } else {
            table::builtin_columns(&self.rt.plural)
        }
    }

    fn table_of(&self, objs: &[Value], list_meta: Value) -> Value {
        let include = self
            .query
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata")
            .to_string();
        match pure("table", || {
            table::table(&self.columns(), objs, &include, list_meta)
        }) {
            Ok(t) => t,
            Err(e) => e.to_value(),
        }
    }
}

const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The field manager of a non-apply write: `fieldManager`, else the User-Agent's product
/// name, as kube-apiserver derives it.
fn manager_of(query: &Query, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    let ua = header(headers, "user-agent");
    let prefix = ua.split('/').next().unwrap_or_default();
    if prefix.is_empty() {
        "unknown".into()
    } else {
        prefix.chars().take(128).collect()
    }
}

async fn resource_request(
    sh: &Arc<Shared>,
    user: &UserInfo,
    t: Target,
    method: Method,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(plural) = t.plural.clone() else {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        return match discovery::resource_list(&sh.lock(), &t.group, &t.version) {
            Some(l) => Ok(json_response(200, l.to_string())),
            None => Err(ApiError::path_not_found()),
        };
    };
    let (rt, render) = {
        let st = sh.lock();
        let rt = st
            .find(&t.group, &t.version, &plural)
            .ok_or_else(ApiError::path_not_found)?;
        let versions = st
            .resources
            .iter()
            .filter(|r| r.storage == rt.storage)
            .count();
        (rt, versions > 1)
    };
    if t.extra || (rt.namespaced && t.ns.is_none() && t.name.is_some()) {
        return Err(ApiError::path_not_found());
    }
    if !rt.namespaced && t.ns.is_some() {
        return Err(ApiError::path_not_found());
    }
    if let Some(sub) = &t.sub {
        if !(sub == "status" && rt.status) {
            return Err(ApiError::path_not_found());
        }
    }
    let watch = t.watch_path || is_true(query, "watch");
    let verb = match (&method, t.name.is_some(), watch) {
        (&Method::GET, _, true) => "watch",
        (&Method::GET, true, false) => "get",
        (&Method::GET, false, false) => "list",
        (&Method::POST, false, _) => "create",
        (&Method::PUT, true, _) => "update",
        (&Method::PATCH, true, _) => "patch",
        (&Method::DELETE, true, _) => "delete",
        (&Method::DELETE, false, _) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    };
    if t.sub.is_some() && !matches!(verb, "get" | "update" | "patch") {
        return Err(ApiError::method_not_allowed());
    }
    let attrs =
        rbac::Attributes::of_request(verb, &t.group, &plural, &t.sub, &t.ns, &t.name, query);
    sh.auth.check(&sh.lock(), user, &attrs)?;
    let fault_resource = match &t.sub {
        Some(s) => format!("{plural}/{s}"),
        None => plural.clone(),
    };
    let (hold, fail) = sh.take_faults(verb, &fault_resource);
    if let Some(d) = hold {
        tokio::time::sleep(d).await;
    }
    if let Some(code) = fail {
        return Err(ApiError::injected(code));
    }
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    let ctx = Ctx {
        rt,
        ns: t.ns.clone().unwrap_or_default(),
        query,
        manager: manager_of(query, headers),
        warnings: vec![],
        render,
        table: header(headers, "accept").contains("as=Table"),
    };
    let name = t.name.clone().unwrap_or_default();
    let sub = t.sub.as_deref();
    match verb {
        "watch" => {
            let mut q = query.clone();
            if let Some(n) = &t.name {
                q.insert("fieldSelector".into(), format!("metadata.name={n}"));
            }
            start_watch(sh, ctx, t.ns.clone(), &q)
        }
        "list" => list(&sh.lock(), ctx, t.ns.as_deref()),
        "get" => {
            let st = sh.lock();
            let stored = st
                .get(&ctx.rt.storage, &ctx.ns, &name)
                .ok_or_else(|| ApiError::not_found(&ctx.rt, &name))?;
            Ok(ctx.respond(200, ctx.out(stored.value())))
        }
        "create" => {
            let obj = parse_body(headers, &body)?;
            let mut ctx = ctx;
            let obj = ctx.ingest(obj)?;
            let created = create(&mut sh.lock(), &mut ctx, obj, None)?;
            Ok(ctx.respond(201, ctx.out(created)))
        }
        "update" => {
            let obj = parse_body(headers, &body)?;
            let mut ctx = ctx;
            let obj = ctx.ingest(obj)?;
            let updated = update(&mut sh.lock(), &mut ctx, &name, obj, sub, None)?;
            Ok(ctx.respond(200, ctx.out(updated)))
        }
        "patch" => {
            let mut ctx = ctx;
            let (code, obj) = patch(&mut sh.lock(), &mut ctx, &name, sub, headers, &body)?;
            Ok(ctx.respond(code, ctx.out(obj)))
        }
        "delete" => delete(&mut sh.lock(), &ctx, &name, &body),
        "deletecollection" => delete_collection(&mut sh.lock(), &ctx, t.ns.as_deref()),
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = header(headers, "content-type");
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        super::protobuf::decode(body).map_err(|e| {
            ApiError::unsupported_media_type(ct, &["application/json", "application/yaml"])
                .with_message(e)
        })
    } else if ct.contains("yaml") {
        serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else if ct.is_empty() || ct.contains("json") {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    } else {
        Err(ApiError::unsupported_media_type(
            ct,
            &["application/json", "application/yaml"],
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Names

fn dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns1123_label)
}

fn name_error(rt: &ResourceType, name: &str) -> Option<ApiError> {
    let label = rt.storage == NAMESPACES;
    let ok = if label {
        dns1123_label(name)
    } else {
        dns1123_subdomain(name)
    };
    if ok {
        return None;
    }
    let why = if label {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    };
    Some(ApiError::invalid(
        rt,
        name,
        &[schema::FieldError {
            reason: "FieldValueInvalid",
            field: "metadata.name".into(),
            message: format!("metadata.name: Invalid value: {}: {why}", quote(name)),
        }],
    ))
}

fn generate_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Writes

/// Per-kind defaulting and normalisation that kube-apiserver does on every write.
fn normalize(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    match rt.storage.as_str() {
        "/secrets" => {
            if obj["type"].as_str().unwrap_or_default().is_empty() {
                obj["type"] = "Opaque".into();
            }
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                use base64::Engine;
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    obj["data"][k] = base64::engine::general_purpose::STANDARD
                        .encode(s.as_bytes())
                        .into();
                }
            }
        }
        NAMESPACES => {
            if obj["status"]["phase"].is_null() {
                obj["status"]["phase"] = "Active".into();
            }
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            let name = obj["metadata"]["name"].clone();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
        }
        CRDS => {
            let spec = &obj["spec"];
            let group = spec["group"].as_str().unwrap_or_default();
            let plural = spec["names"]["plural"].as_str().unwrap_or_default();
            let kind = spec["names"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            let mut errors = vec![];
            if name != format!("{plural}.{group}") {
                errors.push(schema::FieldError {
                    reason: "FieldValueInvalid",
                    field: "metadata.name".into(),
                    message: format!(
                        "metadata.name: Invalid value: {}: must be spec.names.plural+\".\"+spec.group",
                        quote(name)
                    ),
                });
            }
            if kind.is_empty() {
                errors.push(schema::FieldError {
                    reason: "FieldValueRequired",
                    field: "spec.names.kind".into(),
                    message: "spec.names.kind: Required value".into(),
                });
            }
            let versions = spec["versions"].as_array().cloned().unwrap_or_default();
            if versions.is_empty() {
                errors.push(schema::FieldError {
                    reason: "FieldValueRequired",
                    field: "spec.versions".into(),
                    message: "spec.versions: Invalid value: null: must have exactly one version marked as storage version".into(),
                });
            }
            if !errors.is_empty() {
                return Err(ApiError::invalid(rt, name, &errors));
            }
            if obj["spec"]["names"]["singular"].is_null() {
                obj["spec"]["names"]["singular"] = kind.to_lowercase().into();
            }
            if obj["spec"]["names"]["listKind"].is_null() {
                obj["spec"]["names"]["listKind"] = format!("{kind}List").into();
            }
            if obj["spec"]["scope"].is_null() {
                obj["spec"]["scope"] = "Namespaced".into();
            }
            let storage_versions: Vec<Value> = versions
                .iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone())
                .collect();
            let now = store::now_rfc3339();
            let names = obj["spec"]["names"].clone();
            obj["status"] = json!({
                "acceptedNames": names,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
                "storedVersions": storage_versions,
            });
        }
        _ => {}
    }
    Ok(())
}

/// Pruning, defaulting and validation of custom resources against their schema.
fn validate_schema(ctx: &mut Ctx, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(schema) = ctx.rt.schema.clone() else {
        if !ctx.rt.custom {
            let pruned = prune_builtin(&ctx.rt, obj);
            report_unknown(ctx, &pruned)?;
        }
        return Ok(());
    };
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let outcome = pure("schema validation", || {
        schema::prune_default_validate(&schema, obj, old)
    })?;
    report_unknown(ctx, &outcome.pruned)?;
    if !outcome.errors.is_empty() {
        return Err(ApiError::invalid(&ctx.rt, &name, &outcome.errors));
    }
    Ok(())
}

/// Unknown fields per `fieldValidation`: Strict fails, Warn (default) warns, Ignore drops.
fn report_unknown(ctx: &mut Ctx, pruned: &[String]) -> Result<(), ApiError> {
    if pruned.is_empty() {
        return Ok(());
    }
    let unknown: Vec<String> = pruned
        .iter()
        .map(|p| format!("unknown field {}", quote(p.trim_start_matches('.'))))
        .collect();
    match ctx.query.get("fieldValidation").map(String::as_str) {
        Some("Strict") => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            unknown.join(", ")
        ))),
        Some("Ignore") => Ok(()),
        _ => {
            ctx.warnings.extend(unknown);
            Ok(())
        }
    }
}

/// Built-in kinds are decoded into their Go types by the apiserver, which drops unknown
/// fields; the k8s-openapi types do the same, so a round trip through them prunes. Returns the
/// pruned paths (`.spec.foo`).
fn prune_builtin(rt: &ResourceType, obj: &mut Value) -> Vec<String> {
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Option<Value> {
        serde_json::from_value::<T>(v.clone())
            .ok()
            .and_then(|t| serde_json::to_value(t).ok())
    }
    use k8s_openapi::api;
    let typed = match rt.storage.as_str() {
        "/secrets" => round_trip::<api::core::v1::Secret>(obj),
        NAMESPACES => round_trip::<api::core::v1::Namespace>(obj),
        "/events" => round_trip::<api::core::v1::Event>(obj),
        "coordination.k8s.io/leases" => round_trip::<api::coordination::v1::Lease>(obj),
        "/serviceaccounts" => round_trip::<api::core::v1::ServiceAccount>(obj),
        "rbac.authorization.k8s.io/roles" => round_trip::<api::rbac::v1::Role>(obj),
        "rbac.authorization.k8s.io/clusterroles" => round_trip::<api::rbac::v1::ClusterRole>(obj),
        "rbac.authorization.k8s.io/rolebindings" => round_trip::<api::rbac::v1::RoleBinding>(obj),
        "rbac.authorization.k8s.io/clusterrolebindings" => {
            round_trip::<api::rbac::v1::ClusterRoleBinding>(obj)
        }
        _ => None,
    };
    let Some(typed) = typed else {
        // not decodable: leave it to the rest of the request to complain
        return vec![];
    };
    let mut pruned = vec![];
    unknown_paths(obj, &typed, "", &mut pruned);
    for p in &pruned {
        remove_path(obj, p);
    }
    pruned
}

fn unknown_paths(orig: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                let p = format!("{path}.{k}");
                match t.get(k) {
                    None => out.push(p),
                    Some(tv) => unknown_paths(v, tv, &p, out),
                }
            }
        }
        (Value::Array(o), Value::Array(t)) if o.len() == t.len() => {
            for (i, (a, b)) in o.iter().zip(t).enumerate() {
                unknown_paths(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn remove_path(obj: &mut Value, path: &str) {
    // paths are `.a.b` or `.a[0].b`; array indices were produced by unknown_paths above
    let mut cur = obj;
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let (key, idx) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        if i == parts.len() - 1 && idx.is_none() {
            if let Some(m) = cur.as_object_mut() {
                m.remove(key);
            }
            return;
        }
        let Some(next) = cur.get_mut(key) else { return };
        cur = match idx {
            Some(n) => match next.get_mut(n) {
                Some(v) => v,
                None => return,
            },
            None => next,
        };
    }
}

/// `ManagedFields` remembers the last schema it was used with; the server always passes the
/// schema explicitly, so keeping a copy per object would only cost memory (tens of KiB per
/// custom resource).
fn compact(managed: &mut ManagedFields) {
    let mut fresh = ManagedFields::default();
    fresh.entries = std::mem::take(&mut managed.entries);
    *managed = fresh;
}

fn record(
    rt: &ResourceType,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    sub: Option<&str>,
    managed: &mut ManagedFields,
) {
    // Field ownership is best-effort for non-apply writes: a failure must not fail the write.
    let _ = pure("recording managed fields", || {
        patch::record_update_to(
            old,
            new,
            rt.schema.as_ref(),
            manager,
            sub.unwrap_or_default(),
            managed,
        )
    });
    compact(managed);
}

fn create(
    st: &mut Store,
    ctx: &mut Ctx,
    mut obj: Value,
    managed: Option<ManagedFields>,
) -> Result<Value, ApiError> {
    let rt = ctx.rt.clone();
    let meta = &mut obj["metadata"];
    let mut name = meta["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        let gen = meta["generateName"].as_str().unwrap_or_default();
        if gen.is_empty() {
            return Err(ApiError::invalid(
                &rt,
                "",
                &[schema::FieldError {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "metadata.name: Required value: name or generateName is required"
                        .into(),
                }],
            ));
        }
        name = format!("{gen}{}", generate_suffix());
        meta["name"] = name.clone().into();
    }
    if rt.namespaced {
        if let Some(ns) = meta["namespace"].as_str().filter(|n| !n.is_empty()) {
            if ns != ctx.ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        meta["namespace"] = ctx.ns.clone().into();
    } else if let Some(m) = meta.as_object_mut() {
        m.remove("namespace");
    }
    if let Some(e) = name_error(&rt, &name) {
        return Err(e);
    }
    if rt.namespaced {
        match st.namespace_state(&ctx.ns) {
            None => return Err(ApiError::namespace_not_found(&ctx.ns)),
            Some(true) => {
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "{} {} is forbidden: unable to create new content in namespace {} because it is being terminated",
                        rt.qualified(),
                        quote(&name),
                        ctx.ns
                    ),
                ))
            }
            Some(false) => {}
        }
    }
    if st.get(&rt.storage, &ctx.ns, &name).is_some() {
        return Err(ApiError::already_exists(&rt, &name));
    }
    if let Some(m) = obj["metadata"].as_object_mut() {
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
            "generation",
        ] {
            m.remove(k);
        }
        m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        m.insert("creationTimestamp".into(), store::now_rfc3339().into());
    }
    if rt.custom && rt.status {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    normalize(&rt, &mut obj)?;
    validate_schema(ctx, &mut obj, None)?;
    if rt.generation {
        obj["metadata"]["generation"] = json!(1);
    }
    if ctx.dry_run() {
        return Ok(obj);
    }
    let mut managed = managed.unwrap_or_default();
    if managed == ManagedFields::default() {
        record(&rt, None, &obj, &ctx.manager, None, &mut managed);
    }
    if rt.storage == CRDS {
        st.set_crd_resources(&name, resources::from_crd(&obj));
    }
    Ok(st.put(&rt.storage, obj, managed, EventType::Added))
}

fn without(obj: &Value, keys: &[&str]) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
    o
}

/// Update of an existing object (PUT, and the last step of every patch and apply).
fn update(
    st: &mut Store,
    ctx: &mut Ctx,
    name: &str,
    new: Value,
    sub: Option<&str>,
    managed: Option<ManagedFields>,
) -> Result<Value, ApiError> {
    let rt = ctx.rt.clone();
    let stored = st
        .get(&rt.storage, &ctx.ns, name)
        .ok_or_else(|| ApiError::not_found(&rt, name))?;
    let old = stored.value();
    let old_managed = stored.managed.clone();
    let old_meta = &old["metadata"];
    let new_meta = &new["metadata"];
    if let Some(rv) = new_meta["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        if Some(rv) != old_meta["resourceVersion"].as_str() {
            return Err(ApiError::conflict(&rt, name));
        }
    }
    if let Some(uid) = new_meta["uid"].as_str().filter(|s| !s.is_empty()) {
        let old_uid = old_meta["uid"].as_str().unwrap_or_default();
        if uid != old_uid {
            return Err(ApiError::conflict_msg(
                &rt,
                name,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {old_uid}"),
            ));
        }
    }
    if let Some(n) = new_meta["name"].as_str().filter(|s| !s.is_empty()) {
        if n != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    if rt.namespaced {
        if let Some(n) = new_meta["namespace"].as_str().filter(|s| !s.is_empty()) {
            if n != ctx.ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    let mut result = if sub == Some("status") {
        let mut r = old.clone();
        match new.get("status") {
            Some(s) => r["status"] = s.clone(),
            None => {
                if let Some(o) = r.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        r
    } else {
        let mut r = new;
        if rt.status {
            match old.get("status") {
                Some(s) => r["status"] = s.clone(),
                None => {
                    if let Some(o) = r.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        r
    };
    {
        let meta = result["metadata"]
            .as_object_mut()
            .expect("ingest makes metadata an object");
        meta.remove("managedFields");
        meta.remove("selfLink");
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old_meta.get(k) {
                Some(v) => meta.insert(k.to_string(), v.clone()),
                None => meta.remove(k),
            };
        }
    }
    let deleting = old_meta["deletionTimestamp"].is_string();
    let finalizers = |v: &Value| -> Vec<String> {
        v["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect()
    };
    let new_finalizers = finalizers(&result);
    if deleting {
        let old_f = finalizers(&old);
        if new_finalizers.iter().any(|f| !old_f.contains(f)) {
            return Err(ApiError::invalid(
                &rt,
                name,
                &[schema::FieldError {
                    reason: "FieldValueForbidden",
                    field: "metadata.finalizers".into(),
                    message: "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted".into(),
                }],
            ));
        }
    }
    normalize(&rt, &mut result)?;
    if rt.storage == CRDS {
        // status is server-owned for CRDs in the sandbox
        result["status"] = old["status"].clone();
    }
    validate_schema(ctx, &mut result, Some(&old))?;
    if rt.generation {
        let ignored: &[&str] = if rt.status {
            &["metadata", "status"]
        } else {
            &["metadata"]
        };
        let old_gen = old_meta["generation"].as_i64().unwrap_or(1);
        let changed = without(&old, ignored) != without(&result, ignored);
        result["metadata"]["generation"] = json!(if changed { old_gen + 1 } else { old_gen });
    }
    if result == old {
        // A no-op write: kube-apiserver neither bumps the resourceVersion nor emits an event.
        return Ok(old);
    }
    if ctx.dry_run() {
        return Ok(result);
    }
    let managed = match managed {
        Some(m) => m,
        None => {
            let mut m = old_managed;
            record(&rt, Some(&old), &result, &ctx.manager, sub, &mut m);
            m
        }
    };
    if deleting && new_finalizers.is_empty() {
        st.replace_quietly(&rt.storage, &ctx.ns, name, &result);
        let gone = st
            .remove(&rt.storage, &ctx.ns, name)
            .ok_or_else(|| ApiError::not_found(&rt, name))?;
        return Ok(gone);
    }
    if rt.storage == CRDS {
        st.set_crd_resources(name, resources::from_crd(&result));
    }
    Ok(st.put(&rt.storage, result, managed, EventType::Modified))
}

fn patch(
    st: &mut Store,
    ctx: &mut Ctx,
    name: &str,
    sub: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    let rt = ctx.rt.clone();
    let ct = header(headers, "content-type")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut accepted = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ];
    if !rt.custom {
        accepted.push("application/strategic-merge-patch+json");
    }
    if !accepted.contains(&ct.as_str()) {
        return Err(ApiError::unsupported_media_type(&ct, &accepted));
    }
    let old = st
        .get(&rt.storage, &ctx.ns, name)
        .map(|s| (s.value(), s.managed.clone()));
    if ct == "application/apply-patch+yaml" {
        let manager = ctx.query.get("fieldManager").cloned().unwrap_or_default();
        if manager.is_empty() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        ctx.manager = manager.clone();
        let applied: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !applied.is_object() {
            return Err(ApiError::bad_request(
                "the applied configuration must be an object",
            ));
        }
        let force = is_true(ctx.query, "force");
        let (live, mut managed) = match &old {
            Some((o, m)) => (Some(ctx.out(o.clone())), m.clone()),
            None => (None, ManagedFields::default()),
        };
        let schema = rt.schema.clone();
        let merged = pure("server-side apply", || {
            patch::server_side_apply_to(
                live.as_ref(),
                &applied,
                schema.as_ref(),
                &manager,
                sub.unwrap_or_default(),
                force,
                &mut managed,
            )
        })?
        .map_err(|e| apply_error(&rt, name, e))?;
        compact(&mut managed);
        let mut merged = ctx.ingest(merged)?;
        return match old {
            None if sub.is_some() => Err(ApiError::not_found(&rt, name)),
            None => {
                merged["metadata"]["name"] = name.into();
                Ok((201, create(st, ctx, merged, Some(managed))?))
            }
            Some(_) => Ok((200, update(st, ctx, name, merged, sub, Some(managed))?)),
        };
    }
    let Some((old, _)) = old else {
        return Err(ApiError::not_found(&rt, name));
    };
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let served = ctx.out(old);
    let patched = match ct.as_str() {
        "application/merge-patch+json" => {
            pure("merge patch", || patch::merge_patch(&served, &doc))?
        }
        "application/json-patch+json" => pure("json patch", || patch::json_patch(&served, &doc))?,
        _ => {
            let kind = rt.kind.clone();
            pure("strategic merge patch", || {
                patch::strategic_merge_patch(&served, &doc, &kind)
            })?
        }
    }
    .map_err(|e| match e {
        patch::PatchError::BadRequest(m) => ApiError::bad_request(m),
        patch::PatchError::Unprocessable(m) => ApiError::new(422, "Invalid", m),
    })?;
    let patched = ctx.ingest(patched)?;
    Ok((200, update(st, ctx, name, patched, sub, None)?))
}

fn apply_error(rt: &ResourceType, name: &str, e: patch::ApplyError) -> ApiError {
    match e {
        patch::ApplyError::Conflicts(cs) => {
            let n = cs.len();
            let list: Vec<String> = cs
                .iter()
                .map(|c| format!("conflict with {}: {}", quote(&c.manager), c.field))
                .collect();
            let causes: Vec<Value> = cs
                .iter()
                .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", quote(&c.manager)), "field": c.field}))
                .collect();
            let mut err = ApiError::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {n} conflict{}: {}",
                    if n == 1 { "" } else { "s" },
                    list.join("; ")
                ),
            );
            err.details =
                Some(json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}));
            err
        }
        patch::ApplyError::Invalid(m) => ApiError::new(422, "Invalid", m),
    }
}

fn delete(st: &mut Store, ctx: &Ctx, name: &str, body: &[u8]) -> Result<Response, ApiError> {
    let rt = &ctx.rt;
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let stored = st
        .get(&rt.storage, &ctx.ns, name)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    let current = stored.value();
    let pre = &opts["preconditions"];
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(want) = pre[field].as_str() {
            let have = current["metadata"][field].as_str().unwrap_or_default();
            if want != have {
                return Err(ApiError::conflict_msg(
                    rt,
                    name,
                    &format!("Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}"),
                ));
            }
        }
    }
    let policy = ctx
        .query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| opts["propagationPolicy"].as_str().map(str::to_string))
        .unwrap_or_default();
    let orphan = policy == "Orphan" || opts["orphanDependents"].as_bool() == Some(true);
    if ctx.dry_run() {
        return Ok(ctx.respond(200, ctx.out(current)));
    }
    let (obj, gone) = st
        .delete(&rt.storage, &ctx.ns, name, orphan)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    if gone && !rt.custom && rt.storage != NAMESPACES && rt.storage != CRDS {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": rt.group, "kind": rt.plural,
                        "uid": obj["metadata"]["uid"]},
        });
        return Ok(json_response(200, status.to_string()));
    }
    Ok(ctx.respond(200, ctx.out(obj)))
}

fn delete_collection(st: &mut Store, ctx: &Ctx, ns: Option<&str>) -> Result<Response, ApiError> {
    let sel = Selectors::parse(ctx)?;
    let keys: Vec<(String, String)> = st
        .objects
        .get(&ctx.rt.storage)
        .map(|m| {
            m.iter()
                .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                .filter(|(_, s)| sel.matches(&s.value()))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut items = vec![];
    if !ctx.dry_run() {
        for (n, name) in keys {
            if let Some((obj, _)) = st.delete(&ctx.rt.storage, &n, &name, false) {
                items.push(ctx.out(obj));
            }
        }
    }
    let list = json!({
        "kind": ctx.rt.list_kind, "apiVersion": ctx.rt.api_version(),
        "metadata": {"resourceVersion": st.rv.to_string()}, "items": items,
    });
    Ok(json_response(200, list.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Reads

/// Label and field selectors of a list or watch.
struct Selectors {
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
}

fn supported_fields(rt: &ResourceType) -> Vec<&'static str> {
    let mut f = vec!["metadata.name", "metadata.namespace"];
    match rt.storage.as_str() {
        "/events" => f.extend([
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]),
        "/secrets" => f.push("type"),
        NAMESPACES => f.push("status.phase"),
        _ => {}
    }
    f
}

impl Selectors {
    fn parse(ctx: &Ctx) -> Result<Selectors, ApiError> {
        Self::parse_query(ctx, ctx.query)
    }

    fn parse_query(ctx: &Ctx, q: &Query) -> Result<Selectors, ApiError> {
        let label = match q.get("labelSelector").filter(|s| !s.is_empty()) {
            Some(s) => Some(
                pure("label selector", || LabelSelector::parse(s))?
                    .map_err(ApiError::bad_request)?,
            ),
            None => None,
        };
        let field = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
            Some(s) => {
                let fs = pure("field selector", || FieldSelector::parse(s))?
                    .map_err(ApiError::bad_request)?;
                let supported = supported_fields(&ctx.rt);
                for f in pure("field selector", || fs.fields())? {
                    if !supported.contains(&f.as_str()) {
                        return Err(ApiError::bad_request(format!(
                            "field label not supported: {f}"
                        )));
                    }
                }
                Some(fs)
            }
            None => None,
        };
        Ok(Selectors { label, field })
    }

    fn is_empty(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }

    /// Matching is done on the stored form (core/v1 field names for events).
    fn matches(&self, obj: &Value) -> bool {
        let l = self.label.as_ref().is_none_or(|l| {
            pure("label selector", || {
                l.matches(obj["metadata"].get("labels"))
            })
            .unwrap_or(false)
        });
        l && self
            .field
            .as_ref()
            .is_none_or(|f| pure("field selector", || f.matches(obj)).unwrap_or(false))
    }
}

fn continue_token(rv: u64, ns: &str, name: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rv, "ns": ns, "name": name}).to_string())
}

fn parse_continue(token: &str) -> Result<(u64, String, String), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v["rv"].as_u64().ok_or_else(bad)?,
        v["ns"].as_str().ok_or_else(bad)?.to_string(),
        v["name"].as_str().ok_or_else(bad)?.to_string(),
    ))
}

fn list(st: &Store, ctx: Ctx, ns: Option<&str>) -> Result<Response, ApiError> {
    let sel = Selectors::parse(&ctx)?;
    let limit = ctx
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let (list_rv, start) = match ctx.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rv, n, name) = parse_continue(token)?;
            if rv < st.compacted_rv {
                return Err(ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."));
            }
            (rv, Some((n, name)))
        }
        None => (st.rv, None),
    };
    let empty = std::collections::BTreeMap::new();
    let map = st.objects.get(&ctx.rt.storage).unwrap_or(&empty);
    let range: Box<dyn Iterator<Item = (&(String, String), &store::Stored)>> = match &start {
        Some(k) => Box::new(map.range((
            std::ops::Bound::Excluded(k.clone()),
            std::ops::Bound::Unbounded,
        ))),
        None => Box::new(map.iter()),
    };
    let transform = ctx.render || ctx.rt.conversion != Conversion::None || ctx.table;
    let mut raw: Vec<&Bytes> = vec![];
    let mut values: Vec<Value> = vec![];
    let mut next = None;
    let mut count = 0usize;
    let mut last_key: Option<(&String, &String)> = None;
    for ((n, name), stored) in range {
        if ns.is_some_and(|ns| ns != n) {
            continue;
        }
        let parsed = if sel.is_empty() {
            None
        } else {
            let v = stored.value();
            if !sel.matches(&v) {
                continue;
            }
            Some(v)
        };
        if limit.is_some_and(|l| count == l) {
            // More matching items exist: hand out a token that resumes after the last one sent.
            let (ln, lname) = last_key.expect("limit > 0");
            next = Some(continue_token(list_rv, ln, lname));
            break;
        }
        count += 1;
        last_key = Some((n, name));
        if transform {
            values.push(ctx.out(parsed.unwrap_or_else(|| stored.value())));
        } else {
            raw.push(&stored.json);
        }
    }
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some(c) = &next {
        meta["continue"] = c.clone().into();
    }
    if ctx.table {
        let t = ctx.table_of(&values, meta);
        let mut resp = json_response(200, t.to_string());
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(TABLE_CONTENT_TYPE),
        );
        return Ok(resp);
    }
    let mut out = Vec::with_capacity(256 + raw.iter().map(|b| b.len() + 1).sum::<usize>());
    out.extend_from_slice(
        format!(
            "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
            Value::from(ctx.rt.list_kind.clone()),
            Value::from(ctx.rt.api_version()),
            meta
        )
        .as_bytes(),
    );
    let mut first = true;
    let mut push = |b: &[u8]| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(b);
    };
    if transform {
        for v in &values {
            push(&serde_json::to_vec(v).expect("JSON values serialize"));
        }
    } else {
        for b in &raw {
            push(b);
        }
    }
    out.extend_from_slice(b"]}");
    Ok(json_response(200, out))
}

// ---------------------------------------------------------------------------------------------
// Watch

struct WatchFilter {
    rt: Arc<ResourceType>,
    ns: Option<String>,
    sel: Selectors,
    transform: bool,
    table: Option<Vec<table::Column>>,
}

impl WatchFilter {
    fn line(&self, kind: EventType, obj: &Bytes, prev: Option<&Bytes>) -> Option<Bytes> {
        let mut kind = kind;
        let mut parsed = None;
        if !self.sel.is_empty() {
            let v: Value = serde_json::from_slice(obj).ok()?;
            let now = self.sel.matches(&v);
            let before = match (kind, prev) {
                (EventType::Modified, Some(p)) => serde_json::from_slice::<Value>(p)
                    .map(|p| self.sel.matches(&p))
                    .unwrap_or(false),
                _ => now,
            };
            kind = match (kind, before, now) {
                (EventType::Modified, true, true) => EventType::Modified,
                (EventType::Modified, false, true) => EventType::Added,
                (EventType::Modified, true, false) => EventType::Deleted,
                (EventType::Modified, false, false) => return None,
                (k, _, true) => k,
                (_, _, false) => return None,
            };
            parsed = Some(v);
        }
        let mut out = Vec::with_capacity(obj.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        if self.transform || self.table.is_some() {
            let v = match parsed {
                Some(v) => v,
                None => serde_json::from_slice(obj).ok()?,
            };
            let v = render_for(&self.rt, v);
            let v = match &self.table {
                Some(cols) => pure("table", || table::table(cols, &[v], "Object", json!({})))
                    .unwrap_or_else(|e| e.to_value()),
                None => v,
            };
            out.extend_from_slice(&serde_json::to_vec(&v).ok()?);
        } else {
            out.extend_from_slice(obj);
        }
        out.extend_from_slice(b"}\n");
        Some(Bytes::from(out))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let ev = json!({"type": "BOOKMARK", "object": {
            "kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta}});
        Bytes::from(format!("{ev}\n"))
    }
}

fn render_for(rt: &ResourceType, mut obj: Value) -> Value {
    match rt.conversion {
        Conversion::EventsV1 => resources::event_to_v1(&obj),
        Conversion::None => {
            obj["apiVersion"] = rt.api_version().into();
            obj["kind"] = rt.kind.clone().into();
            obj
        }
    }
}

fn start_watch(
    sh: &Arc<Shared>,
    ctx: Ctx,
    ns: Option<String>,
    q: &Query,
) -> Result<Response, ApiError> {
    let sel = Selectors::parse_query(&ctx, q)?;
    let bookmarks = is_true(q, "allowWatchBookmarks");
    let send_initial = is_true(q, "sendInitialEvents");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs);
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let from = match rv_param.as_str() {
        "" | "0" => None,
        s => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?,
        ),
    };
    let filter = WatchFilter {
        rt: ctx.rt.clone(),
        ns: ns.clone(),
        sel,
        transform: ctx.render || ctx.rt.conversion != Conversion::None,
        table: if ctx.table { Some(ctx.columns()) } else { None },
    };
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Bytes>(WATCH_BUFFER);
    let mut backlog: Vec<Bytes> = vec![];
    let (mut rx, cancel, mut last_rv) = {
        let st = sh.lock();
        let storage = &ctx.rt.storage;
        match from {
            None => {
                if let Some(map) = st.objects.get(storage) {
                    for ((n, _), stored) in map {
                        if ns.as_ref().is_some_and(|ns| ns != n) {
                            continue;
                        }
                        if let Some(l) = filter.line(EventType::Added, &stored.json, None) {
                            backlog.push(l);
                        }
                    }
                }
                if send_initial && bookmarks {
                    backlog.push(filter.bookmark(st.rv, true));
                }
            }
            Some(rv) => match st.events_since(storage, rv) {
                Ok(events) => {
                    for ev in events {
                        if ns.as_ref().is_some_and(|ns| *ns != ev.ns) {
                            continue;
                        }
                        if let Some(l) = filter.line(ev.kind, &ev.obj, ev.prev.as_ref()) {
                            backlog.push(l);
                        }
                    }
                }
                Err(oldest) => {
                    let status =
                        ApiError::gone(format!("too old resource version: {rv} ({oldest})"));
                    let line = format!(
                        "{}\n",
                        json!({"type": "ERROR", "object": status.to_value()})
                    );
                    return Ok(json_response(200, line));
                }
            },
        }
        (st.tx.subscribe(), st.watch_cancel.clone(), st.rv)
    };
    let storage = ctx.rt.storage.clone();
    tokio::spawn(async move {
        for line in backlog {
            if out_tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = out_tx.closed() => break,
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    if bookmarks {
                        let _ = out_tx.send(filter.bookmark(last_rv, false)).await;
                    }
                    break;
                }
                _ = tick.tick(), if bookmarks => {
                    if out_tx.send(filter.bookmark(last_rv, false)).await.is_err() {
                        break;
                    }
                }
                ev = rx.recv() => {
                    let ev: Arc<Event> = match ev {
                        Ok(ev) => ev,
                        Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
                    };
                    if ev.rv <= last_rv {
                        continue;
                    }
                    last_rv = ev.rv;
                    if ev.storage != storage || filter.ns.as_ref().is_some_and(|ns| *ns != ev.ns) {
                        continue;
                    }
                    if let Some(line) = filter.line(ev.kind, &ev.obj, ev.prev.as_ref()) {
                        if out_tx.send(line).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(out_rx)
        .map(Ok::<Bytes, std::convert::Infallible>);
    let mut resp = json_response(200, Body::from_stream(stream));
    if ctx.table {
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(TABLE_CONTENT_TYPE),
        );
    }
    Ok(resp)
}

use futures::StreamExt as _;
