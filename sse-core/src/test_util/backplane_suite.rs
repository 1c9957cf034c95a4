//! One conformance suite for every [`Backplane`](crate::Backplane): what
//! the [contract](crate::Backplane#contract) promises, checked the same way
//! on each log, against managers as an application runs them.
//!
//! A test crate implements [`SharedLog`] for its log (how to start another
//! instance on it, and, where it can, how to lose its history or restart its
//! broker), then calls each check from a test of its own:
//!
//! ```
//! use sse_core::test_util::backplane_suite::{self, SharedLog};
//! use sse_core::test_util::MemoryLog;
//! use sse_core::{async_trait, SseManager};
//!
//! struct Memory(MemoryLog);
//!
//! #[async_trait]
//! impl SharedLog for Memory {
//!     async fn instance(&self, history: usize) -> SseManager {
//!         SseManager::builder()
//!             .configure(|c| c.history_size(history))
//!             .backplane(self.0.clone())
//!             .build()
//!             .expect("manager")
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! backplane_suite::every_target_kind_across_instances(&Memory(MemoryLog::new())).await;
//! # }
//! ```
//!
//! The checks wait on conditions with generous timeouts and panic, with what
//! was received, when one is not met.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::{ConnectOptions, Connection, Delivery, Event, SendError, SseManager, Target};

/// How long a check waits for anything.
pub const WAIT: Duration = Duration::from_secs(15);

/// A log under test, shared by the instances it starts.
#[async_trait]
pub trait SharedLog: Send + Sync {
    /// A new instance on the log: a manager with
    /// [`history_size`](crate::SseConfig::history_size) `history` and a
    /// backplane of its own, built as an application builds it (so that it
    /// has preloaded the log's recent past).
    async fn instance(&self, history: usize) -> SseManager;

    /// Makes the log lose its history while the instances run (a stream
    /// deleted, a broker restarted without its storage). Returns `false`,
    /// the default, when this log cannot: the check is skipped.
    async fn lose_history(&self) -> bool {
        false
    }

    /// Whether [`SharedLog::stop_broker`] and [`SharedLog::start_broker`]
    /// work. Default `false`: the restart check is skipped.
    fn can_restart(&self) -> bool {
        false
    }

    /// Stops the broker (or makes it unreachable).
    async fn stop_broker(&self) {}

    /// Starts the stopped broker again and waits until it answers. Returns
    /// whether the log kept its history.
    async fn start_broker(&self) -> bool {
        true
    }
}

/// One connection and everything it received so far.
#[derive(Debug)]
pub struct Watch {
    /// The connection read.
    pub connection: Connection,
    /// Everything received, as text.
    pub seen: String,
}

impl Watch {
    /// Connects to `manager` with `options`.
    ///
    /// # Panics
    /// When the manager refuses the connection.
    pub async fn connect(manager: &SseManager, options: ConnectOptions) -> Watch {
        Watch {
            connection: manager.connect(options).await.expect("connect"),
            seen: String::new(),
        }
    }

    /// The connection's client id.
    pub fn client_id(&self) -> String {
        self.connection.client_id().to_string()
    }

    /// Reads until `needle` was received.
    ///
    /// # Panics
    /// When it does not arrive within [`WAIT`] or the stream ends.
    pub async fn until(&mut self, needle: &str) {
        let seen = &mut self.seen;
        let connection = &mut self.connection;
        let read = tokio::time::timeout(WAIT, async {
            while !seen.contains(needle) {
                let frames: Bytes = connection.next().await.expect("stream open");
                seen.push_str(&String::from_utf8_lossy(&frames));
            }
        })
        .await;
        assert!(read.is_ok(), "{needle:?} never arrived; got {:?}", self.seen);
    }

