//! The goals the controller benchmark checks, and what one run measured ([`Row`]).

use std::time::{Duration, Instant};

use channel_operator::crd::Source;

/// The apiserver writes per Channel of each source, the create included: chat plugin 4
/// (finalizer, claim, status), Google 4, Facebook 8 (also the Channel's record, the entry of its
/// page's subscription — created, then marked made — and the `Connected` Event). A change is a
/// change of the controller's behaviour.
pub const CALIBRATED: [(Source, f64); 3] = [
    (Source::ChatPlugin, 4.0),
    (Source::Google, 4.0),
    (Source::Facebook, 8.0),
];
/// All Ready within this many times the writes alone.
pub const PACE_GOAL: f64 = 1.5;
/// Peak RSS per process (MiB) at a size: (Channels, controller, API).
pub const GOALS: [(usize, f64, f64); 2] = [(10_000, 40.0, 40.0), (100_000, 128.0, 96.0)];
/// The controller's sweep period (`--sweep-seconds`, default): a Channel whose every trigger was
/// lost is reconciled within one.
pub const SWEEP: Duration = Duration::from_secs(30);

/// The calibrated writes per Channel of `source`.
pub fn calibrated(source: Source) -> f64 {
    CALIBRATED
        .iter()
        .find(|(s, _)| *s == source)
        .map_or(0.0, |(_, w)| *w)
}

/// The kinds of run.
#[derive(Clone, Copy, PartialEq)]
pub enum Run {
    /// The mix of sources.
    Mixed,
    /// The mix, with the watches cut and the apiserver restarted during the creates.
    Disrupted,
    /// Chat plugin Channels only.
    ChatPlugin,
}

impl Run {
    pub fn label(self) -> &'static str {
        match self {
            Run::Mixed => "",
            Run::Disrupted => " (disrupted)",
            Run::ChatPlugin => " (chat plugin only)",
        }
    }
}

/// What one size measured.
pub struct Row {
    pub n: usize,
    pub run: Run,
    pub all_ready: f64,
    pub after_last_create: f64,
    pub write_rate: f64,
    pub writes_per_channel: f64,
    pub controller_peak_mib: f64,
    pub controller_kib_per_channel: f64,
    pub api_peak_mib: f64,
    pub api_kib_per_channel: f64,
}

impl Row {
    /// The seconds the apiserver needs for the writes alone.
    pub fn writes_alone(&self) -> f64 {
        self.n as f64 * self.writes_per_channel / self.write_rate
    }

    /// The goals this run missed (the memory goals when `memory`). A disrupted run's pace is
    /// not held to the goal: its restart and re-lists are a fixed cost.
    pub fn misses(&self, memory: bool) -> Vec<String> {
        let what = format!("{}{}", self.n, self.run.label());
        let mut out = Vec::new();
        let ratio = self.all_ready / self.writes_alone();
        if self.run != Run::Disrupted && ratio > PACE_GOAL {
            out.push(format!(
                "{what}: all Ready in {ratio:.2}× the writes alone (goal {PACE_GOAL}×)"
            ));
        }
        for (n, controller, api) in GOALS {
            if self.n != n || !memory {
                continue;
            }
            for (who, peak, goal) in [
                ("controller", self.controller_peak_mib, controller),
                ("API", self.api_peak_mib, api),
            ] {
                if peak > goal {
                    out.push(format!(
                        "{what}: {who} peak RSS {peak:.1} MiB (goal {goal:.0} MiB)"
                    ));
                }
            }
        }
        out
    }
}

/// When the census of the Channels never reconciled is taken (see [`Cluster::wait_all_ready`]):
/// the pace goal's deadline for `n` Channels of `writes_per_channel` (calibrated) at
/// `write_rate`, from `t0`, and no sooner than two sweeps after the last create (`created`), by
/// when a Channel whose every trigger was lost has been swept.
pub fn census_deadline(
    t0: Instant,
    created: Instant,
    n: usize,
    writes_per_channel: f64,
    write_rate: f64,
) -> Instant {
    let pace = Duration::from_secs_f64(PACE_GOAL * n as f64 * writes_per_channel / write_rate);
    (t0 + pace).max(created + 2 * SWEEP)
}

/// Prints the table of `rows` and, for a full run, the goals `rows` and the calibration
/// (`missed`) missed; with `assert_goals`, a missed goal fails the run.
pub fn report(rows: &[Row], mut missed: Vec<String>, full: bool, assert_goals: bool) {
    println!();
    println!("| Channels | all Ready | after the last create | writes/Channel | writes alone | ratio | controller peak | per Channel | API peak | per Channel |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {}{} | {:.1} s | {:.1} s | {:.2} | {:.1} s ({:.0}/s) | {:.2} | {:.1} MiB | {:.2} KiB | {:.1} MiB | {:.2} KiB |",
            r.n,
            r.run.label(),
            r.all_ready,
            r.after_last_create,
            r.writes_per_channel,
            r.writes_alone(),
            r.write_rate,
            r.all_ready / r.writes_alone(),
            r.controller_peak_mib,
            r.controller_kib_per_channel,
            r.api_peak_mib,
            r.api_kib_per_channel,
        );
    }
    if full {
        let wrapped = std::env::var_os("BENCH_WRAP").is_some();
        if wrapped {
            println!("BENCH_WRAP: the peak RSS is the wrapper's; the memory goals are not checked");
        }
        missed.extend(rows.iter().flat_map(|r| r.misses(!wrapped)));
        println!();
        if missed.is_empty() {
            println!("goals: every one met");
        } else {
            println!("goals MISSED:");
            for m in &missed {
                println!("  - {m}");
            }
        }
        assert!(
            !assert_goals || missed.is_empty(),
            "BENCH_ASSERT=1: {} goal(s) missed: {missed:?}",
            missed.len()
        );
    }
}
