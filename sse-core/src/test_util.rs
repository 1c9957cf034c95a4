//! Test doubles (feature `test-util`).

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::error::TransportError;
use crate::runtime::BoxFuture;
use crate::transport::Transport;

/// A [`Transport`] that records what it is sent, for tests.
///
/// Clones share the same record, so a test keeps one clone to inspect while
/// [`Connection::pipe`](crate::Connection::pipe) drives another. It can be
/// told to fail, to test how the manager handles a client that went away.
///
/// ```
/// use sse_core::{test_util::MockTransport, ConnectOptions, SseManager};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = SseManager::builder().build()?;
/// let connection = manager.connect(ConnectOptions::new()).await?;
/// let client_id = connection.client_id().to_string();
/// let transport = MockTransport::new();
/// let mut writer = transport.clone();
/// let task = tokio::spawn(async move { connection.pipe(&mut writer).await });
///
/// manager.disconnect(&client_id);
/// task.await??;
/// assert!(transport.text().contains("event: connected"));
/// assert!(transport.is_closed());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MockTransport {
    state: Arc<Mutex<MockState>>,
}

#[derive(Debug, Default)]
struct MockState {
    writes: Vec<Bytes>,
    fail: bool,
    closed: bool,
}

impl MockTransport {
    /// A transport that accepts everything.
    pub fn new() -> Self {
        MockTransport::default()
    }

    /// From now on, every `send` fails (as if the client went away).
    pub fn fail(&self) {
        self.state.lock().fail = true;
    }

    /// Every write so far, in order.
    pub fn writes(&self) -> Vec<Bytes> {
        self.state.lock().writes.clone()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        let state = self.state.lock();
        state
            .writes
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
}

impl Transport for MockTransport {
    fn send(&mut self, frames: Bytes) -> BoxFuture<'_, Result<(), TransportError>> {
        let mut state = self.state.lock();
        let result = if state.fail {
            Err(TransportError::new("mock transport told to fail"))
        } else {
            state.writes.push(frames);
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        self.state.lock().closed = true;
        Box::pin(std::future::ready(Ok(())))
    }
}

/// An in-process [`Backplane`](crate::Backplane) shared by several managers,
/// for testing multi-instance behaviour without a server: clones share one
/// ordered log, and every manager built with a clone reads all of it.
///
/// ```
/// use sse_core::{test_util::MemoryLog, ConnectOptions, Event, SseManager};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let log = MemoryLog::new();
/// let a = SseManager::builder().backplane(log.clone()).build()?;
/// let b = SseManager::builder().backplane(log.clone()).build()?;
/// let _alice = b.connect(ConnectOptions::new().user("alice")).await?;
/// // Published on `a`, delivered to alice's connection on `b`.
/// let sent = a.send_to_user("alice", Event::message("hi")).await?;
/// assert_eq!(sent.delivered, 0, "a counts only its own connections");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    state: Arc<Mutex<LogState>>,
}

#[derive(Debug, Default)]
struct LogState {
    entries: Vec<(String, Bytes)>,
    readers: Vec<futures_channel::mpsc::UnboundedSender<(String, Bytes)>>,
    unavailable: bool,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        MemoryLog::default()
    }

    /// Makes the log unreachable (publishes fail) or reachable again.
    pub fn set_available(&self, available: bool) {
        self.state.lock().unavailable = !available;
    }

    /// Entries in the log.
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl crate::Backplane for MemoryLog {
    fn publish(&self, payload: Bytes) -> BoxFuture<'_, Result<String, crate::BackplaneError>> {
        let mut state = self.state.lock();
        let result = if state.unavailable {
            Err(crate::BackplaneError::new("memory log told to be unavailable"))
        } else {
            let id = format!("{}-0", state.entries.len() + 1);
            state.entries.push((id.clone(), payload.clone()));
            state
                .readers
                .retain(|reader| reader.unbounded_send((id.clone(), payload.clone())).is_ok());
            Ok(id)
        };
        Box::pin(std::future::ready(result))
    }

    fn run(&self, sink: crate::BackplaneSink) -> BoxFuture<'static, ()> {
        let (sender, mut receiver) = futures_channel::mpsc::unbounded();
        {
            let mut state = self.state.lock();
            for (id, payload) in &state.entries {
                let _ = sink.preload(id, payload);
            }
            state.readers.push(sender);
        }
        Box::pin(async move {
            use futures_util::StreamExt as _;
            while let Some((id, payload)) = receiver.next().await {
                if sink.is_closed() {
                    return;
                }
                let _ = sink.deliver(&id, &payload);
            }
        })
    }
}

#[cfg(all(feature = "http", feature = "tokio"))]
pub mod adapter;