    /// The events received, in order, as `(id, data)`, without the
    /// `connected` event.
    pub fn entries(&self) -> Vec<(Option<String>, String)> {
        self.seen
            .split("\n\n")
            .filter_map(|block| {
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id: ") {
                        id = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data = Some(value.to_owned());
                    }
                }
                data.filter(|data| !data.starts_with('{')).map(|data| (id, data))
            })
            .collect()
    }

    /// The data of the events received, in order.
    pub fn events(&self) -> Vec<String> {
        self.entries().into_iter().map(|(_, data)| data).collect()
    }

    /// Waits for the last of `expected`, then checks that the events
    /// received are exactly `expected`, in order.
    ///
    /// # Panics
    /// When they are not.
    pub async fn until_exactly(&mut self, expected: &[&str]) {
        if let Some(last) = expected.last() {
            self.until(&format!("data: {last}\n")).await;
        }
        assert_eq!(self.events(), expected, "{}", self.seen);
    }
}

/// Sends `data` to `target` on `manager`.
///
/// # Panics
/// When the send fails.
pub async fn send(manager: &SseManager, target: Target, data: &str) -> Delivery {
    manager.send(target, Event::message(data)).await.expect("published")
}

/// A send to every kind of target reaches exactly its connections on every
/// instance; each instance counts its own deliveries, and uses the log's
/// ids.
pub async fn every_target_kind_across_instances(log: &dyn SharedLog) {
    let (a, b) = (log.instance(100).await, log.instance(100).await);
    let alice_options = ConnectOptions::new().user("alice").session("s-alice").channel("news");
    let mut alice = Watch::connect(&b, alice_options).await;
    let mut bob = Watch::connect(&b, ConnectOptions::new().user("bob").session("s-bob")).await;
    let mut carol = Watch::connect(&b, ConnectOptions::new().user("carol").channel("sport")).await;
    let mut dave_on_a = Watch::connect(&a, ConnectOptions::new().user("dave").channel("news")).await;

    let all = send(&a, Target::All, "to-all").await;
    assert_eq!(all.delivered, 1, "a counts its own connections only: dave");
    assert_eq!(send(&a, Target::user("alice"), "to-alice").await.delivered, 0);
    let users = Target::users(["bob", "carol", "bob"]);
    assert_eq!(send(&a, users, "to-bob-carol").await.delivered, 0);
    assert_eq!(send(&a, Target::session("s-bob"), "to-s-bob").await.delivered, 0);
    let client = Target::client(carol.client_id());
    assert_eq!(send(&a, client, "to-carol-client").await.delivered, 0);
    assert_eq!(send(&a, Target::channel("news"), "to-news").await.delivered, 1);
    assert_eq!(send(&a, Target::user("dave"), "to-dave").await.delivered, 1);
    // Published on b: b's own connections count.
    assert_eq!(send(&b, Target::channel("sport"), "to-sport").await.delivered, 1);
    assert_eq!(send(&b, Target::All, "end").await.delivered, 3);

    alice.until_exactly(&["to-all", "to-alice", "to-news", "end"]).await;
    bob.until_exactly(&["to-all", "to-bob-carol", "to-s-bob", "end"]).await;
    carol
        .until_exactly(&["to-all", "to-bob-carol", "to-carol-client", "to-sport", "end"])
        .await;
    dave_on_a.until_exactly(&["to-all", "to-news", "to-dave", "end"]).await;
    let id = all.id.expect("an id");
    assert_eq!(
        alice.entries()[0].0.as_deref(),
        Some(id.as_str()),
        "the log's id everywhere"
    );
    assert_eq!(dave_on_a.entries()[0].0.as_deref(), Some(id.as_str()));
}

/// A client that resumes on another instance gets exactly what it missed:
/// its own events from every instance, nothing of others', no reset.
pub async fn resume_on_another_instance_with_exactly_the_gap(log: &dyn SharedLog) {
    let (a, b) = (log.instance(100).await, log.instance(100).await);
    let mut on_a = Watch::connect(&a, ConnectOptions::new().user("alice").channel("news")).await;
    let first = send(&a, Target::user("alice"), "one").await;
    on_a.until("data: one\n").await;
    drop(on_a);

    // While alice is away: events for her on both instances, and noise.
    send(&b, Target::user("bob"), "bob only").await;
    send(&b, Target::user("alice"), "two").await;
    send(&a, Target::channel("news"), "three").await;
    send(&a, Target::channel("other"), "other channel").await;
    send(&b, Target::All, "four").await;

    let resumed = ConnectOptions::new()
        .user("alice")
        .channel("news")
        .last_event_id(first.id.clone());
    let mut on_b = Watch::connect(&b, resumed).await;
    send(&a, Target::user("alice"), "live").await;
    on_b.until_exactly(&["two", "three", "four", "live"]).await;
    assert!(!on_b.seen.contains("event: reset"), "{}", on_b.seen);
}

