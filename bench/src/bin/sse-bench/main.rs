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

mod load;
mod report;
mod run;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::load::{Load, scenarios};
use crate::report::{Report, print_header, print_row};
use crate::run::run_load;
use crate::server::{Server, queue_stats};
use sse_bench::write_calls;

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
    let bin_dir = sse_bench::bin_dir(args.bin_dir.as_ref())?;
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
