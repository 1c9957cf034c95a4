//! Isolation: no event reaches a connection it was not aimed at, live or replayed, checked against a model.
//!
//! Subscribers connect through [`SseEndpoints::connect`] with HS256 JWTs
//! (claims `sub`, `sid`, `channels`), some asking for channels their token
//! does not allow, some with bad tokens; events are published to every kind
//! of target through the publish endpoint and through the manager;
//! connections are dropped by their clients, closed by the server, and
//! resumed with the `Last-Event-ID` of the last event the client saw (or
//! another one). An independent model says what each connection may
//! receive, and every connection must receive exactly that, in order.
//!
//! These tests need the `jwt` feature and the Tokio runtime.
#![cfg(all(feature = "jwt", feature = "tokio"))]

mod common;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use sse_core::http::jwt::JwtAuthenticator;
use sse_core::http::{BearerToken, SseEndpoints, SseReply};
use sse_core::{Connection, Event, SseManager, Target};

use common::{drain, parse};

const SECRET: &[u8] = b"isolation test secret";
const PUBLISH_TOKEN: &str = "publisher token";
const USERS: u8 = 4;
/// Sessions per user; session `s` of user `u` is named `u{u}-s{s}`.
const SESSIONS: u8 = 2;
/// A user (and a session) nobody is.
const NOBODY: u8 = 9;
/// The channels subscribers ask for.
const CHANNELS: [&str; 7] = ["news", "orders/1", "orders/2", "ordersX", "team/a", "admin", "lobby"];
/// Patterns the `channels` claim of a token may hold.
const PATTERNS: [&str; 5] = ["news", "orders/*", "team/*", "admin", "*"];

fn user(u: u8) -> String {
    format!("u{u}")
}

fn session(u: u8, s: u8) -> String {
    format!("u{u}-s{s}")
}