/// An instance started after events were sent resumes a client from them
/// at once (it preloaded the log), then delivers live events once each;
/// a connection that does not resume gets nothing of the past.
pub async fn late_instance_preloads(log: &dyn SharedLog) {
    let a = log.instance(100).await;
    let first = send(&a, Target::user("alice"), "one").await;
    send(&a, Target::user("alice"), "two").await;
    send(&a, Target::user("bob"), "bob only").await;
    send(&a, Target::user("alice"), "three").await;

    let c = log.instance(100).await;
    let resumed = ConnectOptions::new().user("alice").last_event_id(first.id.clone());
    let mut on_c = Watch::connect(&c, resumed).await;
    on_c.until_exactly(&["two", "three"]).await;
    send(&a, Target::user("alice"), "four").await;
    on_c.until_exactly(&["two", "three", "four"]).await;
    let mut fresh = Watch::connect(&c, ConnectOptions::new().user("alice")).await;
    send(&c, Target::user("alice"), "five").await;
    fresh.until_exactly(&["five"]).await;
    assert_eq!(c.stats().resets, 0);
}

/// When the log loses its history, live connections go on receiving every
/// later event in order, a client resuming from an id of before gets a
/// `reset` on every instance, and ids of after resume as usual.
pub async fn history_lost_resets_resuming_clients(log: &dyn SharedLog) {
    let (a, b) = (log.instance(100).await, log.instance(100).await);
    let mut on_b = Watch::connect(&b, ConnectOptions::new().user("alice")).await;
    let first = send(&a, Target::All, "one").await;
    send(&a, Target::All, "two").await;
    on_b.until("data: two\n").await;
    if !log.lose_history().await {
        eprintln!("skipped: this log cannot lose its history");
        return;
    }
    for data in ["three", "four", "five"] {
        send(&a, Target::All, data).await;
    }
    send(&b, Target::user("alice"), "six").await;
    on_b.until_exactly(&["one", "two", "three", "four", "five", "six"])
        .await;
    assert!(!on_b.seen.contains("event: reset"), "a live connection is not reset");

    for instance in [&a, &b] {
        let options = ConnectOptions::new().last_event_id(first.id.clone());
        let mut resumed = Watch::connect(instance, options).await;
        resumed.until("event: reset").await;
        send(&a, Target::client(resumed.client_id()), "seven").await;
        resumed.until_exactly(&["seven"]).await;
    }
    let fresh_id = send(&a, Target::All, "eight").await.id;
    assert_ne!(fresh_id, first.id, "an id of the lost history is not given again");
    send(&b, Target::All, "nine").await;
    let mut resumed = Watch::connect(&b, ConnectOptions::new().last_event_id(fresh_id)).await;
    resumed.until_exactly(&["nine"]).await;
}

