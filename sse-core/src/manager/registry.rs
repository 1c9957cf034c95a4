//! The index of open connections: every registered connection by client id,
//! with secondary indexes by user, session, channel and client address, and
//! the lifetime deadlines soonest first. [`Registry`] keeps these in step on
//! every insert, removal and channel change, and answers the two questions
//! the rest of the manager asks: which connections does a [`Target`] reach
//! ([`Registry::for_each_target`]), and what do they look like now
//! ([`Registry::snapshot`]). It knows nothing of locks, queues' contents or
//! configuration; the manager holds it behind its registry lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::ids::Ids;
use crate::connection::{ClientId, ConnectionInfo};
use crate::queue::Queue;
use crate::stats::Stats;
use crate::target::Target;

/// Every open connection, and the indexes that find them.
#[derive(Default)]
pub(super) struct Registry {
    connections: HashMap<ClientId, Registered>,
    by_user: HashMap<String, Ids>,
    by_session: HashMap<String, Ids>,
    by_channel: HashMap<String, Ids>,
    /// Connections per client address, for the per-address limit.
    by_addr: HashMap<IpAddr, usize>,
    /// Lifetime and expiry deadlines, soonest first.
    deadlines: BTreeMap<(Instant, u64), ClientId>,
    next_order: u64,
    /// Changes whenever a channel gains its first connection or loses its
    /// last: the set of channels held changed.
    channel_version: u64,
}

/// One registered connection: what is known of it, and its queue.
pub(super) struct Registered {
    /// Boxed: the table of connections holds its entries inline, spare
    /// capacity included, and a fan-out reads only the queue.
    pub(super) info: Box<ConnectionInfo>,
    pub(super) queue: Arc<Queue>,
    /// Registration order, to find a user's oldest connection; set by
    /// [`Registry::insert`].
    order: u64,
    deadline: Option<Instant>,
    /// The channel patterns this connection may join; `None`: any.
    pub(super) allowed_channels: Option<Arc<[String]>>,
    remote_addr: Option<IpAddr>,
}

impl Registered {
    /// A connection to register, closed by the manager at `deadline` if
    /// given.
    pub(super) fn new(
        info: ConnectionInfo,
        queue: Arc<Queue>,
        deadline: Option<Instant>,
        allowed_channels: Option<Arc<[String]>>,
        remote_addr: Option<IpAddr>,
    ) -> Self {
        Registered {
            info: Box::new(info),
            queue,
            order: 0,
            deadline,
            allowed_channels,
            remote_addr,
        }
    }
}

impl Registry {
    /// Registers a connection under its client id, in every index its info
    /// names.
    pub(super) fn insert(&mut self, mut entry: Registered) {
        entry.order = self.next_order;
        self.next_order += 1;
        let id = entry.info.client_id.clone();
        if let Some(user) = &entry.info.user_id {
            index(&mut self.by_user, user, &id);
        }
        if let Some(session) = &entry.info.session_id {
            index(&mut self.by_session, session, &id);
        }
        for channel in &entry.info.channels {
            self.index_channel(channel, &id);
        }
        if let Some(deadline) = entry.deadline {
            self.deadlines.insert((deadline, entry.order), id.clone());
        }
        if let Some(addr) = entry.remote_addr {
            *self.by_addr.entry(addr).or_default() += 1;
        }
        self.connections.insert(id, entry);
    }

    /// Unregisters a connection from every index; `None` if it was not
    /// registered.
    pub(super) fn remove(&mut self, id: &str) -> Option<Registered> {
        let entry = self.connections.remove(id)?;
        let info = &entry.info;
        if let Some(user) = &info.user_id {
            unindex(&mut self.by_user, user, id);
        }
        if let Some(session) = &info.session_id {
            unindex(&mut self.by_session, session, id);
        }
        for channel in &info.channels {
            if unindex(&mut self.by_channel, channel, id) {
                self.channel_version += 1;
            }
        }
        if let Some(deadline) = entry.deadline {
            self.deadlines.remove(&(deadline, entry.order));
        }
        if let Some(addr) = entry.remote_addr {
            if let Some(count) = self.by_addr.get_mut(&addr) {
                *count -= 1;
                if *count == 0 {
                    self.by_addr.remove(&addr);
                }
            }
        }
        Some(entry)
    }

