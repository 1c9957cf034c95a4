//! Test doubles (feature `test-util`).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::StreamExt as _;
use parking_lot::Mutex;

use crate::backplane::{Appended, Backplane, BackplaneError, BackplaneSink};
use crate::error::TransportError;
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

#[async_trait]
impl Transport for MockTransport {
    async fn send(&mut self, frames: Bytes) -> Result<(), TransportError> {
        let mut state = self.state.lock();
        if state.fail {
            return Err(TransportError::new("mock transport told to fail"));
        }
        state.writes.push(frames);
        Ok(())
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        self.state.lock().closed = true;
        Ok(())
    }
}

/// An in-process [`Backplane`] shared by several managers,
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
#[derive(Debug, Default)]
pub struct MemoryLog {
    state: Arc<Mutex<LogState>>,
    /// This clone's subscription, from `preload` to `run`.
    reader: Mutex<Option<Reader>>,
}

type Reader = mpsc::UnboundedReceiver<Item>;

/// What a clone's reader is handed: an entry, or the news that the log
/// lost its history.
#[derive(Debug)]
enum Item {
    Entry(String, Bytes),
    Lost,
}

impl Clone for MemoryLog {
    /// Another handle on the same log, with a subscription of its own.
    fn clone(&self) -> Self {
        MemoryLog {
            state: self.state.clone(),
            reader: Mutex::new(None),
        }
    }
}

#[derive(Debug, Default)]
struct LogState {
    entries: Vec<(String, Bytes)>,
    readers: Vec<mpsc::UnboundedSender<Item>>,
    /// How many times the log lost its history: part of the ids, so that
    /// an id of before never names an entry of after.
    generation: u64,
    unavailable: bool,
    /// What the next appends do: `Some(true)` stores them and fails them
    /// with an unknown outcome, `Some(false)` fails them storing nothing.
    failing: Option<bool>,
    /// The keys of [`Backplane::publish_once`], with their entries' ids and
    /// when they were appended.
    keys: std::collections::HashMap<String, (String, std::time::Instant)>,
}

impl LogState {
    fn append(&mut self, payload: Bytes) -> Result<String, BackplaneError> {
        if self.unavailable {
            return Err(BackplaneError::new("memory log told to be unavailable"));
        }
        let id = format!("{}-{}", self.entries.len() + 1, self.generation);
        if self.failing == Some(false) {
            return Err(BackplaneError::new("memory log told to fail before appending"));
        }
        self.entries.push((id.clone(), payload.clone()));
        self.readers
            .retain(|reader| reader.unbounded_send(Item::Entry(id.clone(), payload.clone())).is_ok());
        if self.failing == Some(true) {
            return Err(BackplaneError::outcome_unknown("memory log told to lose the answer"));
        }
        Ok(id)
    }
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

    /// Makes the next appends fail after they are stored, as when an
    /// answer is lost (`true`: an [unknown outcome](BackplaneError::is_outcome_unknown)),
    /// or before (`false`); `None` lets them succeed again.
    pub fn set_failing(&self, after_storing: Option<bool>) {
        self.state.lock().failing = after_storing;
    }

    /// Empties the log, as a log restarted without its storage would be:
    /// every reader is told the history was lost, and later entries get ids
    /// no earlier entry had.
    pub fn lose_history(&self) {
        let mut state = self.state.lock();
        state.entries.clear();
        state.keys.clear();
        state.generation += 1;
        state.readers.retain(|reader| reader.unbounded_send(Item::Lost).is_ok());
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

#[async_trait]
impl Backplane for MemoryLog {
    async fn publish(&self, payload: Bytes) -> Result<String, BackplaneError> {
        self.state.lock().append(payload)
    }

    async fn publish_once(
        &self,
        payload: Bytes,
        key: &str,
        window: std::time::Duration,
    ) -> Result<Appended, BackplaneError> {
        let mut state = self.state.lock();
        let now = std::time::Instant::now();
        state
            .keys
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < window);
        if let Some((id, _)) = state.keys.get(key) {
            return Ok(Appended::earlier(id.clone()));
        }
        let (id, result) = match state.append(payload) {
            Ok(id) => (Some(id.clone()), Ok(Appended::new(id))),
            // Stored all the same: the key stands for it.
            Err(error) if error.is_outcome_unknown() => (state.entries.last().map(|(id, _)| id.clone()), Err(error)),
            Err(error) => (None, Err(error)),
        };
        if let Some(id) = id {
            state.keys.insert(key.to_owned(), (id, now));
        }
        result
    }

    /// Preloads the whole log and subscribes this clone's reader to what
    /// follows, so that `run` misses nothing however late it starts.
    fn preload(&self, sink: &BackplaneSink) {
        let (sender, receiver) = mpsc::unbounded();
        {
            let mut state = self.state.lock();
            for (id, payload) in &state.entries {
                let _ = sink.preload(id, payload);
            }
            state.readers.push(sender);
        }
        *self.reader.lock() = Some(receiver);
    }

    async fn run(self: Arc<Self>, sink: BackplaneSink) {
        let Some(mut receiver) = self.reader.lock().take() else {
            return;
        };
        while let Some(item) = receiver.next().await {
            if sink.is_closed() {
                return;
            }
            match item {
                Item::Entry(id, payload) => {
                    let _ = sink.deliver(&id, &payload);
                }
                Item::Lost => sink.history_lost(),
            }
        }
    }
}

#[cfg(all(feature = "http", feature = "tokio"))]
pub mod adapter;
#[cfg(feature = "tokio")]
pub mod backplane_suite;
#[cfg(all(feature = "http", feature = "tokio"))]
pub mod own_routes;

pub mod frames;
