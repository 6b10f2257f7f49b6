//! Watch streams: the initial events, then the resource's watch window, bookmarks and the
//! 410 of a watch that starts from or falls behind the window.

use futures::StreamExt as _;

use super::*;

pub(super) struct WatchFilter {
    rt: Arc<ResourceType>,
    ns: Option<String>,
    sel: Selectors,
    transform: bool,
    table: Option<Vec<table::Column>>,
}

impl WatchFilter {
    pub(super) fn line(&self, kind: EventType, obj: &Bytes, prev: Option<&Bytes>) -> Option<Bytes> {
        let mut kind = kind;
        let mut parsed = None;
        if !self.sel.is_empty() {
            let v: Value = serde_json::from_slice(obj).ok()?;
            let now = self.sel.matches(&v);
            let before = match (kind, prev) {
                (EventType::Modified, Some(p)) => serde_json::from_slice::<Value>(p)
                    .map(|p| self.sel.matches(&p))
                    .unwrap_or(false),
                _ => now,
            };
            kind = match (kind, before, now) {
                (EventType::Modified, true, true) => EventType::Modified,
                (EventType::Modified, false, true) => EventType::Added,
                (EventType::Modified, true, false) => EventType::Deleted,
                (EventType::Modified, false, false) => return None,
                (k, _, true) => k,
                (_, _, false) => return None,
            };
            parsed = Some(v);
        }
        let mut out = Vec::with_capacity(obj.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        if self.transform || self.table.is_some() {
            let v = match parsed {
                Some(v) => v,
                None => serde_json::from_slice(obj).ok()?,
            };
            let v = render_for(&self.rt, v);
            let v = match &self.table {
                Some(cols) => pure("table", || table::table(cols, &[v], "Object", json!({})))
                    .unwrap_or_else(|e| e.to_value()),
                None => v,
            };
            out.extend_from_slice(&serde_json::to_vec(&v).ok()?);
        } else {
            out.extend_from_slice(obj);
        }
        out.extend_from_slice(b"}\n");
        Some(Bytes::from(out))
    }

    pub(super) fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let ev = json!({"type": "BOOKMARK", "object": {
            "kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta}});
        Bytes::from(format!("{ev}\n"))
    }
}

pub(super) fn render_for(rt: &ResourceType, mut obj: Value) -> Value {
    match rt.conversion {
        Conversion::EventsV1 => resources::event_to_v1(&obj),
        Conversion::None => {
            obj["apiVersion"] = rt.api_version().into();
            obj["kind"] = rt.kind.clone().into();
            obj
        }
    }
}

pub(super) fn start_watch(
    sh: &Arc<Shared>,
    ctx: Ctx,
    ns: Option<String>,
    q: &Query,
) -> Result<Response, ApiError> {
    let sel = Selectors::parse_query(&ctx, q)?;
    let bookmarks = is_true(q, "allowWatchBookmarks");
    let send_initial = is_true(q, "sendInitialEvents");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs);
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let from = match rv_param.as_str() {
        "" | "0" => None,
        s => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?,
        ),
    };
    let filter = WatchFilter {
        rt: ctx.rt.clone(),
        ns: ns.clone(),
        sel,
        transform: ctx.render || ctx.rt.conversion != Conversion::None,
        table: if ctx.table { Some(ctx.columns()) } else { None },
    };
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Bytes>(WATCH_BUFFER);
    let mut backlog: Vec<Bytes> = vec![];
    let storage = ctx.rt.storage.clone();
    let (cancel, rv_rx, pos) = {
        let st = sh.lock();
        match from {
            None => {
                if let Some(map) = st.objects.get(&storage) {
                    for ((n, _), stored) in map {
                        if ns.as_ref().is_some_and(|ns| ns != n) {
                            continue;
                        }
                        if let Some(l) = filter.line(EventType::Added, &stored.json, None) {
                            backlog.push(l);
                        }
                    }
                }
                if send_initial && bookmarks {
                    backlog.push(filter.bookmark(st.rv, true));
                }
            }
            Some(rv) => match st.events_since(&storage, rv) {
                Ok(events) => {
                    for ev in events {
                        if ns.as_ref().is_some_and(|ns| *ns != ev.ns) {
                            continue;
                        }
                        if let Some(l) = filter.line(ev.kind, &ev.obj, ev.prev.as_ref()) {
                            backlog.push(l);
                        }
                    }
                }
                Err(oldest) => return Ok(json_response(200, too_old(rv, oldest))),
            },
        }
        (st.watch_cancel.clone(), st.rv_tx.subscribe(), st.rv)
    };
    let watch = Watch {
        sh: sh.clone(),
        storage,
        out: out_tx,
        cancel,
        lag_rx: rv_rx.clone(),
        pos,
    };
    tokio::spawn(watch.run(filter, backlog, rv_rx, bookmarks, timeout));
    let stream = tokio_stream::wrappers::ReceiverStream::new(out_rx)
        .map(Ok::<Bytes, std::convert::Infallible>);
    let mut resp = json_response(200, Body::from_stream(stream));
    if ctx.table {
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(TABLE_CONTENT_TYPE),
        );
    }
    Ok(resp)
}

