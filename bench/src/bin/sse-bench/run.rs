//! The load generator: opens the subscribers, publishes at the scenario's
//! rate, and measures what came back ([`run_load`]); each subscriber records
//! the sequence numbers and latencies of the events it receives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use parking_lot_free::Mutex;

use crate::load::Load;
use crate::report::Report;
use sse_bench::{cpu_secs, now_micros, rss_kib};

/// `std::sync::Mutex` without poisoning concerns for this tool's simple use.
mod parking_lot_free {
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(std::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

/// What every client records.
struct Shared {
    latencies: Mutex<Vec<u32>>,
    received: AtomicU64,
    duplicates: AtomicU64,
    ready: AtomicUsize,
    stop: AtomicBool,
    /// Set with `stop`, for the subscribers waiting on their stream.
    stop_signal: tokio::sync::watch::Sender<bool>,
}

/// One subscriber: reads events until told to stop, recording sequence
/// numbers and latencies. A slow client stops reading once connected.
async fn subscriber(client: reqwest::Client, url: String, shared: Arc<Shared>, max_seq: usize, slow: bool) {
    let Ok(response) = client.get(&url).send().await else {
        return;
    };
    if !response.status().is_success() {
        return;
    }
    shared.ready.fetch_add(1, Ordering::Relaxed);
    if slow {
        while !shared.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(response);
        return;
    }
    let mut seen = vec![0u64; max_seq / 64 + 1];
    let mut latencies = Vec::new();
    // One stop future for the whole stream, not a timer per event: the
    // generator's own cost per event must stay well under the server's.
    let mut stop = shared.stop_signal.subscribe();
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let mut events = std::pin::pin!(response.bytes_stream().eventsource().take_until(stopped));
    while let Some(event) = events.next().await {
        let Ok(event) = event else {
            break;
        };
        if event.event != "bench" {
            continue;
        }
        let mut parts = event.data.split(' ');
        let (Some(seq), Some(sent)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(seq), Ok(sent)) = (seq.parse::<usize>(), sent.parse::<u64>()) else {
            continue;
        };
        let now = now_micros();
        latencies.push(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
        if let Some(word) = seen.get_mut(seq / 64) {
            let bit = 1u64 << (seq % 64);
            if *word & bit != 0 {
                shared.duplicates.fetch_add(1, Ordering::Relaxed);
            } else {
                *word |= bit;
                shared.received.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    shared.latencies.lock().extend(latencies);
}

/// Runs `load` against the server at `base` (process `pid`).
pub(crate) async fn run_load(base: &str, pid: Option<u32>, load: &Load) -> Report {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default();
    let shared = Arc::new(Shared {
        latencies: Mutex::new(Vec::new()),
        received: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        ready: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        stop_signal: tokio::sync::watch::Sender::new(false),
    });
    let max_seq = usize::try_from(load.rate * load.seconds + 16).unwrap_or(usize::MAX);
    let rss_before = rss_kib(pid);
    let connect_started = Instant::now();
    let slow_every = if load.slow_fraction > 0.0 {
        (1.0 / load.slow_fraction).round() as usize
    } else {
        usize::MAX
    };
    // Over HTTP/2, one client per connection: each keeps its streams on one.
    let h2_clients: Vec<reqwest::Client> = (0..load.http2_connections)
        .map(|_| {
            reqwest::Client::builder()
                .http2_prior_knowledge()
                .tcp_nodelay(true)
                .build()
                .unwrap_or_default()
        })
        .collect();
    let mut tasks = Vec::with_capacity(load.connections);
    for i in 0..load.connections {
        let url = format!("{base}/api/sse?userId=u{i}");
        let slow = i % slow_every == slow_every - 1;
        let stream_client = if h2_clients.is_empty() {
            &client
        } else {
            &h2_clients[i % h2_clients.len()]
        };
        tasks.push(tokio::spawn(subscriber(
            stream_client.clone(),
            url,
            shared.clone(),
            max_seq,
            slow,
        )));
        if i % 256 == 255 {
            tokio::task::yield_now().await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.ready.load(Ordering::Relaxed) < load.connections && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let ready = shared.ready.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid);

    let churn = (load.churn > 0).then(|| {
        let (client, base, stop) = (client.clone(), base.to_owned(), shared.clone());
        let period = Duration::from_micros(1_000_000 / load.churn);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            let mut n = 0u64;
            while !stop.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let url = format!("{base}/api/sse?userId=churn{n}");
                let client = client.clone();
                tokio::spawn(async move {
                    if let Ok(response) = client.get(url).send().await {
                        let mut body = response.bytes_stream();
                        let _ = tokio::time::timeout(Duration::from_millis(100), body.next()).await;
                    }
                });
            }
        })
    });

    let server_cpu_before = cpu_secs(pid);
    let client_cpu_before = cpu_secs(None);
    let phase_started = Instant::now();
    let published = Arc::new(AtomicU64::new(0));
    if let Some(period_ns) = 1_000_000_000u64.checked_div(load.rate) {
        let pad = "x".repeat(load.payload.saturating_sub(24));
        let period = Duration::from_nanos(period_ns);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let total = load.rate * load.seconds;
        for seq in 0..total {
            tick.tick().await;
            let mut body = serde_json::json!({
                "event": "bench",
                "data": format!("{seq} {} {pad}", now_micros()),
                "target": if load.targeted { "user" } else { "all" },
                "targetId": "u0",
            });
            if load.keys > 0 {
                body["key"] = format!("k{}", seq % load.keys as u64).into();
            }
            let (client, url, published) = (client.clone(), format!("{base}/api/sse/publish"), published.clone());
            tokio::spawn(async move {
                if let Ok(response) = client.post(url).json(&body).send().await {
                    let ok = response.status().is_success();
                    // Reading the answer to its end returns the connection to
                    // the pool: a publish is one request, not a new TCP
                    // connection whose setup the server would pay for.
                    if response.bytes().await.is_ok() && ok {
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // Let the last events arrive: a client that lags behind is still
        // receiving, and an event counts as missing only once nothing has
        // arrived for two seconds (or after 60 s).
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut last = shared.received.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        while Instant::now() < give_up && quiet_since.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = shared.received.load(Ordering::Relaxed);
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
        }
    } else {
        tokio::time::sleep(Duration::from_secs(load.seconds)).await;
    }
    let elapsed = phase_started.elapsed().as_secs_f64();
    let server_cpu = cpu_secs(pid) - server_cpu_before;
    let client_cpu = cpu_secs(None) - client_cpu_before;
    let server_rss = rss_kib(pid);
    shared.stop.store(true, Ordering::Relaxed);
    shared.stop_signal.send_replace(true);
    if let Some(churn) = churn {
        churn.abort();
    }
    for task in tasks {
        let _ = task.await;
    }

    let published = published.load(Ordering::Relaxed);
    let readers = ready - ready / slow_every.max(1);
    let expected = if load.targeted {
        published
    } else {
        published * readers as u64
    };
    let delivered = shared.received.load(Ordering::Relaxed);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).ok();
    for &latency in shared.latencies.lock().iter() {
        if let Some(h) = histogram.as_mut() {
            let _ = h.record(u64::from(latency.max(1)));
        }
    }
    let quantile = |q: f64| {
        histogram
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
    };
    Report {
        ready,
        connect_secs,
        rss_per_connection_kib: if ready > 0 {
            (rss_after - rss_before) / ready as f64
        } else {
            0.0
        },
        published,
        expected,
        delivered,
        duplicates: shared.duplicates.load(Ordering::Relaxed),
        deliveries_per_sec: delivered as f64 / elapsed,
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        max_ms: histogram.as_ref().map_or(0.0, |h| h.max() as f64 / 1000.0),
        server_cpu_secs: server_cpu,
        server_cpu_us_per_delivery: if delivered > 0 {
            server_cpu * 1e6 / delivered as f64
        } else {
            0.0
        },
        server_cpu_us_per_publish: if published > 0 {
            server_cpu * 1e6 / published as f64
        } else {
            0.0
        },
        server_rss_mib: server_rss / 1024.0,
        client_cpu_secs: client_cpu,
    }
}
