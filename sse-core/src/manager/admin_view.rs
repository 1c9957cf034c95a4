//! What the administration feed ([`crate::http::admin`]) reads of the
//! manager beyond its public API: the runtime to tick on, and the newest
//! connections, found under the registry's read lock without cloning the
//! others, so that a snapshot of a large server stays cheap.

use std::cmp::Reverse;
use std::sync::Arc;

use super::SseManager;
use super::registry::Registered;
use crate::connection::ConnectionInfo;
use crate::runtime::Runtime;

impl SseManager {
    /// The runtime the manager spawns and sleeps on.
    pub(crate) fn runtime(&self) -> Arc<dyn Runtime> {
        Arc::clone(&self.shared.runtime)
    }

    /// The `limit` most recent connections, newest first, and how many
    /// older ones are left out.
    pub(crate) fn newest_connections(&self, limit: usize) -> (Vec<ConnectionInfo>, usize) {
        let registry = self.shared.registry.read();
        let mut entries: Vec<&Registered> = registry.iter().collect();
        let left_out = entries.len().saturating_sub(limit);
        let newest_first = |entry: &&Registered| Reverse(entry.info.connected_at);
        if left_out > 0 {
            // The `limit` newest first, in any order; the rest after them.
            entries.select_nth_unstable_by_key(limit, newest_first);
            entries.truncate(limit);
        }
        entries.sort_unstable_by_key(newest_first);
        (
            entries.into_iter().map(|entry| (*entry.info).clone()).collect(),
            left_out,
        )
    }
}
