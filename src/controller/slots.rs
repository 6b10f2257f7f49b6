//! Per-source shares of the reconcile slots: a hung or slow provider holds at most
//! `--provider-concurrency` of the Controller's `--concurrency` slots, so other sources keep
//! their latency. Sources whose provider makes no call (the chat plugin, Google) take no share.
//!
//! A reconcile whose source has no free share does not wait inside its Controller slot, and is
//! not polled either: it joins its source's queue and returns. When a share frees, it is reserved
//! for the first Channel in the queue, which [`SourceSlots::turns`] hands back to the Controller
//! as a trigger; reconciles that arrive meanwhile queue behind it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::{Stream, StreamExt as _};
use kube::runtime::controller::Action;
use tracing::debug;

use super::feed::{ChannelRef, ChannelStore, HandNow};
use super::index::Key;
use crate::crd::Source;

/// How long a share reserved for a queued Channel waits for its reconcile before it passes to
/// the next in the queue (the Channel was deleted, or its trigger was lost).
const RESERVATION: Duration = Duration::from_secs(30);

type Turn = (Source, Key);

/// One source's share: how many of its reconciles run, which Channels wait for a turn (in order,
/// and as a set), and the turns handed out whose reconcile has not started yet.
#[derive(Default)]
struct Share {
    running: usize,
    waiting: VecDeque<Key>,
    queued: HashSet<Key>,
    reserved: HashMap<Key, Instant>,
}

impl Share {
    /// Queues `r` unless it already waits or has a turn reserved.
    fn queue(&mut self, r: Key) {
        if !self.reserved.contains_key(&r) && self.queued.insert(r.clone()) {
            self.waiting.push_back(r);
        }
    }

    fn dequeue(&mut self) -> Option<Key> {
        let next = self.waiting.pop_front()?;
        self.queued.remove(&next);
        Some(next)
    }
}

/// The per-source shares.
#[derive(Clone)]
pub(crate) struct SourceSlots {
    per_source: usize,
    shares: Arc<Mutex<HashMap<Source, Share>>>,
    turns: UnboundedSender<Turn>,
}

/// A running reconcile's part of its source's share; dropping it gives the next turn.
struct Permit {
    slots: SourceSlots,
    source: Source,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut shares = self.slots.shares.lock().expect("not poisoned");
        let share = shares.entry(self.source).or_default();
        share.running -= 1;
        self.slots.next_turn(self.source, share);
    }
}

impl SourceSlots {
    /// `per_source` reconciles of one source at once (at least one), and the receiver of the
    /// turns for [`SourceSlots::turns`].
    pub(crate) fn new(per_source: usize) -> (Self, UnboundedReceiver<Turn>) {
        let (turns, rx) = futures::channel::mpsc::unbounded();
        let slots = SourceSlots {
            per_source: per_source.max(1),
            shares: Arc::default(),
            turns,
        };
        (slots, rx)
    }

