//! Structural-schema handling of custom resources as kube-apiserver does it: pruning of unknown
//! fields, defaulting, OpenAPI v3 validation and CEL rules (`x-kubernetes-validations`).

use serde_json::{Map, Value};

/// One invalid field, as a `StatusCause` of a 422 Invalid Status.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// kube-apiserver's cause reason: FieldValueInvalid, FieldValueRequired,
    /// FieldValueNotSupported, FieldValueTypeInvalid, FieldValueTooLong, ...
    pub reason: &'static str,
    /// The field path, e.g. `spec.name`.
    pub field: String,
    /// The whole message, e.g. `spec.name: Invalid value: "": spec.name in body should be at least 1 chars long`.
    pub message: String,
}

impl FieldError {
    /// The message without the leading `<field>: `, which is what kube-apiserver puts in a
    /// `StatusCause.message` (kubectl prints `<field>: <cause message>` itself).
    pub fn body(&self) -> &str {
        self.message
            .strip_prefix(self.field.as_str())
            .and_then(|m| m.strip_prefix(": "))
            .unwrap_or(&self.message)
    }
}

/// What schema processing did to an object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchemaOutcome {
    /// Paths of unknown fields that were pruned, e.g. `.spec.foo` (a Strict field validation
    /// request fails on these; Warn returns them as warnings).
    pub pruned: Vec<String>,
    /// Validation errors; non-empty means 422 Invalid.
    pub errors: Vec<FieldError>,
}

/// Prunes unknown fields, applies defaults, then validates `object` against `schema` (the CRD
/// version's `openAPIV3Schema`), including CEL rules; `old` is the stored object on updates (for
/// transition rules such as `self == oldSelf`). `apiVersion`, `kind` and `metadata` are left to the
/// server.
pub fn prune_default_validate(
    schema: &Value,
    object: &mut Value,
    old: Option<&Value>,
) -> SchemaOutcome {
    let mut out = SchemaOutcome::default();
    prune(schema, object, "", true, &mut out.pruned);
    default(schema, object, true);
    validate(schema, object, "", true, &mut out.errors);
    // kube-apiserver skips CEL when the object has type or enum errors: the rules would see
    // values of the wrong shape.
    let blocking = out
        .errors
        .iter()
        .any(|e| matches!(e.reason, "FieldValueTypeInvalid" | "FieldValueNotSupported"));
    if blocking {
        out.errors.push(FieldError {
            reason: "FieldValueInvalid",
            field: "<nil>".into(),
            message: "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
        });
    } else {
        cel(schema, object, old, "", true, &mut out.errors);
    }
    out
}

const META_KEYS: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Keys kept as they are: the identity of the root object and of embedded resources.
fn is_meta_key(schema: &Value, key: &str, root: bool) -> bool {
    (root || flag(schema, "x-kubernetes-embedded-resource")) && META_KEYS.contains(&key)
}

/// The schema of a map's value under `key`: a property, else `additionalProperties` (if a schema).
fn field_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

