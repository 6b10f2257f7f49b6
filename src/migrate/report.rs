//! What migrate tells: the Channels as YAML (stdout, for a Git repository; Secrets by name only,
//! never a token), a progress line on long runs and the summary at the end (stderr).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use kube::ResourceExt;

use super::adopt::Vouched;
use super::apply::{Outcome, Verdict};
use super::plan::{Credentials, Planned, Skipped};

/// The Channels as YAML documents, each preceded by comments naming its Airy Core channel and its
/// credentials Secret (by name: the token is never printed).
pub fn yaml(from: &str, planned: &[Planned]) -> String {
    let mut out = format!(
        "# Channels of the Airy Core at {from}, written by `channel-operator migrate`.\n\
         # Credentials Secrets are named, never printed.\n"
    );
    for p in planned {
        out.push_str("---\n");
        let _ = writeln!(out, "# Airy Core channel: {}", p.what);
        match &p.credentials {
            Some(Credentials::Write { name, .. }) => {
                let _ = writeln!(
                    out,
                    "# credentials: Secret {name} (key page_token), written by `migrate --apply`"
                );
            }
            Some(Credentials::Missing { name }) => {
                let _ = writeln!(
                    out,
                    "# credentials: Secret {name} (key page_token, label airy.co/credentials: \"true\") \
                     to be created: Airy Core did not list this channel's token"
                );
            }
            None => {}
        }
        for note in &p.notes {
            let _ = writeln!(out, "# note: {note}");
        }
        out.push_str(&serde_yaml::to_string(&p.applied()).expect("a Channel serializes to YAML"));
    }
    out
}

/// Counts the outcomes and prints progress and the summary.
pub struct Report {
    total: usize,
    done: usize,
    started: Instant,
    last_progress: Instant,
    written: Vec<String>,
    unchanged: usize,
    skipped: Vec<Skipped>,
    failed: Vec<Skipped>,
    secrets_written: usize,
    secrets_unchanged: usize,
    to_create: Vec<(String, String)>,
    notes: Vec<(String, String)>,
    pinned: usize,
    adoptions_written: usize,
    adoptions_unchanged: usize,
    not_adopted: Vec<(String, String)>,
    unvouched: bool,
}

impl Report {
    /// A report of `planned` channels, with those already `skipped` while planning.
    pub fn new(planned: &[Planned], skipped: Vec<Skipped>) -> Self {
        let now = Instant::now();
        Report {
            total: planned.len(),
            done: 0,
            started: now,
            last_progress: now,
            written: Vec::new(),
            unchanged: 0,
            skipped,
            failed: Vec::new(),
            secrets_written: 0,
            secrets_unchanged: 0,
            to_create: Vec::new(),
            notes: Vec::new(),
            pinned: 0,
            adoptions_written: 0,
            adoptions_unchanged: 0,
            not_adopted: Vec::new(),
            unvouched: false,
        }
    }

    /// Records what became of `p`; prints a progress line when `every` has passed since the last.
    pub fn record(&mut self, p: &Planned, outcome: Outcome, every: Duration) {
        self.done += 1;
        let moved = matches!(outcome.channel, Verdict::Written | Verdict::Unchanged);
        match outcome.channel {
            Verdict::Written => self.written.push(p.channel.name_any()),
            Verdict::Unchanged => self.unchanged += 1,
            Verdict::Skipped(why) => self.skipped.push(Skipped {
                what: p.what.clone(),
                why,
            }),
            Verdict::Failed(why) => self.failed.push(Skipped {
                what: p.what.clone(),
                why,
            }),
        }
        match outcome.secret_written {
            Some(true) => self.secrets_written += 1,
            Some(false) => self.secrets_unchanged += 1,
            None => {}
        }
        if moved {
            self.moved(p, outcome.secret_missing);
        }
        if self.last_progress.elapsed() >= every && self.done < self.total {
            self.last_progress = Instant::now();
            eprintln!(
                "migrate: {}/{} channels ({} s)",
                self.done,
                self.total,
                self.started.elapsed().as_secs()
            );
        }
    }

