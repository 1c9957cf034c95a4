//! What the NATS tests share: a fixture with a stream of its own (deleted
//! when dropped), a `nats-server` of a test's own, a skip that fails under
//! `SSE_CI_STRICT=1`, and a connection that records what it received.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use sse_core::{ConnectOptions, Connection, Delivery, Event, SseManager, Target};
use sse_nats::NatsBackplane;

pub(crate) const NATS_URL: &str = "nats://127.0.0.1:4222";
pub(crate) const WAIT: Duration = Duration::from_secs(15);

pub(crate) fn strict() -> bool {
    std::env::var("SSE_CI_STRICT").is_ok_and(|value| value == "1")
}

/// Skips the test (or fails it under `SSE_CI_STRICT=1`).
pub(crate) fn skip(reason: &str) {
    assert!(!strict(), "{reason} (SSE_CI_STRICT=1 makes this a failure)");
    eprintln!("skipped: {reason}");
}

/// A stream of this test's own, deleted when dropped.
pub(crate) struct Fixture {
    pub(crate) url: String,
    pub(crate) prefix: String,
}

impl Fixture {
    pub(crate) fn stream(&self) -> String {
        format!("{}-events", self.prefix)
    }

    pub(crate) fn subject(&self) -> String {
        format!("{}.events", self.prefix)
    }

    pub(crate) async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.url.as_str()).await.expect("nats connection");
        async_nats::jetstream::new(client)
    }

    pub(crate) fn backplane(&self, history: usize) -> sse_nats::NatsBackplaneBuilder {
        NatsBackplane::connect(self.url.as_str())
            .prefix(self.prefix.as_str())
            .history(history)
            .read_timeout(Duration::from_millis(300))
    }

    /// An instance: a manager with its own backplane.
    pub(crate) async fn instance(&self, history: usize) -> SseManager {
        let backplane = self.backplane(history).build().await.expect("backplane");
        manager(backplane, history)
    }

    /// The stream's message count.
    pub(crate) async fn len(&self) -> u64 {
        let mut stream = self.jetstream().await.get_stream(self.stream()).await.expect("stream");
        stream.info().await.expect("stream info").state.messages
    }

    /// Deletes the stream.
    pub(crate) async fn delete(&self) {
        self.jetstream()
            .await
            .delete_stream(self.stream())
            .await
            .expect("stream deleted");
    }
}

pub(crate) fn manager(backplane: NatsBackplane, history: usize) -> SseManager {
    SseManager::builder()
        .configure(|c| c.history_size(history))
        .backplane(backplane)
        .build()
        .expect("manager")
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream());
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let connect = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(2))
                    .connect(url.as_str());
                let client = tokio::time::timeout(Duration::from_secs(3), connect).await??;
                let context = async_nats::jetstream::new(client);
                match tokio::time::timeout(Duration::from_secs(3), context.delete_stream(&stream)).await? {
                    Ok(_) => Ok(()),
                    Err(error) if error.to_string().contains("not found") => Ok(()),
                    Err(error) => Err(error.into()),
                }
            })
        })
        .join();
        let result: Result<(), Box<dyn std::error::Error + Send + Sync>> =
            deleted.unwrap_or_else(|_| Err("the clean-up thread panicked".into()));
        if let Err(error) = result {
            eprintln!("could not delete the stream of {}: {error}", self.prefix);
        }
    }
}

pub(crate) fn prefix(test: &str) -> String {
    format!("sse-test-{:016x}-{test}", fastrand::u64(..))
}

/// A fixture on the NATS at `url`, or `None` (after [`skip`]) when it does
/// not answer or has no JetStream.
pub(crate) async fn fixture_at(url: &str, test: &str) -> Option<Fixture> {
    let probe = async {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(url)
            .await?;
        jetstream_answers(&client).await
    };
    match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Ok(())) => Some(Fixture {
            url: url.to_owned(),
            prefix: prefix(test),
        }),
        Ok(Err(error)) => {
            skip(&format!("NATS with JetStream at {url} is not reachable: {error}"));
            None
        }
        Err(_) => {
            skip(&format!("NATS at {url} did not answer within 3 s"));
            None
        }
    }
}

pub(crate) async fn fixture(test: &str) -> Option<Fixture> {
    let url = std::env::var("SSE_TEST_NATS_URL").unwrap_or_else(|_| NATS_URL.to_owned());
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

/// The `nats-server` binary: on the `PATH`, or where Debian installs it.
pub(crate) fn nats_server_binary() -> Option<PathBuf> {
    let candidates = [PathBuf::from("nats-server"), PathBuf::from("/usr/sbin/nats-server")];
    candidates
        .into_iter()
        .find(|binary| Command::new(binary).arg("--version").output().is_ok())
}

/// A directory of a test's own, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> std::io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("sse-nats-{name}-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `nats-server` with JetStream of a test's own, on `port`, storing in
/// `dir`, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
}

impl Server {
    pub(crate) fn start(binary: &std::path::Path, port: u16, dir: &std::path::Path) -> std::io::Result<Server> {
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
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

/// Whether JetStream answers its account information request.
pub(crate) async fn jetstream_answers(
    client: &async_nats::Client,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let reply = client.request("$JS.API.INFO", Bytes::new()).await?;
    let text = String::from_utf8_lossy(&reply.payload);
    if text.contains("\"error\"") {
        return Err(format!("JetStream is not enabled: {text}").into());
    }
    Ok(())
}

/// Waits until a NATS with JetStream answers at `url`.
pub(crate) async fn wait_for_nats(url: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let probe = async {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(1))
                .connect(url)
                .await?;
            jetstream_answers(&client).await
        };
        let probed = tokio::time::timeout(Duration::from_secs(2), probe).await;
        if let Ok(Ok(())) = probed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nats-server at {url} never answered: {probed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
