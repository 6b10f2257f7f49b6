//! OpenAPI v3 validation of a value against its structural schema.

use super::*;

/// A value as Go's `field.Error` prints it (`%q` for strings, `%v` for simple types).
pub(super) fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "\"null\"".into(),
        Value::String(s) => Value::String(s.clone()).to_string(),
        other => other.to_string(),
    }
}

pub(super) fn json_type(v: &Value) -> &'static str {
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

pub(super) fn invalid(path: &str, value: &Value, detail: String) -> FieldError {
    FieldError {
        reason: "FieldValueInvalid",
        field: path.to_string(),
        message: format!("{path}: Invalid value: {}: {detail}", go_value(value)),
    }
}

pub(super) fn num_str(v: &Value) -> String {
    v.to_string()
}

pub(super) fn type_matches(expected: &str, v: &Value) -> bool {
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

pub(super) fn format_ok(format: &str, v: &Value) -> bool {
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

pub(super) fn validate(
    schema: &Value,
    value: &Value,
    path: &str,
    root: bool,
    errors: &mut Vec<FieldError>,
) {
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
pub(super) fn validate_combinators(
    schema: &Value,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
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

pub(super) fn validate_string(
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

pub(super) fn validate_number(
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

pub(super) fn validate_array(
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

pub(super) fn duplicate(path: &str, v: &Value) -> FieldError {
    FieldError {
        reason: "FieldValueDuplicate",
        field: path.to_string(),
        message: format!("{path}: Duplicate value: {}", go_value(v)),
    }
}

pub(super) fn validate_object(
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
pub(super) fn old_item<'a>(
    schema: &Value,
    old: Option<&'a Value>,
    item: &Value,
) -> Option<&'a Value> {
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