    /// Records a channel that is (or, in a dry run, would be) in the namespace; `secret_missing`:
    /// the credentials Secret its owner creates is not there (yet).
    pub fn moved(&mut self, p: &Planned, secret_missing: bool) {
        if let (Some(Credentials::Missing { name }), true) = (&p.credentials, secret_missing) {
            self.to_create.push((p.channel.name_any(), name.clone()));
        }
        for n in &p.notes {
            self.notes.push((p.channel.name_any(), n.clone()));
        }
        if p.pinned() {
            self.pinned += 1;
        }
    }

    /// Records what became of the adoption record of `p`.
    pub fn vouched(&mut self, p: &Planned, v: Vouched) {
        match v {
            Vouched::Written => self.adoptions_written += 1,
            Vouched::Unchanged => self.adoptions_unchanged += 1,
            Vouched::NotNeeded => {}
            Vouched::Not(why) => self.not_adopted.push((p.channel.name_any(), why)),
        }
    }

    /// Records that no adoption record is written (no state namespace given).
    pub fn unvouched(&mut self) {
        self.unvouched = true;
    }

    /// Whether every channel of Airy Core's list is (or would be) in the namespace.
    pub fn complete(&self) -> bool {
        self.skipped.is_empty() && self.failed.is_empty()
    }

    /// The summary, as printed at the end: `dry_run` says what would be written.
    pub fn summary(&self, namespace: &str, planned: &[Planned], dry_run: bool) -> String {
        let mut out = String::new();
        if dry_run {
            let secrets: Vec<&str> = planned
                .iter()
                .filter_map(|p| match &p.credentials {
                    Some(Credentials::Write { name, .. }) => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            let _ = writeln!(
                out,
                "dry run: {} Channels for namespace {namespace} ({} pinning Airy Core's id); \
                 --apply would also write {} credentials Secrets{}{}",
                planned.len(),
                self.pinned,
                secrets.len(),
                if secrets.is_empty() { "" } else { ": " },
                secrets.join(", ")
            );
        } else {
            let _ = writeln!(
                out,
                "migrate: {} Channels in namespace {namespace}: {} written, {} unchanged \
                 ({} pinning Airy Core's id); credentials Secrets: {} written, {} unchanged",
                self.written.len() + self.unchanged,
                self.written.len(),
                self.unchanged,
                self.pinned,
                self.secrets_written,
                self.secrets_unchanged,
            );
            if !self.written.is_empty() {
                let _ = writeln!(out, "written: {}", self.written.join(", "));
            }
        }
        if self.unvouched {
            let _ = writeln!(
                out,
                "note: no adoption records (no --state-namespace): the controller proves the \
                 credentials of the connected Facebook and Instagram Channels and connects them \
                 (provider calls) instead of adopting what Airy Core made"
            );
        } else if dry_run {
            let _ = writeln!(
                out,
                "adoption records: --apply would write {} (for the Channels the controller has not \
                 connected yet)",
                self.adoptions_written
            );
        } else {
            let _ = writeln!(
                out,
                "adoption records: {} written, {} unchanged",
                self.adoptions_written, self.adoptions_unchanged
            );
        }
        for (channel, why) in &self.not_adopted {
            let _ = writeln!(
                out,
                "not adopted: {channel}: {why}; the controller proves its credentials and connects it"
            );
        }
        for (channel, secret) in &self.to_create {
            let _ = writeln!(
                out,
                "needs credentials: {channel} names the Secret {secret} (key page_token, label \
                 airy.co/credentials: \"true\"): create it with the channel's token; Airy Core did \
                 not list it"
            );
        }
        for (channel, note) in &self.notes {
            let _ = writeln!(out, "note: {channel}: {note}");
        }
        for s in &self.skipped {
            let _ = writeln!(out, "skipped: {}: {}", s.what, s.why);
        }
        for f in &self.failed {
            let _ = writeln!(out, "failed: {}: {}", f.what, f.why);
        }
        if !self.complete() {
            let _ = writeln!(
                out,
                "error: {} of Airy Core's channels were not moved ({} skipped, {} failed)",
                self.skipped.len() + self.failed.len(),
                self.skipped.len(),
                self.failed.len()
            );
        }
        out
    }
}
