//! Presence: who is online in a channel. For the channels
//! [`SseConfig::presence_channels`](crate::SseConfig::presence_channels)
//! names, a user joins when their first connection in the channel opens (or
//! subscribes) and leaves when their last one closes (or unsubscribes);
//! the other members of the channel get a `presence` event for each
//! transition. Transitions are found under the registry's write lock, at
//! the change that causes them, so concurrent tabs give exactly one join and
//! one leave. [`PresenceMember`] is the answer of
//! [`SseManager::presence`](super::SseManager::presence).

use serde::Serialize;

use super::Shared;
use super::registry::Registry;
use crate::connection::{ClientId, channel_allowed};
use crate::event::Event;
use crate::queue::Tag;
use crate::target::{Audience, Target};

/// One user present in a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PresenceMember {
    /// The user.
    pub user_id: String,
    /// How many of the user's connections are in the channel (tabs).
    pub connections: usize,
}

impl PresenceMember {
    /// `user_id`, with `connections` connections in the channel.
    pub fn new(user_id: impl Into<String>, connections: usize) -> Self {
        PresenceMember {
            user_id: user_id.into(),
            connections,
        }
    }
}

/// A presence transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Presence {
    Join,
    Leave,
}

impl Presence {
    fn as_str(self) -> &'static str {
        match self {
            Presence::Join => "join",
            Presence::Leave => "leave",
        }
    }
}

/// The data of a `presence` event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Notice<'a> {
    channel: &'a str,
    user_id: &'a str,
    state: &'static str,
}

/// The `presence` notice of `change` for `user` in `channel`: a live-only
/// event to the channel's other members.
pub(super) fn notice(channel: &str, user: &str, change: Presence) -> Option<(Audience, Event)> {
    let notice = Notice {
        channel,
        user_id: user,
        state: change.as_str(),
    };
    let event = Event::json("presence", &notice).ok()?.live_only();
    Some((Target::channel(channel).except_user(user), event))
}

impl Shared {
    /// Whether presence is kept for `channel`.
    pub(super) fn presence_kept(&self, channel: &str) -> bool {
        !self.config.presence_channels.is_empty() && channel_allowed(&self.config.presence_channels, channel)
    }

    /// After a change of `user`'s connections in `channels` (a connection
    /// registered or subscribed: `Join`; unregistered or unsubscribed:
    /// `Leave`), already applied to `registry`: notifies the other members
    /// of each channel where this made `user` present or absent, or, when
    /// the backplane shares presence, marks the count for it to report.
    /// Called under the registry's write lock; connections found too slow
    /// join `slow`.
    pub(super) fn presence_changed<'c>(
        &self,
        registry: &Registry,
        user: Option<&str>,
        channels: impl IntoIterator<Item = &'c str>,
        change: Presence,
        slow: &mut Vec<ClientId>,
    ) {
        let Some(user) = user else { return };
        if self.config.presence_channels.is_empty() || self.is_shut_down() {
            return;
        }
        for channel in channels {
            if !self.presence_kept(channel) {
                continue;
            }
            if let Some(sync) = &self.presence_sync {
                sync.mark(channel, user);
                continue;
            }
            let count = registry.user_channel_count(user, channel);
            let transition = match change {
                Presence::Join => count == 1,
                Presence::Leave => count == 0,
            };
            if transition {
                self.notify_presence(registry, channel, user, change, slow);
            }
        }
    }

    /// Queues a `presence` event for every connection of `channel` but
    /// `user`'s, without recording it in the history: it is live only.
    fn notify_presence(
        &self,
        registry: &Registry,
        channel: &str,
        user: &str,
        change: Presence,
        slow: &mut Vec<ClientId>,
    ) {
        let Some((audience, event)) = notice(channel, user, change) else {
            return;
        };
        self.fan_out(registry, &audience, &event.encode(), &Tag::NORMAL, slow);
    }

    /// Who is in `channel`: every user with a connection subscribed to it,
    /// with how many, sorted by user id.
    pub(super) fn local_presence(&self, channel: &str) -> Vec<PresenceMember> {
        let registry = self.registry.read();
        let mut members = std::collections::BTreeMap::<String, usize>::new();
        registry.for_each_target(&Target::channel(channel), |entry| {
            if let Some(user) = &entry.info.user_id {
                *members.entry(user.clone()).or_default() += 1;
            }
        });
        drop(registry);
        members
            .into_iter()
            .map(|(user_id, connections)| PresenceMember { user_id, connections })
            .collect()
    }
}
