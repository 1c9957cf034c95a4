//! Presence: a join when a user's first connection in a presence channel
//! opens or subscribes, a leave when the last one closes or unsubscribes,
//! to the other members only, never recorded for replay; exact under
//! connects, disconnects and subscriptions racing on several threads.
#![cfg(feature = "tokio")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proptest::prelude::*;
use sse_core::test_util::frames::Parsed;
use sse_core::{ConnectOptions, Connection, PresenceMember, SseManager, TokioRuntime};

use common::{drain, parse};

fn manager_on(runtime: TokioRuntime) -> SseManager {
    SseManager::builder()
        .runtime(runtime)
        .configure(|c| {
            c.heartbeat_interval(None)
                .client_queue(1 << 16)
                .presence_channels(vec!["room/*".to_owned(), "lobby".to_owned()])
        })
        .build()
        .expect("valid")
}

fn manager() -> SseManager {
    manager_on(TokioRuntime::current().expect("in a Tokio runtime"))
}

/// The presence notices queued on `connection`, as `(channel, user, state)`.
fn notices(connection: &mut Connection) -> Vec<(String, String, String)> {
    notices_of(&parse(drain(connection)))
}

fn notices_of(events: &[Parsed]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| e.event == "presence")
        .map(|e| {
            let data: serde_json::Value = serde_json::from_str(&e.data).expect("JSON data");
            let field = |name: &str| data[name].as_str().expect("a string field").to_owned();
            (field("channel"), field("userId"), field("state"))
        })
        .collect()
}

fn notice(channel: &str, user: &str, state: &str) -> (String, String, String) {
    (channel.to_owned(), user.to_owned(), state.to_owned())
}

fn members(manager: &SseManager, channel: &str) -> Vec<(String, usize)> {
    manager
        .local_presence(channel)
        .into_iter()
        .map(
            |PresenceMember {
                 user_id, connections, ..
             }| (user_id, connections),
        )
        .collect()
}

async fn connect(manager: &SseManager, options: ConnectOptions) -> Connection {
    manager.connect(options).await.expect("connected")
}

#[tokio::test]
async fn tabs_are_one_presence_and_notices_go_to_the_others() {
    let manager = manager();
    let mut observer = connect(&manager, ConnectOptions::new().channel("room/1")).await;
    let mut alice1 = connect(&manager, ConnectOptions::new().user("alice").channel("room/1")).await;
    let mut alice2 = connect(&manager, ConnectOptions::new().user("alice").channel("room/1")).await;
    let mut bob = connect(&manager, ConnectOptions::new().user("bob").channel("room/1")).await;
    assert_eq!(
        notices(&mut observer),
        [notice("room/1", "alice", "join"), notice("room/1", "bob", "join")]
    );
    assert_eq!(
        notices(&mut alice1),
        [notice("room/1", "bob", "join")],
        "not its own join"
    );
    assert_eq!(notices(&mut alice2), [notice("room/1", "bob", "join")]);
    assert_eq!(notices(&mut bob), []);
    assert_eq!(
        members(&manager, "room/1"),
        [("alice".to_owned(), 2), ("bob".to_owned(), 1)]
    );

    drop(alice1);
    assert_eq!(notices(&mut observer), [], "alice is still present in another tab");
    assert_eq!(
        members(&manager, "room/1"),
        [("alice".to_owned(), 1), ("bob".to_owned(), 1)]
    );
    drop(alice2);
    assert_eq!(notices(&mut observer), [notice("room/1", "alice", "leave")]);
    assert_eq!(notices(&mut bob), [notice("room/1", "alice", "leave")]);
    assert_eq!(members(&manager, "room/1"), [("bob".to_owned(), 1)]);

    // Not a presence channel: nothing is sent, the query still answers.
    let mut plain = connect(&manager, ConnectOptions::new().channel("news")).await;
    let _carol = connect(&manager, ConnectOptions::new().user("carol").channel("news")).await;
    assert_eq!(notices(&mut plain), []);
    assert_eq!(members(&manager, "news"), [("carol".to_owned(), 1)]);

    // Live only: a replay of everything holds no presence event.
    let resumed = ConnectOptions::new().channel("room/1").last_event_id(Some("0"));
    let mut resumed = connect(&manager, resumed).await;
    assert_eq!(notices(&mut resumed), []);
}

