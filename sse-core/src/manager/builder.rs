//! Building a manager: [`SseManagerBuilder`] gathers the configuration, the
//! runtime, the optional backplane and the lifecycle hooks, validates them, creates the shared
//! state, and starts the maintenance task and the backplane's reader on the
//! runtime.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use futures_channel::mpsc;
use parking_lot::{Mutex, RwLock};

use super::cluster_stats::{self, StatsSync};
use super::hooks::{ConnectContext, DisconnectContext, Hooks};
use super::shards::Shards;
use super::shared_presence::{self, PresenceSync};
use super::{Shared, SseManager, maintenance};
use crate::backplane::{Backplane, BackplaneSink};
use crate::budget::FrameBudget;
use crate::config::{SseConfig, SseConfigBuilder};
use crate::error::ConfigError;
use crate::event::retry_frame;
use crate::history::History;
use crate::runtime::Runtime;
use crate::stats::Counters;

/// Builds an [`SseManager`].
#[derive(Default)]
#[must_use]
pub struct SseManagerBuilder {
    config: SseConfigBuilder,
    runtime: Option<Arc<dyn Runtime>>,
    backplane: Option<Arc<dyn Backplane>>,
    hooks: Hooks,
}

impl fmt::Debug for SseManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseManagerBuilder")
            .field("config", &self.config)
            .field("runtime", &self.runtime.is_some())
            .field("backplane", &self.backplane.is_some())
            .field("hooks", &self.hooks)
            .finish()
    }
}

impl SseManagerBuilder {
    /// Uses `config` (replacing any earlier setting).
    pub fn config(mut self, config: SseConfig) -> Self {
        self.config = SseConfigBuilder::from(config);
        self
    }

    /// Changes settings with the setters of [`SseConfigBuilder`], starting
    /// from the defaults or the configuration given so far; they are checked
    /// by [`SseManagerBuilder::build`]:
    ///
    /// ```
    /// use std::time::Duration;
    /// use sse_core::SseManager;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sse_core::ConfigError> {
    /// let manager = SseManager::builder()
    ///     .configure(|c| c.retry(Duration::from_secs(1)).history_size(100))
    ///     .build()?;
    /// assert_eq!(manager.config().history_size(), 100);
    /// # Ok(())
    /// # }
    /// ```
    pub fn configure(mut self, change: impl FnOnce(SseConfigBuilder) -> SseConfigBuilder) -> Self {
        self.config = change(self.config);
        self
    }

    /// Runs the maintenance task (heartbeats, lifetimes) on `runtime`.
    ///
    /// With the default `tokio` feature this is optional: the Tokio runtime
    /// the manager is built in is used.
    pub fn runtime(mut self, runtime: impl Runtime) -> Self {
        self.runtime = Some(Arc::new(runtime));
        self
    }

