//! Statistics across instances through Redis: every instance's figures
//! and their totals from any instance, with distinct users counted once
//! across instances; an instance that shuts down drops out at once, one
//! that dies within three report intervals.
//!
//! Expects Redis as `tests/redis.rs` does (and skips or fails the same way).

mod common;

use std::time::{Duration, Instant};

use common::*;
use sse_core::{ClusterStats, ConnectOptions, SseManager};

/// How often the test's instances report.
const INTERVAL: Duration = Duration::from_millis(200);

impl Fixture {
    /// An instance reporting its statistics every [`INTERVAL`].
    async fn stats_instance(&self) -> SseManager {
        let backplane = self.backplane(100).build().await.expect("backplane");
        SseManager::builder()
            .configure(|c| c.history_size(100).stats_interval(INTERVAL))
            .backplane(backplane)
            .build()
            .expect("manager")
    }
}

/// Asks `manager` until `done` holds for the cluster's statistics.
async fn until_cluster(manager: &SseManager, what: &str, done: impl Fn(&ClusterStats) -> bool) -> ClusterStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = manager.cluster_stats().await.expect("cluster statistics answer");
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "never {what}: {stats:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn user(manager: &SseManager, user: &str, channel: &str) -> Watch {
    connect(manager, ConnectOptions::new().user(user).channel(channel)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_sees_the_cluster_with_users_counted_once() {
    let Some(fx) = fixture("stats-cluster").await else {
        return;
    };
    let (a, b) = (fx.stats_instance().await, fx.stats_instance().await);
    let _alice_a = user(&a, "alice", "news").await;
    let _bob = user(&a, "bob", "news").await;
    let _alice_b = user(&b, "alice", "news").await;
    let _carol = user(&b, "carol", "sports").await;
    a.broadcast(sse_core::Event::message("one")).await.expect("published");

    for (name, manager) in [("a", &a), ("b", &b)] {
        // Connections are counted live on the answering instance, but its
        // users only as of its latest report: wait for the report that
        // holds all of them (one interval), then alice must count once.
        let stats = until_cluster(manager, "three users across both instances", |s| {
            s.instances.len() == 2
                && s.totals.connections == 4
                && s.totals.events_published == 1
                && s.instances.iter().all(|i| i.local || i.stats.connections == 2)
                && s.totals.unique_users >= 3
        })
        .await;
        let totals = &stats.totals;
        assert_eq!(totals.unique_users, 3, "{name}: alice is one user on two instances");
        assert_eq!(totals.channels.get("news"), Some(&3), "{name}: {totals:?}");
        assert_eq!(totals.channels.get("sports"), Some(&1), "{name}: {totals:?}");
        assert!(stats.instances[0].local && stats.instances[0].age_ms == 0, "{name}");
        assert!(!stats.instances[1].local, "{name}");
        assert_eq!(stats.instances[1].stats.connections, 2, "{name}");
        // A report stands for three intervals at most (and Redis's clock
        // is the one that ages it).
        assert!(stats.instances[1].age_ms <= 3 * 200, "{name}: {stats:?}");
        assert_eq!(stats.instances[0].stats.connections, 2, "{name}: its own figures, live");
    }
    let ids: Vec<String> = until_cluster(&a, "two", |s| s.instances.len() == 2)
        .await
        .instances
        .into_iter()
        .map(|i| i.instance)
        .collect();
    let from_b: Vec<String> = until_cluster(&b, "two", |s| s.instances.len() == 2)
        .await
        .instances
        .into_iter()
        .map(|i| i.instance)
        .collect();
    assert_eq!(
        ids,
        [from_b[1].clone(), from_b[0].clone()],
        "the same ids from either side"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_shuts_down_drops_out_at_once() {
    let Some(fx) = fixture("stats-shutdown").await else {
        return;
    };
    let a = fx.stats_instance().await;
    // A long interval: only the withdrawal can take b out in time.
    let backplane = fx.backplane(100).build().await.expect("backplane");
    let b = SseManager::builder()
        .configure(|c| c.history_size(100).stats_interval(Duration::from_secs(600)))
        .backplane(backplane)
        .build()
        .expect("manager");
    let _dave = user(&b, "dave", "news").await;
    until_cluster(&a, "b reported", |s| s.instances.len() == 2).await;
    b.shutdown(None).await;
    let stats = until_cluster(&a, "b gone", |s| s.instances.len() == 1).await;
    assert_eq!(stats.totals.connections, 0);
    assert_eq!(stats.totals.unique_users, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_dies_drops_out_within_three_intervals() {
    let Some(fx) = fixture("stats-crash").await else {
        return;
    };
    let a = fx.stats_instance().await;

    // The doomed instance runs on a runtime of its own, which is then shut
    // down without waiting: its tasks stop where they are, as in a crash.
    let (url, prefix) = (fx.url.clone(), fx.prefix.clone());
    let doomed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (manager, erin) = runtime.block_on(async {
            let fx = Fixture { url, prefix };
            let manager = fx.stats_instance().await;
            let erin = user(&manager, "erin", "news").await;
            std::mem::forget(fx); // its keys are the outer fixture's
            (manager, erin)
        });
        (runtime, manager, erin)
    });
    let (runtime, doomed_manager, erin) = doomed.join().expect("the doomed instance starts");
    until_cluster(&a, "the doomed instance reported", |s| {
        s.instances.len() == 2 && s.totals.unique_users == 1
    })
    .await;

    let died = Instant::now();
    runtime.shutdown_background();
    let stats = until_cluster(&a, "the dead instance gone", |s| s.instances.len() == 1).await;
    let elapsed = died.elapsed();
    println!("the dead instance dropped out {elapsed:?} after it died (report interval {INTERVAL:?})");
    assert!(elapsed < INTERVAL * 3 + Duration::from_secs(3), "{elapsed:?}");
    assert_eq!((stats.totals.connections, stats.totals.unique_users), (0, 0));
    drop((erin, doomed_manager));
}
