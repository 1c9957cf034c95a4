//! What the benchmark's server tests share: starting a server binary on a
//! loopback ephemeral port and reading the address it prints.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How long a test waits for anything.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Starts `binary` on `127.0.0.1:0` with `env` set; returns the process,
/// killed when dropped, and its base URL.
pub(crate) async fn start(binary: &str, env: &[(&str, &str)]) -> (Child, String) {
    let mut command = Command::new(binary);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .env("SSE_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the server starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(WAIT, BufReader::new(stdout).lines().next_line())
        .await
        .expect("the server prints its address in time")
        .expect("stdout is readable")
        .expect("a first line");
    let base = line
        .strip_prefix("listening on ")
        .expect("listening on ADDR")
        .to_owned();
    (child, base)
}
