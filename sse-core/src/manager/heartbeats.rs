//! Heartbeats on a timer wheel: which connections the maintenance task
//! looks at on each tick (an eighth of the heartbeat interval). A
//! connection is filed under the tick before its heartbeat falls due (one
//! interval after the last frame queued for it); when that tick comes, it
//! gets its heartbeat if it is still due, or, if an event went out since,
//! is filed again under the tick before its new due time. So each
//! connection is looked at about once per interval, idle or busy, instead
//! of on every tick, and a connection that closed is forgotten when its
//! tick comes.

use std::time::Duration;

use crate::connection::ClientId;

/// Ticks the wheel spans: a connection is never filed more than an
/// interval and a half (12 ticks) ahead.
const SLOTS: u64 = 16;

/// The connections to look at, by tick.
#[derive(Debug)]
pub(super) struct Wheel {
    slots: Vec<Vec<ClientId>>,
    /// The last tick whose slot was taken (ticks are counted in the
    /// manager's milliseconds divided by the tick's).
    done: Option<u64>,
    /// Connections looked at, for the tests.
    #[cfg(test)]
    pub(super) visits: u64,
}

impl Wheel {
    pub(super) fn new() -> Self {
        Wheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            done: None,
            #[cfg(test)]
            visits: 0,
        }
    }

    /// Files connection `id` to be looked at on the last tick that leaves
    /// half a tick before `due_ms`, and never before the next tick.
    pub(super) fn file(&mut self, id: ClientId, due_ms: u64, tick_ms: u64) {
        let tick_ms = tick_ms.max(1);
        let earliest = self.done.map_or(0, |done| done + 1);
        let wanted = due_ms.saturating_sub(tick_ms / 2) / tick_ms;
        let at = wanted.clamp(earliest, earliest + SLOTS - 1);
        self.slots[slot(at)].push(id);
    }

    /// The connections filed under every tick up to the one of `now_ms`
    /// not taken yet.
    pub(super) fn take(&mut self, now_ms: u64, tick_ms: u64) -> Vec<ClientId> {
        let tick_ms = tick_ms.max(1);
        let now = now_ms / tick_ms;
        let first = match self.done {
            Some(done) if done >= now => return Vec::new(),
            Some(done) => (done + 1).max(now.saturating_sub(SLOTS - 1)),
            None => now.saturating_sub(SLOTS - 1),
        };
        let mut due = Vec::new();
        for tick in first..=now {
            due.append(&mut self.slots[slot(tick)]);
        }
        self.done = Some(now);
        #[cfg(test)]
        {
            self.visits += due.len() as u64;
        }
        due
    }
}

fn slot(tick: u64) -> usize {
    // SLOTS fits in usize.
    (tick % SLOTS) as usize
}

/// The period of the heartbeat timer for a heartbeat `interval`.
pub(super) fn tick(interval: Duration) -> Duration {
    interval / 8
}

/// [`tick`] in whole milliseconds, at least 1.
pub(super) fn tick_ms(interval: Duration) -> u64 {
    u64::try_from(tick(interval).as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(all(test, feature = "tokio"))]
mod visits {
    use std::time::{Duration, Instant};

    use futures_util::StreamExt as _;

    use crate::{ConnectOptions, Event, SseManager, Target};

    const INTERVAL: Duration = Duration::from_millis(80);
    const CONNECTIONS: u64 = 50;

    /// `CONNECTIONS` connections read in the background; with `busy`, an
    /// event to all every 20 ms, so that none is ever due a heartbeat.
    /// Returns the connections looked at and the intervals passed, once at
    /// least `intervals` passed.
    async fn looked_at(busy: bool, intervals: u32) -> (u64, u64, f64) {
        let manager = SseManager::builder()
            .configure(|c| c.heartbeat_interval(Some(INTERVAL)))
            .build()
            .expect("manager");
        let mut readers = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut connection = manager.connect(ConnectOptions::new()).await.expect("connect");
            readers.push(tokio::spawn(async move { while connection.next().await.is_some() {} }));
        }
        let started = Instant::now();
        let before = manager.shared.heartbeats.lock().visits;
        while started.elapsed() < INTERVAL * intervals {
            if busy {
                manager.send(Target::All, Event::message("x")).await.expect("sent");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let visits = manager.shared.heartbeats.lock().visits - before;
        let heartbeats = manager.stats().heartbeats;
        manager.shutdown(None).await;
        for reader in readers {
            let _ = reader.await;
        }
        (
            visits,
            heartbeats,
            started.elapsed().as_secs_f64() / INTERVAL.as_secs_f64(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_connection_is_looked_at_once_per_heartbeat() {
        let (visits, heartbeats, intervals) = looked_at(false, 10).await;
        assert!(
            heartbeats >= CONNECTIONS * 5,
            "{heartbeats} heartbeats in {intervals:.1} intervals"
        );
        // Every look sends a heartbeat, but for the last round's.
        assert!(
            visits <= heartbeats + CONNECTIONS,
            "{visits} looks for {heartbeats} heartbeats"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_connection_is_looked_at_about_once_per_interval() {
        let (visits, _, intervals) = looked_at(true, 10).await;
        // Looking on every tick would be 8 looks per connection per
        // interval; a late event loop only makes fewer.
        let per_interval = visits as f64 / CONNECTIONS as f64 / intervals;
        assert!(
            per_interval <= 2.0,
            "{per_interval:.2} looks per connection per interval"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ClientId {
        ClientId::from(format!("c{n}"))
    }

    #[test]
    fn a_connection_comes_up_on_the_tick_before_it_is_due() {
        let mut wheel = Wheel::new();
        assert!(wheel.take(0, 10).is_empty());
        // Due at 80 ms: looked at on the tick of 70 ms (75 leaves half a tick).
        wheel.file(id(1), 80, 10);
        assert!(wheel.take(69, 10).is_empty());
        assert_eq!(wheel.take(70, 10), [id(1)]);
        assert!(wheel.take(80, 10).is_empty());
    }

    #[test]
    fn late_ticks_take_every_slot_passed_once() {
        let mut wheel = Wheel::new();
        wheel.take(0, 10);
        wheel.file(id(1), 30, 10);
        wheel.file(id(2), 60, 10);
        wheel.file(id(3), 200, 10);
        // A timer 40 ms late takes both that fell due.
        let mut due = wheel.take(65, 10);
        due.sort();
        assert_eq!(due, [id(1), id(2)]);
        // Filed no further than the wheel reaches, and found again.
        assert!(wheel.take(140, 10).is_empty());
        assert_eq!(wheel.take(220, 10), [id(3)]);
        // What is due in the past comes up on the next tick.
        wheel.file(id(4), 0, 10);
        assert_eq!(wheel.take(230, 10), [id(4)]);
    }
}