/// `Last-Event-ID` values that are never a resume point.
fn garbage(n: usize) -> String {
    match n % 5 {
        0 => "garbage".to_owned(),
        1 => "0".to_owned(),
        2 => "-1".to_owned(),
        3 => "18446744073709551616".to_owned(),
        _ => "9".repeat(300),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

fn sign(claims: &serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encodable claims")
}

/// Whether `patterns` (a token's `channels` claim; `None`: no claim) allow
/// `channel`. Written independently of the library's matcher.
fn allows(patterns: Option<&BTreeSet<usize>>, channel: &str) -> bool {
    let Some(patterns) = patterns else { return true };
    patterns.iter().any(|&p| {
        let pattern = PATTERNS[p];
        match pattern.strip_suffix('*') {
            Some(prefix) => channel.len() >= prefix.len() && channel[..prefix.len()] == *prefix,
            None => pattern == channel,
        }
    })
}

/// Picks one of the things of its kind that exist so far (modulo their number).
#[derive(Debug, Clone, Copy)]
struct Pick(usize);

impl Pick {
    fn of(self, len: usize) -> Option<usize> {
        (len > 0).then(|| self.0 % len)
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    any::<usize>().prop_map(Pick)
}

#[derive(Debug, Clone, Copy)]
enum TokenPlace {
    Bearer,
    Query,
    Cookie,
}

/// One browser tab: who it is and what it asks for, on every (re)connect.
#[derive(Debug, Clone)]
struct TabSpec {
    user: u8,
    session: Option<u8>,
    /// Requested channels, narrowed to the allowed ones unless `trespass`.
    channels: BTreeSet<usize>,
    trespass: bool,
    place: TokenPlace,
    /// The token carries an `exp` claim (an hour ahead).
    expires: bool,
    /// The query also claims to be this user (and a session of theirs); a
    /// token-authenticated endpoint must ignore it.
    spoof: Option<u8>,
    /// The query holds a metadata parameter.
    device: bool,
}

#[derive(Debug, Clone)]
enum LastMode {
    /// The id of the last event this tab saw, if it saw one.
    Seen,
    /// The id of any event published so far, aimed at this tab or not.
    Stolen(Pick),
    /// An id that is not held.
    Garbage(usize),
    /// A published id with a leading zero: not the same id.
    Padded(Pick),
    /// No `Last-Event-ID`.
    Without,
}

#[derive(Debug, Clone)]
enum TargetSpec {
    All,
    User(u8),
    Users(Vec<u8>),
    Session(u8, u8),
    Channel(usize),
    /// A connection opened so far, possibly closed since.
    Client(Pick),
}

#[derive(Debug, Clone, Copy)]
enum Via {
    /// `POST /publish` on [`SseEndpoints::api`].
    Api,
    /// [`SseManager::send`].
    Manager,
}

#[derive(Debug, Clone, Copy)]
enum BadToken {
    Missing,
    Forged,
    Expired,
    EmptySub,
    Garbled,
    /// A valid token's signature over another user's claims.
    Tampered,
}

#[derive(Debug, Clone)]
enum Op {
    /// A new tab connects.
    Open(TabSpec),
    /// A tab's connection breaks (if open; its client loses the last
    /// `lost` events received) and the tab connects again.
    Reconnect {
        tab: Pick,
        mode: LastMode,
        id_in_query: bool,
        lost: usize,
    },
    /// A tab's connection breaks and stays closed for now.
    Close {
        tab: Pick,
        lost: usize,
    },
    Publish {
        target: TargetSpec,
        via: Via,
        custom_id: bool,
    },
    /// `DELETE /connections/{clientId}` of a connection opened so far.
    Kick(Pick),
    /// [`SseManager::disconnect_user`].
    KickUser(u8),
    /// `POST /subscribe` or `/unsubscribe`.
    Subscribe {
        connection: Pick,
        channel: usize,
        subscribe: bool,
    },
    BadConnect(BadToken, u8),
    /// `POST /publish` with a subscriber's token instead of the publisher's.
    ForgedPublish(u8),
}

fn tab_strategy() -> impl Strategy<Value = TabSpec> {
    let place = prop_oneof![
        Just(TokenPlace::Bearer),
        Just(TokenPlace::Query),
        Just(TokenPlace::Cookie)
    ];
    (
        0..USERS,
        prop::option::of(0..SESSIONS),
        prop::collection::btree_set(0..CHANNELS.len(), 0..=3),
        prop::bool::weighted(0.2),
        place,
        any::<bool>(),
        prop::option::weighted(0.2, 0..USERS),
        any::<bool>(),
    )
        .prop_map(
            |(user, session, channels, trespass, place, expires, spoof, device)| TabSpec {
                user,
                session,
                channels,
                trespass,
                place,
                expires,
                spoof,
                device,
            },
        )
}

fn last_mode() -> impl Strategy<Value = LastMode> {
    prop_oneof![
        6 => Just(LastMode::Seen),
        2 => pick().prop_map(LastMode::Stolen),
        1 => any::<usize>().prop_map(LastMode::Garbage),
        1 => pick().prop_map(LastMode::Padded),
        1 => Just(LastMode::Without),
    ]
}

fn someone() -> impl Strategy<Value = u8> {
    prop_oneof![4 => 0..USERS, 1 => Just(NOBODY)]
}

fn target_strategy() -> impl Strategy<Value = TargetSpec> {
    prop_oneof![
        Just(TargetSpec::All),
        someone().prop_map(TargetSpec::User),
        prop::collection::vec(someone(), 0..4).prop_map(TargetSpec::Users),
        (someone(), 0..SESSIONS).prop_map(|(u, s)| TargetSpec::Session(u, s)),
        (0..CHANNELS.len()).prop_map(TargetSpec::Channel),
        pick().prop_map(TargetSpec::Client),
    ]
}

fn bad_token() -> impl Strategy<Value = BadToken> {
    prop_oneof![
        Just(BadToken::Missing),
        Just(BadToken::Forged),
        Just(BadToken::Expired),
        Just(BadToken::EmptySub),
        Just(BadToken::Garbled),
        Just(BadToken::Tampered),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => tab_strategy().prop_map(Op::Open),
        3 => (pick(), last_mode(), prop::bool::weighted(0.2), 0..3usize).prop_map(|(tab, mode, id_in_query, lost)| {
            Op::Reconnect { tab, mode, id_in_query, lost }
        }),
        2 => (pick(), 0..3usize).prop_map(|(tab, lost)| Op::Close { tab, lost }),
        10 => (target_strategy(), prop_oneof![Just(Via::Api), Just(Via::Manager)], prop::bool::weighted(0.2))
            .prop_map(|(target, via, custom_id)| Op::Publish { target, via, custom_id }),
        1 => pick().prop_map(Op::Kick),
        1 => (0..USERS).prop_map(Op::KickUser),
        2 => (pick(), 0..CHANNELS.len(), any::<bool>())
            .prop_map(|(connection, channel, subscribe)| Op::Subscribe { connection, channel, subscribe }),
        1 => (bad_token(), 0..USERS).prop_map(|(kind, u)| Op::BadConnect(kind, u)),
        1 => (0..USERS).prop_map(Op::ForgedPublish),
    ]
}

/// The `channels` claim of each user's tokens: `None` for no claim (any
/// channel), else indexes into [`PATTERNS`] (possibly none).
fn allowed_strategy() -> impl Strategy<Value = Vec<Option<BTreeSet<usize>>>> {
    prop::collection::vec(
        prop::option::weighted(0.75, prop::collection::btree_set(0..PATTERNS.len(), 0..=3)),
        usize::from(USERS),
    )
}

/// The audience of a published event, as the model sees it.
#[derive(Debug, Clone)]
enum Audience {
    All,
    User(u8),
    Users(Vec<u8>),
    Session(u8, u8),
    Channel(usize),
    /// A client id (`None`: one that never existed).
    Client(Option<String>),
}

impl Audience {
    fn real(&self) -> Target {
        match self {
            Audience::All => Target::All,
            Audience::User(u) => Target::user(user(*u)),
            Audience::Users(users) => Target::users(users.iter().map(|u| user(*u))),
            Audience::Session(u, s) => Target::session(session(*u, *s)),
            Audience::Channel(c) => Target::channel(CHANNELS[*c]),
            Audience::Client(id) => Target::client(id.as_deref().unwrap_or("no-such-client")),
        }
    }

    /// The publish endpoint's JSON fields for this audience.
    fn json(&self) -> serde_json::Value {
        match self {
            Audience::All => serde_json::json!({}),
            Audience::User(u) => serde_json::json!({"target": "user", "targetId": user(*u)}),
            Audience::Users(users) => {
                serde_json::json!({"target": "users", "targetIds": users.iter().map(|u| user(*u)).collect::<Vec<_>>()})
            }
            Audience::Session(u, s) => serde_json::json!({"target": "session", "targetId": session(*u, *s)}),
            Audience::Channel(c) => serde_json::json!({"target": "channel", "targetId": CHANNELS[*c]}),
            Audience::Client(id) => {
                serde_json::json!({"target": "client", "targetId": id.as_deref().unwrap_or("no-such-client")})
            }
        }
    }
}

/// Where a client resumes from, as the model knows it.
#[derive(Debug, Clone)]
enum LastId {
    /// The id of published event `index`.
    Event(usize),
    /// The id of a `reset` event: the sequence number of event `index`
    /// (`-1`: before the first event).
    Head { index: isize, text: String },
}

/// What a connection receives after `connected`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// A `reset` whose id is the sequence number of event `index`.
    Reset(isize),
    /// Published event `index`.
    Event(usize),
}

struct Published {
    id: String,
    custom: bool,
    audience: Audience,
}

struct Tab {
    spec: TabSpec,
    token: String,
    last: Option<LastId>,
    /// Its connection, as an index into `World::connections`.
    current: Option<usize>,
}

/// One accepted connection.
struct Tracked {
    tab: usize,
    client_id: String,
    connection: Option<Connection>,
    /// Registered with the manager, as the model sees it: events reach it.
    registered: bool,
    /// Channels at connect time (what `connected` announces).
    connected_channels: BTreeSet<usize>,
    /// Channels now (runtime subscriptions included).
    channels: BTreeSet<usize>,
    expected: Vec<Expect>,
}

struct World {
    manager: SseManager,
    endpoints: SseEndpoints,
    allowed: Vec<Option<BTreeSet<usize>>>,
    history: usize,
    tabs: Vec<Tab>,
    connections: Vec<Tracked>,
    events: Vec<Published>,
    /// The sequence number of event 0 (ids the manager assigns are
    /// sequence numbers), once an id showed it.
    base: Option<i128>,
}

fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("valid request").into_parts().0
}

fn json_body(response: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(response.body()).expect("a JSON body")
}

impl World {
    fn allowed(&self, u: u8) -> Option<&BTreeSet<usize>> {
        self.allowed[usize::from(u)].as_ref()
    }

    fn claims(&self, spec: &TabSpec) -> serde_json::Value {
        let mut claims = serde_json::json!({ "sub": user(spec.user) });
        if let Some(s) = spec.session {
            claims["sid"] = session(spec.user, s).into();
        }
        if let Some(patterns) = self.allowed(spec.user) {
            claims["channels"] = patterns.iter().map(|&p| PATTERNS[p]).collect::<Vec<_>>().into();
        }
        if spec.expires {
            claims["exp"] = (now_secs() + 3600).into();
        }
        claims
    }

    fn registered(&self) -> usize {
        self.connections.iter().filter(|c| c.registered).count()
    }

    fn matches(&self, audience: &Audience, tab: usize, client_id: &str, channels: &BTreeSet<usize>) -> bool {
        let spec = &self.tabs[tab].spec;
        match audience {
            Audience::All => true,
            Audience::User(u) => spec.user == *u,
            Audience::Users(users) => users.contains(&spec.user),
            Audience::Session(u, s) => spec.user == *u && spec.session == Some(*s),
            Audience::Channel(c) => channels.contains(c),
            Audience::Client(id) => id.as_deref() == Some(client_id),
        }
    }

    /// Checks (or learns) that the id assigned to event `index` is its
    /// sequence number.
    fn check_seq(&mut self, index: isize, id: &str) -> Result<(), TestCaseError> {
        let seq: i128 = id
            .parse()
            .map_err(|_| TestCaseError::fail(format!("assigned id {id:?} is not a number")))?;
        match self.base {
            Some(base) => prop_assert_eq!(seq, base + index as i128, "id {} of event {}", id, index),
            None => self.base = Some(seq - index as i128),
        }
        Ok(())
    }

    /// Whether event `k` is kept for replay: an event for one client never
    /// is (it can never be replayed), so it takes no place in the history.
    fn kept(&self, k: usize) -> bool {
        !matches!(self.events[k].audience, Audience::Client(_))
    }

    /// The newest kept event evicted from the history (`-1`: none): ids of
    /// events before it are no resume points any more.
    fn evicted(&self) -> isize {
        let kept: Vec<usize> = (0..self.events.len()).filter(|&k| self.kept(k)).collect();
        kept.len()
            .checked_sub(self.history + 1)
            .map_or(-1, |at| kept[at] as isize)
    }

    /// Which event a `reset` carrying `id` points at, the model expecting
    /// `head`. Its id is the head of the history: the publisher's id of the
    /// newest kept event when that one is retained and has one, else the
    /// newest sequence number.
    fn reset_index(&mut self, head: isize, id: &str) -> Result<isize, TestCaseError> {
        let newest_kept = usize::try_from(head)
            .ok()
            .and_then(|head| (0..=head).rev().find(|&k| self.kept(k)));
        let custom_head = newest_kept
            .filter(|_| self.history > 0)
            .filter(|&k| self.events[k].custom);
        if let Some(k) = custom_head {
            prop_assert_eq!(id, self.events[k].id.as_str(), "the reset names the newest kept event");
            return Ok(head);
        }
        let seq: i128 = id
            .parse()
            .map_err(|_| TestCaseError::fail(format!("reset id {id:?} is not a sequence number")))?;
        // Before any assigned id showed the sequence, the reset the model
        // expects tells it.
        let base = *self.base.get_or_insert(seq - head as i128);
        Ok(isize::try_from(seq - base).expect("a small index"))
    }

    /// Where a resuming client starts, as the model says: after event
    /// `Some(index)`, or `None` for a reset.
    fn resume(&self, last: &LastId) -> Option<isize> {
        let evicted = self.evicted();
        match last {
            // A publisher's id of a kept event is known while it is retained.
            LastId::Event(k) if self.events[*k].custom && self.kept(*k) => {
                (*k as isize > evicted).then_some(*k as isize)
            }
            // A publisher's id of an event for one client is marked: known
            // among the newest `history` such marks, until a kept event
            // after it is evicted.
            LastId::Event(k) if self.events[*k].custom => {
                let newer = (*k..self.events.len())
                    .filter(|&j| self.events[j].custom && !self.kept(j))
                    .count();
                (self.history > 0 && newer <= self.history && *k as isize > evicted).then_some(*k as isize)
            }
            // A sequence number is a resume point from the newest evicted
            // event on: nothing after it is missing.
            LastId::Event(k) => (*k as isize >= evicted).then_some(*k as isize),
            LastId::Head { index, .. } => (*index >= evicted).then_some(*index),
        }
    }

    fn last_id_text(&self, last: &LastId) -> String {
        match last {
            LastId::Event(k) => self.events[*k].id.clone(),
            LastId::Head { text, .. } => text.clone(),
        }
    }

    async fn open(&mut self, spec: TabSpec) -> Result<(), TestCaseError> {
        let mut spec = spec;
        if !spec.trespass {
            let allowed = self.allowed(spec.user).cloned();
            spec.channels.retain(|&c| allows(allowed.as_ref(), CHANNELS[c]));
        }
        let token = sign(&self.claims(&spec), SECRET);
        self.tabs.push(Tab {
            spec,
            token,
            last: None,
            current: None,
        });
        self.connect(self.tabs.len() - 1, &LastMode::Without, false).await
    }

    async fn connect(&mut self, tab: usize, mode: &LastMode, id_in_query: bool) -> Result<(), TestCaseError> {
        // What the client sends, and what the model makes of it: `Some(None)`
        // is an id that is not held.
        let last: Option<(String, Option<LastId>)> = match mode {
            LastMode::Seen => self.tabs[tab]
                .last
                .clone()
                .map(|last| (self.last_id_text(&last), Some(last))),
            LastMode::Stolen(k) => k
                .of(self.events.len())
                .map(|k| (self.events[k].id.clone(), Some(LastId::Event(k)))),
            LastMode::Garbage(n) => Some((garbage(*n), None)),
            LastMode::Padded(k) => k
                .of(self.events.len())
                .map(|k| (format!("0{}", self.events[k].id), None)),
            LastMode::Without => None,
        };
        let spec = self.tabs[tab].spec.clone();
        let token = self.tabs[tab].token.clone();
        let mut query: Vec<String> = spec
            .channels
            .iter()
            .map(|&c| format!("channel={}", CHANNELS[c]))
            .collect();
        if let Some(other) = spec.spoof {
            query.push(format!("userId={}", user(other)));
            query.push(format!("sessionId={}", session(other, 0)));
        }
        if spec.device {
            query.push("device=phone".to_owned());
        }
        if let TokenPlace::Query = spec.place {
            query.push(format!("access_token={token}"));
        }
        let mut headers: Vec<(&str, String)> = Vec::new();
        match spec.place {
            TokenPlace::Bearer => headers.push(("authorization", format!("Bearer {token}"))),
            TokenPlace::Cookie => headers.push(("cookie", format!("theme=dark; sse_token={token}"))),
            TokenPlace::Query => {}
        }
        if let Some((text, _)) = &last {
            if id_in_query {
                query.push(format!("lastEventId={text}"));
            } else {
                headers.push(("last-event-id", text.clone()));
            }
        }
        let uri = format!("/api/sse?{}", query.join("&"));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let parts = request(Method::GET, &uri, &headers);
        let before = self.manager.connection_count();
        let reply = self.endpoints.connect(&parts).await;

        let allowed = self.allowed(spec.user).cloned();
        let refused = spec.channels.iter().find(|&&c| !allows(allowed.as_ref(), CHANNELS[c]));
        let connection = match (reply, refused) {
            (SseReply::Response(response), Some(&c)) => {
                prop_assert_eq!(response.status(), StatusCode::FORBIDDEN);
                prop_assert_eq!(&json_body(&response)["channel"], CHANNELS[c]);
                prop_assert_eq!(
                    self.manager.connection_count(),
                    before,
                    "a refused connection is not registered"
                );
                return Ok(());
            }
            (SseReply::Stream(connection), None) => connection,
            (SseReply::Stream(_), Some(&c)) => {
                return Err(TestCaseError::fail(format!(
                    "{} joined {} with {:?}",
                    user(spec.user),
                    CHANNELS[c],
                    self.allowed(spec.user)
                )));
            }
            (SseReply::Response(response), None) => {
                return Err(TestCaseError::fail(format!(
                    "refused with {}: {:?}",
                    response.status(),
                    response.body()
                )));
            }
            (other, _) => return Err(TestCaseError::fail(format!("unexpected reply {other:?}"))),
        };
        let client_id = connection.client_id().to_string();

        // Who the manager thinks it is: the token's identity, never the query's.
        let info = self
            .manager
            .connection_info(&client_id)
            .ok_or_else(|| TestCaseError::fail("an accepted connection is registered"))?;
        prop_assert_eq!(info.user_id, Some(user(spec.user)));
        prop_assert_eq!(info.session_id, spec.session.map(|s| session(spec.user, s)));
        let names: BTreeSet<String> = spec.channels.iter().map(|&c| CHANNELS[c].to_owned()).collect();
        prop_assert_eq!(&info.channels, &names);
        // The query's other parameters are the client's word, never the
        // server's metadata.
        prop_assert!(info.metadata.is_empty());
        let keys: Vec<&str> = info.client_metadata.keys().map(String::as_str).collect();
        prop_assert_eq!(keys, if spec.device { vec!["device"] } else { vec![] });

        let n = self.events.len();
        let expected = match last.map(|(_, last)| last.and_then(|last| self.resume(&last))) {
            None => Vec::new(),
            Some(None) => vec![Expect::Reset(n as isize - 1)],
            Some(Some(after)) => {
                // Every kept event after a resume point is retained.
                let first = usize::try_from(after + 1).unwrap_or(0);
                (first..n)
                    .filter(|&j| self.kept(j))
                    .filter(|&j| self.matches(&self.events[j].audience, tab, &client_id, &spec.channels))
                    .map(Expect::Event)
                    .collect()
            }
        };
        self.connections.push(Tracked {
            tab,
            client_id,
            connection: Some(connection),
            registered: true,
            connected_channels: spec.channels.clone(),
            channels: spec.channels,
            expected,
        });
        self.tabs[tab].current = Some(self.connections.len() - 1);
        Ok(())
    }

    /// The client of connection `at` reads what it was sent and drops the
    /// connection, losing the last `lost` events it received (they were in
    /// flight): its `Last-Event-ID` is that of the last one it kept.
    fn finish(&mut self, at: usize, lost: usize) -> Result<(), TestCaseError> {
        let mut connection = self.connections[at]
            .connection
            .take()
            .ok_or_else(|| TestCaseError::fail("finished twice"))?;
        let events = parse(drain(&mut connection));
        drop(connection);
        let tab = self.connections[at].tab;
        let spec = self.tabs[tab].spec.clone();
        let client_id = self.connections[at].client_id.clone();
        prop_assert!(
            !self.manager.has_connection(&client_id),
            "a dropped connection is unregistered"
        );
        self.connections[at].registered = false;
        self.tabs[tab].current = None;

        let (connected, rest) = events
            .split_first()
            .ok_or_else(|| TestCaseError::fail("a connection opens with `connected`"))?;
        prop_assert_eq!(connected.event.as_str(), "connected");
        let payload: serde_json::Value = serde_json::from_str(&connected.data).expect("connected data is JSON");
        prop_assert_eq!(payload["clientId"].as_str(), Some(client_id.as_str()));
        prop_assert_eq!(payload["userId"].as_str().map(str::to_owned), Some(user(spec.user)));
        prop_assert_eq!(
            payload["sessionId"].as_str().map(str::to_owned),
            spec.session.map(|s| session(spec.user, s))
        );
        let announced: BTreeSet<String> = serde_json::from_value(payload["channels"].clone()).expect("channels");
        let names: BTreeSet<String> = self.connections[at]
            .connected_channels
            .iter()
            .map(|&c| CHANNELS[c].to_owned())
            .collect();
        prop_assert_eq!(announced, names);

        let mut received = Vec::with_capacity(rest.len());
        for (position, event) in rest.iter().enumerate() {
            match event.event.as_str() {
                "reset" => {
                    prop_assert_eq!(event.data.as_str(), r#"{"reason":"last-event-id-unknown"}"#);
                    let head = match self.connections[at].expected.get(position) {
                        Some(Expect::Reset(index)) => *index,
                        _ => self.events.len() as isize - 1,
                    };
                    received.push(Expect::Reset(self.reset_index(head, &event.id)?));
                }
                "e" => {
                    let index: usize = event.data.parse().expect("data is the event index");
                    prop_assert!(index < self.events.len(), "event {} was never published", index);
                    prop_assert_eq!(&event.id, &self.events[index].id);
                    received.push(Expect::Event(index));
                }
                other => return Err(TestCaseError::fail(format!("unexpected event {other:?}"))),
            }
        }
        let tracked = &self.connections[at];
        prop_assert_eq!(
            &received,
            &tracked.expected,
            "received by {} ({:?}), history {}, allowed {:?}",
            client_id,
            spec,
            self.history,
            self.allowed(spec.user)
        );

        let kept = received.len().saturating_sub(lost);
        for (expect, event) in received.iter().zip(rest).take(kept) {
            self.tabs[tab].last = Some(match expect {
                Expect::Event(k) => LastId::Event(*k),
                Expect::Reset(index) => match self.events.iter().position(|e| e.id == event.id) {
                    Some(k) => LastId::Event(k),
                    None => LastId::Head {
                        index: *index,
                        text: event.id.clone(),
                    },
                },
            });
        }
        Ok(())
    }

    fn publisher(&self, method: Method, path: &str) -> Parts {
        let bearer = format!("Bearer {PUBLISH_TOKEN}");
        request(method, path, &[("authorization", &bearer)])
    }

    async fn publish(&mut self, target: &TargetSpec, via: Via, custom_id: bool) -> Result<(), TestCaseError> {
        let index = self.events.len();
        let audience = match target {
            TargetSpec::All => Audience::All,
            TargetSpec::User(u) => Audience::User(*u),
            TargetSpec::Users(users) => Audience::Users(users.clone()),
            TargetSpec::Session(u, s) => Audience::Session(*u, *s),
            TargetSpec::Channel(c) => Audience::Channel(*c),
            TargetSpec::Client(k) => Audience::Client(
                k.of(self.connections.len())
                    .map(|k| self.connections[k].client_id.clone()),
            ),
        };
        let custom = custom_id.then(|| format!("evt-{index}"));
        let (id, delivered) = match via {
            Via::Manager => {
                let mut event = Event::builder().event("e").data(index.to_string());
                if let Some(id) = &custom {
                    event = event.id(id.clone());
                }
                let event = event.build().expect("a valid event");
                let delivery = self
                    .manager
                    .send(audience.real(), event)
                    .await
                    .expect("the manager runs");
                (delivery.id.expect("a named event gets an id"), delivery.delivered)
            }
            Via::Api => {
                let mut body = audience.json();
                body["event"] = "e".into();
                body["data"] = index.to_string().into();
                if let Some(id) = &custom {
                    body["id"] = id.clone().into();
                }
                let parts = self.publisher(Method::POST, "/api/sse/publish");
                let response = self
                    .endpoints
                    .api(&parts, "publish", Bytes::from(body.to_string()))
                    .await;
                prop_assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
                let answer = json_body(&response);
                let id = answer["id"].as_str().expect("an id").to_owned();
                let delivered = answer["delivered"].as_u64().expect("a count");
                (id, usize::try_from(delivered).expect("a small count"))
            }
        };
        match &custom {
            Some(custom) => prop_assert_eq!(&id, custom),
            None => self.check_seq(index as isize, &id)?,
        }
        let recipients: Vec<usize> = (0..self.connections.len())
            .filter(|&k| {
                let c = &self.connections[k];
                c.registered && self.matches(&audience, c.tab, &c.client_id, &c.channels)
            })
            .collect();
        prop_assert_eq!(delivered, recipients.len(), "delivered count for {:?}", audience);
        for k in recipients {
            self.connections[k].expected.push(Expect::Event(index));
        }
        self.events.push(Published {
            id,
            custom: custom.is_some(),
            audience,
        });
        Ok(())
    }

    async fn kick(&mut self, at: usize) -> Result<(), TestCaseError> {
        let path = format!("connections/{}", self.connections[at].client_id);
        let parts = self.publisher(Method::DELETE, &format!("/api/sse/{path}"));
        let response = self.endpoints.api(&parts, &path, Bytes::new()).await;
        if self.connections[at].registered {
            prop_assert_eq!(response.status(), StatusCode::NO_CONTENT);
            self.connections[at].registered = false;
        } else {
            prop_assert_eq!(response.status(), StatusCode::NOT_FOUND);
        }
        Ok(())
    }

    fn kick_user(&mut self, u: u8) -> Result<(), TestCaseError> {
        let closed = self.manager.disconnect_user(&user(u));
        let mut expected = 0;
        for c in &mut self.connections {
            if c.registered && self.tabs[c.tab].spec.user == u {
                c.registered = false;
                expected += 1;
            }
        }
        prop_assert_eq!(closed, expected);
        prop_assert!(!self.manager.is_user_connected(&user(u)));
        Ok(())
    }

    async fn subscribe(&mut self, at: usize, channel: usize, subscribe: bool) -> Result<(), TestCaseError> {
        let path = if subscribe { "subscribe" } else { "unsubscribe" };
        let body = serde_json::json!({ "clientId": self.connections[at].client_id, "channel": CHANNELS[channel] });
        let parts = self.publisher(Method::POST, &format!("/api/sse/{path}"));
        let response = self.endpoints.api(&parts, path, Bytes::from(body.to_string())).await;
        let user = self.tabs[self.connections[at].tab].spec.user;
        let may = allows(self.allowed(user), CHANNELS[channel]);
        let tracked = &mut self.connections[at];
        if !tracked.registered {
            prop_assert_eq!(response.status(), StatusCode::NOT_FOUND);
        } else if !subscribe {
            prop_assert_eq!(response.status(), StatusCode::OK);
            tracked.channels.remove(&channel);
        } else if may {
            prop_assert_eq!(response.status(), StatusCode::OK);
            tracked.channels.insert(channel);
        } else {
            prop_assert_eq!(response.status(), StatusCode::FORBIDDEN);
            prop_assert_eq!(&json_body(&response)["channel"], CHANNELS[channel]);
        }
        Ok(())
    }

    async fn bad_connect(&mut self, kind: BadToken, u: u8) -> Result<(), TestCaseError> {
        let valid = serde_json::json!({ "sub": user(u) });
        let token = match kind {
            BadToken::Missing => None,
            BadToken::Forged => Some(sign(&valid, b"another secret")),
            BadToken::Expired => Some(sign(
                &serde_json::json!({ "sub": user(u), "exp": now_secs() - 60 }),
                SECRET,
            )),
            BadToken::EmptySub => Some(sign(&serde_json::json!({ "sub": "" }), SECRET)),
            BadToken::Garbled => Some("not.a.jwt".to_owned()),
            BadToken::Tampered => {
                let genuine = sign(&valid, SECRET);
                let other = sign(&serde_json::json!({ "sub": user((u + 1) % USERS) }), SECRET);
                let parts: Vec<&str> = genuine.split('.').collect();
                let claims = other.split('.').nth(1).expect("a JWT has three parts");
                Some(format!("{}.{claims}.{}", parts[0], parts[2]))
            }
        };
        let uri = format!("/api/sse?channel=news&userId={}", user(u));
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
        let before = self.manager.connection_count();
        match self.endpoints.connect(&request(Method::GET, &uri, &headers)).await {
            SseReply::Response(response) => prop_assert_eq!(response.status(), StatusCode::UNAUTHORIZED),
            other => return Err(TestCaseError::fail(format!("{kind:?} token let in: {other:?}"))),
        }
        prop_assert_eq!(self.manager.connection_count(), before);
        Ok(())
    }

    async fn forged_publish(&mut self, u: u8) -> Result<(), TestCaseError> {
        let token = sign(&serde_json::json!({ "sub": user(u) }), SECRET);
        let bearer = format!("Bearer {token}");
        let parts = request(Method::POST, "/api/sse/publish", &[("authorization", &bearer)]);
        let published = self.manager.stats().events_published;
        let body = serde_json::json!({ "event": "e", "data": "forged" }).to_string();
        let response = self.endpoints.api(&parts, "publish", Bytes::from(body)).await;
        prop_assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        prop_assert_eq!(self.manager.stats().events_published, published);
        Ok(())
    }

    async fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Open(spec) => self.open(spec).await?,
            Op::Reconnect {
                tab,
                mode,
                id_in_query,
                lost,
            } => {
                if let Some(tab) = tab.of(self.tabs.len()) {
                    if let Some(at) = self.tabs[tab].current {
                        self.finish(at, lost)?;
                    }
                    self.connect(tab, &mode, id_in_query).await?;
                }
            }
            Op::Close { tab, lost } => {
                if let Some(at) = tab.of(self.tabs.len()).and_then(|tab| self.tabs[tab].current) {
                    self.finish(at, lost)?;
                }
            }
            Op::Publish { target, via, custom_id } => self.publish(&target, via, custom_id).await?,
            Op::Kick(k) => {
                if let Some(at) = k.of(self.connections.len()) {
                    self.kick(at).await?;
                }
            }
            Op::KickUser(u) => self.kick_user(u)?,
            Op::Subscribe {
                connection,
                channel,
                subscribe,
            } => {
                if let Some(at) = connection.of(self.connections.len()) {
                    self.subscribe(at, channel, subscribe).await?;
                }
            }
            Op::BadConnect(kind, u) => self.bad_connect(kind, u).await?,
            Op::ForgedPublish(u) => self.forged_publish(u).await?,
        }
        prop_assert_eq!(self.manager.connection_count(), self.registered());
        Ok(())
    }
}