    /// Shares events and replay history with other instances through
    /// `backplane` (see [`crate::backplane`]). Without it, the manager is a
    /// single node, in memory.
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Arc::new(backplane));
        self
    }

    /// Runs `hook` for every connection once it is registered, as a task of
    /// its own on the manager's runtime: to send the new connection its
    /// initial state with [`ConnectContext::send`], which reaches it after
    /// its replay and before any live event (see
    /// [the ordering](ConnectContext#ordering)), or to tell others.
    ///
    /// The hook holds no lock of the manager and delays no other connection
    /// or send; while it runs, only its own connection's live events wait. A
    /// hook that panics is ended and logged (`tracing` error); its
    /// connection stays open and gets its live events. Replaces an earlier
    /// connect hook.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use sse_core::{ConnectOptions, Event, SseManager};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SseManager::builder()
    ///     .on_connect(|conn| async move {
    ///         let online = conn.manager().connection_count();
    ///         if let Ok(event) = Event::json("welcome", &serde_json::json!({ "online": online })) {
    ///             conn.send(&event);
    ///         }
    ///     })
    ///     .build()?;
    /// let mut stream = manager.connect(ConnectOptions::new().user("alice")).await?;
    /// manager.send_to_user("alice", Event::named("news", "hi")?).await?;
    /// let mut text = String::new();
    /// while !text.contains("event: news") {
    ///     text.push_str(&String::from_utf8_lossy(&stream.next().await.unwrap_or_default()));
    /// }
    /// let (welcome, news) = (text.find("event: welcome"), text.find("event: news"));
    /// assert!(welcome.is_some_and(|w| news.is_some_and(|n| w < n)), "{text}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(ConnectContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.connect(hook);
        self
    }

    /// Runs `hook` for every connection that closes, whatever the
    /// [reason](crate::CloseReason), once it is unregistered: inside it, the
    /// manager no longer counts the connection (for instance in
    /// [`SseManager::presence`] or [`SseManager::is_user_connected`]). Like
    /// the connect hook, it runs as a task of its own, holds no lock, and a
    /// panic is contained and logged. It may run before the same
    /// connection's connect hook has finished, if the connection closes that
    /// soon. Replaces an earlier disconnect hook.
    pub fn on_disconnect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(DisconnectContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.disconnect(hook);
        self
    }

    /// Validates the configuration, starts the maintenance task (and the
    /// backplane's reader) and returns the manager.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a setting the engine cannot work with;
    /// [`ConfigError::NoRuntime`] when no runtime was given and none is
    /// current.
    pub fn build(self) -> Result<SseManager, ConfigError> {
        let config = self.config.build()?;
        let runtime = match self.runtime {
            Some(runtime) => runtime,
            None => default_runtime().ok_or(ConfigError::NoRuntime)?,
        };
        let (wake_tx, wake_rx) = mpsc::channel(1);
        let hooks = self.hooks;
        let budget = FrameBudget::new(config.frame_memory_budget);
        let shares_presence = !config.presence_channels.is_empty()
            && self
                .backplane
                .as_ref()
                .is_some_and(|backplane| backplane.shares_presence());
        let (presence_sync, presence_task) = if shares_presence {
            let (sync, woken, withdrawn) = PresenceSync::new();
            (Some(sync), Some((woken, withdrawn)))
        } else {
            (None, None)
        };
        let shares_stats = self
            .backplane
            .as_ref()
            .is_some_and(|backplane| backplane.shares_stats());
        let (stats_sync, stats_task) = if shares_stats {
            let (sync, woken, withdrawn) = StatsSync::new();
            (Some(sync), Some((woken, withdrawn)))
        } else {
            (None, None)
        };
        #[cfg(feature = "metrics")]
        let metrics = crate::metrics::Handles::register(&config.metric_channels);
        let limits = super::limits::SendLimits::new(&config);
        let shared = Arc::new_cyclic(|me| Shared {
            history: Mutex::new(History::new(
                config.history_size,
                config.history_max_age,
                config.history_max_bytes,
            )),
            registry: RwLock::new(super::Registry::default()),
            stats: Counters::default(),
            epoch: Instant::now(),
            shut_down: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            wake: wake_tx,
            retry_frame: retry_frame(config.retry),
            heartbeat_frame: maintenance::heartbeat_frame(&config),
            config,
            runtime: runtime.clone(),
            backplane: self.backplane.clone(),
            budget,
            // Never 0, the origin of the backplane's presence notices.
            instance: fastrand::u64(1..),
            pending: Mutex::new(HashMap::new()),
            keys: Mutex::new(super::idempotency::Keys::default()),
            limits,
            hooks,
            presence_sync,
            stats_sync,
            shards: Shards::default(),
            heartbeats: Mutex::new(super::heartbeats::Wheel::new()),
            #[cfg(feature = "metrics")]
            metrics,
            me: me.clone(),
        });
        runtime.spawn(Box::pin(maintenance::run(Arc::downgrade(&shared), wake_rx)));
        if let Some(backplane) = self.backplane {
            let sink = BackplaneSink {
                shared: Arc::downgrade(&shared),
            };
            backplane.preload(&sink);
            if let Some((woken, withdrawn)) = presence_task {
                runtime.spawn(Box::pin(shared_presence::run(
                    Arc::downgrade(&shared),
                    backplane.clone(),
                    shared.instance,
                    woken,
                    withdrawn,
                )));
            }
            if let Some((woken, withdrawn)) = stats_task {
                runtime.spawn(Box::pin(cluster_stats::run(
                    Arc::downgrade(&shared),
                    backplane.clone(),
                    shared.instance,
                    woken,
                    withdrawn,
                )));
            }
            runtime.spawn(backplane.run(sink));
        }
        Ok(SseManager { shared })
    }
}

#[cfg(feature = "tokio")]
fn default_runtime() -> Option<Arc<dyn Runtime>> {
    crate::runtime::TokioRuntime::current().map(|rt| Arc::new(rt) as Arc<dyn Runtime>)
}

#[cfg(not(feature = "tokio"))]
fn default_runtime() -> Option<Arc<dyn Runtime>> {
    None
}
