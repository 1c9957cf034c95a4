//! The backplane benchmark: how many events per second one shared log
//! carries to 1, 2 and 4 instances, and what an instance spends on each
//! event it reads, delivered or discarded.
//!
//! ```text
//! cargo build --release -p sse-bench
//! target/release/backplane-bench                                   # Redis and memory, 1, 2 and 4 instances
//! target/release/backplane-bench --backplane redis --instances 1,2 --seconds 5
//! target/release/backplane-bench --backplane redis --shards 8      # channel events on 8 shards
//! ```
//!
//! Every instance is a manager of its own, with a backplane of its own on
//! the same log (a fresh key prefix per run), in this one process. Instance
//! 0 publishes with `--publishers` concurrent senders, each waiting for its
//! event to come back from the log (a closed loop: the rate is what the log
//! and the instances carry). In `deliver` mode every instance holds
//! `--connections` connections in the channel published to; in `discard`
//! mode only instance 0 does, and the others hold theirs in another
//! channel, so they read every event and deliver it to nobody.
//!
//! The process's CPU covers every instance; the cost of one more instance
//! per event is the difference between two rows of the same mode, divided
//! by the events. The broker's CPU comes from Redis's `INFO cpu`, and from
//! `/proc` for the `nats-server` process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use sse_bench::cpu_secs;
use sse_core::test_util::MemoryLog;
use sse_core::{ConnectOptions, Event, SseManager, Target};
use sse_nats::NatsBackplane;
use sse_redis::RedisBackplane;

#[derive(Parser, Debug)]
#[command(about = "Backplane throughput: events per second through one shared log to several instances")]
struct Args {
    /// Backplanes to measure (`redis`, `nats`, `memory`). Repeatable;
    /// default `redis` and `nats`. The in-memory log is a test double: its
    /// closed loop waits for instance 0 only, and outruns the others, whose
    /// connections then fall behind and are closed as too slow.
    #[arg(long)]
    backplane: Vec<String>,
    /// Instance counts, comma-separated.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    instances: Vec<usize>,
    /// Modes (`deliver`, `discard`). Repeatable; default both.
    #[arg(long)]
    mode: Vec<String>,
    /// Seconds each measured phase publishes.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Connections per instance.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Concurrent senders on instance 0.
    #[arg(long, default_value_t = 32)]
    publishers: usize,
    /// Bytes of each event's data.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Spread channel events over this many Redis streams, each instance
    /// reading only its channels' (0: one stream). In `discard` mode the
    /// other instances then hold a channel of another shard, and do not
    /// read the events published.
    #[arg(long, default_value_t = 0)]
    shards: u32,
    /// The Redis to use.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// The NATS server (with JetStream) to use.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The `nats-server` process, for its CPU (default: found with `pgrep`).
    #[arg(long)]
    nats_pid: Option<u32>,
}

/// The `nats-server` process: the one given, or the first `pgrep` finds.
fn nats_pid(args: &Args) -> Option<u32> {
    args.nats_pid.or_else(|| {
        let out = std::process::Command::new("pgrep")
            .arg("-x")
            .arg("nats-server")
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().next()?.trim().parse().ok()
    })
}

/// The broker's CPU so far, in seconds.
async fn broker_cpu(args: &Args, kind: &str) -> Option<f64> {
    match kind {
        "redis" => redis_cpu(&args.redis_url).await,
        "nats" => nats_pid(args).map(|pid| cpu_secs(Some(pid))),
        _ => None,
    }
}

/// Deletes the NATS stream of `prefix`.
async fn delete_stream(url: &str, prefix: &str) {
    if let Ok(client) = async_nats::connect(url).await {
        let jetstream = async_nats::jetstream::new(client);
        let _ = jetstream.delete_stream(format!("{prefix}-events")).await;
    }
}

/// Redis's own CPU so far (`used_cpu_user` + `used_cpu_sys`), in seconds.
async fn redis_cpu(url: &str) -> Option<f64> {
    let client = redis::Client::open(url).ok()?;
    let mut connection = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut connection).await.ok()?;
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse::<f64>().ok())
    };
    Some(field("used_cpu_user:")? + field("used_cpu_sys:")?)
}

/// Deletes every key of `prefix`.
async fn delete_prefix(url: &str, prefix: &str) {
    const DELETE: &str = "local keys = redis.call('KEYS', ARGV[1]) \
        for _, key in ipairs(keys) do redis.call('DEL', key) end return #keys";
    if let Ok(client) = redis::Client::open(url) {
        if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
            let _: Result<i64, _> = redis::cmd("EVAL")
                .arg(DELETE)
                .arg(0)
                .arg(format!("{prefix}:*"))
                .query_async(&mut connection)
                .await;
        }
    }
}

/// One measured phase.
struct Phase<'a> {
    backplane: &'a str,
    instances: usize,
    discard: bool,
}

/// What a phase measured.
struct Report {
    events: u64,
    seconds: f64,
    deliveries: u64,
    expected: u64,
    drain_secs: f64,
    cpu_secs: f64,
    broker_cpu_secs: Option<f64>,
    p50_ms: f64,
    p99_ms: f64,
}