    /// Adds `channel` to a registered connection's channels. Returns whether
    /// it was added: `false` if the connection is unknown or already has it.
    pub(super) fn join(&mut self, id: &str, channel: &str) -> bool {
        let Some(entry) = self.connections.get_mut(id) else {
            return false;
        };
        if !entry.info.channels.insert(channel.to_owned()) {
            return false;
        }
        let id = entry.info.client_id.clone();
        self.index_channel(channel, &id);
        true
    }

    /// Adds `id` to `channel`'s connections.
    fn index_channel(&mut self, channel: &str, id: &ClientId) {
        if index(&mut self.by_channel, channel, id) {
            self.channel_version += 1;
        }
    }

    /// The channels at least one connection holds, and a version that
    /// changes whenever that set does.
    pub(super) fn channels(&self) -> (u64, impl Iterator<Item = &str>) {
        (self.channel_version, self.by_channel.keys().map(String::as_str))
    }

    /// Removes `channel` from a connection's channels: `None` if the
    /// connection is unknown, else whether it had the channel.
    pub(super) fn leave(&mut self, id: &str, channel: &str) -> Option<bool> {
        let entry = self.connections.get_mut(id)?;
        if !entry.info.channels.remove(channel) {
            return Some(false);
        }
        if unindex(&mut self.by_channel, channel, id) {
            self.channel_version += 1;
        }
        Some(true)
    }

    /// Unregisters the connection with the soonest deadline if that deadline
    /// is not after `now`.
    pub(super) fn take_due(&mut self, now: Instant) -> Option<Registered> {
        loop {
            let (&key, _) = self.deadlines.first_key_value()?;
            if key.0 > now {
                return None;
            }
            let id = self.deadlines.remove(&key)?;
            if let Some(entry) = self.remove(id.as_str()) {
                return Some(entry);
            }
        }
    }

