//! The load benchmark: starts the library's demo server and the hand-written
//! baseline side by side (one at a time, same machine, same load), drives
//! each scenario against both, and prints one table of library/baseline
//! ratios.
//!
//! ```text
//! cargo build --release -p sse-examples --bin axum-demo -p sse-bench
//! target/release/sse-bench                     # every scenario
//! target/release/sse-bench --floor             # and the write-only floor server as a calibration
//! target/release/sse-bench --transport         # and the engine without a framework (transport-server)
//! taskset -c 1 target/release/sse-bench --server-cpus 0   # server and generator on separate cores
//! target/release/sse-bench --scenario broadcast-10k --connections 2000
//! target/release/sse-bench --url http://127.0.0.1:3000 --scenario broadcast-10k   # any server of the contract
//! ```
//!
//! Every event carries its sequence number and send time; each client
//! records what it received, so losses and duplicates are counted, never
//! hidden. Server CPU and memory come from `/proc/<pid>`, the load
//! generator's own CPU from `/proc/self` (a saturated generator shows).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use parking_lot_free::Mutex;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

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

#[derive(Parser, Debug, Clone)]
#[command(about = "SSE load benchmark: library vs hand-written baseline")]
struct Args {
    /// Scenarios to run (default: all). Repeatable.
    #[arg(long)]
    scenario: Vec<String>,
    /// Benchmark an already running server at this URL instead of starting both.
    #[arg(long)]
    url: Option<String>,
    /// Its process id, for CPU and memory figures.
    #[arg(long)]
    pid: Option<u32>,
    /// Connections for the large scenarios.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Seconds each measured phase lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Directory holding `axum-demo`, `baseline-server`, `floor-server` and
    /// `transport-server` (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also run the floor server (one in-place write per delivery, nothing
    /// else) in the broadcast scenarios, as a calibration, and the same
    /// with a task per connection (`task floor`) and behind axum and hyper
    /// (`hyper floor`), the least a server built that way pays.
    #[arg(long)]
    floor: bool,
    /// Also run the transport server (the library's engine and endpoints
    /// behind a minimal HTTP/1.1 front through its `Transport` seam, no
    /// framework) in every scenario, to show what the framework costs.
    #[arg(long)]
    transport: bool,
    /// Pin the servers to these CPUs (a `taskset` list such as `0`), and run
    /// the generator on the others (`taskset -c 1 sse-bench ...`), so that
    /// a busy generator does not take the server's core.
    #[arg(long)]
    server_cpus: Option<String>,
    /// The write batch window of the `batch-100` scenario, in ms.
    #[arg(long, default_value_t = 5)]
    batch_ms: u64,
    /// The Redis of the `redis-latency` scenario.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

/// One scenario's load.
#[derive(Debug, Clone)]
struct Load {
    connections: usize,
    /// Events published per second (open loop); 0 for an idle phase.
    rate: u64,
    payload: usize,
    /// Publish to one user (`u0`) instead of everyone.
    targeted: bool,
    /// Fraction of clients that stop reading after connecting.
    slow_fraction: f64,
    /// Connects and disconnects per second during the phase.
    churn: u64,
    heartbeat_ms: u64,
    seconds: u64,
    /// Compare the library through a Redis backplane with the library in
    /// memory, instead of the library with the baseline.
    redis: bool,
    /// Compare the library recording its metrics into a Prometheus recorder
    /// with the library recording none (`SSE_METRICS=off`), instead of the
    /// library with the baseline.
    metrics: bool,
    /// Subscribe over HTTP/2 with prior knowledge, the streams spread over
    /// this many connections (0: HTTP/1.1, one connection per stream).
    http2_connections: usize,
    /// Publish with a conflation key among this many (`k0`, `k1`, ...), and
    /// compare with the same load published without keys, both on the
    /// library with a queue of `queue` frames; 0: no keys.
    keys: usize,
    /// `SSE_CLIENT_QUEUE` of the keyed comparison.
    queue: usize,
    /// Compare the library with this write batch window (ms,
    /// `SSE_WRITE_BATCH_MS`) with the library without one; 0: no such
    /// comparison.
    batch_ms: u64,
}

impl Load {
    fn new(connections: usize, rate: u64, seconds: u64) -> Self {
        Load {
            connections,
            rate,
            payload: 100,
            targeted: false,
            slow_fraction: 0.0,
            churn: 0,
            heartbeat_ms: 30_000,
            seconds,
            redis: false,
            metrics: false,
            http2_connections: 0,
            keys: 0,
            queue: 1024,
            batch_ms: 0,
        }
    }
}

/// What one run measured.
#[derive(Debug, Default, Clone)]
struct Report {
    ready: usize,
    connect_secs: f64,
    rss_per_connection_kib: f64,
    published: u64,
    expected: u64,
    delivered: u64,
    duplicates: u64,
    deliveries_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    server_cpu_secs: f64,
    server_cpu_us_per_delivery: f64,
    server_cpu_us_per_publish: f64,
    server_rss_mib: f64,
    client_cpu_secs: f64,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |pid| format!("/proc/{pid}/stat"));
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name, which may hold spaces, closed by ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; here indexes 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |pid| format!("/proc/{pid}/status"));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0.0)
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
async fn run_load(base: &str, pid: Option<u32>, load: &Load) -> Report {
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

/// A server process under test.
struct Server {
    child: Child,
    base: String,
    pid: Option<u32>,
}

impl Server {
    async fn start(
        binary: &PathBuf,
        load: &Load,
        env: &[(&str, String)],
        cpus: Option<&str>,
    ) -> Result<Server, String> {
        // `taskset` replaces itself with the server: the pid is the server's.
        let mut command = match cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpus).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        for (name, value) in env {
            command.env(name, value);
        }
        if env.iter().any(|(name, _)| *name == "SSE_REDIS_URL") {
            command.env("SSE_REDIS_PREFIX", format!("sse-bench-{}", now_micros()));
        }
        let mut child = command
            .env("SSE_ADDR", "127.0.0.1:0")
            .env("SSE_HEARTBEAT_MS", load.heartbeat_ms.to_string())
            .env("SSE_MAX_CONNECTIONS", "100000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| "server did not start")?
            .map_err(|e| e.to_string())?
            .ok_or("server exited")?;
        let base = line
            .strip_prefix("listening on ")
            .ok_or("unexpected first line")?
            .to_owned();
        let pid = child.id();
        Ok(Server { child, base, pid })
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn scenarios(args: &Args) -> Vec<(&'static str, Load)> {
    let n = args.connections;
    let s = args.seconds;
    let mut list = vec![
        ("idle-1k", Load::new(1000.min(n), 0, 2)),
        ("idle-10k", Load::new(n, 0, 2)),
        ("broadcast-10k", Load::new(n, 10, s)),
        ("broadcast-max", Load::new(1000.min(n), 400, s)),
        // 100 sends/s: a rate the baseline sustains without falling behind,
        // so its cost is one wake and filter per connection per event and
        // not a saturated batch.
        (
            "targeted-100",
            Load {
                targeted: true,
                ..Load::new(100.min(n), 100, s)
            },
        ),
        (
            "targeted-1k",
            Load {
                targeted: true,
                ..Load::new(1000.min(n), 100, s)
            },
        ),
        (
            "targeted-10k",
            Load {
                targeted: true,
                ..Load::new(n, 100, s)
            },
        ),
        (
            "heartbeat-10k",
            Load {
                heartbeat_ms: 1000,
                ..Load::new(n, 0, s)
            },
        ),
        // The same load without and with 1% of clients that stop reading:
        // the others' p99 should not move, and the server's memory stays
        // bounded by the queue limits.
        (
            "readers-all",
            Load {
                payload: 16 * 1024,
                ..Load::new(1000.min(n), 20, s)
            },
        ),
        (
            "slow-readers",
            Load {
                slow_fraction: 0.01,
                payload: 16 * 1024,
                ..Load::new(1000.min(n), 20, s)
            },
        ),
        // Slow readers again, on a short queue, with events published under a
        // few conflation keys and without: with keys, a slow reader's queue
        // holds the latest event per key and it stays connected; without,
        // it is closed as too slow. Half the clients stop reading.
        (
            "slow-readers-keyed",
            Load {
                slow_fraction: 0.5,
                payload: 64 * 1024,
                keys: 8,
                queue: 32,
                ..Load::new(20.min(n), 100, s)
            },
        ),
        (
            "churn",
            Load {
                churn: 200,
                ..Load::new(n, 10, s)
            },
        ),
    ];
    // 100 events/s to each client, written as they come or gathered over
    // a window (`--batch-ms`, 5 by default): what batching buys in writes
    // and CPU.
    list.push((
        "batch-100",
        Load {
            batch_ms: args.batch_ms.max(1),
            ..Load::new(1000.min(n), 100, s)
        },
    ));
    // Many streams over few connections, as browsers multiplex an origin's
    // streams over HTTP/2 (100 per connection, within the servers' limit
    // of concurrent streams).
    list.push((
        "h2c-1k",
        Load {
            http2_connections: 10,
            ..Load::new(1000.min(n), 10, s)
        },
    ));
    list.push((
        "h2c-10k",
        Load {
            http2_connections: n.div_ceil(100),
            ..Load::new(n, 10, s)
        },
    ));
    // The broadcasts with and without metrics: what observability costs.
    list.push((
        "metrics-broadcast-10k",
        Load {
            metrics: true,
            ..Load::new(n, 10, s)
        },
    ));
    list.push((
        "metrics-broadcast-max",
        Load {
            metrics: true,
            ..Load::new(1000.min(n), 400, s)
        },
    ));
    list.push((
        "redis-latency",
        Load {
            redis: true,
            ..Load::new(1000.min(n), 100, s)
        },
    ));
    for (name, payload) in [
        ("payload-100B", 100),
        ("payload-1KiB", 1024),
        ("payload-16KiB", 16 * 1024),
    ] {
        list.push((
            name,
            Load {
                payload,
                ..Load::new(1000.min(n), 50, s)
            },
        ));
    }
    if args.scenario.is_empty() {
        list
    } else {
        list.into_iter()
            .filter(|(name, _)| args.scenario.iter().any(|s| s == name))
            .collect()
    }
}

fn print_header() {
    println!(
        "| scenario | server | ready | connect s | RSS/conn KiB | published | delivery | dup | deliveries/s | p50 ms | p99 ms | max ms | server CPU s | CPU µs/delivery | CPU µs/publish | server RSS MiB | loadgen CPU s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

/// The write system calls of process `pid` so far (`syscw` in
/// `/proc/<pid>/io`), where it can be read.
fn write_calls(pid: Option<u32>) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{}/io", pid?)).ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("syscw: "))
        .and_then(|n| n.trim().parse().ok())
}

fn print_row(scenario: &str, server: &str, r: &Report) {
    let ratio = if r.expected > 0 {
        r.delivered as f64 / r.expected as f64
    } else {
        1.0
    };
    println!(
        "| {scenario} | {server} | {} | {:.2} | {:.1} | {} | {:.4} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} |",
        r.ready,
        r.connect_secs,
        r.rss_per_connection_kib,
        r.published,
        ratio,
        r.duplicates,
        r.deliveries_per_sec,
        r.p50_ms,
        r.p99_ms,
        r.max_ms,
        r.server_cpu_secs,
        r.server_cpu_us_per_delivery,
        r.server_cpu_us_per_publish,
        r.server_rss_mib,
        r.client_cpu_secs,
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let list = scenarios(&args);
    print_header();
    if let Some(url) = &args.url {
        for (name, load) in &list {
            let report = run_load(url.trim_end_matches('/'), args.pid, load).await;
            print_row(name, "external", &report);
        }
        return Ok(());
    }
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .ok_or("no binary directory")?,
    };
    let library = bin_dir.join("axum-demo");
    let baseline = bin_dir.join("baseline-server");
    let floor = bin_dir.join("floor-server");
    let transport = bin_dir.join("transport-server");
    // What the server's statistics said after a keyed comparison's runs.
    let mut notes = Vec::new();
    for (name, load) in &list {
        let redis = || vec![("SSE_REDIS_URL", args.redis_url.clone())];
        let metrics_off = || vec![("SSE_METRICS", "off".to_owned())];
        let queue = || vec![("SSE_CLIENT_QUEUE", load.queue.to_string())];
        let batch = || vec![("SSE_WRITE_BATCH_MS", load.batch_ms.to_string())];
        let mut servers = if load.batch_ms > 0 {
            vec![("library+batch", &library, batch()), ("library", &library, vec![])]
        } else if load.keys > 0 {
            vec![("library+keys", &library, queue()), ("library", &library, queue())]
        } else if load.redis {
            vec![("library+redis", &library, redis()), ("library", &library, vec![])]
        } else if load.metrics {
            vec![
                ("library+metrics", &library, vec![]),
                ("library", &library, metrics_off()),
            ]
        } else {
            vec![("library", &library, vec![]), ("baseline", &baseline, vec![])]
        };
        // The floor server broadcasts everything and has no queues: it
        // calibrates broadcasts only.
        let paired = load.redis || load.metrics || load.keys > 0 || load.batch_ms > 0;
        // Neither it nor the transport server speaks HTTP/2.
        let http1 = load.http2_connections == 0;
        if args.floor
            && http1
            && !paired
            && !load.targeted
            && load.rate > 0
            && load.slow_fraction == 0.0
            && load.churn == 0
        {
            let mode = |mode: &str| vec![("SSE_FLOOR_MODE", mode.to_owned())];
            servers.push(("floor", &floor, vec![]));
            servers.push(("task floor", &floor, mode("task")));
            servers.push(("hyper floor", &floor, mode("hyper")));
        }
        if args.transport && http1 && !paired {
            servers.push(("transport", &transport, vec![]));
        }
        let mut reports = Vec::new();
        for (server_name, binary, env) in servers {
            let server = Server::start(binary, load, &env, args.server_cpus.as_deref()).await?;
            // The keyed comparison's second run publishes the same load
            // without keys.
            let unkeyed = Load {
                keys: 0,
                ..load.clone()
            };
            let this_load = if load.keys > 0 && server_name == "library" {
                &unkeyed
            } else {
                load
            };
            let writes_before = write_calls(server.pid);
            let report = run_load(&server.base, server.pid, this_load).await;
            print_row(name, server_name, &report);
            if load.batch_ms > 0 {
                if let (Some(before), Some(after)) = (writes_before, write_calls(server.pid)) {
                    notes.push(format!(
                        "{name} {server_name}: {} write system calls for {} deliveries",
                        after - before,
                        report.delivered
                    ));
                }
            }
            if load.keys > 0 {
                notes.push(format!("{name} {server_name}: {}", queue_stats(&server.base).await));
            }
            reports.push(report);
            server.stop().await;
            // Let sockets in TIME_WAIT and the kernel settle.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let ratio_row = |label: &str, ours: &Report, theirs: &Report| {
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            println!(
                "| {name} | {label} | | | {:.2} | | | | | | {:.2} | | {:.2} | {:.2} | {:.3} | | |",
                ratio(ours.rss_per_connection_kib, theirs.rss_per_connection_kib),
                ratio(ours.p99_ms, theirs.p99_ms),
                ratio(ours.server_cpu_secs, theirs.server_cpu_secs),
                ratio(ours.server_cpu_us_per_delivery, theirs.server_cpu_us_per_delivery),
                ratio(ours.server_cpu_us_per_publish, theirs.server_cpu_us_per_publish),
            );
        };
        if let [ours, theirs, ..] = &reports[..] {
            ratio_row("ratio", ours, theirs);
        }
        if let (true, [_, baseline, .., transport]) = (args.transport && http1 && !paired, &reports[..]) {
            ratio_row("transport ratio", transport, baseline);
        }
    }
    for note in notes {
        println!("{note}");
    }
    Ok(())
}

/// The server's counts of slow clients closed, events conflated and events
/// dropped, from `GET /api/sse/stats`.
async fn queue_stats(base: &str) -> String {
    let stats: serde_json::Value = match reqwest::get(format!("{base}/api/sse/stats")).await {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(error) => return format!("no statistics: {error}"),
    };
    format!(
        "slowClosed {}, eventsConflated {}, eventsDropped {}",
        stats["slowClosed"], stats["eventsConflated"], stats["eventsDropped"]
    )
}