#[tokio::test]
async fn runtime_subscriptions_join_and_leave() {
    let manager = manager();
    let mut observer = connect(&manager, ConnectOptions::new().channel("lobby")).await;
    let tab1 = connect(&manager, ConnectOptions::new().user("alice")).await;
    let tab2 = connect(&manager, ConnectOptions::new().user("alice")).await;
    let (one, two) = (tab1.client_id().as_str(), tab2.client_id().as_str());
    assert_eq!(manager.subscribe(one, "lobby"), Ok(true));
    assert_eq!(manager.subscribe(two, "lobby"), Ok(true));
    assert_eq!(manager.subscribe(two, "lobby"), Ok(false));
    assert_eq!(notices(&mut observer), [notice("lobby", "alice", "join")]);
    assert_eq!(manager.unsubscribe(one, "lobby"), Ok(true));
    assert_eq!(notices(&mut observer), []);
    assert_eq!(manager.unsubscribe(two, "lobby"), Ok(true));
    assert_eq!(manager.unsubscribe(two, "lobby"), Ok(false));
    assert_eq!(notices(&mut observer), [notice("lobby", "alice", "leave")]);
    assert!(manager.local_presence("lobby").is_empty());
    // A connection without a user is no presence.
    let _anonymous = connect(&manager, ConnectOptions::new().channel("lobby")).await;
    assert_eq!(notices(&mut observer), []);
    assert!(manager.local_presence("lobby").is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    Connect { user: usize, channels: Vec<usize> },
    Close(usize),
    Subscribe(usize, usize),
    Unsubscribe(usize, usize),
}

const CHANNELS: [&str; 3] = ["room/a", "room/b", "lobby"];
const USERS: usize = 4;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..USERS, proptest::collection::vec(0..CHANNELS.len(), 0..3))
            .prop_map(|(user, channels)| Op::Connect { user, channels }),
        2 => any::<usize>().prop_map(Op::Close),
        2 => (any::<usize>(), 0..CHANNELS.len()).prop_map(|(i, c)| Op::Subscribe(i, c)),
        2 => (any::<usize>(), 0..CHANNELS.len()).prop_map(|(i, c)| Op::Unsubscribe(i, c)),
    ]
}

/// Runs `ops` on this thread: its connections, kept open at the end.
fn run(manager: &SseManager, ops: Vec<Op>) -> Vec<Connection> {
    let mut held: Vec<Connection> = Vec::new();
    for op in ops {
        match op {
            Op::Connect { user, channels } => {
                let options = ConnectOptions::new()
                    .user(format!("u{user}"))
                    .channels(channels.into_iter().map(|c| CHANNELS[c]));
                held.push(futures::executor::block_on(manager.connect(options)).expect("connected"));
            }
            Op::Close(i) if !held.is_empty() => drop(held.swap_remove(i % held.len())),
            Op::Subscribe(i, c) if !held.is_empty() => {
                let id = held[i % held.len()].client_id().clone();
                manager.subscribe(id.as_str(), CHANNELS[c]).expect("subscribed");
            }
            Op::Unsubscribe(i, c) if !held.is_empty() => {
                let id = held[i % held.len()].client_id().clone();
                manager.unsubscribe(id.as_str(), CHANNELS[c]).expect("known client");
            }
            _ => {}
        }
    }
    held
}

