//! The open connections of the HTTP API, what each one is doing, and which one is closed when a
//! new client needs its slot.
//!
//! Every connection is in one [`Phase`]: reading a request's head, reading its body, being
//! answered, or idle between requests. When `--max-connections` are open, or a peer holds
//! `--max-connections-per-peer`, the connection that keeps its slot for the least is closed to
//! make room: the one idle longest, else the request that has been arriving the longest, once it
//! has taken `--slow-request-seconds`. A request being answered is never closed. With nothing to
//! close, a new client waits in the listen backlog (over the total cap) or is closed at once
//! (over its peer's cap). Every closed connection is counted by [`Shed`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::metrics::Metrics;

/// Where a connection is.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Phase {
    /// Reading a request's head, since the given instant.
    Head(Instant),
    /// The request was dispatched and its body is still arriving, since the given instant
    /// (bounded by the body deadline).
    Body(Instant),
    /// A request is being answered (its handler is bounded by the sync timeout).
    Busy,
    /// Waiting for the next request, since the given instant.
    Idle(Instant),
}

/// Why the server closed a connection (the `reason` label of
/// `channel_operator_api_connections_shed_total`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shed {
    /// Idle between requests, closed to make room for a new client.
    Idle,
    /// Sending its request too slowly, closed to make room for a new client.
    Slow,
    /// A new connection of a peer that holds its share, with none of its own to close.
    PeerLimit,
    /// Its request's head did not arrive within `--header-read-timeout-seconds`.
    HeaderTimeout,
    /// Its request's body did not arrive within `--body-read-timeout-seconds` (answered 408).
    BodyTimeout,
    /// Idle for `--idle-timeout-seconds`.
    IdleTimeout,
}

impl Shed {
    /// Every reason, for the metric's series.
    pub const ALL: [Shed; 6] = [
        Shed::Idle,
        Shed::Slow,
        Shed::PeerLimit,
        Shed::HeaderTimeout,
        Shed::BodyTimeout,
        Shed::IdleTimeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Shed::Idle => "idle",
            Shed::Slow => "slow",
            Shed::PeerLimit => "peer_limit",
            Shed::HeaderTimeout => "header_timeout",
            Shed::BodyTimeout => "body_timeout",
            Shed::IdleTimeout => "idle_timeout",
        }
    }
}

/// A connection's phase, shared by its socket, its service and the table.
#[derive(Clone)]
pub(crate) struct Watch(Arc<Mutex<Phase>>);

impl Watch {
    fn new() -> Self {
        Watch(Arc::new(Mutex::new(Phase::Head(Instant::now()))))
    }

    pub(crate) fn get(&self) -> Phase {
        *self.0.lock().expect("phase lock")
    }

    pub(crate) fn set(&self, phase: Phase) {
        *self.0.lock().expect("phase lock") = phase;
    }

    /// Bytes arrived: an idle connection starts a request.
    pub(crate) fn bytes_read(&self) {
        let mut phase = self.0.lock().expect("phase lock");
        if matches!(*phase, Phase::Idle(_)) {
            *phase = Phase::Head(Instant::now());
        }
    }

    /// The body of the request being answered has arrived.
    pub(crate) fn body_read(&self) {
        let mut phase = self.0.lock().expect("phase lock");
        if matches!(*phase, Phase::Body(_)) {
            *phase = Phase::Busy;
        }
    }
}

/// Which connection to close for room among `candidates` (id, phase) at `now`: the one idle
/// longest, else the request arriving the longest if it has taken at least `slow`.
fn victim(
    candidates: impl Iterator<Item = (u64, Phase)>,
    now: Instant,
    slow: Duration,
) -> Option<(u64, Shed)> {
    let mut idle: Option<(Instant, u64)> = None;
    let mut arriving: Option<(Instant, u64)> = None;
    for (id, phase) in candidates {
        let (slot, since) = match phase {
            Phase::Idle(since) => (&mut idle, since),
            Phase::Head(since) | Phase::Body(since) => (&mut arriving, since),
            Phase::Busy => continue,
        };
        if slot.is_none_or(|(oldest, _)| since < oldest) {
            *slot = Some((since, id));
        }
    }
    match (idle, arriving) {
        (Some((_, id)), _) => Some((id, Shed::Idle)),
        (None, Some((since, id))) if now.saturating_duration_since(since) >= slow => {
            Some((id, Shed::Slow))
        }
        _ => None,
    }
}

