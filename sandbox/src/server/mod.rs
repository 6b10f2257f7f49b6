//! HTTP handling: routing of Kubernetes REST paths to the verbs, and the request context.

mod admission;
mod reads;
mod watch;
mod writes;

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

use crate::authn::{self, UserInfo};
use crate::discovery;
use crate::faults::FaultTable;
use crate::net;
use crate::patch::{self, ManagedFields};
use crate::rbac;
use crate::resources::{self, Conversion, ResourceType};
use crate::schema;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{json_response, ApiError};
use crate::store::{self, EventType, Store, CRDS, NAMESPACES};
use crate::table;
use admission::*;
use reads::*;
use watch::*;
use writes::*;

/// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(1);
/// Lines queued for a watch client before the watch stops taking events (and so may fall
/// behind the watch window).
const WATCH_BUFFER: usize = 64;

/// State shared by every request.
pub struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<FaultTable>,
    pub addr: SocketAddr,
    /// The accept loop and connections of the current listener.
    pub serving: Mutex<net::Serving>,
    /// Identities, issued tokens and the RBAC decisions of every request.
    pub auth: authn::Auth,
    /// Clients cut off by a partition, and the writes applied per user.
    pub partitions: crate::partition::Partitions,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lock_faults(&self) -> MutexGuard<'_, FaultTable> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Query {
    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Runs one of the sandbox's pure functions (patching, schema, selectors, tables); a panic there
/// becomes a 500 InternalError, as kube-apiserver's panic recovery answers.
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
    sh.partitions.pass(&user.name).await;
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
    let (hold, fail) = {
        let mut faults = sh.lock_faults();
        faults.audit(
            &user.name,
            verb,
            &fault_resource,
            &attrs.namespace,
            &attrs.name,
        );
        faults.take(verb, &fault_resource)
    };
    if let Some(d) = hold {
        tokio::time::sleep(d).await;
    }
    if let Some(code) = fail {
        return Err(ApiError::injected(code));
    }
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    // A partition that began while this request was on its way holds it here too.
    sh.partitions.pass(&user.name).await;
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
    let result = match verb {
        "watch" => {
            let mut q = query.clone();
            if let Some(n) = &t.name {
                q.insert("fieldSelector".into(), format!("metadata.name={n}"));
            }
            start_watch(sh, ctx, t.ns.clone(), &q).map(|r| partitioned_stream(sh, user, r))
        }
        "list" => {
            let delay = sh.lock_faults().list_delay(&plural);
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            list(&sh.lock(), ctx, t.ns.as_deref())
        }
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
            let (code, obj) = writes::patch(&mut sh.lock(), &mut ctx, &name, sub, headers, &body)?;
            Ok(ctx.respond(code, ctx.out(obj)))
        }
        "delete" => delete(&mut sh.lock(), &ctx, &name, &body),
        "deletecollection" => delete_collection(&mut sh.lock(), &ctx, t.ns.as_deref()),
        _ => Err(ApiError::method_not_allowed()),
    };
    if result.is_ok() && !matches!(verb, "watch" | "list" | "get") {
        sh.partitions
            .record_write(&user.name, format!("{verb} {fault_resource}"));
    }
    result
}

/// A watch response whose events wait while `user` is partitioned.
fn partitioned_stream(sh: &Arc<Shared>, user: &UserInfo, resp: Response) -> Response {
    use futures::StreamExt;
    let (parts, body) = resp.into_parts();
    let (sh, user) = (sh.clone(), user.name.clone());
    let gated = body.into_data_stream().then(move |chunk| {
        let (sh, user) = (sh.clone(), user.clone());
        async move {
            sh.partitions.pass(&user).await;
            chunk
        }
    });
    Response::from_parts(parts, Body::from_stream(gated))
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
