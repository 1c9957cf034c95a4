//! The little the engine needs from an async runtime: spawning one task and
//! sleeping.
//!
//! The manager runs a single maintenance task (heartbeats for every
//! connection, lifetimes and expiries); nothing else in the engine depends on
//! a runtime. [`TokioRuntime`] is provided behind the default `tokio` feature;
//! any other executor plugs in by implementing [`Runtime`].
//!
//! Unlike [`Transport`](crate::Transport) and [`Backplane`](crate::Backplane),
//! [`Runtime`] is not an async trait: spawning is not awaited, and a sleep
//! must be a `'static` future made when it is asked for (Tokio's timer needs
//! the runtime's context then), which plain signatures returning a
//! [`BoxFuture`] state exactly.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, sendable future, as [`Runtime`] takes and returns them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Spawns tasks and creates timers for the manager.
///
/// # Contract
///
/// * [`Runtime::spawn`] runs the future to completion in the background; it
///   must not block the caller (the manager may spawn while it holds a lock
///   of its own). The manager spawns one long-lived task when it is built,
///   and, with [lifecycle hooks](crate::SseManagerBuilder::on_connect), one
///   task per hook call.
/// * [`Runtime::sleep`] returns a future that completes once `duration` has
///   passed. Dropping it early must be harmless (the maintenance task drops
///   its sleep when it is woken earlier).
///
/// The trait is object safe; the manager holds an `Arc<dyn Runtime>`.
///
/// # Example
///
/// An implementation for the `futures` thread pool with `futures-timer`,
/// without Tokio:
///
/// ```
/// use std::time::Duration;
/// use sse_core::runtime::{BoxFuture, Runtime};
///
/// struct ThreadPoolRuntime(futures::executor::ThreadPool);
///
/// impl Runtime for ThreadPoolRuntime {
///     fn spawn(&self, task: BoxFuture<'static, ()>) {
///         self.0.spawn_ok(task);
///     }
///     fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
///         Box::pin(futures_timer::Delay::new(duration))
///     }
/// }
/// ```
pub trait Runtime: Send + Sync + 'static {
    /// Runs `task` in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

const _: Option<&dyn Runtime> = None;

#[cfg(feature = "tokio")]
pub use self::tokio_runtime::TokioRuntime;

#[cfg(feature = "tokio")]
mod tokio_runtime {
    use super::{BoxFuture, Runtime};
    use std::time::Duration;

    /// [`Runtime`] on a Tokio runtime (feature `tokio`, on by default).
    #[derive(Debug, Clone)]
    pub struct TokioRuntime {
        handle: tokio::runtime::Handle,
    }

    impl TokioRuntime {
        /// The Tokio runtime the caller runs in, if any.
        pub fn current() -> Option<Self> {
            tokio::runtime::Handle::try_current()
                .ok()
                .map(|handle| TokioRuntime { handle })
        }

        /// A runtime spawning onto `handle`.
        pub fn from_handle(handle: tokio::runtime::Handle) -> Self {
            TokioRuntime { handle }
        }
    }

    impl Runtime for TokioRuntime {
        fn spawn(&self, task: BoxFuture<'static, ()>) {
            drop(self.handle.spawn(task));
        }

        fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
            // `tokio::time::sleep` needs the runtime's context when it is
            // created; entering the handle makes that true on any thread.
            let _guard = self.handle.enter();
            Box::pin(tokio::time::sleep(duration))
        }
    }
}
