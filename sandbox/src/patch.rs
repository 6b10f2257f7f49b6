//! Patch types kube-apiserver accepts: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
//! strategic merge patch (built-in types) and server-side apply.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchError {
    /// The patch document itself is malformed (kube-apiserver: 400 BadRequest).
    BadRequest(String),
    /// The patch is well-formed but cannot be applied, e.g. a failed JSON-patch `test`
    /// operation or a path that does not exist (kube-apiserver: 422 Unprocessable Entity).
    Unprocessable(String),
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::BadRequest(format!(
            "merge patch must be a JSON object, got {}",
            json_type(patch)
        )));
    }
    let mut doc = target.clone();
    json_patch::merge(&mut doc, patch);
    Ok(doc)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// RFC 6902 JSON patch, including `test`.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_array() {
        return Err(PatchError::BadRequest(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            json_type(patch)
        )));
    }
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::BadRequest(format!("invalid JSON patch: {e}")))?;
    let mut doc = target.clone();
    for op in ops.0 {
        if missing_value_tested_for_null(&doc, &op) {
            continue;
        }
        let single = json_patch::Patch(vec![op]);
        json_patch::patch(&mut doc, &single).map_err(|e| {
            let reason = match (&e.kind, single.0.first()) {
                (json_patch::PatchErrorKind::TestFailed, _) => {
                    format!("testing value {} failed: test failed", e.path)
                }
                (_, Some(json_patch::PatchOperation::Remove(_))) => {
                    format!(
                        "unable to remove nonexistent key at {}: missing value",
                        e.path
                    )
                }
                (_, Some(json_patch::PatchOperation::Replace(_))) => {
                    format!(
                        "replace operation does not apply: doc is missing key: {}: missing value",
                        e.path
                    )
                }
                _ => e.to_string(),
            };
            PatchError::Unprocessable(reason)
        })?;
    }
    Ok(doc)
}

/// kube-apiserver's JSON patch (evanphx/json-patch) lets `{"op":"test","value":null}` pass on a key
/// that is absent from an existing object: "absent" tests equal to null. kube-runtime's finalizer
/// helper relies on this when it adds the first finalizer (`test /metadata/finalizers == null`).
fn missing_value_tested_for_null(doc: &Value, op: &json_patch::PatchOperation) -> bool {
    let json_patch::PatchOperation::Test(test) = op else {
        return false;
    };
    if !test.value.is_null() || doc.pointer(test.path.as_str()).is_some() {
        return false;
    }
    let path = test.path.as_str();
    let parent = &path[..path.rfind('/').unwrap_or(0)];
    doc.pointer(parent).is_some_and(Value::is_object)
}

/// How a strategic merge patch treats a list field.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ListStrategy {
    Replace,
    MergeKey(&'static str),
    PrimitiveSet,
}

/// The `patchStrategy=merge` lists of the Go types of the built-ins the sandbox serves.
fn list_strategy(kind: &str, path: &[String]) -> ListStrategy {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match (kind, p.as_slice()) {
        (_, ["metadata", "ownerReferences"]) => ListStrategy::MergeKey("uid"),
        (_, ["metadata", "finalizers"]) => ListStrategy::PrimitiveSet,
        ("CustomResourceDefinition", ["spec", "versions"]) => ListStrategy::MergeKey("name"),
        _ => ListStrategy::Replace,
    }
}

const DELETE_FROM: &str = "$deleteFromPrimitiveList/";
const SET_ORDER: &str = "$setElementOrder/";

/// Strategic merge patch for the built-in kinds the sandbox serves (`kind` is e.g. "Secret").
pub fn strategic_merge_patch(
    target: &Value,
    patch: &Value,
    kind: &str,
) -> Result<Value, PatchError> {
    let (Some(t), Some(p)) = (target.as_object(), patch.as_object()) else {
        return Err(PatchError::BadRequest(format!(
            "strategic merge patch must be a JSON object, got {}",
            json_type(patch)
        )));
    };
    Ok(Value::Object(smp_map(t, p, kind, &mut Vec::new())?))
}

