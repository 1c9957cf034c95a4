//! Admission: how a connection gets in. [`Shared::connect`] validates the
//! requested channels and metadata, applies the limits (shutdown, per
//! address, global, per user, evicting a user's oldest connections when the
//! policy says so), queues the opening frames and, for a `Last-Event-ID`,
//! the replay, then registers the connection, sends the presence notices its
//! arrival causes and starts its connect hook. Runtime subscriptions pass
//! the same channel rules here. [`overloaded_body`] is the answer to a
//! connection refused at the global limit.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use super::Shared;
use super::presence::Presence;
use super::registry::{Registered, Registry};
use crate::config::{ConnectedEvent, UserLimitPolicy};
use crate::connection::{Batch, ClientId, CloseReason, ConnectOptions, Connection, ConnectionInfo, channel_allowed};
use crate::error::{ConnectError, SubscribeError};
use crate::event::{Event, retry_frame};
use crate::history::{History, Resume};
use crate::queue::Queue;
use crate::stats::Counters;

/// The body answering a connection refused with
/// [`ConnectError::Overloaded`]: a `retry:` hint and one `overloaded` event.
/// Send it with status `200` and the usual SSE headers, then end the stream;
/// browsers' `EventSource` then retries after `retry` instead of giving up.
pub fn overloaded_body(retry: Duration) -> Bytes {
    let mut body = retry_frame(retry).to_vec();
    let data = serde_json::json!({ "retryMs": u64::try_from(retry.as_millis()).unwrap_or(u64::MAX) });
    if let Ok(event) = Event::json("overloaded", &data) {
        body.extend_from_slice(&event.encode());
    }
    Bytes::from(body)
}

impl Shared {
    /// Registers a connection, or refuses it; see
    /// [`SseManager::connect`](super::SseManager::connect).
    pub(super) fn connect(self: &Arc<Self>, options: ConnectOptions) -> Result<Connection, ConnectError> {
        if let Err(error) = self.validate(&options) {
            Counters::add(&self.stats.connections_rejected, 1);
            #[cfg(feature = "metrics")]
            crate::metrics::connection_refused(&error);
            return Err(error);
        }
        let client_id = ClientId::generate();
        let info = ConnectionInfo {
            client_id: client_id.clone(),
            user_id: options.user_id,
            session_id: options.session_id,
            channels: options.channels,
            connected_at: SystemTime::now(),
            metadata: options.metadata,
            client_metadata: options.client_metadata,
        };
        let queue = self.opening_queue(&info);
        if self.hooks.on_connect.is_some() {
            // Live frames wait behind the connect hook's (see `ConnectContext`).
            queue.hold();
        }
        let hook_info = self.hooks.on_connect.is_some().then(|| info.clone());
        let now = Instant::now();
        let deadline = self.deadline(options.expires_after, now);

        // The limits, the replay snapshot and the registration are one step
        // for every publisher (see the lock order on `Shared`).
        let mut history = options.last_event_id.as_ref().map(|_| self.history.lock());
        let mut registry = self.registry.write();
        if let Err(error) = self.admit(&mut registry, info.user_id.as_deref(), options.remote_addr) {
            drop(registry);
            drop(history);
            Counters::add(&self.stats.connections_rejected, 1);
            #[cfg(feature = "metrics")]
            crate::metrics::connection_refused(&error);
            self.log_refusal(&error, info.user_id.as_deref(), options.remote_addr);
            return Err(error);
        }
        if let (Some(history), Some(last_id)) = (history.as_mut(), &options.last_event_id) {
            self.replay(history, last_id, &info, &queue, now);
        }
        drop(history);
        let soonest = registry.soonest_deadline();
        let wake = deadline.is_some_and(|d| soonest.is_none_or(|s| d < s));
        let user_id = info.user_id.clone();
        registry.insert(Registered::new(
            info,
            queue.clone(),
            deadline,
            options.allowed_channels,
            options.remote_addr,
        ));
        if let Some(interval) = self.config.heartbeat_interval {
            let due_ms = queue
                .last_push_ms()
                .saturating_add(interval.as_millis().try_into().unwrap_or(u64::MAX));
            let tick_ms = super::heartbeats::tick_ms(interval);
            self.heartbeats.lock().file(client_id.clone(), due_ms, tick_ms);
        }
        let mut slow = Vec::new();
        if let Some(entry) = registry.get(client_id.as_str()) {
            let channels = entry.info.channels.iter().map(String::as_str);
            self.presence_changed(&registry, user_id.as_deref(), channels, Presence::Join, &mut slow);
        }
        self.close_slow(&mut registry, slow);
        drop(registry);
        if wake {
            self.wake_maintenance();
        }
        if let Some(info) = hook_info {
            self.connected_hook(&info, &queue);
        }
        Counters::add(&self.stats.connections_opened, 1);
        #[cfg(feature = "metrics")]
        crate::metrics::connection_opened();
        let span = tracing::debug_span!(
            "sse_connection",
            client_id = %client_id,
            user_id = user_id.as_deref().unwrap_or("")
        );
        tracing::debug!(parent: &span, "sse connection opened");
        Ok(Connection {
            client_id,
            queue,
            shared: Arc::clone(self),
            span,
            #[cfg(feature = "metrics")]
            takes: 0,
            batch: Batch::default(),
        })
    }