/// The broker is stopped mid-stream and started again: publishes fail
/// meanwhile (promptly, saying whether they may yet be stored), connections
/// stay open, and delivery then goes on in order without duplicates; a
/// client resuming from an id of before gets the replay if the log kept its
/// history, a `reset` if not.
pub async fn broker_restart_mid_stream(log: &dyn SharedLog) {
    if !log.can_restart() {
        eprintln!("skipped: this log cannot restart its broker");
        return;
    }
    let (a, b) = (log.instance(100).await, log.instance(100).await);
    let mut on_b = Watch::connect(&b, ConnectOptions::new().user("alice")).await;
    let first = send(&a, Target::All, "one").await;
    send(&a, Target::All, "two").await;
    send(&b, Target::All, "three").await;
    on_b.until("data: three\n").await;

    log.stop_broker().await;
    let mut unknown = Vec::new();
    for n in 0..2 {
        let data = format!("lost {n}");
        let failed = tokio::time::timeout(WAIT, a.broadcast(Event::message(data.as_str())))
            .await
            .expect("a publish hung while the broker was down");
        match failed {
            Err(SendError::Backplane(error)) if error.is_outcome_unknown() => unknown.push(data),
            Err(SendError::Backplane(_)) => {}
            other => panic!("a publish while the broker was down: {other:?}"),
        }
    }
    assert_eq!(
        b.connection_count(),
        1,
        "connections stay open while the broker is down"
    );

    let kept = log.start_broker().await;
    for (instance, data) in [(&b, "four"), (&a, "five")] {
        let deadline = Instant::now() + WAIT;
        while instance.broadcast(Event::message(data)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "{data} could not be published after the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    send(&a, Target::user("alice"), "six").await;
    on_b.until("data: six\n").await;
    // A publish of unknown outcome may yet be stored: once, if at all.
    let known = |watch: &Watch| -> Vec<String> {
        let events = watch.events();
        let lost: Vec<&String> = events.iter().filter(|e| e.starts_with("lost")).collect();
        assert!(
            lost.iter().all(|e| unknown.contains(e)),
            "{lost:?} reported not published"
        );
        assert_eq!(lost.iter().collect::<HashSet<_>>().len(), lost.len(), "{}", watch.seen);
        events.into_iter().filter(|e| !e.starts_with("lost")).collect()
    };
    assert_eq!(
        known(&on_b),
        ["one", "two", "three", "four", "five", "six"],
        "{}",
        on_b.seen
    );

    let options = ConnectOptions::new().user("alice").last_event_id(first.id);
    let mut resumed = Watch::connect(&a, options).await;
    if kept {
        resumed.until("data: six\n").await;
        assert_eq!(
            known(&resumed),
            ["two", "three", "four", "five", "six"],
            "{}",
            resumed.seen
        );
        assert!(!resumed.seen.contains("event: reset"));
    } else {
        resumed.until("event: reset").await;
        send(&b, Target::All, "seven").await;
        resumed.until_exactly(&["seven"]).await;
    }
}

/// Publishers on several instances at once: every instance delivers every
/// event exactly once, all in the same order with the same ids, and each
/// publisher's events in the order it sent them.
pub async fn concurrent_publishers_agree_on_one_order(log: &dyn SharedLog) {
    const PUBLISHERS: usize = 3;
    const EACH: usize = 40;
    let mut instances = Vec::new();
    for _ in 0..PUBLISHERS {
        instances.push(log.instance(1000).await);
    }
    let mut watches = Vec::new();
    for instance in &instances {
        watches.push(Watch::connect(instance, ConnectOptions::new()).await);
    }
    let publishers = instances.iter().enumerate().map(|(p, instance)| async move {
        for n in 0..EACH {
            send(instance, Target::All, &format!("p{p}-{n}")).await;
        }
    });
    futures_util::future::join_all(publishers).await;
    send(&instances[0], Target::All, "end").await;

    let mut orders = Vec::new();
    for watch in &mut watches {
        watch.until("data: end\n").await;
        let entries = watch.entries();
        assert_eq!(entries.len(), PUBLISHERS * EACH + 1, "{}", watch.seen);
        let distinct: HashSet<&String> = entries.iter().map(|(_, data)| data).collect();
        assert_eq!(
            distinct.len(),
            entries.len(),
            "an event delivered twice: {}",
            watch.seen
        );
        for p in 0..PUBLISHERS {
            let mine: Vec<&String> = entries
                .iter()
                .map(|(_, data)| data)
                .filter(|data| data.starts_with(&format!("p{p}-")))
                .collect();
            let sent: Vec<String> = (0..EACH).map(|n| format!("p{p}-{n}")).collect();
            assert_eq!(mine, sent.iter().collect::<Vec<_>>(), "publisher {p}'s order");
        }
        assert!(
            entries.iter().all(|(id, _)| id.is_some()),
            "every event has the log's id"
        );
        orders.push(entries);
    }
    for order in &orders[1..] {
        assert_eq!(
            order, &orders[0],
            "every instance delivers the same order with the same ids"
        );
    }
}
