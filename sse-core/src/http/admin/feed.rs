//! The feed's viewers and its ticker: each viewer is a bounded channel of
//! frames; the ticker, running only while there are viewers, takes one
//! snapshot per interval, encodes it once and offers it to each.

use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::StreamExt as _;
use futures_util::{future, stream};
use http::StatusCode;
use parking_lot::Mutex;

use super::SseAdmin;
use crate::event::Event;
use crate::http::{SseReply, error};

/// Frames a viewer may have waiting. A snapshot that finds them full is
/// skipped for that viewer: the next one replaces it anyway.
const VIEWER_QUEUE: usize = 2;

/// The viewers, and whether a ticker serves them.
#[derive(Debug, Default)]
pub(super) struct Hub {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    viewers: Vec<mpsc::Sender<Bytes>>,
    ticking: bool,
}

impl Hub {
    /// Viewers now, forgetting those that went away.
    pub(super) fn viewers(&self) -> usize {
        let mut state = self.state.lock();
        state.viewers.retain(|viewer| !viewer.is_closed());
        state.viewers.len()
    }

    /// Offers `frame` (if any) to every viewer, forgets those that went
    /// away, and says whether the ticker goes on: it stops when no viewer is
    /// left, and a new viewer starts another.
    fn offer(&self, frame: Option<&Bytes>) -> bool {
        let mut state = self.state.lock();
        state.viewers.retain_mut(|viewer| match frame {
            Some(frame) => match viewer.try_send(frame.clone()) {
                Ok(()) => true,
                Err(full) => full.is_full(),
            },
            None => !viewer.is_closed(),
        });
        state.ticking = !state.viewers.is_empty();
        state.ticking
    }

    /// Whether a ticker runs.
    #[cfg(test)]
    pub(super) fn is_ticking(&self) -> bool {
        self.state.lock().ticking
    }

    /// Ends every feed and the ticker.
    fn end(&self) {
        let mut state = self.state.lock();
        state.viewers.clear();
        state.ticking = false;
    }
}

/// The encoded `snapshot` event of `admin` now, or `None` if it could not
/// be encoded (logged).
fn snapshot_frame(admin: &SseAdmin) -> Option<Bytes> {
    match Event::json("snapshot", &admin.snapshot()) {
        Ok(event) => Some(event.encode()),
        Err(failure) => {
            tracing::warn!(%failure, "sse admin: a snapshot could not be encoded");
            None
        }
    }
}

/// Registers a viewer, starting the ticker if none runs; the viewer's
/// stream begins with a snapshot of now.
pub(super) fn watch(admin: &SseAdmin) -> SseReply {
    let first = snapshot_frame(admin).unwrap_or_default();
    let (sender, frames) = mpsc::channel(VIEWER_QUEUE);
    {
        let mut state = admin.hub.state.lock();
        if state.viewers.len() >= admin.settings.max_viewers {
            return SseReply::Response(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many viewers of the admin feed",
            ));
        }
        state.viewers.push(sender);
        if !state.ticking {
            state.ticking = true;
            // `Runtime::spawn` does not block: it may be called under the lock.
            admin.manager.runtime().spawn(Box::pin(tick(admin.clone())));
        }
    }
    SseReply::from_stream(stream::once(future::ready(first)).chain(frames))
}

/// The ticker: a snapshot every interval while anyone watches; once the
/// manager is shut down, ends every feed.
async fn tick(admin: SseAdmin) {
    let runtime = admin.manager.runtime();
    loop {
        runtime.sleep(admin.settings.interval).await;
        if admin.manager.is_shut_down() {
            admin.hub.end();
            return;
        }
        if !admin.hub.offer(snapshot_frame(&admin).as_ref()) {
            return;
        }
    }
}
