//! Fault injection: failed and held requests, slow lists, dropped watches, the watch window and
//! apiserver restarts; and the records a test asserts with (writes per user, the audit log).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::net;
use super::server::Shared;

/// One pending fault.
#[derive(Clone, Debug)]
struct FaultRule {
    verb: String,
    resource: String,
    remaining: usize,
    action: FaultAction,
}

#[derive(Clone, Debug)]
enum FaultAction {
    Fail(u16),
    Hold(Duration),
}

/// One resource request as kube-apiserver's audit log records it at the `Metadata` level: who
/// asked for what, without bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub user: String,
    /// "get", "list", "watch", "create", "update", "patch", "delete" or "deletecollection".
    pub verb: String,
    /// The plural (`secrets`), or `plural/subresource` (`channels/status`).
    pub resource: String,
    /// "" for cluster-scoped resources and for requests across all namespaces.
    pub namespace: String,
    /// "" for list, watch, create and deletecollection (unless they select `metadata.name`).
    pub name: String,
}

/// The faults in force: pending request faults and slow lists; and the audit log, once started.
#[derive(Default)]
pub struct FaultTable {
    rules: Vec<FaultRule>,
    /// Delay of every list page, by resource plural ("*": every resource without its own).
    slow_lists: HashMap<String, Duration>,
    /// How many requests a fault was applied to (failed or held), since the start.
    fired: usize,
    /// The requests authorized since [`Faults::start_audit`] (None: not auditing).
    audit: Option<Vec<AuditEvent>>,
}

/// Whether a fault for `rule` (a plural or "*") applies to `resource` (a plural, or
/// "plural/subresource").
fn resource_matches(rule: &str, resource: &str) -> bool {
    rule == "*" || rule == resource || resource.split('/').next() == Some(rule)
}

impl FaultTable {
    /// Consumes the faults matching this request: (hold, fail).
    pub fn take(&mut self, verb: &str, resource: &str) -> (Option<Duration>, Option<u16>) {
        let (mut hold, mut fail) = (None, None);
        for rule in self.rules.iter_mut() {
            let verb_ok = rule.verb == "*" || rule.verb == verb;
            if !verb_ok || !resource_matches(&rule.resource, resource) || rule.remaining == 0 {
                continue;
            }
            match rule.action {
                FaultAction::Hold(d) if hold.is_none() => {
                    hold = Some(d);
                    rule.remaining -= 1;
                }
                FaultAction::Fail(c) if fail.is_none() => {
                    fail = Some(c);
                    rule.remaining -= 1;
                }
                _ => {}
            }
        }
        if hold.is_some() || fail.is_some() {
            self.fired += 1;
        }
        self.rules.retain(|r| r.remaining > 0);
        (hold, fail)
    }

