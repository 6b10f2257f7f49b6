//! Label and field selectors as kube-apiserver parses and matches them.

use serde_json::Value;

/// One operator of a label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelOp {
    /// `key=value` / `key==value`
    Equals,
    /// `key!=value` (matches objects without the key)
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)` (matches objects without the key)
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>1` (integer comparison, as apimachinery supports)
    GreaterThan,
    /// `key<1`
    LessThan,
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub op: LabelOp,
    /// The values (one for `=`/`!=`/`>`/`<`, a set for `in`/`notin`, none for exists).
    pub values: Vec<String>,
}

/// A parsed `labelSelector`: `=`, `==`, `!=`, `in`, `notin`, exists (`key`), not exists (`!key`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector {
    /// All requirements (ANDed). Empty matches everything.
    pub requirements: Vec<LabelRequirement>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Bang,
    Comma,
    Eq,
    DoubleEq,
    NotEq,
    In,
    NotIn,
    Open,
    Close,
    Gt,
    Lt,
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Bang => "!".into(),
            Tok::Comma => ",".into(),
            Tok::Eq => "=".into(),
            Tok::DoubleEq => "==".into(),
            Tok::NotEq => "!=".into(),
            Tok::In => "in".into(),
            Tok::NotIn => "notin".into(),
            Tok::Open => "(".into(),
            Tok::Close => ")".into(),
            Tok::Gt => ">".into(),
            Tok::Lt => "<".into(),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | ',' | '=' | '(' | ')' | '>' | '<')
}

fn lex(s: &str) -> Vec<Tok> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if is_special(c) {
            let next = chars.get(i + 1).copied();
            let (tok, n) = match (c, next) {
                ('!', Some('=')) => (Tok::NotEq, 2),
                ('=', Some('=')) => (Tok::DoubleEq, 2),
                ('!', _) => (Tok::Bang, 1),
                ('=', _) => (Tok::Eq, 1),
                (',', _) => (Tok::Comma, 1),
                ('(', _) => (Tok::Open, 1),
                (')', _) => (Tok::Close, 1),
                ('>', _) => (Tok::Gt, 1),
                _ => (Tok::Lt, 1),
            };
            out.push(tok);
            i += n;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && !is_special(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        out.push(match word.as_str() {
            "in" => Tok::In,
            "notin" => Tok::NotIn,
            _ => Tok::Ident(word),
        });
    }
    out
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Validates a label key (qualified name), with apimachinery's messages.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_dns_subdomain(p) {
            return Err(format!(
                "key: Invalid value: {key:?}: prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!(
            "key: Invalid value: {key:?}: name part must be non-empty"
        ));
    }
    if name.len() > 63 {
        return Err(format!(
            "key: Invalid value: {key:?}: name part must be no more than 63 characters"
        ));
    }
    if !is_label_name(name) || name.contains('/') {
        return Err(format!(
            "key: Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        ));
    }
    Ok(())
}

/// Validates a label value, with apimachinery's messages.
pub fn validate_label_value(i: usize, key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 {
        return Err(format!(
            "values[{i}][{key}]: Invalid value: {value:?}: must be no more than 63 characters"
        ));
    }
    if !is_label_name(value) {
        return Err(format!(
            "values[{i}][{key}]: Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ));
    }
    Ok(())
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn requirement(&mut self) -> Result<LabelRequirement, String> {
        let negated = if self.peek() == Some(&Tok::Bang) {
            self.pos += 1;
            true
        } else {
            false
        };
        let key = match self.next() {
            Some(Tok::Ident(k)) => k,
            Some(t) => {
                return Err(format!(
                    "found '{}', expected: !, identifier, or 'end of string'",
                    t.text()
                ))
            }
            None => return Err("found '', expected: identifier".into()),
        };
        validate_label_key(&key).map_err(|e| format!("unable to parse requirement: {e}"))?;
        if negated {
            return Ok(LabelRequirement {
                key,
                op: LabelOp::DoesNotExist,
                values: vec![],
            });
        }
        let op = match self.peek() {
            None | Some(Tok::Comma) => {
                return Ok(LabelRequirement {
                    key,
                    op: LabelOp::Exists,
                    values: vec![],
                })
            }
            Some(Tok::Eq) | Some(Tok::DoubleEq) => LabelOp::Equals,
            Some(Tok::NotEq) => LabelOp::NotEquals,
            Some(Tok::In) => LabelOp::In,
            Some(Tok::NotIn) => LabelOp::NotIn,
            Some(Tok::Gt) => LabelOp::GreaterThan,
            Some(Tok::Lt) => LabelOp::LessThan,
            Some(t) => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.text()
                ))
            }
        };
        self.pos += 1;
        let values = match op {
            LabelOp::In | LabelOp::NotIn => self.value_set()?,
            _ => {
                let v = match self.peek() {
                    Some(Tok::Ident(v)) => {
                        let v = v.clone();
                        self.pos += 1;
                        v
                    }
                    // `key=` selects the empty value.
                    None | Some(Tok::Comma) => String::new(),
                    Some(t) => {
                        return Err(format!("found '{}', expected: identifier", t.text()));
                    }
                };
                if matches!(op, LabelOp::GreaterThan | LabelOp::LessThan)
                    && v.parse::<i64>().is_err()
                {
                    return Err(format!(
                        "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {v:?}"
                    ));
                }
                vec![v]
            }
        };
        for (i, v) in values.iter().enumerate() {
            validate_label_value(i, &key, v)
                .map_err(|e| format!("unable to parse requirement: {e}"))?;
        }
        Ok(LabelRequirement { key, op, values })
    }

    fn value_set(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Some(Tok::Open) => {}
            Some(t) => return Err(format!("found '{}', expected: '('", t.text())),
            None => return Err("found '', expected: '('".into()),
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Ident(v)) => {
                    values.push(v);
                    match self.next() {
                        Some(Tok::Comma) => continue,
                        Some(Tok::Close) => break,
                        Some(t) => {
                            return Err(format!("found '{}', expected: ',' or ')'", t.text()))
                        }
                        None => return Err("found '', expected: ')'".into()),
                    }
                }
                // `in (a,)` and `in ()` include the empty value, as apimachinery does.
                Some(Tok::Comma) => values.push(String::new()),
                Some(Tok::Close) => {
                    values.push(String::new());
                    break;
                }
                Some(t) => {
                    return Err(format!(
                        "found '{}', expected: ',', ')' or identifier",
                        t.text()
                    ))
                }
                None => return Err("found '', expected: ')'".into()),
            }
        }
        values.sort();
        values.dedup();
        Ok(values)
    }
}

