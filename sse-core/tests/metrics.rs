//! The engine's metrics (feature `metrics`): the values a scripted run
//! records, and a bounded number of series however many users and channels
//! there are.
//!
//! Each test records into a recorder of its own, local to its thread; the
//! manager runs on the test's current-thread Tokio runtime, so everything it
//! records lands there.
#![cfg(all(feature = "tokio", feature = "metrics"))]

use std::collections::{BTreeSet, HashMap};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use sse_core::{ConnectError, ConnectOptions, Event, SseManager, Target};

/// The values recorded since the last snapshot, by name and sorted labels
/// (a histogram's value is its number of samples), and the keys.
fn snapshot(snapshotter: &Snapshotter) -> (HashMap<String, f64>, BTreeSet<CompositeKey>) {
    let mut values = HashMap::new();
    let mut keys = BTreeSet::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let mut labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.key().name(), labels.join(","));
        let value = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(samples) => samples.len() as f64,
        };
        values.insert(name, value);
        keys.insert(key);
    }
    (values, keys)
}

fn get(values: &HashMap<String, f64>, name: &str) -> f64 {
    values.get(name).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn ten_thousand_channels_make_a_bounded_number_of_series() {
    const N: usize = 10_000;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    sse_core::metrics::describe();

    let manager = SseManager::builder()
        .configure(|c| c.max_connections(N).heartbeat_interval(None))
        .build()
        .expect("valid configuration");
    let mut connections = Vec::with_capacity(N);
    for i in 0..N {
        let options = ConnectOptions::new()
            .user(format!("user-{i}"))
            .channel(format!("channel-{i}"));
        connections.push(manager.connect(options).await.expect("under the limit"));
    }
    let refused = manager.connect(ConnectOptions::new().user("one-too-many")).await;
    assert!(matches!(refused, Err(ConnectError::Overloaded { .. })));
    let invalid = manager.connect(ConnectOptions::new().channel("")).await;
    assert!(invalid.is_err());
    for i in 0..N {
        let event = Event::json("tick", &i).expect("serializable");
        manager
            .send(Target::channel(format!("channel-{i}")), event)
            .await
            .expect("sent");
    }
    manager
        .send(Target::user("user-0"), Event::named("message", "hello").expect("valid"))
        .await
        .expect("sent");
    manager
        .broadcast(Event::named("message", "everyone").expect("valid"))
        .await
        .expect("sent");
    // A resuming client misses the two events after the first.
    let resumed = manager
        .connect(ConnectOptions::new().user("user-0").last_event_id(Some("0")))
        .await;
    assert!(resumed.is_err(), "over the limit: refused before any replay");
    drop(connections.pop());
    let resumed = manager
        .connect(ConnectOptions::new().user("user-0").last_event_id(Some("unknown-id")))
        .await
        .expect("room for one");

    let (values, keys) = snapshot(&snapshotter);
    assert!(keys.len() < 50, "{} series: {keys:?}", keys.len());
    assert_eq!(
        keys.iter().filter(|k| k.kind() == MetricKind::Histogram).count(),
        2,
        "the latency and queue depth histograms"
    );
    assert_eq!(get(&values, "sse_connections_opened_total{}"), (N + 1) as f64);
    assert_eq!(get(&values, "sse_connections{}"), N as f64);
    assert_eq!(get(&values, "sse_connections_closed_total{reason=client_gone}"), 1.0);
    assert_eq!(get(&values, "sse_connections_refused_total{reason=overloaded}"), 2.0);
    assert_eq!(get(&values, "sse_connections_refused_total{reason=invalid}"), 1.0);
    assert_eq!(get(&values, "sse_events_published_total{target=channel}"), N as f64);
    assert_eq!(get(&values, "sse_events_published_total{target=user}"), 1.0);
    assert_eq!(get(&values, "sse_events_published_total{target=all}"), 1.0);
    assert_eq!(get(&values, "sse_resets_total{}"), 1.0);
    assert_eq!(
        get(&values, "sse_delivery_latency_seconds{}"),
        (N + 2) as f64,
        "one sample per send"
    );

    drop(resumed);
    drop(connections);
    // A snapshot takes the values recorded since the last one.
    let (values, _) = snapshot(&snapshotter);
    assert_eq!(
        get(&values, "sse_connections{}"),
        -(N as f64),
        "every open connection closed"
    );
    assert_eq!(
        get(&values, "sse_connections_closed_total{reason=client_gone}"),
        N as f64
    );
}

#[tokio::test]
async fn only_channels_named_in_the_configuration_get_series_of_their_own() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let log = sse_core::test_util::MemoryLog::new();
    let manager = SseManager::builder()
        .configure(|c| c.heartbeat_interval(None).metric_channels(vec!["news".to_owned()]))
        .backplane(log.clone())
        .build()
        .expect("valid configuration");
    let other = SseManager::builder()
        .configure(|c| c.heartbeat_interval(None).metric_channels(vec!["news".to_owned()]))
        .backplane(log)
        .build()
        .expect("valid configuration");
    for channel in ["news", "news", "sports"].into_iter().chain((0..100).map(|_| "x")) {
        let channel = if channel == "x" {
            format!("c-{}", fastrand::u32(..))
        } else {
            channel.to_owned()
        };
        manager
            .send(
                Target::channel(channel),
                Event::named("message", "hello").expect("valid"),
            )
            .await
            .expect("published");
    }
    drop(other);
    let (values, keys) = snapshot(&snapshotter);
    let channel_series: Vec<_> = keys
        .iter()
        .filter(|k| k.key().name() == "sse_channel_events_published_total")
        .collect();
    assert_eq!(channel_series.len(), 1, "{channel_series:?}");
    assert_eq!(
        get(&values, "sse_channel_events_published_total{channel=news}"),
        2.0,
        "counted once, by the publishing instance"
    );
    assert_eq!(get(&values, "sse_events_published_total{target=channel}"), 103.0);
}

