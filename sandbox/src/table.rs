//! `meta.k8s.io/v1` Table responses (what `kubectl get` asks for) and the JSONPath subset that
//! additionalPrinterColumns use.

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

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Field(String),
    Wildcard,
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Recursive,
    Filter {
        path: Vec<Seg>,
        op: Option<String>,
        literal: Value,
    },
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
    src: &'a str,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c == b' ') {
            self.pos += 1;
        }
    }
    fn err(&self, what: &str) -> String {
        format!("error parsing jsonpath {:?}: {what}", self.src)
    }
    fn ident(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'/' | b'$'))
        {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }
    fn int(&mut self) -> Option<i64> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos])
            .ok()?
            .parse()
            .ok()
    }
    fn quoted(&mut self) -> Result<String, String> {
        let q = self.peek().ok_or_else(|| self.err("unterminated string"))?;
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(|c| c != q) {
            self.pos += 1;
        }
        if !self.eat(q) {
            return Err(self.err("unterminated string"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos - 1]).into_owned())
    }

    /// Segments until the end or (inside a filter) a comparison operator or `)`.
    fn segments(&mut self, in_filter: bool) -> Result<Vec<Seg>, String> {
        let mut segs = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(b')' | b'=' | b'!' | b'<' | b'>') if in_filter => break,
                Some(b'.') => {
                    self.pos += 1;
                    if self.eat(b'.') {
                        segs.push(Seg::Recursive);
                    }
                    if self.eat(b'*') {
                        segs.push(Seg::Wildcard);
                        continue;
                    }
                    if self.peek() == Some(b'[') {
                        continue;
                    }
                    let name = self.ident();
                    if !name.is_empty() {
                        segs.push(Seg::Field(name));
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    match self.peek() {
                        Some(b'*') => {
                            self.pos += 1;
                            segs.push(Seg::Wildcard);
                        }
                        Some(b'\'' | b'"') => segs.push(Seg::Field(self.quoted()?)),
                        Some(b'?') => {
                            self.pos += 1;
                            if !self.eat(b'(') {
                                return Err(self.err("expected ( after ?"));
                            }
                            self.skip_ws();
                            if !self.eat(b'@') {
                                return Err(self.err("filter must start with @"));
                            }
                            let path = self.segments(true)?;
                            self.skip_ws();
                            let op = match (self.peek(), self.s.get(self.pos + 1).copied()) {
                                (Some(b')'), _) => None,
                                (Some(a @ (b'=' | b'!' | b'<' | b'>')), Some(b'=')) => {
                                    self.pos += 2;
                                    Some(format!("{}=", a as char))
                                }
                                (Some(a @ (b'<' | b'>')), _) => {
                                    self.pos += 1;
                                    Some((a as char).to_string())
                                }
                                _ => return Err(self.err("unsupported filter operator")),
                            };
                            let literal = if op.is_some() {
                                self.skip_ws();
                                match self.peek() {
                                    Some(b'\'' | b'"') => Value::String(self.quoted()?),
                                    _ => {
                                        let start = self.pos;
                                        while self.peek().is_some_and(|c| c != b')' && c != b' ') {
                                            self.pos += 1;
                                        }
                                        let raw = String::from_utf8_lossy(&self.s[start..self.pos])
                                            .into_owned();
                                        serde_json::from_str(&raw).unwrap_or(Value::String(raw))
                                    }
                                }
                            } else {
                                Value::Null
                            };
                            self.skip_ws();
                            if !self.eat(b')') {
                                return Err(self.err("expected ) to close the filter"));
                            }
                            segs.push(Seg::Filter { path, op, literal });
                        }
                        _ => {
                            let a = self.int();
                            self.skip_ws();
                            if self.eat(b':') {
                                self.skip_ws();
                                let b = self.int();
                                segs.push(Seg::Slice(a, b));
                            } else {
                                segs.push(Seg::Index(
                                    a.ok_or_else(|| self.err("invalid array index"))?,
                                ));
                            }
                        }
                    }
                    self.skip_ws();
                    if !self.eat(b']') {
                        return Err(self.err("expected ]"));
                    }
                }
                Some(_) if segs.is_empty() && !in_filter => {
                    // `metadata.name` without the leading dot.
                    let name = self.ident();
                    if name.is_empty() {
                        return Err(self.err("unexpected character"));
                    }
                    segs.push(Seg::Field(name));
                }
                Some(c) => return Err(self.err(&format!("unexpected character {:?}", c as char))),
            }
        }
        Ok(segs)
    }
}

