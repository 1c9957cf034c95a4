//! The servers under test: starting one as a child process with its
//! settings and learning its address ([`Server`]), stopping it, and reading
//! its queue statistics.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::load::Load;
use sse_bench::now_micros;

/// A server process under test.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    pub(crate) pid: Option<u32>,
}

impl Server {
    pub(crate) async fn start(
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

    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The server's counts of slow clients closed, events conflated and events
/// dropped, from `GET /api/sse/stats`.
pub(crate) async fn queue_stats(base: &str) -> String {
    let stats: serde_json::Value = match reqwest::get(format!("{base}/api/sse/stats")).await {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(error) => return format!("no statistics: {error}"),
    };
    format!(
        "slowClosed {}, eventsConflated {}, eventsDropped {}",
        stats["slowClosed"], stats["eventsConflated"], stats["eventsDropped"]
    )
}
