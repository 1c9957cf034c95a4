//! Helpers shared by the browser tests: the demo server and chromedriver as
//! child processes killed on every path, a headless Chromium session, and
//! publishing over HTTP.
//!
//! Each test crate uses only some of them.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// How long any single expectation may take to come true.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(20);
/// How often the page is polled while waiting.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Names under which Chromium is looked for on the `PATH`.
const CHROMIUM_NAMES: [&str; 4] = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

/// Environment variables of the demo contract that would change the
/// scenario if inherited from the caller's environment.
const CONTRACT_VARIABLES: [&str; 13] = [
    "SSE_ADDR",
    "SSE_HEARTBEAT_MS",
    "SSE_RETRY_MS",
    "SSE_MAX_CONNECTIONS",
    "SSE_MAX_PER_USER",
    "SSE_MAX_LIFETIME_MS",
    "SSE_CLIENT_QUEUE",
    "SSE_HISTORY",
    "SSE_AUTH_SECRET",
    "SSE_PUBLISH_TOKEN",
    "SSE_CORS_ORIGINS",
    "SSE_REDIS_URL",
    "SSE_NATS_URL",
];

pub(crate) async fn publish(http: &reqwest::Client, base: &str, body: &Value) -> Value {
    let response = http
        .post(format!("{base}/api/sse/publish"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("publish request");
    let status = response.status();
    let text = response.text().await.expect("publish answer");
    assert_eq!(status, 200, "publish {body} answered {status}: {text}");
    serde_json::from_str(&text).expect("the publish answer is JSON")
}

pub(crate) async fn open_browser(driver: &str, chromium: &Path, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".to_owned(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--no-proxy-server",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver)
        .await
        .expect("start a browser session through chromedriver")
}

/// The child processes of the scenario, killed on every path (including a
/// failed assertion) when dropped, and their logs, shown on failure.
pub(crate) struct Harness {
    server: Option<Child>,
    server_runs: usize,
    driver: Option<Child>,
    screenshots: Option<PathBuf>,
    pub(crate) dir: tempfile::TempDir,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Harness {
            server: None,
            server_runs: 0,
            driver: None,
            screenshots: std::env::var_os("SSE_BROWSER_SCREENSHOTS").map(PathBuf::from),
            dir: tempfile::Builder::new()
                .prefix("sse-browser-test-")
                .tempdir()
                .expect("a temporary directory"),
        }
    }

    /// Starts `axum-demo` on `addr` and returns the address it announces.
    pub(crate) async fn start_server(&mut self, addr: &str) -> Result<SocketAddr, String> {
        self.start_server_with(addr, &[]).await
    }

    /// Starts `axum-demo` on `addr` with these environment variables too
    /// (e.g. `SSE_AUTH_SECRET`), and returns the address it announces.
    pub(crate) async fn start_server_with(
        &mut self,
        addr: &str,
        variables: &[(&str, &str)],
    ) -> Result<SocketAddr, String> {
        self.server_runs += 1;
        let log_path = self.dir.path().join(format!("server-{}.log", self.server_runs));
        let log = File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_axum-demo"));
        for variable in CONTRACT_VARIABLES {
            command.env_remove(variable);
        }
        let mut child = command
            .env("SSE_ADDR", addr)
            .env("SSE_HEARTBEAT_MS", "1000")
            .env("SSE_RETRY_MS", "500")
            .envs(variables.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start axum-demo: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        self.server = Some(child);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let failure = match tokio::time::timeout(TIMEOUT, rx).await {
            Ok(Ok(announced)) => {
                return announced
                    .parse()
                    .map_err(|e| format!("bad address in `listening on http://{announced}`: {e}"));
            }
            Ok(Err(_)) => "exited without announcing itself".to_owned(),
            Err(_) => format!("did not announce itself within {TIMEOUT:?}"),
        };
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        Err(format!("axum-demo on {addr} {failure}; its log:\n{log}"))
    }

    /// Starts the server again on `addr`, retrying while the port is still
    /// held by the previous process's sockets.
    pub(crate) async fn restart_server(&mut self, addr: &str) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.start_server(addr).await {
                Ok(bound) => return Ok(bound),
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Sends SIGTERM to the server and waits for it to exit.
    pub(crate) async fn stop_server(&mut self) -> ExitStatus {
        let mut child = self.server.take().expect("a running server");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
        kill(pid, Signal::SIGTERM).expect("send SIGTERM to the server");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("poll the server") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not exit within {TIMEOUT:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    pub(crate) fn kill_server(&mut self) {
        let mut child = self.server.take().expect("a running server");
        child.kill().expect("kill the server");
        child.wait().expect("reap the server");
    }

    /// Starts chromedriver on a free loopback port and waits until it is
    /// ready; returns its URL.
    pub(crate) async fn start_chromedriver(
        &mut self,
        program: &Path,
        http: &reqwest::Client,
    ) -> Result<String, String> {
        let log_path = self.dir.path().join("chromedriver.log");
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = free_port()?;
            let log = File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
            let log_err = log.try_clone().map_err(|e| e.to_string())?;
            let child = Command::new(program)
                .arg(format!("--port={port}"))
                // The browser keeps its configuration and crash reports in
                // the temporary directory too.
                .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
                .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                // Its own process group, so that the browsers it starts can
                // be killed with it.
                .process_group(0)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
            self.driver = Some(child);
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + TIMEOUT;
            loop {
                if let Ok(response) = http.get(format!("{url}/status")).send().await {
                    let text = response.text().await.unwrap_or_default();
                    let status: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if status["value"]["ready"] == true {
                        return Ok(url);
                    }
                }
                let exited = self.driver.as_mut().and_then(|child| child.try_wait().ok().flatten());
                if let Some(status) = exited {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    last_error = format!("chromedriver exited ({status}); its log:\n{log}");
                    self.driver = None;
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!("chromedriver was not ready within {TIMEOUT:?}"));
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Err(last_error)
    }

    pub(crate) async fn screenshot(&self, client: &Client, name: &str) {
        let Some(dir) = &self.screenshots else { return };
        let png = client.screenshot().await.expect("take a screenshot");
        std::fs::create_dir_all(dir).expect("create the screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
    }

    fn print_logs(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for path in logs {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- {} (last {} lines) ----", path.display(), tail.len());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        if let Some(mut driver) = self.driver.take() {
            if let Ok(pid) = i32::try_from(driver.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = driver.kill();
            let _ = driver.wait();
        }
        if std::thread::panicking() {
            self.print_logs();
        }
    }
}

/// Chromium and chromedriver, or `None` (after printing why) when they are
/// missing and `SSE_CI_STRICT=1` is not set; with it, a missing browser
/// fails the test.
pub(crate) fn browser_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    match find_browser() {
        Ok(found) => Some(found),
        Err(reason) if strict() => panic!("SSE_CI_STRICT=1 and {test} cannot run: {reason}"),
        Err(reason) => {
            eprintln!("skipping {test}: {reason} (set SSE_CI_STRICT=1 to make this a failure)");
            None
        }
    }
}

/// Whether `SSE_CI_STRICT=1`: what a test needs must be there.
pub(crate) fn strict() -> bool {
    std::env::var("SSE_CI_STRICT").is_ok_and(|v| v == "1")
}

/// A port that was free on 127.0.0.1 a moment ago.
pub(crate) fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    drop(listener);
    Ok(port)
}

/// Chromium and chromedriver, from `SSE_CHROMIUM` and `SSE_CHROMEDRIVER` or
/// the `PATH`, or why they cannot be used.
pub(crate) fn find_browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium = find_program("SSE_CHROMIUM", &CHROMIUM_NAMES);
    let chromedriver = find_program("SSE_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, chromedriver) {
        (Ok(chromium), Ok(chromedriver)) => Ok((chromium, chromedriver)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(a), Err(b)) => Err(format!("{a}; {b}")),
    }
}

fn find_program(variable: &str, names: &[&str]) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{variable}={} is not a file", path.display()))
        };
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/bin"));
    dirs.iter()
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            format!(
                "{} not found on PATH (install Debian's chromium and chromium-driver packages, or set {variable})",
                names.join(" or ")
            )
        })
}