fn parse(path: &str) -> Result<Vec<Seg>, String> {
    let mut p = path.trim();
    if let Some(inner) = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        p = inner.trim();
    }
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut c = Cursor {
        s: p.as_bytes(),
        pos: 0,
        src: path,
    };
    c.segments(false)
}

fn descendants<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Object(m) => m.values().for_each(|c| descendants(c, out)),
        Value::Array(a) => a.iter().for_each(|c| descendants(c, out)),
        _ => {}
    }
}

fn compare(actual: &Value, op: &str, literal: &Value) -> bool {
    let num = |v: &Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    match op {
        "==" => actual == literal || (num(actual).is_some() && num(actual) == num(literal)),
        "!=" => !(actual == literal || (num(actual).is_some() && num(actual) == num(literal))),
        _ => match (num(actual), num(literal)) {
            (Some(a), Some(b)) => match op {
                "<" => a < b,
                "<=" => a <= b,
                ">" => a > b,
                ">=" => a >= b,
                _ => false,
            },
            _ => false,
        },
    }
}

fn eval<'a>(segs: &[Seg], roots: Vec<&'a Value>) -> Vec<&'a Value> {
    let mut cur = roots;
    for seg in segs {
        let mut next = Vec::new();
        for v in cur {
            match seg {
                Seg::Field(name) => {
                    if let Some(c) = v.get(name.as_str()) {
                        next.push(c);
                    }
                }
                Seg::Wildcard => match v {
                    Value::Object(m) => next.extend(m.values()),
                    Value::Array(a) => next.extend(a.iter()),
                    _ => {}
                },
                Seg::Index(i) => {
                    if let Value::Array(a) = v {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        if let Some(c) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(c);
                        }
                    }
                }
                Seg::Slice(a, b) => {
                    if let Value::Array(arr) = v {
                        let len = arr.len() as i64;
                        let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                        let start = norm(a.unwrap_or(0)) as usize;
                        let end = norm(b.unwrap_or(len)) as usize;
                        if start < end {
                            next.extend(arr[start..end].iter());
                        }
                    }
                }
                Seg::Recursive => descendants(v, &mut next),
                Seg::Filter { path, op, literal } => {
                    let items: Vec<&Value> = match v {
                        Value::Array(a) => a.iter().collect(),
                        other => vec![other],
                    };
                    for item in items {
                        let found = eval(path, vec![item]);
                        let keep = match op {
                            None => !found.is_empty(),
                            Some(op) => found.iter().any(|f| compare(f, op, literal)),
                        };
                        if keep {
                            next.push(item);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// Evaluates a kubectl-style JSONPath (`.a.b`, `[n]`, `[*]`, `[?(@.k=="v")]`) against an object.
pub fn jsonpath(object: &Value, path: &str) -> Result<Vec<Value>, String> {
    let segs = parse(path)?;
    Ok(eval(&segs, vec![object]).into_iter().cloned().collect())
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn conds() -> Value {
        json!({"metadata": {"name": "x"}, "status": {"conditions": [
            {"type": "Synced", "status": "False"},
            {"type": "Ready", "status": "True", "n": 2}
        ]}})
    }

    #[test]
    fn jsonpath_subset() {
        let o = conds();
        assert_eq!(jsonpath(&o, ".metadata.name").unwrap(), vec![json!("x")]);
        assert_eq!(jsonpath(&o, "{.metadata.name}").unwrap(), vec![json!("x")]);
        assert_eq!(jsonpath(&o, "metadata.name").unwrap(), vec![json!("x")]);
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status").unwrap(),
            vec![json!("True")]
        );
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type!='Ready')].type").unwrap(),
            vec![json!("Synced")]
        );
        assert_eq!(
            jsonpath(&o, ".status.conditions[*].type").unwrap(),
            vec![json!("Synced"), json!("Ready")]
        );
        assert_eq!(
            jsonpath(&o, ".status.conditions[1].n").unwrap(),
            vec![json!(2)]
        );
        assert_eq!(
            jsonpath(&o, ".status.conditions[-1].type").unwrap(),
            vec![json!("Ready")]
        );
        assert_eq!(
            jsonpath(&o, "..type").unwrap(),
            vec![json!("Synced"), json!("Ready")]
        );
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.n>1)].type").unwrap(),
            vec![json!("Ready")]
        );
        assert_eq!(
            jsonpath(&o, "['metadata']['name']").unwrap(),
            vec![json!("x")]
        );
        assert!(jsonpath(&o, ".spec.missing").unwrap().is_empty());
        assert!(jsonpath(&o, ".a[?(@.b==1").is_err());
        assert!(jsonpath(&o, ".a[x]").is_err());
    }

    #[test]
    fn human_durations_like_kubectl() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(5)), "5s");
        assert_eq!(human_duration(d(119)), "119s");
        assert_eq!(human_duration(d(5 * 60 + 3)), "5m3s");
        assert_eq!(human_duration(d(5 * 60)), "5m");
        assert_eq!(human_duration(d(90 * 60)), "90m");
        assert_eq!(human_duration(d(4 * 3600 + 120)), "4h2m");
        assert_eq!(human_duration(d(20 * 3600)), "20h");
        assert_eq!(human_duration(d(51 * 3600)), "2d3h");
        assert_eq!(human_duration(d(30 * 86400)), "30d");
        assert_eq!(human_duration(d(3 * 365 * 86400 + 86400)), "3y1d");
        assert_eq!(human_duration(d(-5)), "<invalid>");
    }

    #[test]
    fn channel_table_like_kubectl_get() {
        let crd = serde_json::to_value(channel_operator::crd::Channel::crd()).unwrap();
        let cols = custom_columns(Some(
            &crd["spec"]["versions"][0]["additionalPrinterColumns"],
        ));
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Source",
                "Source ID",
                "Name",
                "Connected",
                "Ready",
                "Reason",
                "Stalled",
                "Channel ID",
                "Age"
            ]
        );
        let created = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
        let ch = json!({"apiVersion": "airy.co/v1alpha1", "kind": "Channel",
            "metadata": {"name": "c1", "namespace": "default", "creationTimestamp": created},
            "spec": {"source": "google", "sourceChannelId": "agent"},
            "status": {"connected": true, "conditions": [{"type": "Ready", "status": "True"}]}});
        let t = table(
            &cols,
            std::slice::from_ref(&ch),
            "Metadata",
            json!({"resourceVersion": "7"}),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["columnDefinitions"][4]["type"], "boolean");
        let cells = &t["rows"][0]["cells"];
        assert_eq!(
            cells,
            &json!(["c1", "google", "agent", null, true, "True", null, null, null, "5m"])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "c1");
        let full = table(&cols, std::slice::from_ref(&ch), "Object", json!({}));
        assert_eq!(full["rows"][0]["object"], ch);
        let none = table(&cols, &[ch], "None", json!({}));
        assert!(none["rows"][0].get("object").is_none());
    }

    #[test]
    fn default_and_builtin_columns() {
        let cols = custom_columns(None);
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[1].name, "Age");
        assert_eq!(cols[1].type_, "date");

        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA==", "b": "eQ=="}});
        let t = table(&builtin_columns("secrets"), &[secret], "None", json!({}));
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["s", "Opaque", 2, "<unknown>"])
        );

        let ev = json!({"metadata": {"name": "e"}, "type": "Warning", "reason": "Failed",
            "message": "boom", "involvedObject": {"kind": "Channel", "name": "c1"},
            "lastTimestamp": (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339()});
        let t = table(&builtin_columns("events"), &[ev], "None", json!({}));
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["3h", "Warning", "Failed", "channel/c1", "boom"])
        );

        let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "pod-1"}});
        let t = table(&builtin_columns("leases"), &[lease], "None", json!({}));
        assert_eq!(t["rows"][0]["cells"][1], "pod-1");

        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        let t = table(&builtin_columns("namespaces"), &[ns], "None", json!({}));
        assert_eq!(t["rows"][0]["cells"][0], "default");
        assert_eq!(t["rows"][0]["cells"][1], "Active");
        assert!(t["rows"][0]["cells"][2].as_str().unwrap().ends_with('>'));

        let crd = json!({"metadata": {"name": "channels.airy.co", "creationTimestamp": "2026-01-01T00:00:00Z"}});
        let t = table(
            &builtin_columns("customresourcedefinitions"),
            &[crd],
            "None",
            json!({}),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["channels.airy.co", "2026-01-01T00:00:00Z"])
        );
    }
}