/// The ERROR line of a watch from a resourceVersion older than the window.
pub(super) fn too_old(rv: u64, oldest: u64) -> Bytes {
    let status = ApiError::gone(format!("too old resource version: {rv} ({oldest})"));
    Bytes::from(format!(
        "{}\n",
        json!({"type": "ERROR", "object": status.to_value()})
    ))
}

/// Why a watch stopped sending.
pub(super) enum End {
    /// The client went away, the watch was cancelled, or the stream closed.
    Closed,
    /// Events it had not sent yet left the watch window.
    Lagged,
}

/// One running watch: it reads its resource's events from the watch window, so a client that
/// reads too slowly falls behind and is cut off with a 410, as kube-apiserver's cacher does.
pub(super) struct Watch {
    sh: Arc<Shared>,
    storage: String,
    out: tokio::sync::mpsc::Sender<Bytes>,
    cancel: tokio_util::sync::CancellationToken,
    /// Wakes a blocked send to check whether the watch fell behind.
    lag_rx: tokio::sync::watch::Receiver<u64>,
    /// Every event of the resource up to this resourceVersion has been sent (or filtered out).
    pos: u64,
}

impl Watch {
    pub(super) async fn run(
        mut self,
        filter: WatchFilter,
        backlog: Vec<Bytes>,
        mut rv_rx: tokio::sync::watch::Receiver<u64>,
        bookmarks: bool,
        timeout: Option<Duration>,
    ) {
        let end = self
            .serve(&filter, backlog, &mut rv_rx, bookmarks, timeout)
            .await;
        if let Err(End::Lagged) = end {
            // The client gets the queued lines, then the 410 (unless it goes away first).
            let oldest = self.sh.lock().oldest_resumable(&self.storage) + 1;
            tokio::select! {
                _ = self.cancel.cancelled() => {}
                _ = self.out.send(too_old(self.pos, oldest)) => {}
            }
        }
    }

    pub(super) async fn serve(
        &mut self,
        filter: &WatchFilter,
        backlog: Vec<Bytes>,
        rv_rx: &mut tokio::sync::watch::Receiver<u64>,
        bookmarks: bool,
        timeout: Option<Duration>,
    ) -> Result<(), End> {
        for line in backlog {
            self.send(line).await?;
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(End::Closed),
                _ = self.out.closed() => return Err(End::Closed),
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    if bookmarks {
                        self.send(filter.bookmark(self.pos, false)).await?;
                    }
                    return Ok(());
                }
                _ = tick.tick(), if bookmarks => self.send(filter.bookmark(self.pos, false)).await?,
                changed = rv_rx.changed() => {
                    if changed.is_err() {
                        return Err(End::Closed);
                    }
                    rv_rx.borrow_and_update();
                    let (events, upto) = {
                        let st = self.sh.lock();
                        let events = st.events_since(&self.storage, self.pos).map_err(|_| End::Lagged)?;
                        (events, st.rv)
                    };
                    for ev in events {
                        if filter.ns.as_ref().is_none_or(|ns| *ns == ev.ns) {
                            if let Some(line) = filter.line(ev.kind, &ev.obj, ev.prev.as_ref()) {
                                self.send(line).await?;
                            }
                        }
                        self.pos = ev.rv;
                    }
                    self.pos = self.pos.max(upto);
                }
            }
        }
    }

    /// Queues one line; while the client does not take it, every change is checked for
    /// having pushed unsent events out of the window.
    pub(super) async fn send(&mut self, line: Bytes) -> Result<(), End> {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(End::Closed),
                permit = self.out.reserve() => {
                    permit.map_err(|_| End::Closed)?.send(line);
                    return Ok(());
                }
                changed = self.lag_rx.changed() => {
                    if changed.is_err() {
                        return Err(End::Closed);
                    }
                    if self.sh.lock().oldest_resumable(&self.storage) > self.pos {
                        return Err(End::Lagged);
                    }
                }
            }
        }
    }
}
