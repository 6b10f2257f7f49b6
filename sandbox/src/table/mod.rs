//! `meta.k8s.io/v1` Table responses (what `kubectl get` asks for): columns of built-in and
//! custom resources and their cells; the JSONPath subset additionalPrinterColumns use is in
//! `jsonpath`.

mod jsonpath;
#[cfg(test)]
mod tests;

use jsonpath::*;
use serde_json::{json, Value};

/// One column of a Table.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// Header, e.g. "Name".
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean, date.
    pub type_: String,
    /// OpenAPI format, e.g. "name" for the Name column.
    pub format: String,
    /// Description shown by `kubectl explain`-like tools.
    pub description: String,
    /// 0 shows by default; higher shows with `-o wide`.
    pub priority: i32,
    /// JSONPath of the value, e.g. `.spec.source`. Computed columns of built-in printers use
    /// internal markers starting with `@` (e.g. `@age:.metadata.creationTimestamp`) that only
    /// [`table`] understands.
    pub json_path: String,
}

/// Internal json_path markers for computed columns of built-in printers.
const AGE: &str = "@age:.metadata.creationTimestamp";
const COUNT_DATA: &str = "@count:.data";
const RFC3339_CREATED: &str = "@rfc3339:.metadata.creationTimestamp";
const EVENT_LAST_SEEN: &str = "@event-last-seen";
const EVENT_OBJECT: &str = "@event-object";

fn col(name: &str, type_: &str, format: &str, description: &str, json_path: &str) -> Column {
    Column {
        name: name.into(),
        type_: type_.into(),
        format: format.into(),
        description: description.into(),
        priority: 0,
        json_path: json_path.into(),
    }
}

fn name_column() -> Column {
    col("Name", "string", "name", NAME_DOC, ".metadata.name")
}

fn age_column() -> Column {
    col("Age", "string", "", CREATED_DOC, AGE)
}

/// Columns for a built-in resource (plural name, e.g. "secrets") as kube-apiserver prints them.
pub fn builtin_columns(resource: &str) -> Vec<Column> {
    match resource {
        "namespaces" => vec![
            name_column(),
            col("Status", "string", "", "The status of the namespace", "@str:.status.phase"),
            age_column(),
        ],
        "secrets" => vec![
            name_column(),
            col("Type", "string", "", "The type of the secret", "@str:.type"),
            col("Data", "integer", "", "The number of data entries in the secret", COUNT_DATA),
            age_column(),
        ],
        "events" => vec![
            col("Last Seen", "string", "", "Time when last this event was observed", EVENT_LAST_SEEN),
            col("Type", "string", "", "Type of this event (Normal, Warning), new types could be added in the future.", "@str:.type"),
            col("Reason", "string", "", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.", "@str:.reason"),
            col("Object", "string", "", "The object that this event is about.", EVENT_OBJECT),
            col("Message", "string", "", "A human-readable description of the status of this operation.", "@str:.message"),
        ],
        "leases" => vec![
            name_column(),
            col("Holder", "string", "", "The holder of the lease", "@str:.spec.holderIdentity"),
            age_column(),
        ],
        "customresourcedefinitions" => vec![
            name_column(),
            col("Created At", "date", "", CREATED_DOC, RFC3339_CREATED),
        ],
        _ => vec![name_column(), age_column()],
    }
}

/// Columns for a custom resource: Name, then its additionalPrinterColumns (None: Name and Age).
pub fn custom_columns(additional_printer_columns: Option<&Value>) -> Vec<Column> {
    let mut cols = vec![name_column()];
    let extra = additional_printer_columns
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    match extra {
        None => cols.push(col(
            "Age",
            "date",
            "",
            CREATED_DOC,
            ".metadata.creationTimestamp",
        )),
        Some(list) => {
            for c in list {
                let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                cols.push(Column {
                    name: s("name"),
                    type_: s("type"),
                    format: s("format"),
                    description: s("description"),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0) as i32,
                    json_path: s("jsonPath"),
                });
            }
        }
    }
    cols
}

/// Go's `duration.HumanDuration`, which kubectl and the apiserver use for ages.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age_of(ts: Option<&Value>) -> Value {
    match ts.and_then(Value::as_str) {
        None | Some("") => json!("<unknown>"),
        Some(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => json!(human_duration(
                chrono::Utc::now().signed_duration_since(t.with_timezone(&chrono::Utc))
            )),
            Err(_) => json!("<invalid>"),
        },
    }
}

fn first(object: &Value, path: &str) -> Option<Value> {
    jsonpath(object, path).ok()?.into_iter().next()
}

/// A cell of a custom-resource column, as apiextensions-apiserver's table convertor renders it.
fn cr_cell(c: &Column, object: &Value) -> Value {
    let Some(value) = first(object, &c.json_path) else {
        return Value::Null;
    };
    match c.type_.as_str() {
        "string" => match value {
            Value::String(s) => Value::String(s),
            Value::Null => Value::Null,
            other => Value::String(other.to_string()),
        },
        "integer" => match value.as_i64().or_else(|| value.as_f64().map(|f| f as i64)) {
            Some(i) => json!(i),
            None => Value::Null,
        },
        "number" => value.as_f64().map_or(Value::Null, |f| json!(f)),
        "boolean" => value.as_bool().map_or(Value::Null, Value::Bool),
        "date" => match value {
            Value::String(_) => age_of(Some(&value)),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

fn cell(c: &Column, object: &Value) -> Value {
    let path = c.json_path.as_str();
    if let Some(p) = path.strip_prefix("@age:") {
        return age_of(first(object, p).as_ref());
    }
    if let Some(p) = path.strip_prefix("@count:") {
        let n = first(object, p)
            .and_then(|v| v.as_object().map(|m| m.len()))
            .unwrap_or(0);
        return json!(n);
    }
    if let Some(p) = path.strip_prefix("@rfc3339:") {
        return first(object, p).unwrap_or(Value::Null);
    }
    if path == EVENT_OBJECT {
        let kind = first(object, ".involvedObject.kind")
            .and_then(|v| v.as_str().map(str::to_lowercase))
            .unwrap_or_default();
        let name = first(object, ".involvedObject.name")
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        return json!(format!("{kind}/{name}"));
    }
    if path == EVENT_LAST_SEEN {
        let ts = [
            ".series.lastObservedTime",
            ".lastTimestamp",
            ".firstTimestamp",
            ".eventTime",
        ]
        .iter()
        .find_map(|p| first(object, p).filter(|v| v.as_str().is_some_and(|s| !s.is_empty())));
        return age_of(ts.as_ref());
    }
    if path == ".metadata.name" {
        return first(object, path).unwrap_or(json!(""));
    }
    if let Some(p) = path.strip_prefix("@str:") {
        // Built-in printers print unset strings as "" where CR columns print null.
        return first(object, p).unwrap_or(json!(""));
    }
    cr_cell(c, object)
}

/// Builds a Table of `objects` (full objects, as stored). `include_object` is the
/// `includeObject` query parameter (None, Metadata default, Object). `list_metadata` is the
/// list's resourceVersion/continue.
pub fn table(
    columns: &[Column],
    objects: &[Value],
    include_object: &str,
    list_metadata: Value,
) -> Value {
    let defs: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.type_, "format": c.format,
                   "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = columns.iter().map(|c| cell(c, o)).collect();
            let mut row = json!({"cells": cells});
            match include_object {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": defs,
        "rows": rows,
    })
}