/// Merges a patch map into an original map (`$patch: delete` leaves an empty map, as in Go).
fn smp_map(
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Map<String, Value>, PatchError> {
    match patch.get("$patch") {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "delete" => return Ok(Map::new()),
        Some(Value::String(d)) if d == "replace" => {
            let mut fresh = patch.clone();
            fresh.remove("$patch");
            return smp_map(&Map::new(), &fresh, kind, path);
        }
        Some(other) => {
            return Err(PatchError::BadRequest(format!(
                "unknown patch type: {other} in map"
            )))
        }
    }
    let mut orders: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (key, pv) in patch {
        if let Some(field) = key.strip_prefix(SET_ORDER) {
            let order = pv
                .as_array()
                .cloned()
                .ok_or_else(|| PatchError::BadRequest(format!("{key} must be a list")))?;
            orders.insert(field.to_string(), order);
        }
    }
    let mut result = original.clone();
    for (key, pv) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with(SET_ORDER) {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM) {
            let gone = pv
                .as_array()
                .cloned()
                .ok_or_else(|| PatchError::BadRequest(format!("{key} must be a list")))?;
            if let Some(Value::Array(items)) = result.get_mut(field) {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        if key.starts_with('$') {
            return Err(PatchError::BadRequest(format!(
                "unknown patch directive {key}"
            )));
        }
        path.push(key.clone());
        let merged = match (result.get(key), pv) {
            (_, Value::Null) => None,
            (Some(Value::Object(o)), Value::Object(pm)) => {
                Some(Value::Object(smp_map(o, pm, kind, path)?))
            }
            (None | Some(Value::Null), Value::Object(pm)) => {
                Some(Value::Object(smp_map(&Map::new(), pm, kind, path)?))
            }
            (orig, Value::Array(pl)) => {
                let empty = Vec::new();
                let ol = orig.and_then(Value::as_array).unwrap_or(&empty);
                let strategy = list_strategy(kind, path);
                Some(Value::Array(smp_list(
                    ol,
                    pl,
                    strategy,
                    orders.get(key).map(Vec::as_slice),
                    kind,
                    path,
                )?))
            }
            (_, other) => Some(other.clone()),
        };
        path.pop();
        match merged {
            Some(v) => {
                result.insert(key.clone(), v);
            }
            None => {
                result.remove(key);
            }
        }
    }
    // `$setElementOrder` for a list the patch does not otherwise touch reorders it.
    for (field, order) in &orders {
        if patch.contains_key(field) {
            continue;
        }
        path.push(field.clone());
        let strategy = list_strategy(kind, path);
        path.pop();
        if let Some(Value::Array(items)) = result.get_mut(field) {
            let original = items.clone();
            *items = normalize_order(items.clone(), &original, order, strategy);
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| PatchError::BadRequest("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        result.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(result)
}

fn merge_key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.as_object().and_then(|m| m.get(key))
}

/// The identity of a list item: its merge key, or the value itself for primitive lists.
fn identity(item: &Value, strategy: ListStrategy) -> Option<Value> {
    match strategy {
        ListStrategy::MergeKey(key) => merge_key_of(item, key).cloned(),
        _ => Some(item.clone()),
    }
}

/// Orders a merged list like apimachinery's `normalizeElementOrder`: items named by the patch
/// (its list, or `$setElementOrder`) in that order, merged with the server-only items in their
/// original order; an item new to the server goes before the server-only item it meets.
fn normalize_order(
    merged: Vec<Value>,
    original: &[Value],
    patch_order: &[Value],
    strategy: ListStrategy,
) -> Vec<Value> {
    let ids_of = |list: &[Value]| -> Vec<Option<Value>> {
        list.iter().map(|i| identity(i, strategy)).collect()
    };
    let patch_ids = ids_of(patch_order);
    let server_ids = ids_of(original);
    let pos = |ids: &[Option<Value>], item: &Value| {
        let id = identity(item, strategy);
        ids.iter().position(|x| id.is_some() && *x == id)
    };
    let (mut from_patch, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|i| pos(&patch_ids, i).is_some());
    from_patch.sort_by_key(|i| pos(&patch_ids, i));
    let (mut l, mut r) = (
        server_only.into_iter().peekable(),
        from_patch.into_iter().peekable(),
    );
    let mut out = Vec::new();
    loop {
        match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(l.next()),
            (None, Some(_)) => out.extend(r.next()),
            (Some(a), Some(b)) => match (pos(&server_ids, a), pos(&server_ids, b)) {
                (Some(x), Some(y)) if x < y => out.extend(l.next()),
                _ => out.extend(r.next()),
            },
        }
    }
    out
}

fn smp_list(
    original: &[Value],
    patch: &[Value],
    strategy: ListStrategy,
    set_order: Option<&[Value]>,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, PatchError> {
    let merged = match strategy {
        ListStrategy::Replace => {
            // Replaced lists may still carry directives inside their items: strip them.
            return patch
                .iter()
                .map(|v| match v {
                    Value::Object(m) => Ok(Value::Object(smp_map(&Map::new(), m, kind, path)?)),
                    other => Ok(other.clone()),
                })
                .collect();
        }
        ListStrategy::PrimitiveSet => {
            let mut out = original.to_vec();
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            out
        }
        ListStrategy::MergeKey(key) => {
            if patch
                .iter()
                .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                let rest: Vec<Value> = patch
                    .iter()
                    .filter(|i| i.get("$patch").is_none())
                    .cloned()
                    .collect();
                return smp_list(&[], &rest, strategy, None, kind, path);
            }
            let mut out = original.to_vec();
            for item in patch {
                let Some(pm) = item.as_object() else {
                    return Err(PatchError::BadRequest(format!(
                        "list {} items must be objects with the merge key {key}",
                        path.join(".")
                    )));
                };
                let Some(k) = pm.get(key) else {
                    return Err(PatchError::BadRequest(format!(
                        "map: {item} does not contain declared merge key: {key}"
                    )));
                };
                let pos = out.iter().position(|o| merge_key_of(o, key) == Some(k));
                let delete = pm.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        let orig = out[i].as_object().cloned().unwrap_or_default();
                        out[i] = Value::Object(smp_map(&orig, pm, kind, path)?);
                    }
                    (None, false) => out.push(Value::Object(smp_map(&Map::new(), pm, kind, path)?)),
                }
            }
            out
        }
    };
    let order = set_order.unwrap_or(patch);
    Ok(normalize_order(merged, original, order, strategy))
}

/// A field that an apply would take from another manager.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// The manager that owns the field now.
    pub manager: String,
    /// The field, as kube-apiserver names it, e.g. `.spec.name`.
    pub field: String,
}

/// Why a server-side apply failed.
#[derive(Clone, Debug, PartialEq)]
pub enum ApplyError {
    /// Fields owned by other managers would change and `force` was not set (409 Conflict).
    Conflicts(Vec<Conflict>),
    /// The applied configuration cannot be merged (422).
    Invalid(String),
}

/// One step of a field path, as structured-merge-diff names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of an object (`f:name`).
    Field(String),
    /// An item of a map list, by its keys (`k:{"type":"Ready"}`; canonical JSON, sorted keys).
    Key(String),
    /// An item of a set list, by value (`v:"a"`; JSON).
    Value(String),
    /// An item of a list by index (`i:0`), only for lists without identity.
    Index(usize),
}

/// A path to a field, e.g. `.status.conditions[type="Ready"].status`.
pub type FieldPath = Vec<PathElement>;

/// Renders a path the way kube-apiserver names fields in conflicts.
pub fn format_path(path: &[PathElement]) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            PathElement::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElement::Key(k) => {
                let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                    .unwrap_or_default()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(v) => out.push_str(&format!("[={v}]")),
            PathElement::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Whether a manager's entry records an apply or another write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update or patch.
    Update,
}

impl Operation {
    /// The managedFields `operation` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// The fields one manager owns through one kind of operation.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerEntry {
    /// The field manager, e.g. "kubectl" or "channel-operator".
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The subresource written through ("" for the main resource, "status"); kube-apiserver
    /// keeps separate entries per subresource.
    pub subresource: String,
    /// The owned fields.
    pub fields: BTreeSet<FieldPath>,
}

impl ManagerEntry {
    fn is(&self, manager: &str, op: Operation, subresource: &str) -> bool {
        self.manager == manager && self.operation == op && self.subresource == subresource
    }
}