    /// The soonest deadline of any connection.
    pub(super) fn soonest_deadline(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|&(at, _)| at)
    }

    /// One connection.
    pub(super) fn get(&self, id: &str) -> Option<&Registered> {
        self.connections.get(id)
    }

    /// Every connection, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Registered> {
        self.connections.values()
    }

    /// Every client id, in no particular order.
    pub(super) fn client_ids(&self) -> Vec<ClientId> {
        self.connections.keys().cloned().collect()
    }

    /// How many connections are registered.
    pub(super) fn len(&self) -> usize {
        self.connections.len()
    }

    /// Whether user `user` has at least one connection.
    pub(super) fn has_user(&self, user: &str) -> bool {
        self.by_user.contains_key(user)
    }

    /// How many connections user `user` holds.
    pub(super) fn user_connection_count(&self, user: &str) -> usize {
        self.by_user.get(user).map_or(0, Ids::len)
    }

    /// How many of user `user`'s connections are subscribed to `channel`.
    pub(super) fn user_channel_count(&self, user: &str, channel: &str) -> usize {
        self.by_user.get(user).map_or(0, |ids| {
            ids.iter()
                .filter(|id| {
                    self.connections
                        .get(*id)
                        .is_some_and(|entry| entry.info.channels.contains(channel))
                })
                .count()
        })
    }

    /// User `user`'s connections, oldest registration first.
    pub(super) fn user_connections_oldest_first(&self, user: &str) -> Vec<ClientId> {
        let mut held: Vec<(u64, ClientId)> = self
            .by_user
            .get(user)
            .into_iter()
            .flat_map(Ids::iter)
            .filter_map(|id| self.connections.get(id).map(|entry| (entry.order, id.clone())))
            .collect();
        held.sort_unstable();
        held.into_iter().map(|(_, id)| id).collect()
    }

    /// How many connections come from `addr`.
    pub(super) fn addr_connection_count(&self, addr: IpAddr) -> usize {
        self.by_addr.get(&addr).copied().unwrap_or(0)
    }

    /// Fills in the registry's part of `stats`: connections, users, channels.
    pub(super) fn count_into(&self, stats: &mut Stats) {
        stats.connections = self.connections.len();
        stats.unique_users = self.by_user.len();
        stats.channels = self
            .by_channel
            .iter()
            .map(|(name, ids)| (name.clone(), ids.len()))
            .collect();
    }

    /// The users with at least one connection.
    pub(super) fn users(&self) -> Vec<String> {
        self.by_user.keys().cloned().collect()
    }

    /// Calls `visit` for every connection `target` reaches, each once.
    pub(super) fn for_each_target(&self, target: &Target, mut visit: impl FnMut(&Registered)) {
        let mut by_ids = |ids: Option<&Ids>| {
            for id in ids.into_iter().flat_map(Ids::iter) {
                if let Some(entry) = self.connections.get(id) {
                    visit(entry);
                }
            }
        };
        match target {
            Target::All => self.connections.values().for_each(visit),
            Target::Filter(predicate) => self
                .connections
                .values()
                .filter(|entry| predicate(&entry.info))
                .for_each(visit),
            Target::Client(id) => {
                if let Some(entry) = self.connections.get(id) {
                    visit(entry);
                }
            }
            Target::User(user) => by_ids(self.by_user.get(user)),
            Target::Session(session) => by_ids(self.by_session.get(session)),
            Target::Channel(channel) => by_ids(self.by_channel.get(channel)),
            Target::Users(users) => {
                let mut seen = HashSet::with_capacity(users.len());
                for user in users {
                    if seen.insert(user.as_str()) {
                        by_ids(self.by_user.get(user));
                    }
                }
            }
        }
    }

    /// The info of every connection `target` reaches, oldest first.
    pub(super) fn snapshot(&self, target: &Target) -> Vec<ConnectionInfo> {
        let mut infos = Vec::new();
        self.for_each_target(target, |entry| infos.push((*entry.info).clone()));
        infos.sort_by_key(|info| info.connected_at);
        infos
    }
}

/// Removes `id` from `key`'s set; returns whether the set went empty (and
/// `key` with it).
/// Adds `id` under `key`. Returns whether `key` is new to the index.
fn index(index: &mut HashMap<String, Ids>, key: &str, id: &ClientId) -> bool {
    match index.get_mut(key) {
        Some(ids) => {
            ids.insert(id.clone());
            false
        }
        None => {
            index.insert(key.to_owned(), Ids::One(id.clone()));
            true
        }
    }
}

