//! [`Ids`]: the client ids one entry of the registry's user, session and
//! channel indexes holds. Most users and sessions hold one connection, so
//! one id is kept inline and a set is made only for a second: an index
//! entry of one connection costs no allocation beyond its key.

use std::collections::HashSet;

use crate::connection::ClientId;

/// The connections of one user, session or channel; never empty while it
/// is in an index.
#[derive(Debug)]
pub(super) enum Ids {
    /// One connection.
    One(ClientId),
    /// Several (or, after removals, possibly one or none).
    Many(HashSet<ClientId>),
}

impl Ids {
    /// Adds `id`. Returns whether it was not there yet.
    pub(super) fn insert(&mut self, id: ClientId) -> bool {
        match self {
            Ids::One(one) if *one == id => false,
            Ids::One(one) => {
                let set = HashSet::from([one.clone(), id]);
                *self = Ids::Many(set);
                true
            }
            Ids::Many(set) => set.insert(id),
        }
    }

    /// Removes `id`. Returns whether none is left.
    pub(super) fn remove(&mut self, id: &str) -> bool {
        match self {
            Ids::One(one) => one.as_str() == id,
            Ids::Many(set) => {
                set.remove(id);
                set.is_empty()
            }
        }
    }

    /// How many connections.
    pub(super) fn len(&self) -> usize {
        match self {
            Ids::One(_) => 1,
            Ids::Many(set) => set.len(),
        }
    }

    /// Every id, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &ClientId> {
        let (one, many) = match self {
            Ids::One(one) => (Some(one), None),
            Ids::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ClientId {
        ClientId::from(name)
    }

    #[test]
    fn one_then_many_then_none() {
        let mut ids = Ids::One(id("a"));
        assert!(!ids.insert(id("a")), "already there");
        assert_eq!(ids.len(), 1);
        assert!(ids.insert(id("b")));
        assert!(ids.insert(id("c")));
        let mut all: Vec<&str> = ids.iter().map(ClientId::as_str).collect();
        all.sort_unstable();
        assert_eq!(all, ["a", "b", "c"]);
        assert!(!ids.remove("b"));
        assert!(!ids.remove("nobody"));
        assert!(!ids.remove("a"));
        assert_eq!(ids.len(), 1);
        assert!(ids.remove("c"), "none left");

        let one = Ids::One(id("x"));
        assert_eq!(one.iter().count(), 1);
        assert!(!Ids::One(id("x")).remove("y"), "another id leaves it");
        assert!(Ids::One(id("x")).remove("x"));
    }
}