/// Field ownership of one object, per field manager, kept by the server beside the object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManagedFields {
    /// Entries in the order managers first wrote.
    pub entries: Vec<ManagerEntry>,
    /// The schema last used by server_side_apply, so record_update tracks map lists the same way.
    schema: Option<Value>,
}

impl ManagedFields {
    fn entry_mut(&mut self, manager: &str, op: Operation, subresource: &str) -> &mut ManagerEntry {
        let i = match self
            .entries
            .iter()
            .position(|e| e.is(manager, op, subresource))
        {
            Some(i) => i,
            None => {
                self.entries.push(ManagerEntry {
                    manager: manager.to_string(),
                    operation: op,
                    subresource: subresource.to_string(),
                    fields: BTreeSet::new(),
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    /// The fields `manager` owns through `operation`, formatted like `.spec.name`.
    pub fn fields_of(&self, manager: &str, operation: Operation) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.manager == manager && e.operation == operation)
            .flat_map(|e| e.fields.iter().map(|p| format_path(p)))
            .collect()
    }

    /// The managers owning `field` (formatted like `.spec.name`).
    pub fn owners_of(&self, field: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.fields.iter().any(|p| format_path(p) == field))
            .map(|e| e.manager.clone())
            .collect()
    }

    /// Drops ownership of fields that no longer exist and managers that own nothing.
    fn prune(&mut self, object: &Value) {
        for e in &mut self.entries {
            e.fields.retain(|p| get_at(object, p).is_some());
        }
        self.entries.retain(|e| !e.fields.is_empty());
    }

    /// Renders `metadata.managedFields` (FieldsV1) for all managers.
    pub fn to_managed_fields(&self, api_version: &str, time: &str) -> Value {
        Value::Array(
            self.entries
                .iter()
                .map(|e| {
                    let mut entry = json!({
                        "manager": e.manager,
                        "operation": e.operation.as_str(),
                        "apiVersion": api_version,
                        "time": time,
                        "fieldsType": "FieldsV1",
                        "fieldsV1": fields_v1(&e.fields),
                    });
                    if !e.subresource.is_empty() {
                        entry["subresource"] = json!(e.subresource);
                    }
                    entry
                })
                .collect(),
        )
    }
}

fn pe_key(pe: &PathElement) -> String {
    match pe {
        PathElement::Field(f) => format!("f:{f}"),
        PathElement::Key(k) => format!("k:{k}"),
        PathElement::Value(v) => format!("v:{v}"),
        PathElement::Index(i) => format!("i:{i}"),
    }
}

fn fields_v1(set: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            node = node
                .entry(pe_key(pe))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    // A node that is itself owned and has children gets a "." entry.
    fn mark(node: &mut Map<String, Value>, prefix: &mut FieldPath, set: &BTreeSet<FieldPath>) {
        let keys: Vec<String> = node.keys().cloned().collect();
        for k in keys {
            if k == "." {
                continue;
            }
            let pe = parse_pe(&k);
            prefix.push(pe);
            if let Some(Value::Object(child)) = node.get_mut(&k) {
                if !child.is_empty() && set.contains(prefix) {
                    child.insert(".".into(), json!({}));
                }
                mark(child, prefix, set);
            }
            prefix.pop();
        }
    }
    mark(&mut root, &mut Vec::new(), set);
    Value::Object(root)
}

fn parse_pe(k: &str) -> PathElement {
    match k.split_at(2) {
        ("f:", f) => PathElement::Field(f.to_string()),
        ("k:", f) => PathElement::Key(f.to_string()),
        ("v:", f) => PathElement::Value(f.to_string()),
        (_, f) => PathElement::Index(f.parse().unwrap_or(0)),
    }
}

/// How a schema node merges.
enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

fn list_type(schema: Option<&Value>) -> ListType {
    let s = schema;
    match s
        .and_then(|s| s.get("x-kubernetes-list-type"))
        .and_then(Value::as_str)
    {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(
            s.and_then(|s| s.get("x-kubernetes-list-map-keys"))
                .and_then(Value::as_array)
                .map(|k| {
                    k.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => ListType::Atomic,
    }
}

fn is_atomic_map(schema: Option<&Value>) -> bool {
    schema
        .and_then(|s| s.get("x-kubernetes-map-type"))
        .and_then(Value::as_str)
        == Some("atomic")
}

fn child_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

/// The schema SSA merges with: the CRD's (or nothing for built-ins) plus the metadata fields
/// every kind shares.
fn effective_schema(schema: Option<&Value>) -> Value {
    let mut s = schema.cloned().unwrap_or_else(|| json!({"type": "object"}));
    if !s.get("properties").is_some_and(Value::is_object) {
        s["properties"] = json!({});
    }
    s["properties"]["metadata"] = json!({"type": "object", "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["uid"], "items": {"type": "object"}}
    }});
    s
}

const OWNED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// The part of an object whose fields managers own: everything but apiVersion and kind, and
/// of metadata only labels, annotations, finalizers and ownerReferences.
fn owned_view(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            meta.retain(|k, _| OWNED_METADATA.contains(&k.as_str()));
            if meta.is_empty() {
                m.remove("metadata");
            }
        } else {
            m.remove("metadata");
        }
    }
    v
}

fn item_key(item: &Value, keys: &[String]) -> Result<String, String> {
    let mut m = Map::new();
    for k in keys {
        match item.get(k) {
            Some(v) => {
                m.insert(k.clone(), v.clone());
            }
            None => {
                return Err(format!(
                    "associative list with keys has an element that omits key field {k:?}"
                ))
            }
        }
    }
    Ok(Value::Object(m).to_string())
}

/// Collects the owned field paths of a value.
fn collect(
    value: &Value,
    schema: Option<&Value>,
    prefix: &mut FieldPath,
    out: &mut BTreeSet<FieldPath>,
) -> Result<(), String> {
    match value {
        Value::Object(m) if !m.is_empty() && !is_atomic_map(schema) => {
            for (k, v) in m {
                prefix.push(PathElement::Field(k.clone()));
                collect(v, child_schema(schema, k), prefix, out)?;
                prefix.pop();
            }
        }
        Value::Array(items) => match list_type(schema) {
            ListType::Atomic => {
                out.insert(prefix.clone());
            }
            ListType::Set => {
                for item in items {
                    let mut p = prefix.clone();
                    p.push(PathElement::Value(item.to_string()));
                    if !out.insert(p) {
                        return Err(format!("duplicate entries for key [={item}]"));
                    }
                }
            }
            ListType::Map(keys) => {
                let item_schema = schema.and_then(|s| s.get("items"));
                for item in items {
                    let key = item_key(item, &keys)?;
                    prefix.push(PathElement::Key(key));
                    if !out.insert(prefix.clone()) {
                        let dup = format_path(&prefix[prefix.len() - 1..]);
                        return Err(format!("duplicate entries for key {dup}"));
                    }
                    if let Value::Object(m) = item {
                        for (k, v) in m {
                            prefix.push(PathElement::Field(k.clone()));
                            collect(v, child_schema(item_schema, k), prefix, out)?;
                            prefix.pop();
                        }
                    }
                    prefix.pop();
                }
            }
        },
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
    Ok(())
}

fn field_set(obj: &Value, schema: &Value) -> Result<BTreeSet<FieldPath>, String> {
    let mut out = BTreeSet::new();
    collect(&owned_view(obj), Some(schema), &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn key_matches(item: &Value, key: &str) -> bool {
    serde_json::from_str::<Map<String, Value>>(key)
        .map(|k| k.iter().all(|(f, v)| item.get(f) == Some(v)))
        .unwrap_or(false)
}

fn get_at<'a>(value: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    let mut cur = value;
    for pe in path {
        cur = match pe {
            PathElement::Field(f) => cur.get(f.as_str())?,
            PathElement::Key(k) => cur.as_array()?.iter().find(|i| key_matches(i, k))?,
            PathElement::Value(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                cur.as_array()?.iter().find(|i| **i == want)?
            }
            PathElement::Index(i) => cur.as_array()?.get(*i)?,
        };
    }
    Some(cur)
}

fn remove_at(value: &mut Value, path: &[PathElement]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for pe in parent {
        let next = match pe {
            PathElement::Field(f) => cur.get_mut(f.as_str()),
            PathElement::Key(k) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| key_matches(i, k))),
            PathElement::Value(v) => {
                let want: Value = serde_json::from_str(v).unwrap_or(Value::Null);
                cur.as_array_mut()
                    .and_then(|a| a.iter_mut().find(|i| **i == want))
            }
            PathElement::Index(i) => cur.as_array_mut().and_then(|a| a.get_mut(*i)),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (last, cur) {
        (PathElement::Field(f), Value::Object(m)) => {
            m.remove(f);
        }
        (PathElement::Key(k), Value::Array(a)) => a.retain(|i| !key_matches(i, k)),
        (PathElement::Value(v), Value::Array(a)) => {
            let want: Value = serde_json::from_str(v).unwrap_or(Value::Null);
            a.retain(|i| *i != want);
        }
        (PathElement::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

/// Merges an applied configuration into a live value, following the schema's merge strategy.
fn ssa_merge(live: &Value, applied: &Value, schema: Option<&Value>) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) if !is_atomic_map(schema) => {
            let mut out = l.clone();
            for (k, av) in a {
                if av.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = match l.get(k) {
                    Some(lv) => ssa_merge(lv, av, child_schema(schema, k)),
                    None => av.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(a)) => match list_type(schema) {
            ListType::Atomic => applied.clone(),
            ListType::Set => {
                let mut out = l.clone();
                for v in a {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Map(keys) => {
                let item_schema = schema.and_then(|s| s.get("items"));
                let mut out = l.clone();
                for item in a {
                    let Ok(k) = item_key(item, &keys) else {
                        continue;
                    };
                    match out.iter().position(|o| key_matches(o, &k)) {
                        Some(i) => out[i] = ssa_merge(&out[i], item, item_schema),
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
        },
        _ => applied.clone(),
    }
}

/// Whether `path` is a key field of a map-list item (it goes away only with the item).
fn is_key_field(path: &[PathElement]) -> bool {
    match path {
        [.., PathElement::Key(k), PathElement::Field(f)] => {
            serde_json::from_str::<Map<String, Value>>(k).is_ok_and(|m| m.contains_key(f))
        }
        _ => false,
    }
}

/// Whether `path` names a value (not just the identity of a list item) that can conflict.
fn is_value_path(path: &[PathElement]) -> bool {
    matches!(
        path.last(),
        Some(PathElement::Field(_) | PathElement::Index(_))
    )
}

/// Server-side apply of `applied` by `manager` onto `live` (None: the object does not exist yet).
/// `schema` is the openAPIV3Schema of a custom resource (for `x-kubernetes-list-type` /
/// `x-kubernetes-list-map-keys`), None for built-in kinds. Returns the merged object and updates
/// `owners`. Fields this manager applied before and no longer applies are removed.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    schema: Option<&Value>,
    manager: &str,
    force: bool,
    owners: &mut ManagedFields,
) -> Result<Value, ApplyError> {
    server_side_apply_to(live, applied, schema, manager, "", force, owners)
}

/// [`server_side_apply`] through a subresource (`"status"`; `""` is the main resource). Like
/// kube-apiserver, a manager's applies to the main resource and to `/status` are tracked as
/// separate entries, so applying status does not drop what the same manager applied to the
/// main resource (e.g. a finalizer).
pub fn server_side_apply_to(
    live: Option<&Value>,
    applied: &Value,
    schema: Option<&Value>,
    manager: &str,
    subresource: &str,
    force: bool,
    owners: &mut ManagedFields,
) -> Result<Value, ApplyError> {
    let Some(applied_map) = applied.as_object() else {
        return Err(ApplyError::Invalid(format!(
            "the applied configuration must be an object, got {}",
            json_type(applied)
        )));
    };
    let eff = effective_schema(schema);
    owners.schema = schema.cloned();
    let applied_set = field_set(applied, &eff).map_err(ApplyError::Invalid)?;
    let config = owned_view(applied);

    // The starting point: the live object, or a new one with the applied identity.
    let mut base = match live {
        Some(l) => l.clone(),
        None => {
            let mut m = Map::new();
            for k in ["apiVersion", "kind"] {
                if let Some(v) = applied_map.get(k) {
                    m.insert(k.into(), v.clone());
                }
            }
            let mut meta = Map::new();
            if let Some(am) = applied_map.get("metadata").and_then(Value::as_object) {
                for k in ["name", "namespace", "generateName"] {
                    if let Some(v) = am.get(k) {
                        meta.insert(k.into(), v.clone());
                    }
                }
            }
            m.insert("metadata".into(), Value::Object(meta));
            Value::Object(m)
        }
    };

    // Conflicts: fields another manager owns whose value the apply would change.
    let mut conflicts = Vec::new();
    for path in applied_set.iter().filter(|p| is_value_path(p)) {
        let (Some(new), Some(old)) = (get_at(&config, path), get_at(&base, path)) else {
            continue;
        };
        if new == old {
            continue;
        }
        for e in &owners.entries {
            if e.manager != manager && e.fields.contains(path) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    field: format_path(path),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }

    let previous: BTreeSet<FieldPath> = owners
        .entries
        .iter()
        .filter(|e| e.is(manager, Operation::Apply, subresource))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();

    let mut merged = ssa_merge(&base, &config, Some(&eff));

    // Fields this manager applied before and no longer applies go away unless someone else
    // owns them (or something below them) too. Shallow paths first: removing a list item
    // removes its fields; a kept item keeps its key fields.
    let mut dropped: Vec<&FieldPath> = previous.difference(&applied_set).collect();
    dropped.sort_by_key(|p| p.len());
    for path in dropped {
        if is_key_field(path) {
            continue;
        }
        let shared = owners.entries.iter().any(|e| {
            !e.is(manager, Operation::Apply, subresource)
                && e.fields.iter().any(|f| f.starts_with(path))
        });
        let still_applied = applied_set.iter().any(|f| f.starts_with(path));
        if !shared && !still_applied {
            remove_at(&mut merged, path);
        }
    }
    base = merged;

    // Ownership: the manager owns exactly what it applied; forced fields leave other managers;
    // the same manager's Update entry gives up what it now applies.
    for e in &mut owners.entries {
        let changed_here = |p: &FieldPath| {
            force
                && conflicts
                    .iter()
                    .any(|c| c.manager == e.manager && c.field == format_path(p))
        };
        if e.is(manager, Operation::Update, subresource) {
            e.fields.retain(|p| !applied_set.contains(p));
        } else if e.manager != manager {
            let keep: BTreeSet<FieldPath> = e
                .fields
                .iter()
                .filter(|p| !changed_here(p))
                .cloned()
                .collect();
            e.fields = keep;
        }
    }
    owners
        .entry_mut(manager, Operation::Apply, subresource)
        .fields = applied_set;
    owners.prune(&base);
    Ok(base)
}

/// Records a non-apply write (create, update, patch) by `manager`: it takes ownership of the
/// fields it changed or set.
pub fn record_update(old: Option<&Value>, new: &Value, manager: &str, owners: &mut ManagedFields) {
    let schema = owners.schema.clone();
    record_update_to(old, new, schema.as_ref(), manager, "", owners);
}

/// [`record_update`] with an explicit CRD schema (so map lists are tracked per item).
pub fn record_update_with_schema(
    old: Option<&Value>,
    new: &Value,
    schema: Option<&Value>,
    manager: &str,
    owners: &mut ManagedFields,
) {
    record_update_to(old, new, schema, manager, "", owners);
}

/// [`record_update`] with an explicit CRD schema and subresource (`"status"`, or `""`).
pub fn record_update_to(
    old: Option<&Value>,
    new: &Value,
    schema: Option<&Value>,
    manager: &str,
    subresource: &str,
    owners: &mut ManagedFields,
) {
    if schema.is_some() {
        owners.schema = schema.cloned();
    }
    let eff = effective_schema(schema);
    let new_set = field_set(new, &eff).unwrap_or_default();
    let new_view = owned_view(new);
    let old_view = old.map(owned_view);
    let changed: BTreeSet<FieldPath> = new_set
        .into_iter()
        .filter(|p| match &old_view {
            None => true,
            Some(o) => get_at(o, p) != get_at(&new_view, p),
        })
        .collect();
    if !changed.is_empty() {
        for e in &mut owners.entries {
            if !e.is(manager, Operation::Update, subresource) {
                e.fields
                    .retain(|p| !changed.contains(p) || !is_value_path(p));
            }
        }
        owners
            .entry_mut(manager, Operation::Update, subresource)
            .fields
            .extend(changed);
    }
    owners.prune(new);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_deletes() {
        let t = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"list": [1, 2]}});
        let p = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"list": [3]}});
        assert_eq!(
            merge_patch(&t, &p).unwrap(),
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"list": [3]}})
        );
        assert!(matches!(
            merge_patch(&t, &json!([1])),
            Err(PatchError::BadRequest(_))
        ));
    }

    #[test]
    fn json_patch_ops_and_errors() {
        let t = json!({"spec": {"name": "a", "items": [1, 2]}});
        let p = json!([
            {"op": "test", "path": "/spec/name", "value": "a"},
            {"op": "replace", "path": "/spec/name", "value": "b"},
            {"op": "add", "path": "/spec/items/-", "value": 3},
            {"op": "remove", "path": "/spec/items/0"}
        ]);
        assert_eq!(
            json_patch(&t, &p).unwrap(),
            json!({"spec": {"name": "b", "items": [2, 3]}})
        );
        let failed = json_patch(
            &t,
            &json!([{"op": "test", "path": "/spec/name", "value": "z"}]),
        );
        assert!(
            matches!(failed, Err(PatchError::Unprocessable(ref m)) if m.contains("test failed"))
        );
        let missing = json_patch(&t, &json!([{"op": "remove", "path": "/spec/nope"}]));
        assert!(
            matches!(missing, Err(PatchError::Unprocessable(_))),
            "{missing:?}"
        );
        for bad in [
            json!({"op": "add"}),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "value": 1}]),
        ] {
            assert!(
                matches!(json_patch(&t, &bad), Err(PatchError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_patch_test_for_null_passes_on_an_absent_key_like_kube_apiserver() {
        let t = json!({"metadata": {"name": "c"}});
        let p = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}
        ]);
        assert_eq!(
            json_patch(&t, &p).unwrap(),
            json!({"metadata": {"name": "c", "finalizers": ["f"]}})
        );
        // A present value is still compared, and an absent parent is still an error.
        let present = json!({"metadata": {"finalizers": ["f"]}});
        let null_test = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]);
        assert!(matches!(
            json_patch(&present, &null_test),
            Err(PatchError::Unprocessable(_))
        ));
        let no_parent = json!([{"op": "test", "path": "/spec/x", "value": null}]);
        assert!(matches!(
            json_patch(&t, &no_parent),
            Err(PatchError::Unprocessable(_))
        ));
        // Nothing of a failing patch is applied.
        let half = json!([
            {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
            {"op": "test", "path": "/metadata/name", "value": "other"}
        ]);
        assert!(json_patch(&t, &half).is_err());
    }

