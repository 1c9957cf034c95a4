//! What the Redis tests share: a fixture with a key prefix of its own
//! (its keys deleted when dropped), a `redis-server` of a test's own, a skip that fails under
//! `SSE_CI_STRICT=1`, and a connection that records what it received.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use sse_core::{ConnectOptions, Connection, Delivery, Event, SseManager, Target};
use sse_redis::RedisBackplane;

pub(crate) const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub(crate) const WAIT: Duration = Duration::from_secs(15);

pub(crate) fn strict() -> bool {
    std::env::var("SSE_CI_STRICT").is_ok_and(|value| value == "1")
}

/// Skips the test (or fails it under `SSE_CI_STRICT=1`).
pub(crate) fn skip(reason: &str) {
    assert!(!strict(), "{reason} (SSE_CI_STRICT=1 makes this a failure)");
    eprintln!("skipped: {reason}");
}

/// A stream key of this test's own, deleted when dropped.
pub(crate) struct Fixture {
    pub(crate) url: String,
    pub(crate) prefix: String,
}

impl Fixture {
    pub(crate) fn key(&self) -> String {
        format!("{}:events", self.prefix)
    }

    pub(crate) async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    pub(crate) fn backplane(&self, history: usize) -> sse_redis::RedisBackplaneBuilder {
        RedisBackplane::connect(self.url.as_str())
            .prefix(self.prefix.as_str())
            .history(history)
    }

    /// An instance: a manager with its own backplane.
    pub(crate) async fn instance(&self, history: usize) -> SseManager {
        let backplane = self.backplane(history).build().await.expect("backplane");
        SseManager::builder()
            .configure(|c| c.history_size(history))
            .backplane(backplane)
            .build()
            .expect("manager")
    }

    pub(crate) async fn xlen(&self) -> usize {
        redis::cmd("XLEN")
            .arg(self.key())
            .query_async(&mut self.redis().await)
            .await
            .expect("XLEN")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let deleted = redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut connection| {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}:*", self.prefix))
                    .query(&mut connection)?;
                if keys.is_empty() {
                    return Ok(0);
                }
                redis::cmd("DEL").arg(keys).query::<usize>(&mut connection)
            });
        if let Err(error) = deleted {
            eprintln!("could not delete the keys of {}: {error}", self.prefix);
        }
    }
}

pub(crate) fn prefix(test: &str) -> String {
    format!("sse-test-{:016x}-{test}", fastrand::u64(..))
}

/// A fixture on the Redis at `url`, or `None` (after [`skip`]) when it does
/// not answer.
pub(crate) async fn fixture_at(url: &str, test: &str) -> Option<Fixture> {
    let ping = async {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut connection).await
    };
    match tokio::time::timeout(Duration::from_secs(3), ping).await {
        Ok(Ok(_)) => Some(Fixture {
            url: url.to_owned(),
            prefix: prefix(test),
        }),
        Ok(Err(error)) => {
            skip(&format!("Redis at {url} is not reachable: {error}"));
            None
        }
        Err(_) => {
            skip(&format!("Redis at {url} did not answer within 3 s"));
            None
        }
    }
}

pub(crate) async fn fixture(test: &str) -> Option<Fixture> {
    let url = std::env::var("SSE_TEST_REDIS_URL").unwrap_or_else(|_| REDIS_URL.to_owned());
    fixture_at(&url, test).await
}

/// One connection and everything it received so far.
pub(crate) struct Watch {
    pub(crate) connection: Connection,
    pub(crate) seen: String,
}

impl Watch {
    pub(crate) fn new(connection: Connection) -> Self {
        Watch {
            connection,
            seen: String::new(),
        }
    }

    pub(crate) fn client_id(&self) -> String {
        self.connection.client_id().to_string()
    }

    /// Reads until `needle` was received; returns everything received.
    pub(crate) async fn until(&mut self, needle: &str) -> &str {
        let seen = &mut self.seen;
        let connection = &mut self.connection;
        let read = tokio::time::timeout(WAIT, async {
            while !seen.contains(needle) {
                let frames: Bytes = connection.next().await.expect("stream open");
                seen.push_str(&String::from_utf8_lossy(&frames));
            }
        })
        .await;
        assert!(read.is_ok(), "{needle:?} never arrived; got {:?}", self.seen);
        &self.seen
    }

    /// The `data:` lines received so far, in order.
    pub(crate) fn data(&self) -> Vec<&str> {
        self.seen
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .collect()
    }

    /// The `data:` lines of events, without the `connected` event's.
    pub(crate) fn events(&self) -> Vec<&str> {
        self.data().into_iter().filter(|data| !data.starts_with('{')).collect()
    }

    /// Waits for the last of `expected`, then checks that the events
    /// received are exactly `expected`, in order.
    pub(crate) async fn until_exactly(&mut self, expected: &[&str]) {
        let last = expected.last().map(|data| format!("data: {data}"));
        if let Some(last) = last {
            self.until(&last).await;
        }
        assert_eq!(self.events(), expected, "{}", self.seen);
    }
}

/// A loopback port nothing listens on: bound, then released.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub(crate) async fn connect(manager: &SseManager, options: ConnectOptions) -> Watch {
    Watch::new(manager.connect(options).await.expect("connect"))
}

pub(crate) async fn send(manager: &SseManager, target: Target, data: &str) -> Delivery {
    manager.send(target, Event::message(data)).await.expect("published")
}

/// A `redis-server` of a test's own, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
}

impl Server {
    pub(crate) fn start(port: u16, dir: &std::path::Path) -> std::io::Result<Server> {
        let port = port.to_string();
        let dir = dir.to_str().unwrap_or(".");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dir", dir, "--logfile", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Server { child })
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `redis-server` of the test's own on a free loopback port, once it
/// answers, and a fixture on it; `None` (skipped, or failed under
/// `SSE_CI_STRICT=1`) when the binary is not installed.
pub(crate) async fn own_server(test: &str) -> Option<(Server, Fixture, u16)> {
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("the redis-server binary is not installed");
        return None;
    }
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = Server::start(port, &std::env::temp_dir()).expect("redis-server starts");
    wait_for_redis(&url).await;
    let fx = fixture_at(&url, test).await.expect("own redis-server answers");
    Some((server, fx, port))
}

/// Waits until a Redis answers at `url`.
pub(crate) async fn wait_for_redis(url: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let ping = async {
            let mut connection = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut connection).await
        };
        if ping.await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "redis-server at {url} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