fn prune(schema: &Value, value: &mut Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields")
                || schema.get("additionalProperties") == Some(&Value::Bool(true));
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if is_meta_key(schema, &key, root) {
                    continue;
                }
                let p = child_path(path, &key);
                match field_schema(schema, &key) {
                    Some(sub) => {
                        let nullable = flag(sub, "nullable");
                        if map[&key].is_null() && !nullable && sub.get("default").is_none() {
                            // kube-apiserver drops nulls the schema does not allow.
                            map.remove(&key);
                        } else if let Some(v) = map.get_mut(&key) {
                            prune(sub, v, &p, false, pruned);
                        }
                    }
                    None if preserve => {}
                    None => {
                        map.remove(&key);
                        pruned.push(format!(".{p}"));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

fn default(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in props {
                    if is_meta_key(schema, key, root) {
                        continue;
                    }
                    let Some(d) = sub.get("default") else {
                        continue;
                    };
                    let missing = match map.get(key) {
                        None => true,
                        Some(Value::Null) => !flag(sub, "nullable"),
                        Some(_) => false,
                    };
                    if missing {
                        map.insert(key.clone(), d.clone());
                    }
                }
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if is_meta_key(schema, &key, root) {
                    continue;
                }
                if let (Some(sub), Some(v)) = (field_schema(schema, &key), map.get_mut(&key)) {
                    default(sub, v, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}

/// A value as Go's `field.Error` prints it (`%q` for strings, `%v` for simple types).
fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "\"null\"".into(),
        Value::String(s) => Value::String(s.clone()).to_string(),
        other => other.to_string(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn invalid(path: &str, value: &Value, detail: String) -> FieldError {
    FieldError {
        reason: "FieldValueInvalid",
        field: path.to_string(),
        message: format!("{path}: Invalid value: {}: {detail}", go_value(value)),
    }
}

fn num_str(v: &Value) -> String {
    v.to_string()
}

fn type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => true,
    }
}

fn format_ok(format: &str, v: &Value) -> bool {
    use base64::Engine;
    match (format, v) {
        ("int32", Value::Number(n)) => n.as_i64().is_none_or(|i| i32::try_from(i).is_ok()),
        ("date-time", Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        ("date", Value::String(s)) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        ("byte", Value::String(s)) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .is_ok(),
        ("uuid", Value::String(s)) => uuid::Uuid::try_parse(s).is_ok() && s.len() == 36,
        _ => true,
    }
}

fn validate(schema: &Value, value: &Value, path: &str, root: bool, errors: &mut Vec<FieldError>) {
    let in_body = |detail: &str| format!("{path} in body {detail}");
    // nullable / type
    if value.is_null() {
        if flag(schema, "nullable") {
            return;
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            errors.push(FieldError {
                reason: "FieldValueTypeInvalid",
                field: path.to_string(),
                message: format!(
                    "{path}: Invalid value: \"null\": {}",
                    in_body(&format!("must be of type {t}: \"null\""))
                ),
            });
        }
        return;
    }
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    if int_or_string {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(FieldError {
                reason: "FieldValueTypeInvalid",
                field: path.to_string(),
                message: format!(
                    "{path}: Invalid value: \"{}\": {}",
                    json_type(value),
                    in_body(&format!(
                        "must be of type integer,string: \"{}\"",
                        json_type(value)
                    ))
                ),
            });
            return;
        }
    } else if let Some(t) = schema.get("type").and_then(Value::as_str) {
        if !type_matches(t, value) {
            let actual = json_type(value);
            errors.push(FieldError {
                reason: "FieldValueTypeInvalid",
                field: path.to_string(),
                message: format!(
                    "{path}: Invalid value: \"{actual}\": {}",
                    in_body(&format!("must be of type {t}: \"{actual}\""))
                ),
            });
            return;
        }
    }
    // enum
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(go_value).collect();
            errors.push(FieldError {
                reason: "FieldValueNotSupported",
                field: path.to_string(),
                message: format!(
                    "{path}: Unsupported value: {}: supported values: {}",
                    go_value(value),
                    list.join(", ")
                ),
            });
        }
    }
    // format
    if let Some(f) = schema.get("format").and_then(Value::as_str) {
        if !format_ok(f, value) {
            errors.push(invalid(
                path,
                value,
                in_body(&format!("must be of type {f}: {}", go_value(value))),
            ));
        }
    }
    validate_combinators(schema, value, path, errors);
    match value {
        Value::String(s) => validate_string(schema, s, value, path, errors),
        Value::Number(n) => validate_number(schema, n, value, path, errors),
        Value::Array(items) => validate_array(schema, items, value, path, errors),
        Value::Object(map) => validate_object(schema, map, value, path, root, errors),
        _ => {}
    }
}

/// allOf / anyOf / oneOf / not, which structural schemas allow as value validations.
fn validate_combinators(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let passes = |sub: &Value| {
        let mut errs = Vec::new();
        validate(sub, value, path, false, &mut errs);
        errs.is_empty()
    };
    let list = |k: &str| schema.get(k).and_then(Value::as_array);
    if let Some(subs) = list("allOf") {
        for sub in subs {
            validate(sub, value, path, false, errors);
        }
    }
    if let Some(subs) = list("anyOf") {
        if !subs.iter().any(passes) {
            errors.push(invalid(
                path,
                value,
                format!("{path} in body must validate at least one schema (anyOf)"),
            ));
        }
    }
    if let Some(subs) = list("oneOf") {
        if subs.iter().filter(|s| passes(s)).count() != 1 {
            errors.push(invalid(
                path,
                value,
                format!("{path} in body must validate one and only one schema (oneOf)"),
            ));
        }
    }
    if let Some(sub) = schema.get("not") {
        if passes(sub) {
            errors.push(invalid(
                path,
                value,
                format!("{path} in body must not validate the schema (not)"),
            ));
        }
    }
}

fn validate_string(
    schema: &Value,
    s: &str,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let chars = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if chars < min {
            errors.push(invalid(
                path,
                value,
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if chars > max {
            errors.push(FieldError {
                reason: "FieldValueTooLong",
                field: path.to_string(),
                message: format!("{path}: Too long: may not be more than {max} bytes"),
            });
        }
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => errors.push(invalid(
                path,
                value,
                format!("{path} in body should match '{pattern}'"),
            )),
            Ok(_) => {}
            Err(e) => errors.push(invalid(path, value, format!("invalid pattern: {e}"))),
        }
    }
}

fn validate_number(
    schema: &Value,
    n: &serde_json::Number,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let x = n.as_f64().unwrap_or(0.0);
    if let Some(min) = schema.get("minimum") {
        let excl = flag(schema, "exclusiveMinimum");
        let m = min.as_f64().unwrap_or(f64::MIN);
        if (excl && x <= m) || (!excl && x < m) {
            let rel = if excl {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errors.push(invalid(
                path,
                value,
                format!("{path} in body should be {rel} {}", num_str(min)),
            ));
        }
    }
    if let Some(max) = schema.get("maximum") {
        let excl = flag(schema, "exclusiveMaximum");
        let m = max.as_f64().unwrap_or(f64::MAX);
        if (excl && x >= m) || (!excl && x > m) {
            let rel = if excl {
                "less than"
            } else {
                "less than or equal to"
            };
            errors.push(invalid(
                path,
                value,
                format!("{path} in body should be {rel} {}", num_str(max)),
            ));
        }
    }
    if let Some(mult) = schema.get("multipleOf").and_then(Value::as_f64) {
        if mult > 0.0 && (x / mult).fract().abs() > 1e-9 {
            errors.push(invalid(
                path,
                value,
                format!("{path} in body should be a multiple of {mult}"),
            ));
        }
    }
}

fn validate_array(
    schema: &Value,
    items: &[Value],
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let len = items.len() as u64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
        if len < min {
            errors.push(invalid(
                path,
                value,
                format!("{path} in body should have at least {min} items"),
            ));
        }
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
        if len > max {
            errors.push(FieldError {
                reason: "FieldValueTooMany",
                field: path.to_string(),
                message: format!("{path}: Too many: {len}: must have at most {max} items"),
            });
        }
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errors.push(duplicate(&format!("{path}[{i}]"), item));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |item: &Value| -> Value {
                let mut m = Map::new();
                for k in &keys {
                    if let Some(v) = item.get(*k) {
                        m.insert((*k).to_string(), v.clone());
                    }
                }
                Value::Object(m)
            };
            let all: Vec<Value> = items.iter().map(key_of).collect();
            for i in 0..all.len() {
                if all[..i].contains(&all[i]) {
                    errors.push(duplicate(&format!("{path}[{i}]"), &all[i]));
                }
            }
        }
        _ => {
            if flag(schema, "uniqueItems") {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        errors.push(duplicate(&format!("{path}[{i}]"), item));
                    }
                }
            }
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{path}[{i}]"), false, errors);
        }
    }
}

