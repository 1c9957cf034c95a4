//! Who receives an event: the [`Target`] of a send and the [`Audience`]
//! (a target minus excluded users and connections), as plain data.

use std::fmt;
use std::sync::Arc;

use crate::connection::{ClientId, ConnectionInfo};

/// A predicate over connection info, for [`Target::Filter`].
pub type Predicate = Arc<dyn Fn(&ConnectionInfo) -> bool + Send + Sync + 'static>;

/// The audience of an event.
///
/// A target is a plain value handed to the manager; targeted sends look their
/// recipients up in indexes, so their cost follows the number of recipients,
/// not the number of connections ([`Target::All`] and [`Target::Filter`]
/// naturally visit every connection).
///
/// The same target decides replay: a client resuming with `Last-Event-ID`
/// receives a retained event only if the target matches its new connection.
/// Events sent to one [`Target::Client`] are therefore never replayed, since
/// a reconnecting client gets a new client id, and so they are not kept in
/// the history at all: initial state sent to each new connection never
/// pushes a replayable event out.
///
/// To leave some users or connections out, turn a target into an
/// [`Audience`] with [`Target::except_user`] or [`Target::except_client`].
///
/// ```
/// use sse_core::Target;
///
/// let everyone = Target::All;
/// let one_user = Target::user("u1");
/// let some_users = Target::users(["u1", "u2"]);
/// let admins = Target::filter(|info| info.metadata.get("role").is_some_and(|r| r == "admin"));
/// # let _ = (everyone, one_user, some_users, admins);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum Target {
    /// Every connection.
    All,
    /// One connection, by client id.
    Client(ClientId),
    /// Every connection of one user.
    User(String),
    /// Every connection of any of these users.
    Users(Vec<String>),
    /// Every connection of one session.
    Session(String),
    /// Every connection subscribed to a channel.
    Channel(String),
    /// Every connection the predicate accepts.
    Filter(Predicate),
}

impl Target {
    /// Every connection of user `id`.
    pub fn user(id: impl Into<String>) -> Self {
        Target::User(id.into())
    }

    /// Every connection of any of `ids`.
    pub fn users<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Target::Users(ids.into_iter().map(Into::into).collect())
    }

    /// Every connection of session `id`.
    pub fn session(id: impl Into<String>) -> Self {
        Target::Session(id.into())
    }

    /// Every connection subscribed to `channel`.
    pub fn channel(channel: impl Into<String>) -> Self {
        Target::Channel(channel.into())
    }

    /// One connection.
    pub fn client(id: impl Into<ClientId>) -> Self {
        Target::Client(id.into())
    }

    /// Every connection the predicate accepts.
    pub fn filter(predicate: impl Fn(&ConnectionInfo) -> bool + Send + Sync + 'static) -> Self {
        Target::Filter(Arc::new(predicate))
    }

    /// Whether a connection with this info is part of the audience.
    pub fn matches(&self, info: &ConnectionInfo) -> bool {
        match self {
            Target::All => true,
            Target::Client(id) => info.client_id == *id,
            Target::User(user) => info.user_id.as_deref() == Some(user.as_str()),
            Target::Users(users) => info
                .user_id
                .as_deref()
                .is_some_and(|u| users.iter().any(|candidate| candidate == u)),
            Target::Session(session) => info.session_id.as_deref() == Some(session.as_str()),
            Target::Channel(channel) => info.channels.contains(channel.as_str()),
            Target::Filter(predicate) => predicate(info),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("All"),
            Target::Client(id) => f.debug_tuple("Client").field(id).finish(),
            Target::User(id) => f.debug_tuple("User").field(id).finish(),
            Target::Users(ids) => f.debug_tuple("Users").field(ids).finish(),
            Target::Session(id) => f.debug_tuple("Session").field(id).finish(),
            Target::Channel(name) => f.debug_tuple("Channel").field(name).finish(),
            Target::Filter(_) => f.write_str("Filter(..)"),
        }
    }
}

impl From<ClientId> for Target {
    fn from(id: ClientId) -> Self {
        Target::Client(id)
    }
}

