//! A team board, the domain shared by the `axum-teams`, `warp-teams` and
//! `poem-teams` examples, whose binaries only route requests here and
//! extract the stream's options with their adapter.
//!
//! This module owns the board's state, kept in memory until the server
//! stops: the sessions (`POST /login` trades a user and team name for a
//! random token; there are no passwords, a real application checks
//! credentials there), the [`TeamAuthenticator`] that turns a token into an
//! identity bound to the channel `team/{team}`, the last
//! [`RECENT_MESSAGES`] messages of each team, posting a message
//! (`POST /messages`), the connect hook sending each new connection a
//! `snapshot` of its team, and the administration check guarding the
//! ready-made administration routes. The engine's settings come from the
//! demos' variables listed in [`ENGINE_VARIABLES`] (`SSE_HEARTBEAT_MS`,
//! `SSE_HISTORY`, ...), the administration key from [`ADMIN_KEY_VARIABLE`].
//!
//! What a team member's stream carries, in order:
//!
//! 1. the `connected` event of every stream;
//! 2. with `Last-Event-ID`, the `message` events missed since (or a `reset`
//!    when that id is unknown);
//! 3. a `snapshot` event, for this connection alone:
//!    `{"team", "messages": [...], "members": [{"userId", "connections"}]}`,
//!    `messages` the team's last ones, oldest first, `members` who is
//!    connected to the team now, sorted by user id. The hook runs once the
//!    connection is registered, so `members` includes the connection's own
//!    user;
//! 4. live events: `message` (`{"id", "user", "text"}`, with an event id,
//!    kept for replay) and `presence` (`{"channel", "userId", "state":
//!    "join" | "leave"}`, live only), sent by the manager when another
//!    member's first connection opens or last one closes.
//!
//! A message posted while a connection opens may be in both its snapshot
//! and its live events: clients merge messages by `id`, and apply presence
//! events as set operations.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode};
use serde::{Deserialize, Serialize};
use sse_core::http::{AuthError, Authenticator, Identity, SseEndpoints, auth_error, bearer_token, error, json};
use sse_core::{ConfigError, ConnectContext, Event, EventError, SendError, SseConfig, SseManager, async_trait};
use subtle::ConstantTimeEq as _;
use tokio::sync::Mutex;

use crate::{DemoError, EnvConfig};

/// How many messages each team keeps for the snapshot.
pub const RECENT_MESSAGES: usize = 20;
/// The longest user or team name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The longest message, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// The largest body `POST /login` and `POST /messages` accept.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// How many sessions the server keeps; logins beyond are refused (`503`).
pub const MAX_SESSIONS: usize = 10_000;
/// The query parameter carrying the token for `EventSource`, which cannot
/// send an `Authorization` header. The endpoints keep it out of the
/// connection's metadata, unlike other query parameters.
pub const TOKEN_PARAMETER: &str = "access_token";
/// The header carrying the administration key.
pub const ADMIN_KEY_HEADER: &str = "x-admin-key";
/// The environment variable holding the administration key; unset or
/// empty, the administration routes refuse every request.
pub const ADMIN_KEY_VARIABLE: &str = "TEAMS_ADMIN_KEY";
/// The variables of the demos' contract the examples read for the engine's
/// settings (see the README); presence is always on for `team/*`.
pub const ENGINE_VARIABLES: [&str; 9] = [
    "SSE_HEARTBEAT_MS",
    "SSE_RETRY_MS",
    "SSE_MAX_CONNECTIONS",
    "SSE_MAX_PER_USER",
    "SSE_MAX_PER_ADDR",
    "SSE_MAX_LIFETIME_MS",
    "SSE_CLIENT_QUEUE",
    "SSE_HISTORY",
    "SSE_IDLE_TIMEOUT_MS",
];

const CHANNEL_PREFIX: &str = "team/";

/// The channel of `team`: `team/{team}`.
pub fn team_channel(team: &str) -> String {
    format!("{CHANNEL_PREFIX}{team}")
}

