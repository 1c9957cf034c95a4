//! Targeting: every connection receives exactly the events aimed at it, checked against a model.
//!
//! These tests build the manager on the current Tokio runtime (default feature `tokio`).
#![cfg(feature = "tokio")]

mod common;

use std::collections::BTreeSet;

use proptest::prelude::*;
use sse_core::{ConnectOptions, Connection, Event, SseManager, SubscribeError, Target};

use common::{drain, parse};

const USERS: u8 = 4;
const SESSIONS: u8 = 3;
const CHANNELS: u8 = 4;
/// Names one past the last of each kind: a user, session or channel no
/// connection ever has.
const NOBODY: u8 = 9;

fn user(n: u8) -> String {
    format!("u{n}")
}

fn session(n: u8) -> String {
    format!("s{n}")
}

fn channel(n: u8) -> String {
    format!("c{n}")
}

/// Picks one of the connections opened so far (modulo their number).
#[derive(Debug, Clone, Copy)]
struct Pick(usize);

impl Pick {
    fn of(self, len: usize) -> usize {
        self.0 % len
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    any::<usize>().prop_map(Pick)
}

/// Who a connection is, in the model.
#[derive(Debug, Clone)]
struct Spec {
    user: Option<u8>,
    session: Option<u8>,
    channels: BTreeSet<u8>,
    gold: bool,
}

/// A predicate the model can evaluate too.
#[derive(Debug, Clone)]
enum FilterSpec {
    /// Metadata `tier` is `gold`.
    Gold,
    /// Neither a user nor a session.
    Anonymous,
    /// Subscribed to at least this many channels (changes with subscribe).
    ChannelsAtLeast(usize),
}

#[derive(Debug, Clone)]
enum TargetSpec {
    All,
    User(u8),
    Users(Vec<u8>),
    Session(u8),
    Channel(u8),
    /// A connection ever opened in this run, possibly dropped since.
    Client(Pick),
    UnknownClient,
    Filter(FilterSpec),
}

/// Users and connections a send excludes from its target.
#[derive(Debug, Clone)]
struct ExceptSpec {
    users: Vec<u8>,
    /// Connections ever opened in this run, possibly dropped since.
    clients: Vec<Pick>,
}

#[derive(Debug, Clone)]
enum Op {
    Connect(Spec),
    Send(TargetSpec),
    /// A send to the target minus the exclusions.
    SendExcept(TargetSpec, ExceptSpec),
    Subscribe(Pick, u8),
    Unsubscribe(Pick, u8),
    /// Drops a connection (checked first: it received what it should have).
    Drop(Pick),
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        prop::option::of(0..USERS),
        prop::option::of(0..SESSIONS),
        prop::collection::btree_set(0..CHANNELS, 0..=3),
        any::<bool>(),
    )
        .prop_map(|(user, session, channels, gold)| Spec {
            user,
            session,
            channels,
            gold,
        })
}

fn target_strategy() -> impl Strategy<Value = TargetSpec> {
    prop_oneof![
        Just(TargetSpec::All),
        prop_oneof![0..USERS, Just(NOBODY)].prop_map(TargetSpec::User),
        // Duplicates and unknown users included: each connection still gets one copy.
        prop::collection::vec(prop_oneof![0..USERS, Just(NOBODY)], 0..5).prop_map(TargetSpec::Users),
        prop_oneof![0..SESSIONS, Just(NOBODY)].prop_map(TargetSpec::Session),
        prop_oneof![0..CHANNELS, Just(NOBODY)].prop_map(TargetSpec::Channel),
        pick().prop_map(TargetSpec::Client),
        Just(TargetSpec::UnknownClient),
        prop_oneof![
            Just(FilterSpec::Gold),
            Just(FilterSpec::Anonymous),
            (1usize..4).prop_map(FilterSpec::ChannelsAtLeast),
        ]
        .prop_map(TargetSpec::Filter),
    ]
}

