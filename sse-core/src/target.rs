//! Who receives an event: the audience of a send, as plain data.

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
/// a reconnecting client gets a new client id.
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