    /// Records an authorized request, when auditing.
    pub fn audit(&mut self, user: &str, verb: &str, resource: &str, namespace: &str, name: &str) {
        if let Some(log) = self.audit.as_mut() {
            log.push(AuditEvent {
                user: user.to_string(),
                verb: verb.to_string(),
                resource: resource.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
    }

    /// How long a list page of `plural` waits before it is answered.
    pub fn list_delay(&self, plural: &str) -> Option<Duration> {
        self.slow_lists
            .get(plural)
            .or_else(|| self.slow_lists.get("*"))
            .copied()
            .filter(|d| !d.is_zero())
    }
}

/// Fault injection for tests: cloneable, shared with the running sandbox.
#[derive(Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
}

impl Faults {
    /// The next `n` requests matching verb ("get","list","watch","create","update","patch",
    /// "delete", or "*") and resource (plural, e.g. "channels", or "*") fail with `status`
    /// (body: a metav1.Status with that code). Nothing is written by a failed request.
    pub fn fail_next(&self, verb: &str, resource: &str, n: usize, status: u16) {
        self.add(verb, resource, n, FaultAction::Fail(status));
    }

    /// Ends every open watch stream now (clients see the stream close and must re-watch).
    pub fn drop_watches(&self) {
        let mut st = self.shared.lock();
        st.watch_cancel.cancel();
        st.watch_cancel = tokio_util::sync::CancellationToken::new();
    }

    /// The next `n` matching requests are answered only after `delay`.
    pub fn hold_next(&self, verb: &str, resource: &str, n: usize, delay: Duration) {
        self.add(verb, resource, n, FaultAction::Hold(delay));
    }

    /// Forgets the watch history: a watch from any older resourceVersion gets an ERROR event
    /// with a 410 Gone Status.
    pub fn compact_history(&self) {
        self.shared.lock().compact();
    }

    /// The watch window of `resource` (a plural like "channels", or "*" for every resource
    /// without a window of its own), as kube-apiserver's watch cache: a watch that starts or
    /// resumes from a resourceVersion older than the last `events` events of that resource,
    /// and a watch that falls more than `events` events behind, get an ERROR event with a 410
    /// `Expired` Status. The default is [`DEFAULT_WATCH_WINDOW`](crate::DEFAULT_WATCH_WINDOW).
    pub fn set_watch_window(&self, resource: &str, events: usize) {
        self.shared.lock().set_window(resource, events);
    }

    /// An apiserver restart: every open connection (watches included) is cut, new
    /// connections are refused for `down`, and the watch history is compacted, so every
    /// resume gets a 410. Objects are kept. Returns once the sandbox serves again on the same
    /// address (panics if that address cannot be bound again within 10 s).
    pub async fn restart(&self, down: Duration) {
        net::restart(&self.shared, down).await;
    }

    /// Every list page of `resource` (a plural, or "*") is answered only after `page_delay`
    /// (`Duration::ZERO` ends it), like a slow initial list or re-list.
    pub fn slow_lists(&self, resource: &str, page_delay: Duration) {
        self.shared
            .lock_faults()
            .slow_lists
            .insert(resource.to_string(), page_delay);
    }

    /// A network partition between `user` and the apiserver: from now until [`Faults::heal`],
    /// that user's requests (new ones and those not applied yet) are held unanswered and the
    /// events of its open watches are held, while every other client is served. The client's
    /// connections stay open; a request the client gives up on is never applied, one still
    /// waiting at the heal is applied then (delayed packets arriving late).
    pub fn partition(&self, user: &str) {
        self.shared.partitions.cut(user);
    }

    /// Ends the partition of `user`.
    pub fn heal(&self, user: &str) {
        self.shared.partitions.heal(user);
    }

    /// When each write (create, update, patch, delete) the sandbox applied for `user` was
    /// applied, and what it was (`"patch channels/status"`), oldest first.
    pub fn writes_by(&self, user: &str) -> Vec<(std::time::Instant, String)> {
        self.shared.partitions.writes_by(user)
    }

    /// How many requests a [`Faults::fail_next`] or [`Faults::hold_next`] fault was applied to
    /// since the start (a request both held and failed counts once): a test asserts with it
    /// that the faults it injected fired.
    pub fn fired(&self) -> usize {
        self.shared.lock_faults().fired
    }

    /// Starts the audit log (again, empty): from now on every resource request the sandbox
    /// authorizes is recorded, as kube-apiserver's audit log does at the `Metadata` level. Off
    /// unless started: a long run would keep every request.
    pub fn start_audit(&self) {
        self.shared.lock_faults().audit = Some(Vec::new());
    }

    /// The requests authorized since [`Faults::start_audit`], oldest first (empty if it was
    /// not started): a test asserts with it what a client read, e.g. that a Secret was never
    /// fetched.
    pub fn audit(&self) -> Vec<AuditEvent> {
        self.shared.lock_faults().audit.clone().unwrap_or_default()
    }

    /// Removes every pending request fault and slow list (watch windows stay).
    pub fn clear(&self) {
        let mut faults = self.shared.lock_faults();
        faults.rules.clear();
        faults.slow_lists.clear();
    }

    fn add(&self, verb: &str, resource: &str, n: usize, action: FaultAction) {
        if n == 0 {
            return;
        }
        self.shared.lock_faults().rules.push(FaultRule {
            verb: verb.to_string(),
            resource: resource.to_string(),
            remaining: n,
            action,
        });
    }
}