fn duplicate(path: &str, v: &Value) -> FieldError {
    FieldError {
        reason: "FieldValueDuplicate",
        field: path.to_string(),
        message: format!("{path}: Duplicate value: {}", go_value(v)),
    }
}

fn validate_object(
    schema: &Value,
    map: &Map<String, Value>,
    value: &Value,
    path: &str,
    root: bool,
    errors: &mut Vec<FieldError>,
) {
    let count = map.keys().filter(|k| !is_meta_key(schema, k, root)).count() as u64;
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
        if count < min {
            errors.push(invalid(
                path,
                value,
                format!("{path} in body should have at least {min} properties"),
            ));
        }
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
        if count > max {
            errors.push(FieldError {
                reason: "FieldValueTooMany",
                field: path.to_string(),
                message: format!("{path}: Too many: {count}: must have at most {max} items"),
            });
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if is_meta_key(schema, key, root) {
                continue;
            }
            if !map.contains_key(key) {
                let p = child_path(path, key);
                errors.push(FieldError {
                    reason: "FieldValueRequired",
                    field: p.clone(),
                    message: format!("{p}: Required value"),
                });
            }
        }
    }
    for (key, v) in map {
        if is_meta_key(schema, key, root) {
            continue;
        }
        if let Some(sub) = field_schema(schema, key) {
            validate(sub, v, &child_path(path, key), false, errors);
        }
    }
}

