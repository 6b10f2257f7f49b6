//! Field ownership: field paths, managers and their owned fields, and how a schema says
//! lists and maps merge.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::apply::get_at;

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
    pub(super) fn is(&self, manager: &str, op: Operation, subresource: &str) -> bool {
        self.manager == manager && self.operation == op && self.subresource == subresource
    }
}

/// Field ownership of one object, per field manager, kept by the server beside the object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManagedFields {
    /// Entries in the order managers first wrote.
    pub entries: Vec<ManagerEntry>,
}

impl ManagedFields {
    pub(super) fn entry_mut(
        &mut self,
        manager: &str,
        op: Operation,
        subresource: &str,
    ) -> &mut ManagerEntry {
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

    /// Drops ownership of fields that no longer exist and managers that own nothing.
    pub(super) fn prune(&mut self, object: &Value) {
        for e in &mut self.entries {
            e.fields.retain(|p| get_at(object, p).is_some());
        }
        self.entries.retain(|e| !e.fields.is_empty());
    }
}

/// How a schema node merges.
pub(super) enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

pub(super) fn list_type(schema: Option<&Value>) -> ListType {
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

pub(super) fn is_atomic_map(schema: Option<&Value>) -> bool {
    schema
        .and_then(|s| s.get("x-kubernetes-map-type"))
        .and_then(Value::as_str)
        == Some("atomic")
}

pub(super) fn child_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

/// The schema SSA merges with: the CRD's (or nothing for built-ins) plus the metadata fields
/// every kind shares.
pub(super) fn effective_schema(schema: Option<&Value>) -> Value {
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