impl LabelSelector {
    /// Parses the query-parameter form. Errors carry kube-apiserver's wording where practical.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = Parser {
            toks: lex(s),
            pos: 0,
        };
        let mut requirements = Vec::new();
        if p.toks.is_empty() {
            return Ok(LabelSelector { requirements });
        }
        loop {
            requirements.push(p.requirement()?);
            match p.next() {
                None => break,
                Some(Tok::Comma) => {
                    if p.peek().is_none() {
                        return Err("found '', expected: identifier after ','".into());
                    }
                }
                Some(t) => {
                    return Err(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        t.text()
                    ))
                }
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether an object's `metadata.labels` (an object, or null/absent) matches.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let labels = labels.and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|m| m.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|r| {
            let v = get(&r.key);
            match r.op {
                LabelOp::Exists => v.is_some(),
                LabelOp::DoesNotExist => v.is_none(),
                LabelOp::Equals | LabelOp::In => v.is_some_and(|v| r.values.iter().any(|x| x == v)),
                LabelOp::NotEquals | LabelOp::NotIn => {
                    v.is_none_or(|v| !r.values.iter().any(|x| x == v))
                }
                LabelOp::GreaterThan | LabelOp::LessThan => {
                    let (Some(v), Some(want)) = (
                        v.and_then(|v| v.parse::<i64>().ok()),
                        r.values.first().and_then(|w| w.parse::<i64>().ok()),
                    ) else {
                        return false;
                    };
                    if r.op == LabelOp::GreaterThan {
                        v > want
                    } else {
                        v < want
                    }
                }
            }
        })
    }
}

/// One requirement of a field selector.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldRequirement {
    /// Dot-separated path, e.g. `metadata.name`.
    pub field: String,
    /// `true` for `!=`.
    pub negated: bool,
    /// The value compared with the field's string form.
    pub value: String,
}

/// A parsed `fieldSelector`: comma-separated `path=value`, `path==value`, `path!=value`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector {
    /// All requirements (ANDed).
    pub requirements: Vec<FieldRequirement>,
}