/// Why a request to the board was refused; [`TeamsError::response`] is its
/// answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TeamsError {
    /// The body is not the expected JSON object (`400`).
    #[error("invalid body: {0}")]
    Body(String),
    /// A user or team name is empty, too long or holds other characters
    /// than ASCII letters, digits, `_` and `-` (`400`).
    #[error("{field} must be 1 to {MAX_NAME_CHARS} characters among A-Z, a-z, 0-9, _ and -")]
    Name {
        /// `user` or `team`.
        field: &'static str,
    },
    /// A message is empty or too long (`400`).
    #[error("text must be 1 to {MAX_TEXT_CHARS} characters")]
    Text,
    /// No token, or one no session has (`401`).
    #[error("a valid session token is required")]
    Unauthorized,
    /// The administration routes are disabled: no key is configured
    /// ([`ADMIN_KEY_VARIABLE`]) (`403`).
    #[error("administration is disabled: TEAMS_ADMIN_KEY is not set")]
    AdminDisabled,
    /// The request to an administration route lacks the right
    /// [`ADMIN_KEY_HEADER`] (`403`).
    #[error("a valid x-admin-key header is required")]
    NotAdmin,
    /// [`MAX_SESSIONS`] sessions exist already (`503`).
    #[error("too many sessions")]
    TooManySessions,
    /// The message could not be encoded as an event (`500`).
    #[error(transparent)]
    Event(#[from] EventError),
    /// The manager did not send the message: it is shutting down (`503`).
    #[error(transparent)]
    Send(#[from] SendError),
}

impl TeamsError {
    /// The JSON answer: `{"error": "..."}` with the status of the variant
    /// (a `401` as the stream endpoint answers it, with `WWW-Authenticate`).
    pub fn response(&self) -> Response<Bytes> {
        let status = match self {
            TeamsError::Body(_) | TeamsError::Name { .. } | TeamsError::Text => StatusCode::BAD_REQUEST,
            TeamsError::Unauthorized => return auth_error(&AuthError::Unauthorized(self.to_string())),
            TeamsError::AdminDisabled | TeamsError::NotAdmin => StatusCode::FORBIDDEN,
            TeamsError::TooManySessions | TeamsError::Send(_) => StatusCode::SERVICE_UNAVAILABLE,
            TeamsError::Event(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, &self.to_string())
    }
}

/// The `413` answer to a body over [`MAX_BODY_BYTES`].
pub fn body_too_large() -> Response<Bytes> {
    error(StatusCode::PAYLOAD_TOO_LARGE, "request body is larger than 16 KiB")
}

/// One message on a team's board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Its number on the team's board, from 1: what clients merge by.
    pub id: u64,
    /// Who posted it.
    pub user: String,
    /// What it says.
    pub text: String,
}

/// Who holds a token.
#[derive(Debug, Clone)]
struct Session {
    user: String,
    team: String,
}

/// A team's recent messages.
#[derive(Debug, Default)]
struct Board {
    last_id: u64,
    recent: VecDeque<Message>,
}

/// The state behind every clone of [`Teams`] and of its authenticator.
#[derive(Debug, Default)]
struct State {
    sessions: Mutex<HashMap<String, Session>>,
    boards: Mutex<HashMap<String, Board>>,
}

impl State {
    async fn session(&self, token: &str) -> Option<Session> {
        self.sessions.lock().await.get(token).cloned()
    }

    /// The team's recent messages, oldest first.
    async fn recent(&self, team: &str) -> Vec<Message> {
        let boards = self.boards.lock().await;
        boards
            .get(team)
            .map(|board| board.recent.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Identifies a subscriber by its session token, from `Authorization:
/// Bearer` or, for `EventSource`, the [`TOKEN_PARAMETER`] query parameter:
/// the session's user, joined to its team's channel and allowed no other
/// (a `channel` query parameter naming another team is a `403`). An unknown
/// or missing token is [`AuthError::Unauthorized`], a `401`.
#[derive(Debug, Clone)]
pub struct TeamAuthenticator {
    state: Arc<State>,
}

#[async_trait]
impl Authenticator for TeamAuthenticator {
    async fn authenticate(&self, request: &Parts) -> Result<Identity, AuthError> {
        let token = match bearer_token(&request.headers) {
            Some(token) => Some(token.to_owned()),
            None => sse_core::http::query_pairs(request)
                .find(|(name, _)| name == TOKEN_PARAMETER)
                .map(|(_, token)| token.into_owned()),
        };
        let session = match token {
            Some(token) => self.state.session(&token).await,
            None => None,
        };
        let Some(session) = session else {
            return Err(AuthError::Unauthorized(TeamsError::Unauthorized.to_string()));
        };
        let channel = team_channel(&session.team);
        Ok(Identity::user(session.user)
            .with_allowed_channels([channel.clone()])
            .with_channels([channel]))
    }
}

/// The key of the administration routes.
#[derive(Clone)]
struct AdminKey(String);

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(..)")
    }
}

#[derive(Deserialize)]
struct Login {
    user: String,
    team: String,
}

#[derive(Deserialize)]
struct Post {
    text: String,
}

/// The team board: sessions, messages, and the endpoints over a manager
/// that keeps presence for `team/*` and sends each new connection its
/// snapshot. Cheap to clone: clones share everything.
#[derive(Debug, Clone)]
pub struct Teams {
    endpoints: SseEndpoints,
    state: Arc<State>,
    admin_key: Option<AdminKey>,
}

impl Teams {
    /// The board over a manager with `config` and presence for `team/*`,
    /// with the administration routes open to requests whose
    /// [`ADMIN_KEY_HEADER`] is `admin_key` (to none without one). Must run
    /// inside a Tokio runtime.
    ///
    /// # Errors
    /// When the engine refuses the configuration.
    pub fn new(config: SseConfig, admin_key: Option<String>) -> Result<Self, ConfigError> {
        let state = Arc::new(State::default());
        let for_hook = Arc::clone(&state);
        let manager = SseManager::builder()
            .config(config)
            .configure(|config| config.presence_channels(vec![format!("{CHANNEL_PREFIX}*")]))
            .on_connect(move |connection| send_snapshot(Arc::clone(&for_hook), connection))
            .build()?;
        let authenticator = TeamAuthenticator {
            state: Arc::clone(&state),
        };
        Ok(Teams {
            endpoints: SseEndpoints::new(manager, authenticator),
            state,
            admin_key: admin_key.filter(|key| !key.is_empty()).map(AdminKey),
        })
    }

    /// [`Teams::new`] with the engine's settings from [`ENGINE_VARIABLES`]
    /// and the administration key from [`ADMIN_KEY_VARIABLE`].
    ///
    /// # Errors
    /// [`DemoError::Env`] naming a malformed variable, [`DemoError::Config`]
    /// when the engine refuses the settings.
    pub fn from_env() -> Result<Self, DemoError> {
        let config = EnvConfig::from_lookup(|name| {
            ENGINE_VARIABLES
                .contains(&name)
                .then(|| std::env::var(name).ok())
                .flatten()
        })?;
        Ok(Teams::new(config.sse, std::env::var(ADMIN_KEY_VARIABLE).ok())?)
    }

    /// The endpoints, for the adapter's extractor and administration routes.
    pub fn endpoints(&self) -> &SseEndpoints {
        &self.endpoints
    }

    /// The manager behind the endpoints.
    pub fn manager(&self) -> &SseManager {
        self.endpoints.manager()
    }

    /// An authenticator reading this board's sessions, for endpoints of
    /// one's own (the board's endpoints have one already).
    pub fn authenticator(&self) -> TeamAuthenticator {
        TeamAuthenticator {
            state: Arc::clone(&self.state),
        }
    }

    /// Opens a session for `user` in `team`: its new random token.
    ///
    /// # Errors
    /// [`TeamsError::Name`] for a malformed name,
    /// [`TeamsError::TooManySessions`] at [`MAX_SESSIONS`].
    pub async fn sign_in(&self, user: &str, team: &str) -> Result<String, TeamsError> {
        check_name("user", user)?;
        check_name("team", team)?;
        let mut sessions = self.state.sessions.lock().await;
        if sessions.len() >= MAX_SESSIONS {
            return Err(TeamsError::TooManySessions);
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let session = Session {
            user: user.to_owned(),
            team: team.to_owned(),
        };
        sessions.insert(token.clone(), session);
        Ok(token)
    }

    /// Posts `text` to the team of the session holding `token`: records it
    /// among the team's recent messages and sends it to the team's channel
    /// as a `message` event, kept for replay.
    ///
    /// # Errors
    /// [`TeamsError::Unauthorized`] for an unknown token,
    /// [`TeamsError::Text`] for an empty or too long text,
    /// [`TeamsError::Send`] when the manager is shutting down.
    pub async fn post(&self, token: &str, text: &str) -> Result<Message, TeamsError> {
        let session = self.state.session(token).await.ok_or(TeamsError::Unauthorized)?;
        let length = text.chars().count();
        if length == 0 || length > MAX_TEXT_CHARS {
            return Err(TeamsError::Text);
        }
        // Held until the event is sent, so that the team's messages go out
        // in the order of their ids.
        let mut boards = self.state.boards.lock().await;
        let board = boards.entry(session.team.clone()).or_default();
        let message = Message {
            id: board.last_id + 1,
            user: session.user,
            text: text.to_owned(),
        };
        let event = Event::json("message", &message)?;
        self.manager()
            .send_to_channel(&team_channel(&session.team), event)
            .await?;
        board.last_id = message.id;
        board.recent.push_back(message.clone());
        if board.recent.len() > RECENT_MESSAGES {
            board.recent.pop_front();
        }
        Ok(message)
    }

    /// Answers `POST /login` with body `{"user": "...", "team": "..."}`:
    /// `200` with `{"token": "..."}`, or the [`TeamsError`]'s answer.
    pub async fn login(&self, body: &[u8]) -> Response<Bytes> {
        let login = match parse::<Login>(body, r#"{"user": "...", "team": "..."}"#) {
            Ok(login) => login,
            Err(refused) => return refused.response(),
        };
        match self.sign_in(&login.user, &login.team).await {
            Ok(token) => json(StatusCode::OK, &serde_json::json!({ "token": token })),
            Err(refused) => refused.response(),
        }
    }

    /// Answers `POST /messages` with `Authorization: Bearer <token>` and
    /// body `{"text": "..."}`: `201` with the message
    /// (`{"id", "user", "text"}`), or the [`TeamsError`]'s answer.
    pub async fn post_message(&self, headers: &HeaderMap, body: &[u8]) -> Response<Bytes> {
        let Some(token) = bearer_token(headers) else {
            return TeamsError::Unauthorized.response();
        };
        let result = match parse::<Post>(body, r#"{"text": "..."}"#) {
            Ok(post) => self.post(token, &post.text).await,
            Err(refused) => Err(refused),
        };
        match result {
            Ok(message) => json(StatusCode::CREATED, &message),
            Err(refused) => refused.response(),
        }
    }

    /// Whether a request with `headers` may use the administration routes:
    /// whether its [`ADMIN_KEY_HEADER`] equals the administration key
    /// (compared in constant time).
    ///
    /// # Errors
    /// [`TeamsError::AdminDisabled`] when no key is configured,
    /// [`TeamsError::NotAdmin`] when the header is missing or wrong (both
    /// answered `403`).
    pub fn admin_check(&self, headers: &HeaderMap) -> Result<(), TeamsError> {
        let Some(AdminKey(key)) = &self.admin_key else {
            return Err(TeamsError::AdminDisabled);
        };
        let given = headers
            .get(ADMIN_KEY_HEADER)
            .map(|given| given.as_bytes())
            .unwrap_or_default();
        if bool::from(given.ct_eq(key.as_bytes())) {
            Ok(())
        } else {
            Err(TeamsError::NotAdmin)
        }
    }
}

/// Sends a new connection of a team its snapshot (see the module's
/// documentation), and nothing to other connections.
async fn send_snapshot(state: Arc<State>, connection: ConnectContext) {
    let Some(channel) = connection
        .info()
        .channels
        .iter()
        .find(|channel| channel.starts_with(CHANNEL_PREFIX))
    else {
        return;
    };
    let team = &channel[CHANNEL_PREFIX.len()..];
    let messages = state.recent(team).await;
    let members = match connection.manager().presence(channel).await {
        Ok(members) => members,
        Err(error) => {
            tracing::warn!(%error, "presence unavailable; the snapshot lists this instance's members");
            connection.manager().local_presence(channel)
        }
    };
    let snapshot = serde_json::json!({ "team": team, "messages": messages, "members": members });
    match Event::json("snapshot", &snapshot) {
        Ok(event) => {
            connection.send(&event);
        }
        Err(failure) => tracing::error!(%failure, "cannot encode a snapshot"),
    }
}

fn check_name(field: &'static str, name: &str) -> Result<(), TeamsError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid { Ok(()) } else { Err(TeamsError::Name { field }) }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], shape: &str) -> Result<T, TeamsError> {
    serde_json::from_slice(body).map_err(|_| TeamsError::Body(format!("expected JSON {shape}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, bearer: Option<&str>) -> Parts {
        let mut request = http::Request::get(uri);
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(()).expect("a request").into_parts().0
    }

    #[test]
    fn names_are_checked() {
        for good in ["alice", "A_b-9", &"x".repeat(MAX_NAME_CHARS)] {
            assert!(check_name("user", good).is_ok(), "{good}");
        }
        for bad in ["", "al ice", "élise", "a/b", &"x".repeat(MAX_NAME_CHARS + 1)] {
            assert!(check_name("user", bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_session_token_is_an_identity_in_its_team() {
        let teams = Teams::new(SseConfig::default(), None).expect("a board");
        let token = teams.sign_in("alice", "red").await.expect("a session");
        let authenticator = teams.authenticator();
        for request in [
            parts("/events", Some(&token)),
            parts(&format!("/events?{TOKEN_PARAMETER}={token}"), None),
        ] {
            let identity = authenticator.authenticate(&request).await.expect("known token");
            assert_eq!(identity.user_id.as_deref(), Some("alice"));
            assert_eq!(identity.channels, ["team/red"]);
            assert!(!identity.may_join("team/blue"));
        }
        for request in [parts("/events", None), parts("/events?access_token=nope", Some("nope"))] {
            assert!(matches!(
                authenticator.authenticate(&request).await,
                Err(AuthError::Unauthorized(_))
            ));
        }
    }

    #[tokio::test]
    async fn requests_are_validated() {
        let teams = Teams::new(SseConfig::default(), None).expect("a board");
        let status = |response: Response<Bytes>| response.status();
        assert_eq!(status(teams.login(br#"{"user": "", "team": "red"}"#).await), 400);
        assert_eq!(status(teams.login(b"not json").await), 400);
        let token = teams.sign_in("bob", "red").await.expect("a session");
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {token}").parse().expect("a header value"),
        );
        let long = serde_json::json!({ "text": "x".repeat(MAX_TEXT_CHARS + 1) }).to_string();
        assert_eq!(status(teams.post_message(&headers, long.as_bytes()).await), 400);
        assert_eq!(status(teams.post_message(&headers, br#"{"text": ""}"#).await), 400);
        assert_eq!(
            status(teams.post_message(&HeaderMap::new(), br#"{"text": "hi"}"#).await),
            401
        );
        let posted = teams.post_message(&headers, br#"{"text": "hi"}"#).await;
        assert_eq!(posted.status(), 201);
        assert_eq!(posted.body(), r#"{"id":1,"user":"bob","text":"hi"}"#);
    }

    #[tokio::test]
    async fn the_admin_key_is_required() {
        let mut headers = HeaderMap::new();
        headers.insert(ADMIN_KEY_HEADER, "secret".parse().expect("a header value"));
        let disabled = Teams::new(SseConfig::default(), Some(String::new())).expect("a board");
        assert!(disabled.admin_check(&headers).is_err());
        let teams = Teams::new(SseConfig::default(), Some("secret".to_owned())).expect("a board");
        assert!(teams.admin_check(&headers).is_ok());
        assert!(teams.admin_check(&HeaderMap::new()).is_err());
        headers.insert(ADMIN_KEY_HEADER, "secreT".parse().expect("a header value"));
        let refused = teams.admin_check(&headers).expect_err("a wrong key");
        assert_eq!(refused.response().status(), StatusCode::FORBIDDEN);
    }
}
