//! Presence across instances through Redis: several tabs on several
//! instances are one presence, a user is announced once when their first
//! connection anywhere opens and once when their last one anywhere closes,
//! an instance that shuts down withdraws its users at once, one that dies
//! has them leave within 5/4 of its presence timeout, and presence that
//! Redis lost is sent again.
//!
//! Expects Redis as `tests/redis.rs` does (and skips or fails the same way).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use sse_core::{ConnectOptions, PresenceMember, SseManager};

const CHANNEL: &str = "team/red";

impl Fixture {
    /// An instance keeping presence for `team/*`, renewed every quarter of
    /// `timeout`.
    async fn presence_instance(&self, timeout: Duration) -> SseManager {
        let backplane = self.backplane(100).build().await.expect("backplane");
        SseManager::builder()
            .configure(|c| {
                c.history_size(100)
                    .presence_channels(vec!["team/*".to_owned()])
                    .presence_timeout(timeout)
            })
            .backplane(backplane)
            .build()
            .expect("manager")
    }
}

impl Watch {
    /// The presence notices received so far: (user, state), in order.
    fn notices(&self) -> Vec<(String, String)> {
        let mut notices = Vec::new();
        let mut named_presence = false;
        for line in self.seen.lines() {
            if line == "event: presence" {
                named_presence = true;
            } else if let Some(data) = line.strip_prefix("data: ").filter(|_| named_presence) {
                let notice: serde_json::Value = serde_json::from_str(data).expect("presence data is JSON");
                assert_eq!(notice["channel"], CHANNEL, "{data}");
                let user = notice["userId"].as_str().expect("userId").to_owned();
                let state = notice["state"].as_str().expect("state").to_owned();
                notices.push((user, state));
                named_presence = false;
            } else if line.is_empty() {
                named_presence = false;
            }
        }
        notices
    }

    /// Reads until the `n`th notice arrived.
    async fn until_notices(&mut self, n: usize) -> Vec<(String, String)> {
        let read = tokio::time::timeout(WAIT, async {
            while self.notices().len() < n {
                let frames = futures::StreamExt::next(&mut self.connection)
                    .await
                    .expect("stream open");
                self.seen.push_str(&String::from_utf8_lossy(&frames));
            }
        })
        .await;
        assert!(read.is_ok(), "{n} notices never arrived; got {:?}", self.notices());
        self.notices()
    }
}

fn notice(user: &str, state: &str) -> (String, String) {
    (user.to_owned(), state.to_owned())
}

fn members(list: &[(&str, usize)]) -> Vec<PresenceMember> {
    list.iter().map(|(user, n)| PresenceMember::new(*user, *n)).collect()
}

/// Waits until `manager.presence(CHANNEL)` answers `expected`.
async fn until_presence(manager: &SseManager, expected: &[PresenceMember]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = manager.presence(CHANNEL).await.expect("presence answers");
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "presence stayed {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn tab(manager: &SseManager, user: &str) -> Watch {
    connect(manager, ConnectOptions::new().user(user).channel(CHANNEL)).await
}