struct Open {
    peer: IpAddr,
    watch: Watch,
    close: oneshot::Sender<()>,
}

#[derive(Default)]
struct Table {
    next: u64,
    open: HashMap<u64, Open>,
    per_peer: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        if let Some(n) = self.per_peer.get_mut(&open.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&open.peer);
            }
        }
        Some(open)
    }
}

/// The limits the table enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    pub(crate) total: usize,
    pub(crate) per_peer: usize,
    pub(crate) slow: Duration,
}

/// The open connections.
#[derive(Clone)]
pub(crate) struct Connections {
    table: Arc<Mutex<Table>>,
    /// Signalled when a connection closes or turns idle: room may have appeared.
    changed: Arc<Notify>,
    caps: Caps,
    metrics: Metrics,
}

/// A connection admitted to the table: its phase, the signal to close it, and its entry
/// (removed from the table on drop).
pub(crate) struct Ticket {
    pub(crate) watch: Watch,
    pub(crate) closed: oneshot::Receiver<()>,
    pub(crate) entry: Entry,
}

pub(crate) struct Entry {
    connections: Connections,
    id: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut table = self.connections.table.lock().expect("table lock");
        if table.remove(self.id).is_some() {
            self.connections
                .metrics
                .set_open_connections(table.open.len());
            self.connections.changed.notify_one();
        }
    }
}

impl Connections {
    pub(crate) fn new(caps: Caps, metrics: Metrics) -> Self {
        Connections {
            table: Default::default(),
            changed: Arc::new(Notify::new()),
            caps,
            metrics,
        }
    }

    /// Closes `id` for `why`.
    fn shed(&self, table: &mut Table, id: u64, why: Shed) {
        if let Some(open) = table.remove(id) {
            let _ = open.close.send(());
            self.metrics.shed(why);
            tracing::debug!(peer = %open.peer, reason = why.as_str(), "closing a connection to make room");
        }
    }

    /// A connection went idle: a client waiting for room may take its slot.
    pub(crate) fn went_idle(&self) {
        self.changed.notify_one();
    }

    /// Counts a connection the server closed itself (a timeout).
    pub(crate) fn closed(&self, why: Shed) {
        self.metrics.shed(why);
    }