/// A [`Target`] minus some users and connections: the audience of a send.
///
/// Built from a target with [`Target::except_user`],
/// [`Target::except_users`], [`Target::except_client`] and
/// [`Target::except_clients`] (in the style of socketioxide's
/// `to(..).except(..)`), and accepted by [`SseManager::send`] wherever a
/// [`Target`] is (a `Target` converts into an audience that excludes
/// nobody). Like a target it is plain data: the same value routes the live
/// event, decides its replay and crosses the backplane.
///
/// ```
/// use sse_core::Target;
///
/// // Everyone in the room but the user who just joined it, and one
/// // connection of a moderator.
/// let audience = Target::channel("room/1")
///     .except_user("alice")
///     .except_client("5d6c0d0e-8f4b-4d9a-9a43-3f1c8c2d7f10");
/// assert_eq!(audience.excluded_users(), ["alice"]);
/// ```
///
/// Exclusions are honoured on replay: an excluded user is not replayed the
/// event. A client exclusion names one connection, like [`Target::Client`]:
/// a client that reconnects is a new connection with a new id, so its
/// resumed connection is replayed the event like any other connection the
/// target reaches. To keep an event from a person across reconnections,
/// exclude the user.
///
/// Each recipient is checked against the exclusions by binary search in
/// sorted lists built once per send, so the fan-out allocates nothing per
/// recipient.
///
/// [`SseManager::send`]: crate::SseManager::send
#[derive(Clone, Debug)]
pub struct Audience {
    target: Target,
    /// Sorted, without duplicates.
    except_users: Vec<String>,
    /// Sorted, without duplicates.
    except_clients: Vec<ClientId>,
}

impl Audience {
    /// Everyone `target` reaches, nobody excluded.
    pub fn new(target: Target) -> Self {
        Audience {
            target,
            except_users: Vec::new(),
            except_clients: Vec::new(),
        }
    }

    /// Also excludes every connection of user `id`.
    #[must_use]
    pub fn except_user(self, id: impl Into<String>) -> Self {
        self.except_users([id])
    }

    /// Also excludes the connection `id`.
    #[must_use]
    pub fn except_client(self, id: impl Into<ClientId>) -> Self {
        self.except_clients([id])
    }

    /// Also excludes every connection of each of `ids`.
    #[must_use]
    pub fn except_users<S: Into<String>>(mut self, ids: impl IntoIterator<Item = S>) -> Self {
        add_sorted(&mut self.except_users, ids);
        self
    }

    /// Also excludes each of the connections `ids`.
    #[must_use]
    pub fn except_clients<C: Into<ClientId>>(mut self, ids: impl IntoIterator<Item = C>) -> Self {
        add_sorted(&mut self.except_clients, ids);
        self
    }

    /// The target, before exclusions.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The excluded users, sorted, each once.
    pub fn excluded_users(&self) -> &[String] {
        &self.except_users
    }

    /// The excluded connections, sorted, each once.
    pub fn excluded_clients(&self) -> &[ClientId] {
        &self.except_clients
    }

    /// Whether nobody is excluded.
    pub fn excludes_nobody(&self) -> bool {
        self.except_users.is_empty() && self.except_clients.is_empty()
    }

    /// Whether a connection with this info is excluded, whatever the target.
    pub fn excludes(&self, info: &ConnectionInfo) -> bool {
        if self.excludes_nobody() {
            return false;
        }
        let user = info
            .user_id
            .as_deref()
            .is_some_and(|user| self.except_users.binary_search_by(|u| u.as_str().cmp(user)).is_ok());
        user || self.except_clients.binary_search(&info.client_id).is_ok()
    }

    /// Whether a connection with this info is part of the audience: the
    /// target matches it and it is not excluded.
    pub fn matches(&self, info: &ConnectionInfo) -> bool {
        self.target.matches(info) && !self.excludes(info)
    }
}

impl Target {
    /// The kind of target, as logs and metrics name it: `all`, `client`,
    /// `user`, `users`, `session`, `channel` or `filter`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Target::All => "all",
            Target::Client(_) => "client",
            Target::User(_) => "user",
            Target::Users(_) => "users",
            Target::Session(_) => "session",
            Target::Channel(_) => "channel",
            Target::Filter(_) => "filter",
        }
    }

    /// This target minus every connection of user `id`; chain more
    /// exclusions on the [`Audience`] it returns.
    pub fn except_user(self, id: impl Into<String>) -> Audience {
        Audience::new(self).except_user(id)
    }

    /// This target minus the connection `id`.
    pub fn except_client(self, id: impl Into<ClientId>) -> Audience {
        Audience::new(self).except_client(id)
    }

    /// This target minus every connection of each of `ids`.
    pub fn except_users<S: Into<String>>(self, ids: impl IntoIterator<Item = S>) -> Audience {
        Audience::new(self).except_users(ids)
    }

    /// This target minus each of the connections `ids`.
    pub fn except_clients<C: Into<ClientId>>(self, ids: impl IntoIterator<Item = C>) -> Audience {
        Audience::new(self).except_clients(ids)
    }
}

/// Adds `items` to the sorted list `set`, keeping it sorted and free of
/// duplicates.
fn add_sorted<T: Ord, I: Into<T>>(set: &mut Vec<T>, items: impl IntoIterator<Item = I>) {
    set.extend(items.into_iter().map(Into::into));
    set.sort_unstable();
    set.dedup();
}

impl From<Target> for Audience {
    fn from(target: Target) -> Self {
        Audience::new(target)
    }
}

impl From<ClientId> for Audience {
    fn from(id: ClientId) -> Self {
        Audience::new(Target::Client(id))
    }
}