/// Splits on an unescaped `sep`, keeping escapes in the parts.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('\\' | ',' | '=' | '!')) => out.push(n),
                Some(n) => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{n}"
                    ))
                }
                None => return Err("invalid field selector: unterminated escape sequence".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses the query-parameter form.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { requirements });
        }
        for part in split_unescaped(s, ',') {
            if part.is_empty() {
                continue;
            }
            // Find the first unescaped operator.
            let chars: Vec<char> = part.chars().collect();
            let mut i = 0;
            let mut found = None;
            while i < chars.len() {
                match chars[i] {
                    '\\' => i += 2,
                    '!' if chars.get(i + 1) == Some(&'=') => {
                        found = Some((i, 2, true));
                        break;
                    }
                    '=' => {
                        let len = if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
                        found = Some((i, len, false));
                        break;
                    }
                    _ => i += 1,
                }
            }
            let Some((at, len, negated)) = found else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            let field: String = chars[..at].iter().collect();
            let value: String = chars[at + len..].iter().collect();
            requirements.push(FieldRequirement {
                field: unescape(field.trim())?,
                negated,
                value: unescape(value.trim())?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The field paths this selector uses (e.g. `metadata.name`), so the server can reject
    /// unsupported ones with `field label not supported: <path>`.
    pub fn fields(&self) -> Vec<String> {
        self.requirements.iter().map(|r| r.field.clone()).collect()
    }

    /// Whether an object matches; a path is looked up as dot-separated keys in the object.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let mut cur = Some(object);
            for key in r.field.split('.') {
                cur = cur.and_then(|v| v.get(key));
            }
            let actual = match cur {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (actual == r.value) != r.negated
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(sel: &str, labels: Value) -> bool {
        LabelSelector::parse(sel).unwrap().matches(Some(&labels))
    }

    #[test]
    fn label_equality_and_inequality() {
        let l = json!({"app": "web", "tier": "front"});
        assert!(m("app=web", l.clone()));
        assert!(m("app==web", l.clone()));
        assert!(!m("app=db", l.clone()));
        assert!(m("app=web,tier=front", l.clone()));
        assert!(!m("app=web,tier=back", l.clone()));
        assert!(m("app!=db", l.clone()));
        assert!(!m("app!=web", l.clone()));
        // != matches objects without the key.
        assert!(m("missing!=x", l.clone()));
        assert!(LabelSelector::parse("missing!=x").unwrap().matches(None));
    }

    #[test]
    fn label_sets_and_existence() {
        let l = json!({"app": "web", "app.kubernetes.io/name": "channel-operator"});
        assert!(m("app in (db, web)", l.clone()));
        assert!(!m("app in (db)", l.clone()));
        assert!(m("app notin (db)", l.clone()));
        assert!(!m("app notin (db,web)", l.clone()));
        assert!(m("other notin (db)", l.clone()));
        assert!(m("app", l.clone()));
        assert!(!m("!app", l.clone()));
        assert!(m("!other", l.clone()));
        assert!(!m("other", l.clone()));
        assert!(m(
            " app.kubernetes.io/name = channel-operator , app ",
            l.clone()
        ));
        assert!(m("", l.clone()));
        assert!(LabelSelector::parse("").unwrap().matches(None));
        assert!(!LabelSelector::parse("app").unwrap().matches(None));
    }

    #[test]
    fn label_errors() {
        assert!(LabelSelector::parse("app in db")
            .unwrap_err()
            .contains("expected: '('"));
        let e = LabelSelector::parse("app=a b").unwrap_err();
        assert!(e.contains("found 'b'"), "{e}");
        let e = LabelSelector::parse("app=bad$value").unwrap_err();
        assert!(e.starts_with("unable to parse requirement: "), "{e}");
        assert!(e.contains("a valid label must be"), "{e}");
        let e = LabelSelector::parse(&format!("app={}", "a".repeat(64))).unwrap_err();
        assert!(e.contains("must be no more than 63 characters"), "{e}");
        assert!(LabelSelector::parse("Bad_Prefix/x=1").is_err());
        assert!(LabelSelector::parse("app=web,").is_err());
        assert!(LabelSelector::parse("=web").is_err());
    }

    #[test]
    fn field_selectors() {
        let obj = json!({"metadata": {"name": "a,b", "namespace": "ns"}, "spec": {"connected": true, "n": 3}});
        let s = FieldSelector::parse("metadata.name=a\\,b,metadata.namespace==ns").unwrap();
        assert_eq!(s.fields(), vec!["metadata.name", "metadata.namespace"]);
        assert!(s.matches(&obj));
        assert!(FieldSelector::parse("spec.connected=true")
            .unwrap()
            .matches(&obj));
        assert!(FieldSelector::parse("spec.n=3").unwrap().matches(&obj));
        assert!(!FieldSelector::parse("metadata.namespace!=ns")
            .unwrap()
            .matches(&obj));
        assert!(FieldSelector::parse("spec.missing=").unwrap().matches(&obj));
        assert!(FieldSelector::parse("spec.missing!=x")
            .unwrap()
            .matches(&obj));
        assert!(FieldSelector::parse("").unwrap().matches(&obj));
        assert!(FieldSelector::parse("metadata.name").is_err());
        let esc = FieldSelector::parse("metadata.name=x\\=y\\\\z").unwrap();
        assert_eq!(esc.requirements[0].value, "x=y\\z");
    }
}