fn run(
    allowed: Vec<Option<BTreeSet<usize>>>,
    history: usize,
    initial: Vec<TabSpec>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    common::on_tokio(async move {
        let manager = SseManager::builder()
            .configure(|c| c.heartbeat_interval(None).history_size(history))
            .build()
            .expect("valid configuration");
        let endpoints = SseEndpoints::new(manager.clone(), JwtAuthenticator::hs256(SECRET))
            .publish_authorizer(BearerToken::new(PUBLISH_TOKEN));
        let mut world = World {
            manager: manager.clone(),
            endpoints,
            allowed,
            history,
            tabs: Vec::new(),
            connections: Vec::new(),
            events: Vec::new(),
            base: None,
        };
        for spec in initial {
            world.apply(Op::Open(spec)).await?;
        }
        for op in ops {
            world.apply(op).await?;
        }
        for tab in 0..world.tabs.len() {
            if let Some(at) = world.tabs[tab].current {
                world.finish(at, 0)?;
            }
        }
        prop_assert_eq!(manager.stats().events_published, world.events.len() as u64);
        drop(world);
        prop_assert_eq!(manager.connection_count(), 0);
        prop_assert!(manager.stats().channels.is_empty());
        for u in 0..USERS {
            prop_assert!(!manager.is_user_connected(&user(u)));
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_event_reaches_a_connection_it_was_not_aimed_at(
        allowed in allowed_strategy(),
        history in prop_oneof![1 => Just(0usize), 3 => 1..8usize, 2 => Just(1000usize)],
        initial in prop::collection::vec(tab_strategy(), 1..6),
        ops in prop::collection::vec(op_strategy(), 1..80),
    ) {
        run(allowed, history, initial, ops)?;
    }
}

/// A fixed scenario, readable when it fails: two users with different
/// channel rights, a trespasser, replay after a drop and after a stolen id.
#[test]
fn replay_stays_within_the_audience() {
    let tab = |user: u8, session: Option<u8>, channels: &[usize], trespass: bool| TabSpec {
        user,
        session,
        channels: channels.iter().copied().collect(),
        trespass,
        place: TokenPlace::Bearer,
        expires: true,
        spoof: Some((user + 1) % USERS),
        device: false,
    };
    // u0 may join news and orders/*; u1 only news; u2 anything; u3 nothing.
    let allowed = vec![
        Some([0, 1].into_iter().collect()),
        Some([0].into_iter().collect()),
        None,
        Some(BTreeSet::new()),
    ];
    let publish = |target: TargetSpec, via: Via| Op::Publish {
        target,
        via,
        custom_id: false,
    };
    let initial = vec![
        tab(0, Some(0), &[0, 1], false),
        tab(1, Some(0), &[0], false),
        // Asks for orders/1 without the right: refused with 403.
        tab(1, None, &[1], true),
        tab(2, None, &[5], false),
    ];
    let ops = vec![
        publish(TargetSpec::Channel(1), Via::Api),
        publish(TargetSpec::User(0), Via::Manager),
        Op::Close { tab: Pick(0), lost: 1 },
        publish(TargetSpec::Session(0, 0), Via::Api),
        publish(TargetSpec::Session(1, 0), Via::Api),
        publish(TargetSpec::Users(vec![1, 2, NOBODY]), Via::Manager),
        publish(TargetSpec::Channel(5), Via::Api),
        publish(TargetSpec::All, Via::Api),
        Op::Reconnect {
            tab: Pick(0),
            mode: LastMode::Seen,
            id_in_query: false,
            lost: 0,
        },
        // u1 resumes from an event sent to u0 only: still nothing of u0's.
        Op::Reconnect {
            tab: Pick(1),
            mode: LastMode::Stolen(Pick(1)),
            id_in_query: true,
            lost: 0,
        },
        Op::Subscribe {
            connection: Pick(2),
            channel: 1,
            subscribe: true,
        },
        Op::KickUser(2),
        publish(TargetSpec::Client(Pick(0)), Via::Api),
        Op::BadConnect(BadToken::Tampered, 0),
        Op::ForgedPublish(0),
        publish(TargetSpec::All, Via::Manager),
    ];
    run(allowed, 1000, initial, ops).expect("the scenario holds");
}