/// Removes `id` from under `key`. Returns whether that left `key` without
/// connections (it is then removed from the index).
fn unindex(index: &mut HashMap<String, Ids>, key: &str, id: &str) -> bool {
    let Some(ids) = index.get_mut(key) else {
        return false;
    };
    let emptied = ids.remove(id);
    if emptied {
        index.remove(key);
    }
    emptied
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, SystemTime};

    use super::*;

    /// A connection to register: `id`, of `user` and `session`, in
    /// `channels`.
    fn connection(id: &str, user: Option<&str>, session: Option<&str>, channels: &[&str]) -> Registered {
        let info = ConnectionInfo {
            client_id: ClientId::from(id),
            user_id: user.map(str::to_owned),
            session_id: session.map(str::to_owned),
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            connected_at: SystemTime::UNIX_EPOCH,
            metadata: BTreeMap::new(),
            client_metadata: BTreeMap::new(),
        };
        Registered::new(info, Arc::new(Queue::new(8, 0)), None, None, None)
    }

    fn reached(registry: &Registry, target: &Target) -> Vec<String> {
        let mut ids = Vec::new();
        registry.for_each_target(target, |entry| ids.push(entry.info.client_id.to_string()));
        ids.sort();
        ids
    }

    /// Four connections: two of user u1 (sessions s1 and s2), one of u2, one
    /// anonymous; channels spread over them.
    fn populated() -> Registry {
        let mut registry = Registry::default();
        registry.insert(connection("a", Some("u1"), Some("s1"), &["news", "chat"]));
        registry.insert(connection("b", Some("u1"), Some("s2"), &["news"]));
        registry.insert(connection("c", Some("u2"), Some("s1"), &[]));
        registry.insert(connection("d", None, None, &["chat"]));
        registry
    }

    fn assert_empty(registry: &Registry) {
        assert_eq!(registry.len(), 0);
        assert!(registry.by_user.is_empty(), "{:?}", registry.by_user);
        assert!(registry.by_session.is_empty(), "{:?}", registry.by_session);
        assert!(registry.by_channel.is_empty(), "{:?}", registry.by_channel);
        assert!(registry.by_addr.is_empty(), "{:?}", registry.by_addr);
        assert!(registry.deadlines.is_empty(), "{:?}", registry.deadlines);
    }

    #[test]
    fn every_target_kind_reaches_exactly_its_connections() {
        let registry = populated();
        let cases: Vec<(Target, &[&str])> = vec![
            (Target::All, &["a", "b", "c", "d"]),
            (Target::client("b"), &["b"]),
            (Target::client("nobody"), &[]),
            (Target::user("u1"), &["a", "b"]),
            (Target::user("nobody"), &[]),
            (Target::users(["u2", "u1", "u2", "nobody"]), &["a", "b", "c"]),
            (Target::users(Vec::<String>::new()), &[]),
            (Target::session("s1"), &["a", "c"]),
            (Target::session("nobody"), &[]),
            (Target::channel("news"), &["a", "b"]),
            (Target::channel("chat"), &["a", "d"]),
            (Target::channel("nothing"), &[]),
            (Target::filter(|info| info.user_id.is_none()), &["d"]),
        ];
        for (target, expected) in cases {
            // Sorted, so a connection visited twice would show twice.
            assert_eq!(reached(&registry, &target), expected, "{target:?}");
        }
    }

    #[test]
    fn insert_and_remove_keep_every_index_consistent() {
        let mut registry = Registry::default();
        let addr = IpAddr::from([10, 0, 0, 1]);
        let now = Instant::now();
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            let mut entry = connection(id, Some("u"), Some("s"), &["x", id]);
            entry.remote_addr = Some(addr);
            entry.deadline = Some(now + Duration::from_secs(10 - i as u64));
            registry.insert(entry);
        }
        assert_eq!(registry.len(), 3);
        assert!(registry.has_user("u"));
        assert_eq!(registry.user_connection_count("u"), 3);
        assert_eq!(registry.addr_connection_count(addr), 3);
        assert_eq!(registry.soonest_deadline(), Some(now + Duration::from_secs(8)));
        assert_eq!(reached(&registry, &Target::channel("x")), ["a", "b", "c"]);

        let removed = registry.remove("c").expect("registered");
        assert_eq!(removed.info.client_id.as_str(), "c");
        assert!(registry.remove("c").is_none(), "removed once");
        assert!(registry.get("c").is_none());
        assert_eq!(registry.user_connection_count("u"), 2);
        assert_eq!(registry.addr_connection_count(addr), 2);
        assert_eq!(registry.soonest_deadline(), Some(now + Duration::from_secs(9)));
        assert_eq!(reached(&registry, &Target::channel("c")), Vec::<String>::new());
        assert!(
            !registry.by_channel.contains_key("c"),
            "an empty channel leaves the index"
        );

        for id in registry.client_ids() {
            registry.remove(id.as_str());
        }
        assert_empty(&registry);
        assert!(!registry.has_user("u"));
        assert_eq!(registry.addr_connection_count(addr), 0);
    }

    #[test]
    fn joining_and_leaving_channels_update_the_channel_index() {
        let mut registry = populated();
        assert!(!registry.join("nobody", "news"), "unknown connection");
        assert!(registry.join("c", "news"), "joined");
        assert!(!registry.join("c", "news"), "already joined");
        assert_eq!(reached(&registry, &Target::channel("news")), ["a", "b", "c"]);
        assert!(
            registry
                .get("c")
                .is_some_and(|entry| entry.info.channels.contains("news"))
        );

        assert_eq!(registry.leave("nobody", "news"), None);
        assert_eq!(registry.leave("d", "news"), Some(false));
        assert_eq!(registry.leave("d", "chat"), Some(true));
        assert_eq!(registry.leave("a", "chat"), Some(true));
        assert!(
            !registry.by_channel.contains_key("chat"),
            "an empty channel leaves the index"
        );

        // Removing a connection removes the channels it joined later.
        registry.remove("c");
        assert_eq!(reached(&registry, &Target::channel("news")), ["a", "b"]);
        for id in registry.client_ids() {
            registry.remove(id.as_str());
        }
        assert_empty(&registry);
    }

    #[test]
    fn deadlines_come_due_soonest_first_and_only_when_passed() {
        let mut registry = populated();
        let now = Instant::now();
        for (id, secs) in [("late", 30), ("early", 10), ("middle", 20)] {
            let mut entry = connection(id, None, None, &[]);
            entry.deadline = Some(now + Duration::from_secs(secs));
            registry.insert(entry);
        }
        assert!(registry.take_due(now).is_none());
        let due = |registry: &mut Registry, secs| {
            registry
                .take_due(now + Duration::from_secs(secs))
                .map(|entry| entry.info.client_id.to_string())
        };
        assert_eq!(due(&mut registry, 25).as_deref(), Some("early"));
        assert_eq!(due(&mut registry, 25).as_deref(), Some("middle"));
        assert_eq!(due(&mut registry, 25), None);
        assert_eq!(registry.soonest_deadline(), Some(now + Duration::from_secs(30)));
        assert!(registry.get("early").is_none(), "a due connection is unregistered");
        assert_eq!(registry.len(), 5);
    }

    #[test]
    fn a_users_connections_come_oldest_first() {
        let mut registry = Registry::default();
        for id in ["z", "y", "x"] {
            registry.insert(connection(id, Some("u"), None, &[]));
        }
        let held: Vec<String> = registry
            .user_connections_oldest_first("u")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(held, ["z", "y", "x"]);
        assert!(registry.user_connections_oldest_first("nobody").is_empty());
    }

    #[test]
    fn snapshots_list_a_targets_connections_oldest_first_and_stats_count_the_indexes() {
        let mut registry = Registry::default();
        for (id, secs) in [("b", 2), ("a", 3), ("c", 1)] {
            let mut entry = connection(id, Some("u"), None, &["news"]);
            entry.info.connected_at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            registry.insert(entry);
        }
        registry.insert(connection("d", Some("v"), None, &[]));
        let ids: Vec<String> = registry
            .snapshot(&Target::channel("news"))
            .into_iter()
            .map(|info| info.client_id.to_string())
            .collect();
        assert_eq!(ids, ["c", "b", "a"]);

        let mut stats = Stats::default();
        registry.count_into(&mut stats);
        assert_eq!(stats.connections, 4);
        assert_eq!(stats.unique_users, 2);
        assert_eq!(stats.channels.into_iter().collect::<Vec<_>>(), [("news".to_owned(), 3)]);
        let channels: BTreeSet<&str> = registry
            .iter()
            .flat_map(|e| e.info.channels.iter().map(String::as_str))
            .collect();
        assert_eq!(channels.into_iter().collect::<Vec<_>>(), ["news"]);
    }
}
