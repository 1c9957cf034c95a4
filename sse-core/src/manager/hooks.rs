//! Lifecycle hooks: the application's code that runs when a connection
//! opens ([`SseManagerBuilder::on_connect`](super::SseManagerBuilder::on_connect),
//! given a [`ConnectContext`]) and when it closes
//! ([`SseManagerBuilder::on_disconnect`](super::SseManagerBuilder::on_disconnect),
//! given a [`DisconnectContext`]). This module owns the contexts, the
//! registered hooks and how they run: each call is a task of its own on the
//! manager's [`Runtime`](crate::Runtime), started once the registry lock is
//! released or, for a disconnect, right after the removal; a panic is caught
//! and logged; a connect hook holds its connection's live frames behind its
//! own until it returns.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt as _;

use super::{Shared, SseManager};
use crate::connection::{ClientId, CloseReason, ConnectionInfo};
use crate::event::Event;
use crate::queue::{Push, Queue, Tag};
use crate::runtime::BoxFuture;

type ConnectHook = Arc<dyn Fn(ConnectContext) -> BoxFuture<'static, ()> + Send + Sync>;
type DisconnectHook = Arc<dyn Fn(DisconnectContext) -> BoxFuture<'static, ()> + Send + Sync>;

/// The hooks registered on a manager.
#[derive(Clone, Default)]
pub(super) struct Hooks {
    pub(super) on_connect: Option<ConnectHook>,
    pub(super) on_disconnect: Option<DisconnectHook>,
}

impl Hooks {
    pub(super) fn connect<F, Fut>(&mut self, hook: F)
    where
        F: Fn(ConnectContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connect = Some(Arc::new(move |context| Box::pin(hook(context))));
    }

    pub(super) fn disconnect<F, Fut>(&mut self, hook: F)
    where
        F: Fn(DisconnectContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnect = Some(Arc::new(move |context| Box::pin(hook(context))));
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_connect", &self.on_connect.is_some())
            .field("on_disconnect", &self.on_disconnect.is_some())
            .finish()
    }
}

/// What a connect hook is given: the new connection, a way to send to it
/// alone, and the manager.
///
/// # Ordering
///
/// The connection's stream yields, in this order: the `retry:` hint and the
/// `connected` event; the replay (or `reset`) for its `Last-Event-ID`; every
/// event sent with [`ConnectContext::send`] while the hook runs; then the
/// live events sent to it from its registration on, in the order they were
/// sent, heartbeats included. Live events are not lost while the hook runs:
/// they wait behind its frames (and count against the connection's queue)
/// until the hook returns, panics, or its task is dropped.
///
/// A snapshot the hook sends (say [`SseManager::presence`]) is therefore
/// followed by every change after it: the `presence` events of later joins
/// and leaves arrive after the snapshot. One that happened between the
/// registration and the snapshot may show in both, so a client applies
/// them as set operations (a join of someone present changes nothing).
pub struct ConnectContext {
    manager: SseManager,
    info: ConnectionInfo,
    queue: Arc<Queue>,
}

impl fmt::Debug for ConnectContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectContext")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl ConnectContext {
    /// The connection, as it was registered.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The connection's id.
    pub fn client_id(&self) -> &ClientId {
        &self.info.client_id
    }

    /// The manager, to query it (who else is online) or send to others.
    pub fn manager(&self) -> &SseManager {
        &self.manager
    }

    /// Sends `event` to this connection alone, ahead of every live event
    /// (see [Ordering](ConnectContext#ordering)): the initial state of the
    /// page. The event is not recorded in the replay history, and goes out
    /// with its own id or none.
    ///
    /// Returns whether it was queued: not once the connection is closed,
    /// nor when its queue is full, which closes it as too slow like any
    /// other send.
    pub fn send(&self, event: &Event) -> bool {
        let shared = &self.manager.shared;
        match self
            .queue
            .push_opening(event.encode(), &Tag::of(event), shared.now_ms())
        {
            Push::Queued => true,
            Push::MadeRoom { conflated, dropped } => {
                shared.made_room(conflated, dropped);
                true
            }
            Push::Overflow { dropped } => {
                crate::stats::Counters::add(&shared.stats.frames_dropped, dropped as u64);
                shared.remove_slow(vec![self.info.client_id.clone()]);
                false
            }
            Push::Closed => false,
        }
    }
}

/// What a disconnect hook is given: the connection that closed, why, and
/// the manager. When the hook runs, the connection is no longer registered:
/// [`SseManager::has_connection`] and
/// [`SseManager::presence`] no longer count it.
pub struct DisconnectContext {
    manager: SseManager,
    info: ConnectionInfo,
    reason: CloseReason,
}

impl fmt::Debug for DisconnectContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DisconnectContext")
            .field("info", &self.info)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl DisconnectContext {
    /// The connection, as it was when it closed.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Why it closed.
    pub fn reason(&self) -> CloseReason {
        self.reason
    }

    /// The manager.
    pub fn manager(&self) -> &SseManager {
        &self.manager
    }
}

/// Ends the hold of a connection's opening when dropped: when its connect
/// hook returns, panics or is dropped unfinished.
struct Release(Arc<Queue>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Shared {
    /// Starts the connect hook, if any, for a connection just registered
    /// (whose queue was held for it when the hook is set).
    pub(super) fn connected_hook(self: &Arc<Self>, info: &ConnectionInfo, queue: &Arc<Queue>) {
        let Some(hook) = self.hooks.on_connect.clone() else {
            return;
        };
        let release = Release(Arc::clone(queue));
        let context = ConnectContext {
            manager: SseManager {
                shared: Arc::clone(self),
            },
            info: info.clone(),
            queue: Arc::clone(queue),
        };
        let client_id = info.client_id.clone();
        self.run_hook("on_connect", client_id, async move {
            hook(context).await;
            drop(release);
        });
    }

    /// Starts the disconnect hook, if any, for a connection just
    /// unregistered.
    pub(super) fn disconnected_hook(&self, info: &ConnectionInfo, reason: CloseReason) {
        let (Some(hook), Some(shared)) = (self.hooks.on_disconnect.clone(), self.me.upgrade()) else {
            return;
        };
        let context = DisconnectContext {
            manager: SseManager { shared },
            info: info.clone(),
            reason,
        };
        self.run_hook("on_disconnect", info.client_id.clone(), async move {
            hook(context).await;
        });
    }

    /// Runs a hook as a task of its own, so that it holds no lock and delays
    /// no other connection; a panic ends the hook alone, and is logged.
    fn run_hook(&self, hook: &'static str, client_id: ClientId, call: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(Box::pin(async move {
            if AssertUnwindSafe(call).catch_unwind().await.is_err() {
                tracing::error!(%client_id, hook, "sse lifecycle hook panicked");
            }
        }));
    }
}