    #[test]
    fn smp_maps_merge_and_lists_replace_by_default() {
        let t = json!({"metadata": {"name": "s", "labels": {"a": "1", "b": "2"}},
            "type": "Opaque", "data": {"x": "eA=="}});
        let p = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": {"y": "eQ=="}});
        assert_eq!(
            strategic_merge_patch(&t, &p, "Secret").unwrap(),
            json!({"metadata": {"name": "s", "labels": {"b": "2", "c": "3"}},
                "type": "Opaque", "data": {"x": "eA==", "y": "eQ=="}})
        );
        let crd = json!({"spec": {"names": {"shortNames": ["a", "b"]}}});
        let p = json!({"spec": {"names": {"shortNames": ["c"]}}});
        assert_eq!(
            strategic_merge_patch(&crd, &p, "CustomResourceDefinition").unwrap(),
            json!({"spec": {"names": {"shortNames": ["c"]}}})
        );
        assert!(matches!(
            strategic_merge_patch(&t, &json!([1]), "Secret"),
            Err(PatchError::BadRequest(_))
        ));
    }

    #[test]
    fn smp_merge_lists_and_directives() {
        let t = json!({"metadata": {"name": "s",
            "finalizers": ["a", "b"],
            "ownerReferences": [{"uid": "1", "name": "one", "kind": "Channel"},
                                {"uid": "2", "name": "two", "kind": "Channel"}]}});
        let p = json!({"metadata": {
            "finalizers": ["c", "a"],
            "$deleteFromPrimitiveList/finalizers": ["b"],
            "$setElementOrder/finalizers": ["c", "a"],
            "ownerReferences": [{"uid": "1", "name": "uno"}, {"uid": "2", "$patch": "delete"},
                                {"uid": "3", "name": "three", "kind": "Channel"}]}});
        let out = strategic_merge_patch(&t, &p, "Secret").unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a"]));
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([{"uid": "1", "name": "uno", "kind": "Channel"},
                   {"uid": "3", "name": "three", "kind": "Channel"}])
        );
        assert!(!out.to_string().contains('$'), "{out}");

