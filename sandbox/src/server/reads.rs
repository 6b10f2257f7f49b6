//! Reads: label and field selectors, list pages and continue tokens.

use super::*;

/// Label and field selectors of a list or watch.
pub(super) struct Selectors {
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
}

pub(super) fn supported_fields(rt: &ResourceType) -> Vec<&'static str> {
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
    pub(super) fn parse(ctx: &Ctx) -> Result<Selectors, ApiError> {
        Self::parse_query(ctx, ctx.query)
    }

    pub(super) fn parse_query(ctx: &Ctx, q: &Query) -> Result<Selectors, ApiError> {
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

    pub(super) fn is_empty(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }

    /// Matching is done on the stored form (core/v1 field names for events).
    pub(super) fn matches(&self, obj: &Value) -> bool {
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

pub(super) fn continue_token(rv: u64, ns: &str, name: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rv, "ns": ns, "name": name}).to_string())
}

pub(super) fn parse_continue(token: &str) -> Result<(u64, String, String), ApiError> {
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

pub(super) fn list(st: &Store, ctx: Ctx, ns: Option<&str>) -> Result<Response, ApiError> {
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