    /// Subscribes a connection to `channel`; see
    /// [`SseManager::subscribe`](super::SseManager::subscribe).
    pub(super) fn subscribe(&self, client_id: &str, channel: &str) -> Result<bool, SubscribeError> {
        if let Some(reason) = self.channel_problem(channel) {
            return Err(SubscribeError::InvalidChannel {
                channel: channel.chars().take(64).collect(),
                reason,
            });
        }
        let mut registry = self.registry.write();
        let max = self.config.max_channels_per_connection;
        let entry = registry
            .get(client_id)
            .ok_or_else(|| SubscribeError::UnknownClient(client_id.to_owned()))?;
        if entry.info.channels.contains(channel) {
            return Ok(false);
        }
        if let Some(allowed) = &entry.allowed_channels {
            if !channel_allowed(allowed, channel) {
                return Err(SubscribeError::ChannelForbidden {
                    channel: channel.chars().take(128).collect(),
                });
            }
        }
        if entry.info.channels.len() >= max {
            return Err(SubscribeError::TooManyChannels {
                count: entry.info.channels.len() + 1,
                max,
            });
        }
        let user = entry.info.user_id.clone();
        let joined = registry.join(client_id, channel);
        if joined {
            let mut slow = Vec::new();
            self.presence_changed(&registry, user.as_deref(), [channel], Presence::Join, &mut slow);
            self.close_slow(&mut registry, slow);
        }
        drop(registry);
        if joined && !self.reads_channel(channel) {
            // Its events reach it once the backplane reads its shard.
            if let Some(backplane) = &self.backplane {
                backplane.interest_changed();
            }
        }
        Ok(joined)
    }

    /// Checks the requested channels and metadata against the limits.
    pub(super) fn validate(&self, options: &ConnectOptions) -> Result<(), ConnectError> {
        let config = &self.config;
        if options.channels.len() > config.max_channels_per_connection {
            return Err(ConnectError::TooManyChannels {
                count: options.channels.len(),
                max: config.max_channels_per_connection,
            });
        }
        for channel in &options.channels {
            if let Some(reason) = self.channel_problem(channel) {
                return Err(ConnectError::InvalidChannel {
                    channel: channel.chars().take(64).collect(),
                    reason,
                });
            }
            if let Some(allowed) = &options.allowed_channels {
                if !channel_allowed(allowed, channel) {
                    return Err(ConnectError::ChannelForbidden {
                        channel: channel.chars().take(128).collect(),
                    });
                }
            }
        }
        if options.metadata.len() + options.client_metadata.len() > config.max_metadata_entries {
            return Err(ConnectError::MetadataTooLarge {
                reason: "too many entries",
            });
        }
        let bytes: usize = (options.metadata.iter().chain(&options.client_metadata))
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if bytes > config.max_metadata_bytes {
            return Err(ConnectError::MetadataTooLarge {
                reason: "too many bytes",
            });
        }
        Ok(())
    }