        let replaced = strategic_merge_patch(
            &t,
            &json!({"metadata": {"ownerReferences": [{"$patch": "replace"}, {"uid": "9", "name": "n"}]}}),
            "Secret",
        )
        .unwrap();
        assert_eq!(
            replaced["metadata"]["ownerReferences"],
            json!([{"uid": "9", "name": "n"}])
        );

        let labels =
            json!({"metadata": {"labels": {"a": "1"}, "annotations": {"x": "1", "y": "2"}}});
        let out = strategic_merge_patch(
            &labels,
            &json!({"metadata": {"labels": {"$patch": "replace", "b": "2"},
                                  "annotations": {"$retainKeys": ["y"], "y": "3"}}}),
            "ConfigMap",
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2"}, "annotations": {"y": "3"}}})
        );
        let out = strategic_merge_patch(
            &labels,
            &json!({"metadata": {"labels": {"$patch": "delete"}}}),
            "ConfigMap",
        )
        .unwrap();
        // Like Go, `$patch: delete` inside a map field leaves an empty map.
        assert_eq!(out["metadata"]["labels"], json!({}));
    }

    #[test]
    fn smp_crd_versions_merge_by_name() {
        let crd = json!({"spec": {"versions": [
            {"name": "v1alpha1", "served": true, "storage": true},
            {"name": "v1", "served": true, "storage": false}]}});
        let p = json!({"spec": {"versions": [{"name": "v1alpha1", "served": false}]}});
        let out = strategic_merge_patch(&crd, &p, "CustomResourceDefinition").unwrap();
        assert_eq!(
            out["spec"]["versions"],
            json!([{"name": "v1alpha1", "served": false, "storage": true},
                   {"name": "v1", "served": true, "storage": false}])
        );
        // Not a merge list for other kinds.
        let out = strategic_merge_patch(&crd, &p, "ConfigMap").unwrap();
        assert_eq!(
            out["spec"]["versions"],
            json!([{"name": "v1alpha1", "served": false}])
        );
    }

    fn channel_schema() -> Value {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(channel_operator::crd::Channel::crd()).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    fn ch(body: Value) -> Value {
        let mut v = json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel",
            "metadata": {"name": "c", "namespace": "default"}});
        for (k, x) in body.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    #[test]
    fn apply_creates_and_owns_exactly_the_applied_fields() {
        let s = channel_schema();
        let mut owners = ManagedFields::default();
        let applied = ch(
            json!({"metadata": {"name": "c", "namespace": "default", "uid": "ignored",
            "labels": {"app": "x"}}, "spec": {"source": "google", "sourceChannelId": "a"}}),
        );
        let out =
            server_side_apply(None, &applied, Some(&s), "kubectl", false, &mut owners).unwrap();
        assert_eq!(
            out["metadata"],
            json!({"name": "c", "namespace": "default", "labels": {"app": "x"}})
        );
        assert_eq!(
            out["spec"],
            json!({"source": "google", "sourceChannelId": "a"})
        );
        let mut fields = owners.fields_of("kubectl", Operation::Apply);
        fields.sort();
        assert_eq!(
            fields,
            [
                ".metadata.labels.app",
                ".spec.source",
                ".spec.sourceChannelId"
            ]
        );
        let mf = owners.to_managed_fields("airy.co/v1alpha1", "2026-01-01T00:00:00Z");
        assert_eq!(
            mf,
            json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "airy.co/v1alpha1",
                "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}},
                             "f:spec": {"f:source": {}, "f:sourceChannelId": {}}}}])
        );
    }

    #[test]
    fn apply_conflicts_force_and_shared_fields() {
        let s = channel_schema();
        let mut owners = ManagedFields::default();
        let a = ch(json!({"spec": {"source": "google", "sourceChannelId": "a", "name": "one"}}));
        let live = server_side_apply(None, &a, Some(&s), "alice", false, &mut owners).unwrap();

        let b = ch(json!({"spec": {"name": "two"}}));
        let err =
            server_side_apply(Some(&live), &b, Some(&s), "bob", false, &mut owners).unwrap_err();
        assert_eq!(
            err,
            ApplyError::Conflicts(vec![Conflict {
                manager: "alice".into(),
                field: ".spec.name".into()
            }])
        );
        // Same value: shared, no conflict.
        let same = ch(json!({"spec": {"name": "one"}}));
        let live2 =
            server_side_apply(Some(&live), &same, Some(&s), "bob", false, &mut owners).unwrap();
        assert_eq!(live2, live);
        let mut o = owners.owners_of(".spec.name");
        o.sort();
        assert_eq!(o, ["alice", "bob"]);
        // Alice stops applying the name: bob still owns it, so it stays.
        let a2 = ch(json!({"spec": {"source": "google", "sourceChannelId": "a"}}));
        let live3 =
            server_side_apply(Some(&live2), &a2, Some(&s), "alice", false, &mut owners).unwrap();
        assert_eq!(live3["spec"]["name"], "one");
        assert_eq!(owners.owners_of(".spec.name"), ["bob"]);
        // Force takes ownership.
        let live4 = server_side_apply(
            Some(&live3),
            &ch(json!({"spec": {"sourceChannelId": "b"}})),
            Some(&s),
            "bob",
            true,
            &mut owners,
        )
        .unwrap();
        assert_eq!(live4["spec"]["sourceChannelId"], "b");
        assert_eq!(owners.owners_of(".spec.sourceChannelId"), ["bob"]);
        // Bob no longer applies the name and owns it alone: it is removed.
        assert!(live4["spec"].get("name").is_none(), "{live4}");
        assert_eq!(live4["spec"]["source"], "google");
    }

    #[test]
    fn apply_merges_map_lists_and_keeps_other_fields() {
        let s = channel_schema();
        let mut owners = ManagedFields::default();
        let spec = ch(json!({"spec": {"source": "google", "sourceChannelId": "a"}}));
        let live = server_side_apply(None, &spec, Some(&s), "kubectl", false, &mut owners).unwrap();
        let status = |ty: &str, st: &str| {
            ch(json!({"status": {"conditions": [
            {"type": ty, "status": st, "reason": "R", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
        };
        let live = server_side_apply(
            Some(&live),
            &status("Ready", "True"),
            Some(&s),
            "channel-operator",
            false,
            &mut owners,
        )
        .unwrap();
        let live = server_side_apply(
            Some(&live),
            &status("Synced", "True"),
            Some(&s),
            "other",
            false,
            &mut owners,
        )
        .unwrap();
        let types: Vec<&str> = live["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Ready", "Synced"]);
        assert_eq!(
            live["spec"],
            json!({"source": "google", "sourceChannelId": "a"})
        );
        let err = server_side_apply(
            Some(&live),
            &status("Ready", "False"),
            Some(&s),
            "other",
            false,
            &mut owners,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ApplyError::Conflicts(vec![Conflict {
                manager: "channel-operator".into(),
                field: ".status.conditions[type=\"Ready\"].status".into()
            }])
        );
        let mf = owners.to_managed_fields("v", "t");
        let op = mf
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == "channel-operator")
            .unwrap();
        assert_eq!(
            op["fieldsV1"]["f:status"]["f:conditions"]["k:{\"type\":\"Ready\"}"]["."],
            json!({})
        );
        // The operator re-applies the same condition with a new status: no conflict with itself.
        let live = server_side_apply(
            Some(&live),
            &status("Ready", "False"),
            Some(&s),
            "channel-operator",
            false,
            &mut owners,
        )
        .unwrap();
        assert_eq!(live["status"]["conditions"][0]["status"], "False");
        // Dropping its condition removes it; the other manager's stays.
        let live = server_side_apply(
            Some(&live),
            &ch(json!({"status": {"connected": true}})),
            Some(&s),
            "channel-operator",
            false,
            &mut owners,
        )
        .unwrap();
        let types: Vec<&str> = live["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Synced"]);
        assert_eq!(live["status"]["connected"], true);
        let bad = ch(json!({"status": {"conditions": [{"status": "True"}]}}));
        assert!(matches!(
            server_side_apply(Some(&live), &bad, Some(&s), "x", false, &mut owners),
            Err(ApplyError::Invalid(_))
        ));
        assert!(matches!(
            server_side_apply(None, &json!("x"), None, "x", false, &mut owners),
            Err(ApplyError::Invalid(_))
        ));
    }

    #[test]
    fn apply_builtin_metadata_granularity() {
        let mut owners = ManagedFields::default();
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d",
            "labels": {"a": "1"}, "finalizers": ["f1"], "ownerReferences": [{"uid": "u1", "name": "c"}]},
            "data": {"k": "dg=="}});
        let live = server_side_apply(None, &secret, None, "op", false, &mut owners).unwrap();
        let other = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d",
            "labels": {"b": "2"}, "finalizers": ["f2"], "ownerReferences": [{"uid": "u2", "name": "d"}]}});
        let live = server_side_apply(Some(&live), &other, None, "me", false, &mut owners).unwrap();
        assert_eq!(live["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(live["metadata"]["finalizers"], json!(["f1", "f2"]));
        assert_eq!(
            live["metadata"]["ownerReferences"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(live["data"], json!({"k": "dg=="}));
        // "op" drops its finalizer; "me" still applies its own.
        let mut less = secret.clone();
        less["metadata"]["finalizers"] = json!([]);
        let live = server_side_apply(Some(&live), &less, None, "op", false, &mut owners).unwrap();
        assert_eq!(live["metadata"]["finalizers"], json!(["f2"]));
    }

    #[test]
    fn updates_take_ownership_of_changed_fields() {
        let s = channel_schema();
        let mut owners = ManagedFields::default();
        let created =
            ch(json!({"spec": {"source": "google", "sourceChannelId": "a", "name": "n"}}));
        record_update(None, &created, "api", &mut owners);
        assert_eq!(owners.fields_of("api", Operation::Update).len(), 3);
        // An apply with a different name conflicts with the updater.
        let err = server_side_apply(
            Some(&created),
            &ch(json!({"spec": {"name": "m"}})),
            Some(&s),
            "kubectl",
            false,
            &mut owners,
        )
        .unwrap_err();
        assert!(matches!(err, ApplyError::Conflicts(ref c) if c[0].manager == "api"));
        let applied = server_side_apply(
            Some(&created),
            &ch(json!({"spec": {"name": "n"}})),
            Some(&s),
            "kubectl",
            false,
            &mut owners,
        )
        .unwrap();
        // A later update of the name by "editor" takes it from both.
        let mut edited = applied.clone();
        edited["spec"]["name"] = json!("e");
        record_update(Some(&applied), &edited, "editor", &mut owners);
        assert_eq!(owners.owners_of(".spec.name"), ["editor"]);
        assert_eq!(owners.owners_of(".spec.source"), ["api"]);
        // Removed fields are owned by nobody.
        let mut removed = edited.clone();
        removed["spec"].as_object_mut().unwrap().remove("name");
        record_update(Some(&edited), &removed, "editor", &mut owners);
        assert!(owners.owners_of(".spec.name").is_empty());
        assert!(owners.entries.iter().all(|e| e.manager != "editor"));
    }

    /// Expected results observed with `kubectl patch --local --type strategic -o json` (v1.32)
    /// on the same Secret.
    #[test]
    fn smp_list_order_matches_kubectl() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "data": {"x": "eA=="},
            "metadata": {"name": "s", "finalizers": ["a", "b"], "labels": {"a": "1"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Channel", "name": "one", "uid": "1"},
                                    {"apiVersion": "v1", "kind": "Channel", "name": "two", "uid": "2"}]}});
        let run = |p: Value| strategic_merge_patch(&secret, &p, "Secret").unwrap();
        let uids = |v: &Value| -> Vec<String> {
            v["metadata"]["ownerReferences"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["uid"].as_str().unwrap().to_string())
                .collect()
        };
        let out = run(json!({"metadata": {"finalizers": ["c"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let out = run(json!({"metadata": {"finalizers": ["b"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let out = run(json!({"metadata": {"ownerReferences": [{"uid": "3", "name": "n3"}]}}));
        assert_eq!(uids(&out), ["3", "1", "2"]);
        let out = run(json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "x"}]}}));
        assert_eq!(uids(&out), ["1", "2"]);
        assert_eq!(out["metadata"]["ownerReferences"][1]["kind"], "Channel");
        let out = run(
            json!({"metadata": {"$setElementOrder/ownerReferences": [{"uid": "2"}, {"uid": "1"}]}}),
        );
        assert_eq!(uids(&out), ["2", "1"]);
        let out = run(
            json!({"metadata": {"ownerReferences": [{"uid": "5", "name": "x"}],
            "$setElementOrder/ownerReferences": [{"uid": "2"}, {"uid": "5"}]}}),
        );
        assert_eq!(uids(&out), ["1", "2", "5"]);
        let out = run(
            json!({"metadata": {"$setElementOrder/finalizers": ["b", "z", "a"], "finalizers": ["z"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "z", "a"]));
        let out = run(json!({"data": {"$patch": "delete"}}));
        assert_eq!(out["data"], json!({}));
        let out = run(
            json!({"metadata": {"ownerReferences": [{"uid": "1", "$patch": "replace", "name": "r"}]}}),
        );
        assert_eq!(out["metadata"]["ownerReferences"], json!([]));
    }

    #[test]
    fn status_applies_are_tracked_apart_from_main_resource_applies() {
        let s = channel_schema();
        let mut owners = ManagedFields::default();
        let main = ch(json!({"metadata": {"name": "c", "namespace": "default",
            "finalizers": ["channels.airy.co/disconnect"]}}));
        let live = ch(json!({"spec": {"source": "google", "sourceChannelId": "a"}}));
        record_update(None, &live, "api", &mut owners);
        let live = server_side_apply(
            Some(&live),
            &main,
            Some(&s),
            "channel-operator",
            false,
            &mut owners,
        )
        .unwrap();
        let status = ch(json!({"status": {"connected": true, "observedGeneration": 1}}));
        let live = server_side_apply_to(
            Some(&live),
            &status,
            Some(&s),
            "channel-operator",
            "status",
            false,
            &mut owners,
        )
        .unwrap();
        assert_eq!(
            live["metadata"]["finalizers"],
            json!(["channels.airy.co/disconnect"])
        );
        assert_eq!(live["status"]["connected"], true);
        assert_eq!(live["spec"]["source"], "google");
        let mf = owners.to_managed_fields("airy.co/v1alpha1", "t");
        let entries = mf.as_array().unwrap();
        assert_eq!(entries.len(), 3);
        let main_entry = &entries[1];
        assert_eq!(main_entry["operation"], "Apply");
        assert!(main_entry.get("subresource").is_none());
        assert_eq!(
            main_entry["fieldsV1"],
            json!({"f:metadata": {"f:finalizers": {"v:\"channels.airy.co/disconnect\"": {}}}})
        );
        assert_eq!(entries[2]["subresource"], "status");
        assert_eq!(
            entries[2]["fieldsV1"],
            json!({"f:status": {"f:connected": {}, "f:observedGeneration": {}}})
        );
        // Re-applying status without observedGeneration removes only that field.
        let status2 = ch(json!({"status": {"connected": false}}));
        let live = server_side_apply_to(
            Some(&live),
            &status2,
            Some(&s),
            "channel-operator",
            "status",
            false,
            &mut owners,
        )
        .unwrap();
        assert_eq!(live["status"], json!({"connected": false}));
        assert_eq!(
            live["metadata"]["finalizers"],
            json!(["channels.airy.co/disconnect"])
        );
    }
}