/// Matching old value of an array item, the way kube-apiserver correlates them for transition
/// rules: map lists by their keys, sets by value; atomic lists are not correlated.
fn old_item<'a>(schema: &Value, old: Option<&'a Value>, item: &Value) -> Option<&'a Value> {
    let old = old?.as_array()?;
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => old.iter().find(|o| *o == item),
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            old.iter()
                .find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k)))
        }
        _ => None,
    }
}

/// A copy of `schema` without the rules of its descendants, so the CEL evaluator runs only
/// this node's rules (the walk below visits each node itself).
fn only_own_rules(schema: &Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("x-kubernetes-validations");
                for (_, child) in m.iter_mut() {
                    strip(child);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut out = schema.clone();
    if let Value::Object(m) = &mut out {
        for (k, child) in m.iter_mut() {
            if k != "x-kubernetes-validations" {
                strip(child);
            }
        }
    }
    out
}

thread_local! {
    static CEL: kube::core::cel::Validator = kube::core::cel::Validator::new();
}

fn cel(
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    root: bool,
    errors: &mut Vec<FieldError>,
) {
    if value.is_null() {
        return;
    }
    if schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty())
    {
        let node_type = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_else(|| json_type(value));
        let own = only_own_rules(schema);
        let result = CEL.with(|v| v.validate(&own, value, old));
        if let Err(errs) = result {
            for e in errs.into_vec() {
                let field = match e.field_path.as_str() {
                    "" => path.to_string(),
                    fp if fp.starts_with('.') && path.is_empty() => fp[1..].to_string(),
                    fp if fp.starts_with('.') || fp.starts_with('[') => format!("{path}{fp}"),
                    fp => child_path(path, fp),
                };
                errors.push(cel_error(field, node_type, &e.message, e.reason.as_deref()));
            }
        }
    }
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if is_meta_key(schema, key, root) {
                    continue;
                }
                if let Some(sub) = field_schema(schema, key) {
                    let o = old.and_then(|o| o.get(key));
                    cel(sub, v, o, &child_path(path, key), false, errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let o = old_item(schema, old, item);
                    cel(item_schema, item, o, &format!("{path}[{i}]"), false, errors);
                }
            }
        }
        _ => {}
    }
}