/// Checks that an observer's notices alternate join, leave, join... for
/// each user of each channel; returns who is present by that account.
fn alternating(notices: &[(String, String, String)]) -> Result<BTreeMap<(String, String), bool>, TestCaseError> {
    let mut present = BTreeMap::new();
    for (channel, user, state) in notices {
        let was = present
            .insert((channel.clone(), user.clone()), state == "join")
            .unwrap_or(false);
        prop_assert!(
            (state == "join") != was,
            "{state} of {user} in {channel} while present={was}: {notices:?}"
        );
    }
    Ok(present)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Several threads race connects, closes and subscriptions of the same
    /// users: each observer sees a valid alternation per user, matching
    /// `presence()` and the connections left; after the last close, every
    /// user has left.
    #[test]
    fn presence_is_exact_under_races(threads in proptest::collection::vec(proptest::collection::vec(op(), 1..40), 3)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("runtime");
        let manager = manager_on(TokioRuntime::from_handle(runtime.handle().clone()));
        let mut observers: Vec<Connection> = CHANNELS
            .iter()
            .chain(["news"].iter())
            .map(|c| futures::executor::block_on(manager.connect(ConnectOptions::new().channel(*c))).expect("connected"))
            .collect();
        let manager = Arc::new(manager);
        let handles: Vec<_> = threads
            .into_iter()
            .map(|ops| {
                let manager = Arc::clone(&manager);
                std::thread::spawn(move || run(&manager, ops))
            })
            .collect();
        let held: Vec<Connection> = handles.into_iter().flat_map(|h| h.join().expect("no panic")).collect();

        // The model: who holds how many connections in each channel now.
        let mut model: HashMap<String, BTreeMap<String, usize>> = HashMap::new();
        for connection in &held {
            let info = manager.connection_info(connection.client_id().as_str()).expect("registered");
            for channel in &info.channels {
                let user = info.user_id.clone().expect("every tab has a user");
                *model.entry(channel.clone()).or_default().entry(user).or_default() += 1;
            }
        }
        let mut seen = Vec::new();
        for (observer, channel) in observers.iter_mut().zip(CHANNELS) {
            let got = notices(observer);
            prop_assert!(got.iter().all(|(c, _, _)| c == channel), "{got:?}");
            let present = alternating(&got)?;
            let expected: Vec<(String, usize)> = model.remove(channel).unwrap_or_default().into_iter().collect();
            prop_assert_eq!(members(&manager, channel), expected.clone());
            let present: Vec<&String> = present.iter().filter(|(_, p)| **p).map(|((_, u), _)| u).collect();
            let expected: Vec<&String> = expected.iter().map(|(u, _)| u).collect();
            prop_assert_eq!(present, expected, "the notices account for who is present");
            seen.push(got);
        }
        prop_assert_eq!(notices(&mut observers[3]), vec![], "news keeps no presence");
        for mut connection in held {
            let user = manager.connection_info(connection.client_id().as_str()).and_then(|i| i.user_id);
            let own = notices(&mut connection);
            prop_assert!(own.iter().all(|(_, u, _)| Some(u) != user.as_ref()), "own notices: {own:?}");
        }
        for ((observer, channel), mut got) in observers.iter_mut().zip(CHANNELS).zip(seen) {
            got.extend(notices(observer));
            let present = alternating(&got)?;
            prop_assert!(present.values().all(|p| !p), "everyone left {channel}: {got:?}");
            prop_assert!(manager.local_presence(channel).is_empty());
        }
    }
}

#[tokio::test]
async fn disconnects_leave() {
    let manager = manager();
    let mut observer = connect(&manager, ConnectOptions::new().channel("room/a")).await;
    let alice1 = connect(&manager, ConnectOptions::new().user("alice").channel("room/a")).await;
    let alice2 = connect(
        &manager,
        ConnectOptions::new().user("alice").channel("room/a").channel("news"),
    )
    .await;
    let _bob = connect(&manager, ConnectOptions::new().user("bob").channel("room/a")).await;
    assert_eq!(notices(&mut observer).len(), 2);
    assert!(manager.disconnect(alice1.client_id().as_str()));
    assert_eq!(notices(&mut observer), []);
    assert!(manager.disconnect(alice2.client_id().as_str()));
    assert_eq!(notices(&mut observer), [notice("room/a", "alice", "leave")]);
}
