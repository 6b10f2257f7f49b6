//! The JSONPath subset of kubectl and additionalPrinterColumns: `.a.b`, `[n]`, `[*]`, `..`
//! and filters `[?(@.k=="v")]`.

use super::*;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Seg {
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

pub(super) struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
    src: &'a str,
}

impl Cursor<'_> {
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    pub(super) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c == b' ') {
            self.pos += 1;
        }
    }
    pub(super) fn err(&self, what: &str) -> String {
        format!("error parsing jsonpath {:?}: {what}", self.src)
    }
    pub(super) fn ident(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'/' | b'$'))
        {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }
    pub(super) fn int(&mut self) -> Option<i64> {
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
    pub(super) fn quoted(&mut self) -> Result<String, String> {
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
    pub(super) fn segments(&mut self, in_filter: bool) -> Result<Vec<Seg>, String> {
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

pub(super) fn parse(path: &str) -> Result<Vec<Seg>, String> {
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

pub(super) fn descendants<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Object(m) => m.values().for_each(|c| descendants(c, out)),
        Value::Array(a) => a.iter().for_each(|c| descendants(c, out)),
        _ => {}
    }
}

pub(super) fn compare(actual: &Value, op: &str, literal: &Value) -> bool {
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

pub(super) fn eval<'a>(segs: &[Seg], roots: Vec<&'a Value>) -> Vec<&'a Value> {
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

pub(super) const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(super) const CREATED_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
