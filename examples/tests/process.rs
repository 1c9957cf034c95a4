//! The demo binaries as processes: the one line they print when ready, a
//! malformed variable refused at startup, and a clean exit on SIGTERM and
//! SIGINT with many SSE connections open.
#![cfg(unix)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a test waits for anything a demo should do at once.
const PATIENCE: Duration = Duration::from_secs(15);

/// A running demo, killed if the test ends before it exits.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Demo {
    fn start(binary: &str, vars: &[(&str, &str)]) -> Demo {
        let mut child = Command::new(binary)
            .env_clear()
            .env("SSE_ADDR", "127.0.0.1:0")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Demo { child, lines }
    }

    /// The address of the `listening on http://ADDR` line.
    fn address(&self) -> String {
        let line = self.lines.recv_timeout(PATIENCE).expect("a line on stdout");
        let address = line
            .strip_prefix("listening on http://")
            .expect("`listening on http://ADDR`");
        address.parse::<std::net::SocketAddr>().expect("a socket address");
        address.to_owned()
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("a pid");
        kill(Pid::from_raw(pid), signal).expect("signal the demo");
    }

    /// Waits for the process to exit, up to [`PATIENCE`].
    async fn exit(&mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the demo") {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the demo has not exited after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn prints_one_listening_line(binary: &str) {
    let mut demo = Demo::start(binary, &[]);
    let address = demo.address();
    let stats = reqwest::get(format!("http://{address}/api/sse/stats"))
        .await
        .expect("the demo answers at the announced address");
    assert_eq!(stats.status(), 200);
    demo.signal(Signal::SIGTERM);
    let (status, _) = demo.exit().await;
    assert!(status.success(), "{status}");
    let rest: Vec<String> = demo.lines.try_iter().collect();
    assert!(rest.is_empty(), "more lines on stdout: {rest:?}");
}

async fn refuses_a_malformed_variable(binary: &str) {
    let mut child = Command::new(binary)
        .env_clear()
        .env("SSE_ADDR", "127.0.0.1:0")
        .env("SSE_HEARTBEAT_MS", "fast")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the demo") {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("the demo started despite SSE_HEARTBEAT_MS=fast");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains("SSE_HEARTBEAT_MS"),
        "stderr does not name the variable: {stderr:?}"
    );
    assert!(stdout.is_empty(), "it announced itself: {stdout:?}");
}

/// With `CONNECTIONS` SSE connections open, `signal` makes the demo exit
/// with status 0, within the contract's 5 seconds.
async fn exits_cleanly_on(binary: &str, signal: Signal) {
    const CONNECTIONS: usize = 20;
    // Heartbeats never fire during the test: the connections are idle.
    let mut demo = Demo::start(binary, &[("SSE_HEARTBEAT_MS", "600000")]);
    let address = demo.address();
    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for n in 0..CONNECTIONS {
        let response = client
            .get(format!("http://{address}/api/sse?userId=user{n}"))
            .send()
            .await
            .expect("connect");
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let mut received = Vec::new();
        while !String::from_utf8_lossy(&received).contains("event: connected\n") {
            let chunk = tokio::time::timeout(PATIENCE, body.next())
                .await
                .expect("the connected event in time")
                .expect("the stream is open")
                .expect("a chunk");
            received.extend_from_slice(&chunk);
        }
        streams.push(body);
    }
    let stats = client
        .get(format!("http://{address}/api/sse/stats"))
        .send()
        .await
        .expect("stats")
        .bytes()
        .await
        .expect("stats body");
    let stats: serde_json::Value = serde_json::from_slice(&stats).expect("JSON");
    assert_eq!(stats["connections"], CONNECTIONS);

    demo.signal(signal);
    let (status, elapsed) = demo.exit().await;
    println!("{binary}: exited {elapsed:?} after {signal} with {CONNECTIONS} connections open: {status}");
    assert!(status.success(), "{status}");
    assert!(
        elapsed < Duration::from_secs(5),
        "the contract allows 5 s, it took {elapsed:?}"
    );
    drop(streams);
}

macro_rules! demo_tests {
    ($($module:ident => $binary:literal),* $(,)?) => {$(
        mod $module {
            const BINARY: &str = env!(concat!("CARGO_BIN_EXE_", $binary));

            #[tokio::test]
            async fn prints_one_listening_line() {
                super::prints_one_listening_line(BINARY).await;
            }

            #[tokio::test]
            async fn refuses_a_malformed_variable() {
                super::refuses_a_malformed_variable(BINARY).await;
            }

            #[tokio::test]
            async fn exits_cleanly_on_sigterm() {
                super::exits_cleanly_on(BINARY, nix::sys::signal::Signal::SIGTERM).await;
            }

            #[tokio::test]
            async fn exits_cleanly_on_sigint() {
                super::exits_cleanly_on(BINARY, nix::sys::signal::Signal::SIGINT).await;
            }
        }
    )*};
}

demo_tests! {
    axum => "axum-demo",
    warp => "warp-demo",
    poem => "poem-demo",
}