fn except_strategy() -> impl Strategy<Value = ExceptSpec> {
    (
        prop::collection::vec(prop_oneof![0..USERS, Just(NOBODY)], 0..3),
        prop::collection::vec(pick(), 0..3),
    )
        .prop_map(|(users, clients)| ExceptSpec { users, clients })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => spec_strategy().prop_map(Op::Connect),
        8 => target_strategy().prop_map(Op::Send),
        4 => (target_strategy(), except_strategy()).prop_map(|(t, e)| Op::SendExcept(t, e)),
        2 => (pick(), prop_oneof![0..CHANNELS, Just(NOBODY)]).prop_map(|(c, ch)| Op::Subscribe(c, ch)),
        2 => (pick(), 0..CHANNELS).prop_map(|(c, ch)| Op::Unsubscribe(c, ch)),
        1 => pick().prop_map(Op::Drop),
    ]
}

/// One connection of the run: the real one (until dropped) and the model.
struct Tracked {
    connection: Option<Connection>,
    client_id: String,
    spec: Spec,
    /// Indexes of the events the model says it must receive, in order.
    expected: Vec<usize>,
}

impl Tracked {
    fn live(&self) -> bool {
        self.connection.is_some()
    }

    fn matches(&self, target: &TargetSpec, all: &[Tracked]) -> bool {
        if !self.live() {
            return false;
        }
        let spec = &self.spec;
        match target {
            TargetSpec::All => true,
            TargetSpec::User(u) => spec.user == Some(*u),
            TargetSpec::Users(users) => spec.user.is_some_and(|u| users.contains(&u)),
            TargetSpec::Session(s) => spec.session == Some(*s),
            TargetSpec::Channel(c) => spec.channels.contains(c),
            TargetSpec::Client(index) => all[index.of(all.len())].client_id == self.client_id,
            TargetSpec::UnknownClient => false,
            TargetSpec::Filter(FilterSpec::Gold) => spec.gold,
            TargetSpec::Filter(FilterSpec::Anonymous) => spec.user.is_none() && spec.session.is_none(),
            TargetSpec::Filter(FilterSpec::ChannelsAtLeast(n)) => spec.channels.len() >= *n,
        }
    }

    fn excluded(&self, except: &ExceptSpec, all: &[Tracked]) -> bool {
        self.spec.user.is_some_and(|u| except.users.contains(&u))
            || except
                .clients
                .iter()
                .any(|pick| all[pick.of(all.len())].client_id == self.client_id)
    }
}

fn real_target(target: &TargetSpec, all: &[Tracked]) -> Target {
    match target {
        TargetSpec::All => Target::All,
        TargetSpec::User(u) => Target::user(user(*u)),
        TargetSpec::Users(users) => Target::users(users.iter().map(|u| user(*u))),
        TargetSpec::Session(s) => Target::session(session(*s)),
        TargetSpec::Channel(c) => Target::channel(channel(*c)),
        TargetSpec::Client(index) => Target::client(all[index.of(all.len())].client_id.as_str()),
        TargetSpec::UnknownClient => Target::client("00000000-0000-4000-8000-000000000000"),
        TargetSpec::Filter(FilterSpec::Gold) => {
            Target::filter(|info| info.metadata.get("tier").is_some_and(|tier| tier == "gold"))
        }
        TargetSpec::Filter(FilterSpec::Anonymous) => {
            Target::filter(|info| info.user_id.is_none() && info.session_id.is_none())
        }
        TargetSpec::Filter(FilterSpec::ChannelsAtLeast(n)) => {
            let n = *n;
            Target::filter(move |info| info.channels.len() >= n)
        }
    }
}

fn options(spec: &Spec) -> ConnectOptions {
    let mut options = ConnectOptions::new()
        .channels(spec.channels.iter().map(|c| channel(*c)))
        .metadata("tier", if spec.gold { "gold" } else { "basic" });
    if let Some(u) = spec.user {
        options = options.user(user(u));
    }
    if let Some(s) = spec.session {
        options = options.session(session(s));
    }
    options
}

