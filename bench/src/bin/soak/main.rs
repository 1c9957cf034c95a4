//! The multi-instance soak: several `axum-demo` instances share a broker of
//! the soak's own; clients connect, resume and churn throughout while one
//! publisher broadcasts numbered events; one instance is killed with
//! `kill -9` and started again, and the broker is killed and started again.
//! At the end every client's record is checked against every event the
//! publisher had confirmed: an event a client should have received and did
//! not is a loss, unless a `reset` accounts for it.
//!
//! ```text
//! cargo build --release -p sse-examples --bin axum-demo -p sse-bench
//! target/release/soak                              # 4 instances, 10 minutes, Redis
//! target/release/soak --minutes 1 --clients 100    # a short run
//! ```
//!
//! Rules of the check, per client session (from its first `connected` to
//! the moment it stops, less a second for delivery):
//!
//! - expected: every event whose publish started after the session began
//!   and was confirmed (`200`) before it ended;
//! - a client whose stream ends reconnects to another live instance with
//!   `Last-Event-ID`; so does a client told to pause (churn also sends one
//!   client away for 5 s each tick); a `reset` it gets then excuses every
//!   event after the last one it had received and published before the
//!   reset arrived;
//! - a publish that fails is retried on another instance with the same
//!   `Idempotency-Key`; one that never succeeds is not expected (and, if it
//!   was stored after all, may arrive).

mod broker;
mod clients;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use broker::Broker;
use clients::{ClientLog, Published, run_client};

#[derive(Parser, Debug, Clone)]
#[command(about = "Multi-instance soak: zero lost events through kills, restarts and churn")]
struct Args {
    /// Instances of axum-demo.
    #[arg(long, default_value_t = 4)]
    instances: usize,
    /// Minutes the soak publishes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Clients connected at any time.
    #[arg(long, default_value_t = 400)]
    clients: usize,
    /// Events published per second.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// Clients that leave (and are replaced by new ones) per second.
    #[arg(long, default_value_t = 5)]
    churn: u64,
    /// Directory holding `axum-demo` (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// The live instances' base URLs, by slot (`None` while one is down).
pub(crate) type Live = Arc<Mutex<Vec<Option<String>>>>;

/// One running instance.
struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    async fn start(binary: &PathBuf, broker_url: &str, prefix: &str) -> Result<Instance, String> {
        let mut child = Command::new(binary)
            .env("SSE_ADDR", "127.0.0.1:0")
            .env("SSE_REDIS_URL", broker_url)
            .env("SSE_REDIS_PREFIX", prefix)
            .env("SSE_HISTORY", "100000")
            .env("SSE_HEARTBEAT_MS", "5000")
            .env("SSE_MAX_CONNECTIONS", "100000")
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let line = tokio::time::timeout(Duration::from_secs(30), BufReader::new(stdout).lines().next_line())
            .await
            .map_err(|_| "the instance did not start")?
            .map_err(|e| e.to_string())?
            .ok_or("the instance exited")?;
        let base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .ok_or_else(|| format!("no address in {line:?}"))?
            .to_owned();
        Ok(Instance { child, base })
    }

    fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// What the publisher did.
#[derive(Default)]
struct PublishLog {
    events: Vec<Published>,
    failed: u64,
    retries: u64,
}

/// Publishes numbered broadcasts at `rate` until `stop`, each retried on
/// other instances with its idempotency key until confirmed (five tries).
async fn publisher(live: Live, rate: u64, run: String, stop: Arc<AtomicBool>) -> PublishLog {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut log = PublishLog::default();
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        seq += 1;
        let started = Instant::now();
        let body = serde_json::json!({"event": "soak", "data": seq.to_string()});
        let mut confirmed = false;
        for attempt in 0..5u64 {
            let bases: Vec<String> = live.lock().iter().flatten().cloned().collect();
            let Some(base) = bases.get(usize::try_from(seq + attempt).unwrap_or(0) % bases.len().max(1)) else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if attempt > 0 {
                log.retries += 1;
            }
            let answer = http
                .post(format!("{base}/api/sse/publish"))
                .header("idempotency-key", format!("{run}-{seq}"))
                .json(&body)
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                confirmed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if confirmed {
            log.events.push(Published {
                seq,
                started,
                confirmed: Instant::now(),
            });
        } else {
            log.failed += 1;
        }
    }
    log
}

/// How long until `total` has passed since `began`.
fn elapsed_before_end(began: Instant, total: Duration) -> Duration {
    total.saturating_sub(began.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let bin_dir = sse_bench::bin_dir(args.bin_dir.as_ref())?;
    let demo = bin_dir.join("axum-demo");
    let mut broker = Broker::start().await?;
    let run = format!("soak-{}", std::process::id());
    let mut instances = Vec::new();
    for _ in 0..args.instances {
        instances.push(Some(Instance::start(&demo, &broker.url(), &run).await?));
    }
    let live: Live = Arc::new(Mutex::new(
        instances.iter().map(|i| i.as_ref().map(|i| i.base.clone())).collect(),
    ));
    let began = Instant::now();
    let stop_clients = Arc::new(AtomicBool::new(false));
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let logs: Arc<Mutex<Vec<Arc<Mutex<ClientLog>>>>> = Arc::default();
    let mut tasks = Vec::new();
    let spawn_client = |index: usize, leave: Arc<AtomicBool>, pause: Arc<AtomicBool>| {
        let log = Arc::new(Mutex::new(ClientLog::default()));
        logs.lock().push(log.clone());
        tokio::spawn(run_client(index, live.clone(), log, leave, pause, stop_clients.clone()))
    };
    let mut leaving = Vec::new();
    let mut pausing = Vec::new();
    for index in 0..args.clients {
        let (leave, pause) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        leaving.push(leave.clone());
        pausing.push(pause.clone());
        tasks.push(spawn_client(index, leave, pause));
    }
    let publishing = tokio::spawn(publisher(live.clone(), args.rate, run.clone(), stop_publishing.clone()));

    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let (kill_at, restart_at, broker_at) = (total * 3 / 10, total * 7 / 20, total * 6 / 10);
    let (mut killed, mut restarted, mut broker_restarted) = (false, false, false);
    let mut next_index = args.clients;
    let churn_every = Duration::from_micros(1_000_000 / args.churn.max(1));
    let mut churn = tokio::time::interval(churn_every);
    while began.elapsed() < total {
        churn.tick().await;
        if args.churn > 0 {
            // One client leaves for good and a new one comes; another goes
            // away for a while and resumes.
            let slot = fastrand::usize(..leaving.len());
            leaving[slot].store(true, Ordering::Relaxed);
            let (leave, pause) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
            leaving[slot] = leave.clone();
            pausing[slot] = pause.clone();
            tasks.push(spawn_client(next_index, leave, pause));
            next_index += 1;
            // No pause in the last 10 s: every paused client is back before
            // the end, so that its catching up is checked.
            if elapsed_before_end(began, total) > Duration::from_secs(10) {
                pausing[fastrand::usize(..pausing.len())].store(true, Ordering::Relaxed);
            }
        }
        let elapsed = began.elapsed();
        let last = args.instances - 1;
        if !killed && elapsed >= kill_at {
            if let Some(instance) = instances[last].as_mut() {
                live.lock()[last] = None;
                instance.kill();
            }
            instances[last] = None;
            killed = true;
            println!("{:>6.1} s: instance {last} killed with SIGKILL", elapsed.as_secs_f64());
        }
        if killed && !restarted && elapsed >= restart_at {
            let instance = Instance::start(&demo, &broker.url(), &run).await?;
            live.lock()[last] = Some(instance.base.clone());
            instances[last] = Some(instance);
            restarted = true;
            println!(
                "{:>6.1} s: instance {last} started again",
                began.elapsed().as_secs_f64()
            );
        }
        if !broker_restarted && elapsed >= broker_at {
            broker.restart().await?;
            broker_restarted = true;
            println!(
                "{:>6.1} s: the broker was killed and started again (empty)",
                elapsed.as_secs_f64()
            );
        }
    }
    stop_publishing.store(true, Ordering::Relaxed);
    let published = publishing.await?;
    // Let the last events arrive, then stop every client.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_clients.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let logs: Vec<ClientLog> = logs.lock().iter().map(|log| log.lock().clone()).collect();
    let summary = clients::check(&logs, &published.events);
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| instances | {} |", args.instances);
    println!("| minutes | {} |", args.minutes);
    println!("| clients at a time / in all | {} / {} |", args.clients, logs.len());
    println!("| events confirmed | {} |", published.events.len());
    println!("| publishes never confirmed | {} |", published.failed);
    println!("| publish retries | {} |", published.retries);
    println!("| deliveries expected | {} |", summary.expected);
    println!("| deliveries received | {} |", summary.received);
    println!("| excused by a reset | {} |", summary.excused);
    println!("| **lost** | **{}** |", summary.lost);
    println!("| duplicates | {} |", summary.duplicates);
    println!("| resets | {} |", summary.resets);
    println!("| pauses (away 5 s, then resumed) | {} |", summary.pauses);
    println!("| resumptions (stream ended or paused) | {} |", summary.reconnects);
    if !summary.examples.is_empty() {
        println!("\nfirst losses (client, seq): {:?}", summary.examples);
    }
    drop(instances);
    drop(broker);
    if summary.lost > 0 || summary.duplicates > 0 {
        return Err("events were lost or duplicated".into());
    }
    Ok(())
}