    /// Waits until the table has room for one more connection, closing an idle or slow one when
    /// it is full.
    pub(crate) async fn room(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next_slow = {
                let mut table = self.table.lock().expect("table lock");
                if table.open.len() < self.caps.total {
                    return;
                }
                let now = Instant::now();
                let phases = table.open.iter().map(|(id, o)| (*id, o.watch.get()));
                if let Some((id, why)) = victim(phases, now, self.caps.slow) {
                    self.shed(&mut table, id, why);
                    return;
                }
                // The earliest moment a request arriving now becomes slow.
                table
                    .open
                    .values()
                    .filter_map(|o| match o.watch.get() {
                        Phase::Head(since) | Phase::Body(since) => Some(since + self.caps.slow),
                        _ => None,
                    })
                    .min()
            };
            match next_slow {
                Some(at) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Admits a connection of `peer`, closing one of the peer's idle or slow connections when
    /// it holds its share; `None` (the new one is to be closed) when none can go.
    pub(crate) fn admit(&self, peer: IpAddr) -> Option<Ticket> {
        let peer = peer.to_canonical();
        let mut table = self.table.lock().expect("table lock");
        if table.per_peer.get(&peer).copied().unwrap_or(0) >= self.caps.per_peer {
            let now = Instant::now();
            let phases = table
                .open
                .iter()
                .filter(|(_, o)| o.peer == peer)
                .map(|(id, o)| (*id, o.watch.get()));
            let Some((id, why)) = victim(phases, now, self.caps.slow) else {
                self.metrics.shed(Shed::PeerLimit);
                tracing::debug!(%peer, "refusing a connection: the peer holds its share of connections");
                return None;
            };
            self.shed(&mut table, id, why);
        }
        table.next += 1;
        let id = table.next;
        let watch = Watch::new();
        let (close, closed) = oneshot::channel();
        table.open.insert(
            id,
            Open {
                peer,
                watch: watch.clone(),
                close,
            },
        );
        *table.per_peer.entry(peer).or_default() += 1;
        self.metrics.set_open_connections(table.open.len());
        Some(Ticket {
            watch,
            closed,
            entry: Entry {
                connections: self.clone(),
                id,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOW: Duration = Duration::from_secs(1);

    #[test]
    fn the_longest_idle_goes_first_then_the_slowest_request() {
        let now = Instant::now();
        let ago = |ms| now - Duration::from_millis(ms);
        let phases = [
            (1, Phase::Busy),
            (2, Phase::Head(ago(5000))),
            (3, Phase::Idle(ago(10))),
            (4, Phase::Idle(ago(20))),
        ];
        assert_eq!(victim(phases.into_iter(), now, SLOW), Some((4, Shed::Idle)));
        let phases = [
            (1, Phase::Busy),
            (2, Phase::Head(ago(1500))),
            (3, Phase::Body(ago(3000))),
        ];
        assert_eq!(victim(phases.into_iter(), now, SLOW), Some((3, Shed::Slow)));
        // A request that has just begun, and one being answered, keep their slots.
        let phases = [(1, Phase::Busy), (2, Phase::Head(ago(200)))];
        assert_eq!(victim(phases.into_iter(), now, SLOW), None);
    }

    fn caps(total: usize, per_peer: usize) -> Connections {
        Connections::new(
            Caps {
                total,
                per_peer,
                slow: SLOW,
            },
            Metrics::new(),
        )
    }

    #[tokio::test]
    async fn a_full_peer_gives_up_its_idle_connection_or_is_refused() {
        let c = caps(10, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let first = c.admit(a).unwrap();
        let second = c.admit(a).unwrap();
        first.watch.set(Phase::Busy);
        second.watch.set(Phase::Busy);
        assert!(c.admit(a).is_none(), "a third busy-peer connection");
        // Another peer is not affected.
        let b = c.admit("10.0.0.2".parse().unwrap()).unwrap();
        second.watch.set(Phase::Idle(Instant::now()));
        let mut second = second;
        let third = c.admit(a).expect("room from the idle connection");
        assert!(
            second.closed.try_recv().is_ok(),
            "the idle one is told to close"
        );
        drop((first, third, b));
        assert!(c.table.lock().unwrap().open.is_empty());
        assert!(c.table.lock().unwrap().per_peer.is_empty());
        let text = c.metrics.render();
        assert!(
            text.contains("channel_operator_api_connections_shed_total{reason=\"peer_limit\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_full_table_waits_until_a_request_turns_slow() {
        let slow = Duration::from_millis(200);
        let c = Connections::new(
            Caps {
                total: 1,
                per_peer: 1,
                slow,
            },
            Metrics::new(),
        );
        let mut only = c.admit("10.0.0.1".parse().unwrap()).unwrap();
        let started = Instant::now();
        c.room().await;
        // The silent connection became slow and was closed.
        assert!(started.elapsed() >= slow);
        assert!(only.closed.try_recv().is_ok());
        // A connection being answered is never closed: room comes when it closes.
        let busy = c.admit("10.0.0.1".parse().unwrap()).unwrap();
        busy.watch.set(Phase::Busy);
        let waiting = tokio::time::timeout(Duration::from_millis(400), c.room()).await;
        assert!(
            waiting.is_err(),
            "room was made by closing a busy connection"
        );
        let room = tokio::spawn({
            let c = c.clone();
            async move { c.room().await }
        });
        drop(busy);
        tokio::time::timeout(Duration::from_secs(2), room)
            .await
            .expect("room once the busy connection closed")
            .unwrap();
    }
}