    /// The Channels whose turn has come, handed to the Controller ahead of the others due. A
    /// Channel gone from the index passes its turn on.
    pub(crate) fn turns(
        &self,
        rx: UnboundedReceiver<Turn>,
        store: ChannelStore,
    ) -> impl Stream<Item = ChannelRef> + Send + 'static {
        let slots = self.clone();
        rx.filter_map(move |(source, r)| {
            let found = match store.hand_now(&r) {
                HandNow::Handed(ch) => Some(*ch),
                HandNow::Waiting => None,
                HandNow::Gone => {
                    slots.pass_on(source, &r);
                    None
                }
            };
            std::future::ready(found)
        })
    }

    /// Runs `reconcile` of the Channel `r` of `source` within the source's share (with no share
    /// where the provider makes no call), or queues the Channel for its turn when the share is
    /// taken.
    pub(crate) async fn run<E, F: Future<Output = Result<Action, E>>>(
        &self,
        r: &Key,
        source: Source,
        calls_provider: bool,
        reconcile: impl FnOnce() -> F,
    ) -> Result<Action, E> {
        if !calls_provider {
            return reconcile().await;
        }
        let Some(_permit) = self.acquire_or_queue(r, source) else {
            debug!(source = %source.as_str(), "every share of this source is busy; queued for a turn");
            return Ok(Action::await_change());
        };
        reconcile().await
    }

    fn acquire_or_queue(&self, r: &Key, source: Source) -> Option<Permit> {
        let r = r.clone();
        let mut shares = self.shares.lock().expect("not poisoned");
        let share = shares.entry(source).or_default();
        self.expire_reservations(source, share);
        let free =
            share.running + share.reserved.len() < self.per_source && share.waiting.is_empty();
        if share.reserved.remove(&r).is_some() || free {
            share.running += 1;
            return Some(Permit {
                slots: self.clone(),
                source,
            });
        }
        share.queue(r);
        None
    }

    /// Reserves a free share for the first queued Channel and triggers its reconcile.
    fn next_turn(&self, source: Source, share: &mut Share) {
        while share.running + share.reserved.len() < self.per_source {
            let Some(next) = share.dequeue() else {
                return;
            };
            share.reserved.insert(next.clone(), Instant::now());
            let _ = self.turns.unbounded_send((source, next));
        }
    }

    /// A reserved turn its Channel will not take: to the next in the queue.
    fn pass_on(&self, source: Source, r: &Key) {
        let mut shares = self.shares.lock().expect("not poisoned");
        let share = shares.entry(source).or_default();
        if share.reserved.remove(r).is_some() {
            debug!(object = %r, "gone from the index; its turn passes on");
            self.next_turn(source, share);
        }
    }

    fn expire_reservations(&self, source: Source, share: &mut Share) {
        let before = share.reserved.len();
        share
            .reserved
            .retain(|_, since| since.elapsed() < RESERVATION);
        if share.reserved.len() < before {
            self.next_turn(source, share);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Channel, ChannelSpec};
    use kube::runtime::watcher::Event;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::oneshot;

    fn channel(name: &str, source: Source) -> Channel {
        let mut ch = Channel::new(name, ChannelSpec::new(source, name));
        ch.metadata.namespace = Some("default".into());
        ch
    }

    /// A reconcile of one Channel through the slots, held at its provider until released.
    struct Held {
        release: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<Action, ()>>,
        ran: Arc<AtomicBool>,
    }

    impl Held {
        async fn start(slots: &SourceSlots, ch: &Channel, calls_provider: bool) -> Held {
            let (release, held) = oneshot::channel::<()>();
            let ran = Arc::new(AtomicBool::new(false));
            let (slots, flag) = (slots.clone(), ran.clone());
            let (key, source) = (Key::from(super::super::index::key_of(ch)), ch.spec.source);
            let task = tokio::spawn(async move {
                slots
                    .run(&key, source, calls_provider, || async {
                        flag.store(true, Ordering::SeqCst);
                        let _ = held.await;
                        Ok(Action::await_change())
                    })
                    .await
            });
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            Held { release, task, ran }
        }

        fn ran(&self) -> bool {
            self.ran.load(Ordering::SeqCst)
        }

        /// Lets the reconcile finish, which frees its share.
        async fn finish(self) {
            assert!(self.ran());
            self.release.send(()).unwrap();
            assert_eq!(self.task.await.unwrap(), Ok(Action::await_change()));
        }

        /// The reconcile returned at once without running: queued, not requeued on a timer.
        async fn assert_queued(self) {
            let Held { release, task, ran } = self;
            drop(release); // one that ran anyway ends too, and is reported
            assert_eq!(task.await.unwrap(), Ok(Action::await_change()));
            assert!(!ran.load(Ordering::SeqCst), "ran without a share");
        }
    }

    fn store_of(channels: &[&Channel]) -> ChannelStore {
        let (store, mut writer) = super::super::feed::channel_store(64);
        writer.apply(&Event::Init);
        for ch in channels {
            writer.apply(&Event::InitApply((*ch).clone()));
        }
        writer.apply(&Event::InitDone);
        store
    }

    /// The name of the next Channel whose turn came, within 5 seconds.
    async fn next_turn(turns: &mut (impl Stream<Item = ChannelRef> + Unpin)) -> String {
        let turn = tokio::time::timeout(Duration::from_secs(5), turns.next())
            .await
            .expect("a turn comes")
            .expect("the turns go on");
        turn.metadata.name.unwrap()
    }

    #[tokio::test]
    async fn a_busy_source_queues_its_channels_and_triggers_them_in_turn_while_other_sources_run() {
        let (slots, rx) = SourceSlots::new(1);
        let [a, b, c] = ["a", "b", "c"].map(|n| channel(n, Source::Facebook));
        let store = store_of(&[&a, &b, &c]);
        let mut turns = Box::pin(slots.turns(rx, store));

        let held_a = Held::start(&slots, &a, true).await;
        Held::start(&slots, &b, true).await.assert_queued().await;
        // Another source is not held up by it.
        let twilio = Held::start(&slots, &channel("t", Source::TwilioSms), true).await;
        twilio.finish().await;

        held_a.finish().await;
        assert_eq!(next_turn(&mut turns).await, "b");
        // The freed share is b's: c, arriving before b's reconcile, queues behind it.
        Held::start(&slots, &c, true).await.assert_queued().await;
        Held::start(&slots, &b, true).await.finish().await;
        assert_eq!(next_turn(&mut turns).await, "c");
    }

    #[tokio::test]
    async fn sources_without_a_provider_call_take_no_share() {
        let (slots, _rx) = SourceSlots::new(1);
        let mut held = vec![];
        for i in 0..4 {
            let ch = channel(&format!("chat-{i}"), Source::ChatPlugin);
            held.push(Held::start(&slots, &ch, false).await);
        }
        // All four run at once, and leave the one provider share free.
        let facebook = Held::start(&slots, &channel("fb", Source::Facebook), true).await;
        facebook.finish().await;
        for h in held {
            h.finish().await;
        }
    }

    #[tokio::test]
    async fn the_turn_of_a_channel_gone_from_the_index_passes_to_the_next() {
        let (slots, rx) = SourceSlots::new(1);
        let [a, gone, c] = ["a", "gone", "c"].map(|n| channel(n, Source::Facebook));
        let store = store_of(&[&a, &c]);
        let mut turns = Box::pin(slots.turns(rx, store));
        let held_a = Held::start(&slots, &a, true).await;
        Held::start(&slots, &gone, true).await.assert_queued().await;
        Held::start(&slots, &c, true).await.assert_queued().await;
        held_a.finish().await;
        assert_eq!(next_turn(&mut turns).await, "c");
    }
}
