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