fn cel_error(field: String, node_type: &str, message: &str, reason: Option<&str>) -> FieldError {
    match reason {
        Some("FieldValueForbidden") => FieldError {
            reason: "FieldValueForbidden",
            message: format!("{field}: Forbidden: {message}"),
            field,
        },
        Some("FieldValueRequired") => FieldError {
            reason: "FieldValueRequired",
            message: format!("{field}: Required value: {message}"),
            field,
        },
        Some("FieldValueDuplicate") => FieldError {
            reason: "FieldValueDuplicate",
            message: format!("{field}: Duplicate value: \"{node_type}\""),
            field,
        },
        _ => FieldError {
            reason: "FieldValueInvalid",
            message: format!("{field}: Invalid value: \"{node_type}\": {message}"),
            field,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::json;

    fn channel_schema() -> Value {
        let crd = serde_json::to_value(channel_operator::crd::Channel::crd()).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    fn channel(spec: Value) -> Value {
        json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel",
               "metadata": {"name": "c", "namespace": "default", "unknownMeta": 1}, "spec": spec})
    }

    fn messages(o: &SchemaOutcome) -> Vec<String> {
        o.errors.iter().map(|e| e.message.clone()).collect()
    }

    #[test]
    fn defaults_and_pruning() {
        let s = channel_schema();
        let mut obj = channel(json!({"source": "google", "sourceChannelId": "agent", "foo": 1}));
        obj["bogus"] = json!(true);
        obj["status"] = json!({"id": null, "extra": {"x": 1}});
        let out = prune_default_validate(&s, &mut obj, None);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let mut pruned = out.pruned.clone();
        pruned.sort();
        assert_eq!(pruned, vec![".bogus", ".spec.foo", ".status.extra"]);
        assert_eq!(obj["spec"]["connected"], json!(true));
        assert_eq!(obj["spec"]["deletionPolicy"], json!("Disconnect"));
        // metadata is the server's business.
        assert_eq!(obj["metadata"]["unknownMeta"], json!(1));
        // status.id is nullable: an explicit null stays; status.connected gets its default.
        assert_eq!(obj["status"]["id"], Value::Null);
        assert_eq!(obj["status"]["connected"], json!(false));
    }

    #[test]
    fn explicit_values_win_over_defaults_and_non_nullable_nulls_are_defaulted() {
        let s = channel_schema();
        let mut obj = channel(json!({"source": "google", "sourceChannelId": "a",
            "connected": null, "deletionPolicy": "Orphan"}));
        let out = prune_default_validate(&s, &mut obj, None);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(obj["spec"]["connected"], json!(true));
        assert_eq!(obj["spec"]["deletionPolicy"], json!("Orphan"));
    }

    #[test]
    fn schema_errors_use_apiserver_wording() {
        let s = channel_schema();
        let mut obj = channel(
            json!({"source": "google", "sourceChannelId": "a", "name": "",
            "imageUrl": "ftp://x"}),
        );
        let out = prune_default_validate(&s, &mut obj, None);
        assert_eq!(
            messages(&out),
            vec![
                "spec.imageUrl: Invalid value: \"ftp://x\": spec.imageUrl in body should match '^https?://[^\\s/?#]+([/?#][^\\s]*)?$'",
                "spec.name: Invalid value: \"\": spec.name in body should be at least 1 chars long",
            ]
        );
        assert!(out.errors.iter().all(|e| e.reason == "FieldValueInvalid"));
        assert_eq!(
            out.errors[1].body(),
            "Invalid value: \"\": spec.name in body should be at least 1 chars long"
        );
        assert_eq!(out.errors[1].field, "spec.name");

        let mut obj = channel(json!({"source": "sms", "sourceChannelId": "a"}));
        let out = prune_default_validate(&s, &mut obj, None);
        assert_eq!(out.errors[0].reason, "FieldValueNotSupported");
        assert_eq!(
            out.errors[0].message,
            "spec.source: Unsupported value: \"sms\": supported values: \"chat_plugin\", \"facebook\", \"google\", \"twilio.sms\", \"twilio.whatsapp\""
        );

        let mut obj = channel(json!({"source": "google"}));
        let out = prune_default_validate(&s, &mut obj, None);
        assert_eq!(messages(&out), vec!["spec.sourceChannelId: Required value"]);
        assert_eq!(out.errors[0].reason, "FieldValueRequired");

        let mut obj =
            channel(json!({"source": "google", "sourceChannelId": 5, "name": "x".repeat(1025)}));
        let out = prune_default_validate(&s, &mut obj, None);
        let m = messages(&out);
        assert!(
            m.contains(&"spec.name: Too long: may not be more than 1024 bytes".to_string()),
            "{m:?}"
        );
        assert!(m.contains(&"spec.sourceChannelId: Invalid value: \"integer\": spec.sourceChannelId in body must be of type string: \"integer\"".to_string()), "{m:?}");
        // A type error blocks CEL, as in kube-apiserver.
        assert!(m
            .last()
            .unwrap()
            .contains("some validation rules were not checked"));
    }

    #[test]
    fn cel_rules_of_the_channel_crd() {
        let s = channel_schema();
        let mut fb = channel(json!({"source": "facebook", "sourceChannelId": "123"}));
        let out = prune_default_validate(&s, &mut fb, None);
        assert_eq!(
            messages(&out),
            vec!["spec.credentialsSecretRef: Invalid value: \"object\": credentialsSecretRef is required for facebook channels (the Secret holding the page token)"]
        );
        assert_eq!(out.errors[0].field, "spec.credentialsSecretRef");

        let mut sms = channel(json!({"source": "twilio.sms", "sourceChannelId": "+49 123"}));
        let out = prune_default_validate(&s, &mut sms, None);
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert_eq!(out.errors[0].field, "spec.sourceChannelId");
        assert!(out.errors[0]
            .message
            .contains("a twilio.sms sourceChannelId must be an E.164 number"));

        let mut ok = channel(json!({"source": "twilio.sms", "sourceChannelId": "+49123"}));
        assert!(prune_default_validate(&s, &mut ok, None).errors.is_empty());
    }

    #[test]
    fn transition_rules_run_only_on_updates() {
        let s = channel_schema();
        let old = channel(
            json!({"source": "google", "sourceChannelId": "a", "connected": true,
            "deletionPolicy": "Disconnect"}),
        );
        let mut changed = channel(json!({"source": "chat_plugin", "sourceChannelId": "a"}));
        let out = prune_default_validate(&s, &mut changed, Some(&old));
        assert_eq!(
            messages(&out),
            vec!["spec.source: Invalid value: \"string\": source is immutable"]
        );
        let mut same = channel(json!({"source": "google", "sourceChannelId": "a", "name": "n"}));
        assert!(prune_default_validate(&s, &mut same, Some(&old))
            .errors
            .is_empty());
        let mut created = channel(json!({"source": "chat_plugin", "sourceChannelId": "b"}));
        assert!(prune_default_validate(&s, &mut created, None)
            .errors
            .is_empty());
    }

    #[test]
    fn generic_keywords() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "n": {"type": "integer", "minimum": 1, "maximum": 5, "exclusiveMaximum": true},
            "t": {"type": "string", "format": "date-time"},
            "u": {"type": "string", "format": "uuid"},
            "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}, "maxItems": 3},
            "conds": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                      "items": {"type": "object", "properties": {"type": {"type": "string"}, "x": {"type": "integer", "default": 7}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 2},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "obj": {"type": "object", "default": {}, "properties": {"d": {"type": "string", "default": "dd"}}}
        }}}});
        let mut obj = json!({"spec": {"n": 5, "t": "yesterday", "u": "not-a-uuid",
            "set": ["a", "b", "a", "c"],
            "conds": [{"type": "A"}, {"type": "A", "x": 1}],
            "labels": {"a": "1", "b": 2},
            "free": {"anything": {"goes": true}}}});
        let out = prune_default_validate(&s, &mut obj, None);
        assert!(out.pruned.is_empty());
        assert_eq!(obj["spec"]["obj"], json!({"d": "dd"}));
        assert_eq!(obj["spec"]["conds"][0]["x"], json!(7));
        assert_eq!(obj["spec"]["free"]["anything"]["goes"], json!(true));
        let m = messages(&out);
        for want in [
            "spec.n: Invalid value: 5: spec.n in body should be less than 5",
            "spec.t: Invalid value: \"yesterday\": spec.t in body must be of type date-time: \"yesterday\"",
            "spec.u: Invalid value: \"not-a-uuid\": spec.u in body must be of type uuid: \"not-a-uuid\"",
            "spec.set[2]: Duplicate value: \"a\"",
            "spec.set: Too many: 4: must have at most 3 items",
            "spec.conds[1]: Duplicate value: {\"type\":\"A\"}",
            "spec.labels.b: Invalid value: \"integer\": spec.labels.b in body must be of type string: \"integer\"",
        ] {
            assert!(m.contains(&want.to_string()), "missing {want:?} in {m:#?}");
        }
    }

    #[test]
    fn cel_message_expression_and_reason() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.a < 3", "messageExpression": "'a is ' + string(self.a)",
                                          "reason": "FieldValueForbidden"}],
            "properties": {"a": {"type": "integer"}}}}});
        let mut obj = json!({"spec": {"a": 4}});
        let out = prune_default_validate(&s, &mut obj, None);
        assert_eq!(messages(&out), vec!["spec: Forbidden: a is 4"]);
        assert_eq!(out.errors[0].reason, "FieldValueForbidden");
    }

    #[test]
    fn combinators() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
            "not": {"required": ["a", "b"]}}}});
        let mut none = json!({"spec": {}});
        assert_eq!(
            messages(&prune_default_validate(&s, &mut none, None)),
            vec!["spec: Invalid value: {}: spec in body must validate at least one schema (anyOf)"]
        );
        let mut both = json!({"spec": {"a": "x", "b": "y"}});
        assert_eq!(
            messages(&prune_default_validate(&s, &mut both, None)),
            vec!["spec: Invalid value: {\"a\":\"x\",\"b\":\"y\"}: spec in body must not validate the schema (not)"]
        );
        let mut one = json!({"spec": {"b": "y"}});
        assert!(prune_default_validate(&s, &mut one, None).errors.is_empty());
    }
}