/// An instance: a manager on a backplane of `kind` of its own.
async fn instance(args: &Args, kind: &str, log: &MemoryLog, prefix: &str) -> Result<SseManager, String> {
    let builder =
        SseManager::builder().configure(|c| c.history_size(1000).heartbeat_interval(None).client_queue(65_536));
    let builder = match kind {
        "memory" => builder.backplane(log.clone()),
        "redis" => builder.backplane(
            RedisBackplane::connect(args.redis_url.as_str())
                .prefix(prefix)
                .history(1000)
                .shards(args.shards)
                .build()
                .await
                .map_err(|e| e.to_string())?,
        ),
        "nats" => builder.backplane(
            NatsBackplane::connect(args.nats_url.as_str())
                .prefix(prefix)
                .history(1000)
                .build()
                .await
                .map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("unknown backplane {other:?}")),
    };
    builder.build().map_err(|e| e.to_string())
}

async fn run(args: &Args, phase: &Phase<'_>) -> Result<Report, String> {
    let prefix = format!(
        "sse-backplane-bench-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
    );
    let log = MemoryLog::new();
    let mut managers = Vec::new();
    for _ in 0..phase.instances {
        managers.push(instance(args, phase.backplane, &log, &prefix).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    // With shards, a channel of another shard than "bench"'s.
    let bench_shard = sse_redis::channel_shard("bench", args.shards);
    let elsewhere = (0..)
        .map(|n| format!("elsewhere-{n}"))
        .find(|name| args.shards < 2 || sse_redis::channel_shard(name, args.shards) != bench_shard)
        .unwrap_or_default();
    for (i, manager) in managers.iter().enumerate() {
        let channel = if phase.discard && i > 0 {
            elsewhere.as_str()
        } else {
            "bench"
        };
        for _ in 0..args.connections {
            let mut connection = manager
                .connect(ConnectOptions::new().channel(channel))
                .await
                .map_err(|e| e.to_string())?;
            readers.push(tokio::spawn(async move { while connection.next().await.is_some() {} }));
        }
    }
    let delivered = |managers: &[SseManager]| managers.iter().map(|m| m.stats().frames_delivered).sum::<u64>();
    // The opening frames.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delivered_before = delivered(&managers);
    let broker_before = broker_cpu(args, phase.backplane).await;
    let cpu_before = cpu_secs(None);
    let started = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let data = "x".repeat(args.payload);
    let mut senders = Vec::new();
    for _ in 0..args.publishers {
        let (manager, stop, sent, data) = (managers[0].clone(), stop.clone(), sent.clone(), data.clone());
        senders.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3).expect("a histogram");
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                if manager
                    .send(Target::channel("bench"), Event::message(data.as_str()))
                    .await
                    .is_ok()
                {
                    sent.fetch_add(1, Ordering::Relaxed);
                    let _ = latencies.record(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    for sender in senders {
        let histogram = sender.await.map_err(|e| e.to_string())?;
        latencies.add(histogram).map_err(|e| e.to_string())?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let events = sent.load(Ordering::Relaxed);
    let receivers = if phase.discard { 1 } else { phase.instances as u64 };
    let expected = events * receivers * args.connections as u64;
    // Every instance reads every event; wait until the deliveries are done.
    let drain_start = Instant::now();
    let mut deliveries = delivered(&managers) - delivered_before;
    while deliveries < expected && drain_start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        deliveries = delivered(&managers) - delivered_before;
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let cpu = cpu_secs(None) - cpu_before;
    let broker_cpu = match broker_before {
        Some(before) => broker_cpu(args, phase.backplane).await.map(|after| after - before),
        None => None,
    };
    for manager in &managers {
        manager.shutdown(None).await;
    }
    for reader in readers {
        let _ = reader.await;
    }
    match phase.backplane {
        "redis" => delete_prefix(&args.redis_url, &prefix).await,
        "nats" => delete_stream(&args.nats_url, &prefix).await,
        _ => {}
    }
    Ok(Report {
        events,
        seconds,
        deliveries,
        expected,
        drain_secs,
        cpu_secs: cpu,
        broker_cpu_secs: broker_cpu,
        p50_ms: latencies.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: latencies.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let backplanes = if args.backplane.is_empty() {
        vec!["redis".to_owned(), "nats".to_owned()]
    } else {
        args.backplane.clone()
    };
    let modes = if args.mode.is_empty() {
        vec!["deliver".to_owned(), "discard".to_owned()]
    } else {
        args.mode.clone()
    };
    println!(
        "| backplane | shards | mode | instances | events | events/s | deliveries | delivery | drain s | process CPU s | process CPU µs/event | broker CPU s | broker CPU µs/event | publish p50 ms | publish p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for backplane in &backplanes {
        for mode in &modes {
            for &instances in &args.instances {
                let phase = Phase {
                    backplane,
                    instances,
                    discard: mode == "discard",
                };
                if phase.discard && instances == 1 {
                    continue;
                }
                let r = run(&args, &phase).await?;
                let per_event = |secs: f64| {
                    if r.events > 0 {
                        secs * 1e6 / r.events as f64
                    } else {
                        0.0
                    }
                };
                let ratio = if r.expected > 0 {
                    r.deliveries as f64 / r.expected as f64
                } else {
                    1.0
                };
                println!(
                    "| {backplane} | {} | {mode} | {instances} | {} | {:.0} | {} | {:.4} | {:.2} | {:.2} | {:.1} | {} | {} | {:.2} | {:.2} |",
                    if backplane == "redis" { args.shards } else { 0 },
                    r.events,
                    r.events as f64 / r.seconds,
                    r.deliveries,
                    ratio,
                    r.drain_secs,
                    r.cpu_secs,
                    per_event(r.cpu_secs),
                    r.broker_cpu_secs.map_or_else(String::new, |s| format!("{s:.2}")),
                    r.broker_cpu_secs
                        .map_or_else(String::new, |s| format!("{:.1}", per_event(s))),
                    r.p50_ms,
                    r.p99_ms,
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Ok(())
}