async fn observer(manager: &SseManager) -> Watch {
    connect(manager, ConnectOptions::new().channel(CHANNEL)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_on_two_instances_are_one_presence() {
    let Some(fx) = fixture("presence-tabs").await else {
        return;
    };
    let timeout = Duration::from_secs(30);
    let (a, b) = (fx.presence_instance(timeout).await, fx.presence_instance(timeout).await);
    let mut watcher = observer(&a).await;
    let mut alice = tab(&a, "alice").await;
    watcher.until_notices(1).await;

    let bob_on_b = tab(&b, "bob").await;
    assert_eq!(watcher.until_notices(2).await[1], notice("bob", "join"));
    alice.until("\"userId\":\"bob\"").await;
    let bob_on_a = tab(&a, "bob").await;
    let expected = members(&[("alice", 1), ("bob", 2)]);
    until_presence(&a, &expected).await;
    until_presence(&b, &expected).await;

    assert!(b.disconnect(&bob_on_b.client_id()));
    until_presence(&b, &members(&[("alice", 1), ("bob", 1)])).await;
    // Another event orders the check: had a second join or a leave been
    // appended, it would have arrived before this one.
    a.broadcast(sse_core::Event::message("mark")).await.expect("sent");
    watcher.until("data: mark").await;
    assert_eq!(watcher.notices(), [notice("alice", "join"), notice("bob", "join")]);

    assert!(a.disconnect(&bob_on_a.client_id()));
    let notices = watcher.until_notices(3).await;
    assert_eq!(notices[2], notice("bob", "leave"));
    until_presence(&b, &members(&[("alice", 1)])).await;
    alice.until("\"state\":\"leave\"").await;
    // Nobody is told about themselves.
    assert_eq!(alice.notices(), [notice("bob", "join"), notice("bob", "leave")]);
    assert_eq!(bob_on_b.notices(), []);
    assert_eq!(bob_on_a.notices(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_shuts_down_withdraws_its_users_at_once() {
    let Some(fx) = fixture("presence-shutdown").await else {
        return;
    };
    // A timeout far longer than the wait: the leave can only come from the
    // withdrawal.
    let timeout = Duration::from_secs(600);
    let (a, b) = (fx.presence_instance(timeout).await, fx.presence_instance(timeout).await);
    let mut watcher = observer(&a).await;
    let _carol = tab(&b, "carol").await;
    watcher.until_notices(1).await;
    b.shutdown(None).await;
    assert_eq!(watcher.until_notices(2).await[1], notice("carol", "leave"));
    until_presence(&a, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_of_an_instance_that_dies_leave_within_five_quarters_of_its_timeout() {
    let Some(fx) = fixture("presence-crash").await else {
        return;
    };
    let timeout = Duration::from_secs(1);
    let a = fx.presence_instance(timeout).await;
    let mut watcher = observer(&a).await;

    // The doomed instance runs on a runtime of its own, which is then shut
    // down without waiting: its tasks stop where they are, as in a crash.
    let (url, prefix) = (fx.url.clone(), fx.prefix.clone());
    let doomed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (manager, dave) = runtime.block_on(async {
            let fx = Fixture { url, prefix };
            let manager = fx.presence_instance(timeout).await;
            let dave = tab(&manager, "dave").await;
            std::mem::forget(fx); // its keys are the outer fixture's
            (manager, dave)
        });
        (runtime, manager, dave)
    });
    let (runtime, doomed_manager, dave) = doomed.join().expect("the doomed instance starts");
    assert_eq!(watcher.until_notices(1).await[0], notice("dave", "join"));

    let died = Instant::now();
    runtime.shutdown_background();
    assert_eq!(watcher.until_notices(2).await[1], notice("dave", "leave"));
    let elapsed = died.elapsed();
    println!("dave left {elapsed:?} after their instance died (presence timeout {timeout:?})");
    // 5/4 of the timeout, plus slack for a busy machine.
    assert!(elapsed < timeout * 5 / 4 + Duration::from_secs(3), "{elapsed:?}");
    until_presence(&a, &[]).await;
    drop((dave, doomed_manager));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_that_redis_lost_is_sent_again() {
    let Some(fx) = fixture("presence-lost").await else {
        return;
    };
    let a = fx.presence_instance(Duration::from_millis(400)).await;
    let _alice = tab(&a, "alice").await;
    until_presence(&a, &members(&[("alice", 1)])).await;

    let mut redis = fx.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:presence:*", fx.prefix))
        .query_async(&mut redis)
        .await
        .expect("KEYS");
    assert!(keys.len() >= 3, "{keys:?}");
    redis::cmd("DEL")
        .arg(&keys)
        .query_async::<usize>(&mut redis)
        .await
        .expect("DEL");
    assert_eq!(a.presence(CHANNEL).await.expect("answers"), []);
    // The next renewal finds the instance gone and sends everything again.
    until_presence(&a, &members(&[("alice", 1)])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_tabs_on_two_instances_give_exact_counts_and_alternating_notices() {
    let Some(fx) = fixture("presence-race").await else {
        return;
    };
    let timeout = Duration::from_secs(30);
    let instances = [fx.presence_instance(timeout).await, fx.presence_instance(timeout).await];
    let mut watcher = observer(&instances[0]).await;
    let users: [&'static str; 5] = ["u0", "u1", "u2", "u3", "u4"];
    let tabs_per_user = 6;

    for round in 0..3 {
        // Open every tab at once, each on an instance picked at random.
        let instances_ref = &instances;
        let opening = users.into_iter().flat_map(|user| {
            (0..tabs_per_user).map(move |_| {
                let manager = instances_ref[fastrand::usize(..2)].clone();
                tokio::spawn(async move {
                    manager
                        .connect(ConnectOptions::new().user(user).channel(CHANNEL))
                        .await
                        .expect("connect")
                })
            })
        });
        let mut tabs = Vec::new();
        for task in opening.collect::<Vec<_>>() {
            tabs.push(task.await.expect("task"));
        }
        let all: Vec<_> = users.iter().map(|user| (*user, tabs_per_user)).collect();
        until_presence(&instances[0], &members(&all)).await;
        until_presence(&instances[1], &members(&all)).await;

        // Close them all at once, in a random order.
        fastrand::shuffle(&mut tabs);
        let closing: Vec<_> = tabs
            .into_iter()
            .map(|tab| {
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    drop(tab);
                })
            })
            .collect();
        for task in closing {
            task.await.expect("task");
        }
        until_presence(&instances[0], &[]).await;
        until_presence(&instances[1], &[]).await;

        // Each user joined and left exactly once per round.
        let expected = users.len() * 2 * (round + 1);
        let notices = watcher.until_notices(expected).await;
        let mut states: HashMap<&str, Vec<&str>> = HashMap::new();
        for (user, state) in &notices {
            states.entry(user.as_str()).or_default().push(state.as_str());
        }
        for user in users {
            let alternating: Vec<&str> = ["join", "leave"].repeat(round + 1);
            assert_eq!(states.get(user), Some(&alternating), "{user}: {notices:?}");
        }
    }
}
