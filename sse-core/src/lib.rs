//! The engine of a Server-Sent Events server, independent of any web
//! framework and of any async runtime.
//!
//! * [`SseManager`]: registers connections, routes events to them by
//!   [`Target`] (everyone, a client, a user, several users, a session, a
//!   channel, a predicate), keeps a bounded history for `Last-Event-ID`
//!   replay, sends heartbeats from one timer for every connection, enforces
//!   connection limits and shuts down gracefully.
//! * [`Event`]: spec-exact encoding, validated when built, encoded once and
//!   shared by every recipient.
//! * [`Connection`]: one client's bounded queue of frames, as a `Stream` of
//!   bytes for servers with streaming bodies, or driven into any
//!   [`Transport`].
//! * [`Runtime`]: the only runtime dependency, a spawn and a sleep; Tokio's is
//!   built in behind the default `tokio` feature.
//!
//! ```
//! use futures::StreamExt;
//! use sse_core::{ConnectOptions, Event, SseManager, Target};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = SseManager::builder().build()?;
//! let mut tab = manager
//!     .connect(ConnectOptions::new().user("alice").channel("orders"))
//!     .await?;
//!
//! let order = serde_json::json!({"id": 17, "status": "shipped"});
//! manager.send(Target::channel("orders"), Event::json("order", &order)?).await?;
//!
//! let frames = tab.next().await.unwrap_or_default();
//! assert!(frames.ends_with(b"event: order\ndata: {\"id\":17,\"status\":\"shipped\"}\n\n"));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod backplane;
mod budget;
mod config;
mod connection;
mod error;
pub mod event;
mod history;
#[cfg(feature = "http")]
pub mod http;
mod manager;
#[cfg(feature = "metrics")]
pub mod metrics;
mod queue;
mod rate_limit;
pub mod runtime;
#[cfg(feature = "server")]
pub mod server;
mod stats;
mod target;
#[cfg(feature = "test-util")]
pub mod test_util;
mod transport;

/// The attribute that implementations of [`Transport`] and [`Backplane`] are
/// written with, so that they need no dependency of their own.
#[doc(no_inline)]
pub use async_trait::async_trait;
pub use backplane::{
    Appended, Backplane, BackplaneError, BackplaneSink, ClusterReport, InstanceReport, PresenceCount, PresenceUpdate,
    StatsReport,
};
pub use config::{ConnectedEvent, Heartbeat, SseConfig, SseConfigBuilder, UserLimitPolicy};
pub use connection::{ClientId, CloseReason, ConnectOptions, Connection, ConnectionInfo, channel_allowed};
pub use error::{
    ClusterStatsError, ConfigError, ConnectError, EventError, NotReady, PresenceError, SendError, SubscribeError,
    TransportError,
};
pub use event::{Event, EventBuilder, NotificationKind, Priority};
pub use manager::{
    ClusterStats, ConnectContext, Delivery, DisconnectContext, InstanceStats, MAX_IDEMPOTENCY_KEY_LEN, PresenceMember,
    SseManager, SseManagerBuilder, overloaded_body,
};
pub use rate_limit::RateLimit;
pub use runtime::Runtime;
#[cfg(feature = "tokio")]
pub use runtime::TokioRuntime;
pub use stats::Stats;
pub use target::{Audience, Predicate, Target};
pub use transport::Transport;

/// What the macros of this crate name in the crates that call them.
#[doc(hidden)]
pub mod __private {
    pub use bytes::Bytes;
    pub use futures_core::Stream;
}