/// Checks what `tracked` received against the model.
fn check_received(tracked: &mut Tracked, ids: &[String]) -> Result<(), TestCaseError> {
    let connection = tracked
        .connection
        .as_mut()
        .ok_or_else(|| TestCaseError::fail("checked a dropped connection"))?;
    let events = parse(drain(connection));
    prop_assert!(!events.is_empty(), "every connection first gets `connected`");
    prop_assert_eq!(events[0].event.as_str(), "connected");
    let connected: serde_json::Value = serde_json::from_str(&events[0].data).expect("connected data is JSON");
    prop_assert_eq!(connected["clientId"].as_str(), Some(tracked.client_id.as_str()));

    let received: Vec<usize> = events[1..]
        .iter()
        .map(|event| {
            assert_eq!(event.event, "e");
            event.data.parse::<usize>().expect("data is the event index")
        })
        .collect();
    prop_assert_eq!(&received, &tracked.expected, "events received by {:?}", tracked.spec);
    for (event, index) in events[1..].iter().zip(&received) {
        prop_assert_eq!(&event.id, &ids[*index]);
    }
    Ok(())
}

fn run(initial: Vec<Spec>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    common::on_tokio(async move {
        let manager = SseManager::builder()
            .configure(|c| c.heartbeat_interval(None))
            .build()
            .expect("valid configuration");
        let mut all: Vec<Tracked> = Vec::new();
        let mut ids: Vec<String> = Vec::new();

        let connect = |spec: Spec| {
            let manager = manager.clone();
            async move {
                let connection = manager.connect(options(&spec)).await.expect("connection accepted");
                Tracked {
                    client_id: connection.client_id().to_string(),
                    connection: Some(connection),
                    spec,
                    expected: Vec::new(),
                }
            }
        };
        for spec in initial {
            all.push(connect(spec).await);
        }

        for op in ops {
            let op = match op {
                Op::Send(target) => Op::SendExcept(
                    target,
                    ExceptSpec {
                        users: Vec::new(),
                        clients: Vec::new(),
                    },
                ),
                other => other,
            };
            match op {
                Op::Connect(spec) => all.push(connect(spec).await),
                Op::SendExcept(target, except) => {
                    let index = ids.len();
                    let real = real_target(&target, &all)
                        .except_users(except.users.iter().map(|u| user(*u)))
                        .except_clients(except.clients.iter().map(|p| all[p.of(all.len())].client_id.as_str()));
                    let event = Event::named("e", index.to_string()).expect("valid name");
                    let delivery = manager.send(real, event).await.expect("manager is running");
                    let recipients: Vec<usize> = (0..all.len())
                        .filter(|&i| all[i].matches(&target, &all) && !all[i].excluded(&except, &all))
                        .collect();
                    for &i in &recipients {
                        all[i].expected.push(index);
                    }
                    prop_assert_eq!(
                        delivery.delivered,
                        recipients.len(),
                        "delivered count for {:?} except {:?}",
                        target,
                        except
                    );
                    ids.push(delivery.id.expect("a named event dispatches and gets an id"));
                }
                Op::Send(_) => unreachable!("a send without exclusions is rewritten above"),
                Op::Subscribe(index, ch) => {
                    let at = index.of(all.len());
                    let tracked = &mut all[at];
                    let result = manager.subscribe(&tracked.client_id, &channel(ch));
                    if tracked.live() {
                        let added = tracked.spec.channels.insert(ch);
                        prop_assert_eq!(result, Ok(added));
                    } else {
                        prop_assert!(matches!(result, Err(SubscribeError::UnknownClient(_))));
                    }
                }
                Op::Unsubscribe(index, ch) => {
                    let at = index.of(all.len());
                    let tracked = &mut all[at];
                    let result = manager.unsubscribe(&tracked.client_id, &channel(ch));
                    if tracked.live() {
                        let removed = tracked.spec.channels.remove(&ch);
                        prop_assert_eq!(result, Ok(removed));
                    } else {
                        prop_assert!(matches!(result, Err(SubscribeError::UnknownClient(_))));
                    }
                }
                Op::Drop(index) => {
                    let at = index.of(all.len());
                    let tracked = &mut all[at];
                    if tracked.live() {
                        check_received(tracked, &ids)?;
                        tracked.connection = None;
                        prop_assert!(!manager.has_connection(&tracked.client_id));
                    }
                }
            }
        }

        let live = all.iter().filter(|t| t.live()).count();
        prop_assert_eq!(manager.connection_count(), live);
        for tracked in all.iter_mut().filter(|t| t.live()) {
            check_received(tracked, &ids)?;
            let info = manager
                .connection_info(&tracked.client_id)
                .expect("live connection is registered");
            let channels: BTreeSet<String> = tracked.spec.channels.iter().map(|c| channel(*c)).collect();
            prop_assert_eq!(info.channels, channels);
        }
        // The channel index agrees with the model after every subscription change.
        for c in 0..CHANNELS {
            let subscribed = all.iter().filter(|t| t.live() && t.spec.channels.contains(&c)).count();
            prop_assert_eq!(manager.channel_connections(&channel(c)).len(), subscribed);
        }
        let stats = manager.stats();
        prop_assert_eq!(stats.events_published, ids.len() as u64);
        drop(all);
        prop_assert_eq!(manager.connection_count(), 0);
        prop_assert!(manager.stats().channels.is_empty());
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn each_connection_receives_exactly_its_events(
        initial in prop::collection::vec(spec_strategy(), 1..8),
        ops in prop::collection::vec(op_strategy(), 1..60),
    ) {
        run(initial, ops)?;
    }
}

/// A connection of the fixed scenarios.
fn spec(user: Option<u8>, session: Option<u8>, channels: &[u8], gold: bool) -> Spec {
    Spec {
        user,
        session,
        channels: channels.iter().copied().collect(),
        gold,
    }
}

/// A fixed scenario, so a regression shows up with a readable failure even
/// before the property shrinks.
#[test]
fn targets_reach_their_audience() {
    let initial = vec![
        spec(Some(0), Some(0), &[0], true),
        spec(Some(0), Some(1), &[1], false),
        spec(Some(1), None, &[0, 1], false),
        spec(None, None, &[], true),
    ];
    let ops = vec![
        Op::Send(TargetSpec::All),
        Op::Send(TargetSpec::User(0)),
        Op::Send(TargetSpec::Users(vec![0, 1, 1, NOBODY])),
        Op::Send(TargetSpec::Session(1)),
        Op::Send(TargetSpec::Channel(0)),
        Op::Subscribe(Pick(3), 0),
        Op::Send(TargetSpec::Channel(0)),
        Op::Unsubscribe(Pick(0), 0),
        Op::Send(TargetSpec::Channel(0)),
        Op::Send(TargetSpec::Filter(FilterSpec::Gold)),
        Op::Send(TargetSpec::Filter(FilterSpec::Anonymous)),
        Op::Send(TargetSpec::Client(Pick(1))),
        Op::Drop(Pick(1)),
        Op::Send(TargetSpec::Client(Pick(1))),
        Op::Send(TargetSpec::UnknownClient),
        Op::Send(TargetSpec::All),
    ];
    run(initial, ops).expect("the scenario holds");
}

/// Every kind of target with exclusions of users and of connections.
#[test]
fn exclusions_narrow_every_target() {
    let initial = vec![
        spec(Some(0), Some(0), &[0], true),
        spec(Some(0), Some(1), &[1], false),
        spec(Some(1), Some(1), &[0, 1], false),
        spec(None, None, &[0], true),
    ];
    let excepts = [
        ExceptSpec {
            users: vec![0],
            clients: vec![],
        },
        ExceptSpec {
            users: vec![],
            clients: vec![Pick(2), Pick(3)],
        },
        ExceptSpec {
            users: vec![1, NOBODY],
            clients: vec![Pick(0)],
        },
    ];
    let targets = [
        TargetSpec::All,
        TargetSpec::User(0),
        TargetSpec::Users(vec![0, 1]),
        TargetSpec::Session(1),
        TargetSpec::Channel(0),
        TargetSpec::Client(Pick(0)),
        TargetSpec::Client(Pick(2)),
        TargetSpec::Filter(FilterSpec::Gold),
    ];
    let mut ops = Vec::new();
    for target in &targets {
        for except in &excepts {
            ops.push(Op::SendExcept(target.clone(), except.clone()));
        }
    }
    ops.push(Op::Drop(Pick(0)));
    ops.push(Op::SendExcept(TargetSpec::All, excepts[2].clone()));
    run(initial, ops).expect("the scenario holds");
}