    /// What is wrong with `channel` as a channel name, if anything: the
    /// same rules at connect time and on a runtime subscription.
    fn channel_problem(&self, channel: &str) -> Option<&'static str> {
        if channel.is_empty() {
            Some("empty")
        } else if channel.len() > self.config.max_channel_len {
            Some("too long")
        } else if channel.chars().any(char::is_control) {
            Some("holds control characters")
        } else {
            None
        }
    }

    /// A new connection's queue, holding its opening frames: the `retry:`
    /// hint and the `connected` event.
    fn opening_queue(&self, info: &ConnectionInfo) -> Arc<Queue> {
        let queue = Arc::new(
            Queue::new(self.config.client_queue, self.now_ms()).with_max_bytes(self.config.client_queue_bytes),
        );
        queue.push_unbounded(self.retry_frame.clone());
        let connected = ConnectedPayload {
            client_id: &info.client_id,
            user_id: info.user_id.as_deref(),
            session_id: info.session_id.as_deref(),
            channels: &info.channels,
        };
        let event = match &self.config.connected_event {
            ConnectedEvent::Named(name) => Event::json(name.clone(), &connected),
            ConnectedEvent::Message => Event::builder()
                .json(&Typed {
                    kind: "connected",
                    payload: connected,
                })
                .build(),
        };
        if let Ok(event) = event {
            queue.push_unbounded(event.encode());
        }
        queue
    }

    /// When a connection opened at `now` is closed: at the end of its
    /// lifetime (jittered down by up to 10%) or of its expiry, whichever
    /// comes first; `None` for never.
    fn deadline(&self, expires_after: Option<Duration>, now: Instant) -> Option<Instant> {
        match (self.config.max_lifetime, expires_after) {
            (Some(lifetime), expiry) => {
                let jittered = scale(lifetime, 1.0 - fastrand::f64() * 0.1);
                Some(expiry.map_or(jittered, |e| e.min(jittered)))
            }
            (None, expiry) => expiry,
        }
        .and_then(|after| now.checked_add(after))
    }

    /// Applies the connection limits, under the registry lock: refuses the
    /// connection, or lets it in, first closing the user's oldest
    /// connections if the per-user policy makes room that way.
    fn admit(&self, registry: &mut Registry, user: Option<&str>, addr: Option<IpAddr>) -> Result<(), ConnectError> {
        let config = &self.config;
        if self.shut_down.load(Ordering::Acquire) {
            return Err(ConnectError::ShuttingDown);
        }
        if let (Some(limit), Some(addr)) = (config.max_connections_per_addr, addr) {
            if registry.addr_connection_count(addr) >= limit {
                return Err(ConnectError::AddrLimit { limit });
            }
        }
        if registry.len() >= config.max_connections {
            let retry = scale(config.retry, 1.0 + fastrand::f64());
            return Err(ConnectError::Overloaded { retry });
        }
        if let (Some(limit), Some(user)) = (config.max_connections_per_user, user) {
            if registry.user_connection_count(user) >= limit {
                match config.user_limit_policy {
                    UserLimitPolicy::RejectNew => return Err(ConnectError::UserLimit { limit }),
                    UserLimitPolicy::CloseOldest => {
                        let held = registry.user_connections_oldest_first(user);
                        let excess = held.len() + 1 - limit;
                        for id in held.into_iter().take(excess) {
                            self.close(registry, id.as_str(), CloseReason::Evicted);
                            tracing::info!(user_id = %user, client_id = %id, limit, "sse connection evicted: per-user limit");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Logs why a connection was refused at a limit, once the locks are
    /// released.
    fn log_refusal(&self, error: &ConnectError, user: Option<&str>, addr: Option<IpAddr>) {
        match (error, user, addr) {
            (ConnectError::AddrLimit { limit }, _, Some(addr)) => {
                tracing::warn!(%addr, limit, "sse connection refused: per-address limit");
            }
            (ConnectError::Overloaded { .. }, _, _) => tracing::warn!(
                limit = self.config.max_connections,
                "sse connection refused: server at its connection limit"
            ),
            (ConnectError::UserLimit { limit }, Some(user), _) => {
                tracing::info!(user_id = %user, limit, "sse connection refused: per-user limit");
            }
            _ => {}
        }
    }

    /// Queues what a client resuming after `last_id` missed: every retained
    /// event after it whose target reaches `info` (of the events with a
    /// conflation key, only the latest of each key), or one `reset` event if
    /// the id is not held. The frames are the history's own `Bytes`.
    fn replay(&self, history: &mut History, last_id: &str, info: &ConnectionInfo, queue: &Queue, now: Instant) {
        let resume = match history.resume(last_id, now) {
            // With shards, the history may lack entries of a channel's
            // shard from before this instance read it.
            Resume::After(seq) if !self.shards_cover(info, seq) => Resume::Unknown,
            resume => resume,
        };
        match resume {
            Resume::After(seq) => {
                let mut replayed = 0u64;
                for entry in history.replay(seq, |entry| entry.audience.matches(info)) {
                    queue.push_unbounded(entry.frame.clone());
                    replayed += 1;
                }
                Counters::add(&self.stats.events_replayed, replayed);
                #[cfg(feature = "metrics")]
                crate::metrics::events_replayed(replayed);
            }
            Resume::Unknown => {
                queue.push_unbounded(reset_frame(&history.head_id()));
                Counters::add(&self.stats.resets, 1);
                #[cfg(feature = "metrics")]
                crate::metrics::reset();
            }
        }
    }
}

/// The data of the `connected` event that opens every stream.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectedPayload<'a> {
    client_id: &'a ClientId,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    channels: &'a BTreeSet<String>,
}

/// A payload with a `type` field first, for clients that switch on it.
#[derive(Serialize)]
struct Typed<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    payload: ConnectedPayload<'a>,
}

fn reset_frame(head_id: &str) -> Bytes {
    // The id is the newest one issued: a client that reconnects after the
    // reset resumes from here instead of getting another reset.
    Event::builder()
        .id(head_id)
        .event("reset")
        .data(r#"{"reason":"last-event-id-unknown"}"#)
        .build()
        .map(|event| event.encode())
        .unwrap_or_default()
}

/// `duration` times `factor`, saturating instead of overflowing.
fn scale(duration: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}