#[tokio::test]
async fn replay_and_delivery_are_counted() {
    use futures::StreamExt as _;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let manager = SseManager::builder()
        .configure(|c| c.heartbeat_interval(None))
        .build()
        .expect("valid configuration");
    let first = manager
        .send(Target::All, Event::named("message", "one").expect("valid"))
        .await
        .expect("sent")
        .id
        .expect("an id");
    for data in ["two", "three"] {
        manager
            .send(Target::All, Event::named("message", data).expect("valid"))
            .await
            .expect("sent");
    }
    let mut resumed = manager
        .connect(ConnectOptions::new().last_event_id(Some(first)))
        .await
        .expect("registered");
    let frames = resumed.next().await.expect("the opening and the replay");
    assert!(!frames.is_empty());
    manager.disconnect(resumed.client_id().as_str());

    let (values, _) = snapshot(&snapshotter);
    assert_eq!(get(&values, "sse_events_replayed_total{}"), 2.0);
    assert!(get(&values, "sse_frames_delivered_total{}") >= 3.0, "{values:?}");
    assert_eq!(get(&values, "sse_bytes_written_total{}"), frames.len() as f64);
    assert_eq!(
        get(&values, "sse_queue_depth{}"),
        1.0,
        "one sample: the writer took them at once"
    );
    assert_eq!(get(&values, "sse_connections_closed_total{reason=disconnected}"), 1.0);
}

#[tokio::test]
async fn backplane_publishes_and_their_errors_are_counted() {
    use sse_core::test_util::MemoryLog;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let log = MemoryLog::new();
    let manager = SseManager::builder()
        .backplane(log.clone())
        .configure(|c| c.heartbeat_interval(None))
        .build()
        .expect("valid configuration");
    let event = || Event::named("message", "hello").expect("valid");
    manager.send(Target::user("alice"), event()).await.expect("published");
    let (values, _) = snapshot(&snapshotter);
    assert_eq!(get(&values, "sse_events_published_total{target=user}"), 1.0);
    assert_eq!(get(&values, "sse_delivery_latency_seconds{}"), 1.0);

    log.set_failing(Some(false));
    assert!(manager.send(Target::All, event()).await.is_err());
    log.set_failing(Some(true));
    assert!(manager.send(Target::All, event()).await.is_err());
    let (values, _) = snapshot(&snapshotter);
    assert_eq!(
        get(&values, "sse_backplane_publish_errors_total{outcome=not_published}"),
        1.0
    );
    assert_eq!(get(&values, "sse_backplane_publish_errors_total{outcome=unknown}"), 1.0);
}

/// A backplane that reports a reconnection and the age of an entry, as a
/// log reader does.
struct Reporting;

#[sse_core::async_trait]
impl sse_core::Backplane for Reporting {
    async fn publish(&self, _: bytes::Bytes) -> Result<String, sse_core::BackplaneError> {
        Err(sse_core::BackplaneError::new("read only"))
    }

    async fn run(self: std::sync::Arc<Self>, sink: sse_core::BackplaneSink) {
        sink.reconnected();
        sink.lag(std::time::Duration::from_millis(250));
    }
}

#[tokio::test]
async fn backplane_reconnects_and_lag_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let _manager = SseManager::builder()
        .backplane(Reporting)
        .build()
        .expect("valid configuration");
    // `run` is a task of the manager's: let it run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut lag = Vec::new();
    while lag.is_empty() {
        assert!(std::time::Instant::now() < deadline, "run never reported");
        tokio::task::yield_now().await;
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            match (key.key().name(), value) {
                ("sse_backplane_lag_seconds", DebugValue::Histogram(samples)) => {
                    lag.extend(samples.into_iter().map(|s| s.into_inner()));
                }
                ("sse_backplane_reconnects_total", DebugValue::Counter(n)) => assert_eq!(n, 1),
                _ => {}
            }
        }
    }
    assert_eq!(lag, [0.25]);
}

#[tokio::test]
async fn slow_clients_are_counted_once() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let manager = SseManager::builder()
        .configure(|c| c.client_queue(2).heartbeat_interval(None))
        .build()
        .expect("valid configuration");
    let slow = manager
        .connect(ConnectOptions::new().user("slow"))
        .await
        .expect("registered");
    for i in 0..4 {
        let event = Event::json("tick", &i).expect("serializable");
        manager.send(Target::All, event).await.expect("sent");
    }
    drop(slow);
    let (values, _) = snapshot(&snapshotter);
    assert_eq!(get(&values, "sse_slow_clients_closed_total{}"), 1.0);
    assert_eq!(get(&values, "sse_connections_closed_total{reason=slow_consumer}"), 1.0);
    assert_eq!(get(&values, "sse_connections_closed_total{reason=client_gone}"), 0.0);
    assert_eq!(get(&values, "sse_connections{}"), 0.0);
}
