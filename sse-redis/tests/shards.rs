//! Sharding: channel events spread over streams by channel, each instance
//! reading only the shards of the channels its connections hold, every
//! instance delivering what it reads in one order, and resumes exact where
//! the instance read the channel's shard, a `reset` where it did not.
//!
//! Expects Redis as `tests/redis.rs` does (and skips or fails the same way).

mod common;

use std::time::Duration;

use common::*;
use sse_core::{Backplane, ConnectOptions, Event, SseManager, Target};
use sse_redis::RedisBackplane;

const SHARDS: u32 = 8;

impl Fixture {
    /// An instance on a sharded log, and a handle on its backplane.
    async fn sharded(&self) -> (SseManager, RedisBackplane) {
        let backplane = self.backplane(100).shards(SHARDS).build().await.expect("backplane");
        let handle = backplane.clone();
        let manager = SseManager::builder()
            .configure(|c| c.history_size(100))
            .backplane(backplane)
            .build()
            .expect("manager");
        (manager, handle)
    }

    async fn stream_len(&self, shard: u32) -> usize {
        redis::cmd("XLEN")
            .arg(format!("{}:{shard}", self.key()))
            .query_async(&mut self.redis().await)
            .await
            .expect("XLEN")
    }
}

/// Channel names on `n` distinct shards, with those shards.
fn channels_on_distinct_shards(backplane: &RedisBackplane, n: usize) -> Vec<(String, u32)> {
    let mut found: Vec<(String, u32)> = Vec::new();
    for k in 0.. {
        let channel = format!("channel-{k}");
        let shard = backplane.channel_shard(&channel).expect("sharded");
        if found.iter().all(|(_, s)| *s != shard) {
            found.push((channel, shard));
        }
        if found.len() == n {
            break;
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_disjoint_channels_read_only_their_shards() {
    let Some(fx) = fixture("shards-disjoint").await else {
        return;
    };
    let ((a, plane_a), (b, plane_b)) = (fx.sharded().await, fx.sharded().await);
    let found = channels_on_distinct_shards(&plane_a, 3);
    let [(x, shard_x), (y, shard_y), (z, shard_z)] = [found[0].clone(), found[1].clone(), found[2].clone()];

    let mut alice = connect(&a, ConnectOptions::new().user("alice").channel(&x)).await;
    let mut bob = connect(&b, ConnectOptions::new().user("bob").channel(&y)).await;
    assert_eq!(
        plane_a.shards_read(),
        [shard_x],
        "a reads the shard of its channel only"
    );
    assert_eq!(
        plane_b.shards_read(),
        [shard_y],
        "b reads the shard of its channel only"
    );

    // Across instances, each way; a send to a channel nobody on the
    // publishing instance holds does not wait for its entry to come back.
    let to_x = tokio::time::timeout(WAIT, b.send(Target::channel(&x), Event::message("to-x")))
        .await
        .expect("a send to a shard b does not read returns at once")
        .expect("published");
    assert_eq!(to_x.delivered, 0);
    assert_eq!(send(&a, Target::channel(&y), "to-y").await.delivered, 0);
    assert_eq!(send(&a, Target::channel(&z), "to-z, held by nobody").await.delivered, 0);
    assert_eq!(send(&a, Target::All, "to-all").await.delivered, 1);
    assert_eq!(send(&b, Target::user("alice"), "to-alice").await.delivered, 0);
    alice.until_exactly(&["to-x", "to-all", "to-alice"]).await;
    bob.until_exactly(&["to-y", "to-all"]).await;

    // Each channel's events went to its shard, the rest to the shared stream.
    assert_eq!(fx.stream_len(shard_x).await, 1);
    assert_eq!(fx.stream_len(shard_y).await, 1);
    assert_eq!(fx.stream_len(shard_z).await, 1);
    assert_eq!(fx.xlen().await, 2, "the broadcast and the send to alice");
    assert_eq!(plane_a.shards_read(), [shard_x]);
    assert_eq!(plane_b.shards_read(), [shard_y]);

    // Joining a channel at runtime makes its shard read.
    assert!(b.subscribe(&bob.client_id(), &z).expect("subscribed"));
    let deadline = std::time::Instant::now() + WAIT;
    while plane_b.shards_read() != {
        let mut both = vec![shard_y, shard_z];
        both.sort_unstable();
        both
    } {
        assert!(std::time::Instant::now() < deadline, "{:?}", plane_b.shards_read());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    send(&a, Target::channel(&z), "to-z").await;
    bob.until_exactly(&["to-y", "to-all", "to-z"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_are_exact_on_any_instance() {
    let Some(fx) = fixture("shards-resume").await else {
        return;
    };
    let ((a, plane_a), (b, plane_b)) = (fx.sharded().await, fx.sharded().await);
    let x = channels_on_distinct_shards(&plane_a, 1)[0].0.clone();
    let alice = || ConnectOptions::new().user("alice").channel(&x);

    let mut on_a = connect(&a, alice()).await;
    let first = send(&a, Target::channel(&x), "one").await;
    send(&b, Target::user("alice"), "two").await;
    send(&b, Target::channel(&x), "three").await;
    send(&a, Target::All, "four").await;
    on_a.until_exactly(&["one", "two", "three", "four"]).await;
    assert!(plane_b.shards_read().is_empty(), "nobody on b holds x");

    // a read x's shard all along; b starts reading it for this client, and
    // loads its recent past first: exact on both, the same ids.
    let mut from_a = connect(&a, alice().last_event_id(first.id.clone())).await;
    let mut from_b = connect(&b, alice().last_event_id(first.id.clone())).await;
    from_a.until_exactly(&["two", "three", "four"]).await;
    from_b.until_exactly(&["two", "three", "four"]).await;
    assert!(!from_b.seen.contains("event: reset"), "{}", from_b.seen);
    let ids = |watch: &Watch| -> Vec<String> {
        watch
            .seen
            .lines()
            .filter_map(|line| line.strip_prefix("id: ").map(str::to_owned))
            .collect()
    };
    assert_eq!(ids(&from_b), ids(&from_a), "the log's ids on both");
    assert_eq!(b.stats().resets, 0);

    // Live events follow on both, in the log's order.
    send(&b, Target::channel(&x), "five").await;
    send(&a, Target::user("alice"), "six").await;
    from_a.until_exactly(&["two", "three", "four", "five", "six"]).await;
    from_b.until_exactly(&["two", "three", "four", "five", "six"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_before_the_shards_retention_gets_a_reset() {
    let Some(fx) = fixture("shards-retention").await else {
        return;
    };
    let (a, plane_a) = fx.sharded().await;
    let x = channels_on_distinct_shards(&plane_a, 1)[0].0.clone();
    let _held = connect(&a, ConnectOptions::new().channel(&x)).await;
    let first = send(&a, Target::channel(&x), "first").await;
    // Past the stream's retention of 100 (Redis trims whole nodes of 100).
    for n in 0..300 {
        send(&a, Target::channel(&x), &format!("n{n}")).await;
    }
    assert!(fx.stream_len(plane_a.channel_shard(&x).expect("sharded")).await < 300);
    let (b, _) = fx.sharded().await;
    let options = ConnectOptions::new().channel(&x).last_event_id(first.id.clone());
    let mut resumed = connect(&b, options).await;
    resumed.until("event: reset").await;
    assert_eq!(b.stats().resets, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_delivers_the_shards_in_one_order() {
    let Some(fx) = fixture("shards-order").await else {
        return;
    };
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(fx.sharded().await);
    }
    let found = channels_on_distinct_shards(&instances[0].1, 2);
    let (x, y) = (found[0].0.clone(), found[1].0.clone());
    let mut watches = Vec::new();
    for (manager, _) in &instances {
        let options = ConnectOptions::new().user("u").channel(&x).channel(&y);
        watches.push(connect(manager, options).await);
    }
    const EACH: usize = 30;
    let publishers = instances.iter().enumerate().map(|(p, (manager, _))| {
        let target = match p {
            0 => Target::channel(&x),
            1 => Target::channel(&y),
            _ => Target::user("u"),
        };
        async move {
            for n in 0..EACH {
                manager
                    .send(target.clone(), Event::message(format!("p{p}-{n}")))
                    .await
                    .expect("published");
            }
        }
    });
    futures::future::join_all(publishers).await;
    send(&instances[0].0, Target::All, "end").await;

    let mut orders = Vec::new();
    for watch in &mut watches {
        watch.until("data: end\n").await;
        let entries: Vec<(String, String)> = watch
            .seen
            .split("\n\n")
            .filter_map(|frame| {
                let id = frame.lines().find_map(|l| l.strip_prefix("id: "))?;
                let data = frame.lines().find_map(|l| l.strip_prefix("data: "))?;
                Some((id.to_owned(), data.to_owned()))
            })
            .filter(|(_, data)| data.starts_with('p') || data == "end")
            .collect();
        assert_eq!(entries.len(), 3 * EACH + 1, "{}", watch.seen);
        let keys: Vec<(u64, u64)> = entries
            .iter()
            .map(|(id, _)| {
                let (ms, seq) = id.split_once('-').expect("a stream id");
                (ms.parse().expect("ms"), seq.parse().expect("seq"))
            })
            .collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "ids ascend across shards: {entries:?}"
        );
        for p in 0..3 {
            let mine: Vec<&str> = entries
                .iter()
                .map(|(_, data)| data.as_str())
                .filter(|data| data.starts_with(&format!("p{p}-")))
                .collect();
            let sent: Vec<String> = (0..EACH).map(|n| format!("p{p}-{n}")).collect();
            assert_eq!(mine, sent, "publisher {p}'s order");
        }
        orders.push(entries);
    }
    assert_eq!(orders[0], orders[1], "the same order with the same ids");
    assert_eq!(orders[0], orders[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_shard_cannot_be_read_is_refused() {
    let Some((server, fx, _)) = own_server("shards-down").await else {
        return;
    };
    let (a, plane) = fx.sharded().await;
    let x = channels_on_distinct_shards(&plane, 1)[0].0.clone();
    drop(server);
    // It could miss events: refused (once the wait is over), not let in.
    let refused = a.connect(ConnectOptions::new().channel(&x)).await;
    assert_eq!(refused.err(), Some(sse_core::ConnectError::ChannelsUnavailable));
    assert!(plane.shards_read().is_empty());
    assert_eq!(a.connection_count(), 0);
    // A connection without channels needs no shard.
    let _user = connect(&a, ConnectOptions::new().user("u")).await;
    assert_eq!(a.stats().connections_rejected, 1);
}

/// A hostile client joins channels chosen to land on every shard, to make
/// its instance read the whole log: it costs what an unsharded instance
/// reads and no more. The channels per connection stay capped, more
/// clients doing the same read nothing more, and every channel still
/// delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_on_every_shard_cost_at_most_the_whole_log() {
    let Some(fx) = fixture("shards-every").await else {
        return;
    };
    let (a, plane) = fx.sharded().await;

    // Over the cap (64 by default): refused before anything is read.
    let too_many: Vec<String> = (0..65).map(|k| format!("many-{k}")).collect();
    let refused = a.connect(ConnectOptions::new().channels(too_many)).await;
    assert!(
        matches!(
            refused.err(),
            Some(sse_core::ConnectError::TooManyChannels { count: 65, max: 64 })
        ),
        "over the cap"
    );
    assert!(plane.shards_read().is_empty(), "a refused client makes nothing read");

    let spread = channels_on_distinct_shards(&plane, SHARDS as usize);
    let channels: Vec<String> = spread.iter().map(|(channel, _)| channel.clone()).collect();
    let mut hostile = Vec::new();
    for n in 0..3 {
        let options = ConnectOptions::new().user(format!("h{n}")).channels(channels.clone());
        hostile.push(connect(&a, options).await);
        let mut read = plane.shards_read();
        read.sort_unstable();
        assert_eq!(
            read,
            (0..SHARDS).collect::<Vec<_>>(),
            "every shard, once, after client {n}"
        );
    }

    // Every channel still delivers to every one of them, in order.
    for channel in &channels {
        send(&a, Target::channel(channel), channel).await;
    }
    let expected: Vec<&str> = channels.iter().map(String::as_str).collect();
    for watch in &mut hostile {
        watch.until_exactly(&expected).await;
    }
    assert_eq!(a.connection_count(), 3);
    assert_eq!(a.stats().connections_rejected, 1);
}
