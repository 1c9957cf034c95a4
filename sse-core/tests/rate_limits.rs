//! Send rate limits, per user and per channel: the send past a key's burst
//! is refused with `SendError::RateLimited`, nothing is delivered, recorded
//! or published, other keys are unaffected, and the key sends again once
//! its allowance recovers; bad limits are refused with the configuration;
//! the keys held stay bounded, and are dropped once they recover.
//!
//! These tests build the manager on the current Tokio runtime (default
//! feature `tokio`).
#![cfg(all(feature = "test-util", feature = "tokio"))]

use std::time::{Duration, Instant};

use futures::{FutureExt as _, StreamExt as _};
use sse_core::test_util::MemoryLog;
use sse_core::{
    ConfigError, ConnectOptions, Connection, Event, RateLimit, SendError, SseConfig, SseConfigBuilder, SseManager,
    Target,
};

/// Generous: a loaded machine slows the tests, never fails them.
const WAIT: Duration = Duration::from_secs(10);

fn manager(configure: impl FnOnce(SseConfigBuilder) -> SseConfigBuilder) -> SseManager {
    SseManager::builder()
        .configure(|c| configure(c.heartbeat_interval(None)))
        .build()
        .expect("valid configuration")
}

/// The frames queued for `connection` now, as text.
fn queued(connection: &mut Connection) -> String {
    let mut text = String::new();
    while let Some(Some(frames)) = connection.next().now_or_never() {
        text.push_str(&String::from_utf8_lossy(&frames));
    }
    text
}

/// Sends until `send` succeeds again, polling; fails after [`WAIT`].
async fn until_accepted<F, Fut>(mut send: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<sse_core::Delivery, SendError>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match send().await {
            Ok(_) => return,
            Err(SendError::RateLimited { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("still refused after {WAIT:?}: {error}"),
        }
    }
}

#[tokio::test]
async fn the_send_past_a_users_burst_is_refused_and_others_are_unaffected() {
    let manager = manager(|c| c.user_send_rate(Some(RateLimit::per_second(5).with_burst(3))));
    let mut alice = manager
        .connect(ConnectOptions::new().user("alice"))
        .await
        .expect("connected");
    let mut bob = manager
        .connect(ConnectOptions::new().user("bob"))
        .await
        .expect("connected");
    queued(&mut alice);
    queued(&mut bob);
    for n in 0..3 {
        let sent = manager
            .send_to_user("alice", Event::named("n", n.to_string()).expect("event"))
            .await
            .expect("within the burst");
        assert_eq!(sent.delivered, 1);
    }
    let refused = manager
        .send_to_user("alice", Event::named("n", "3").expect("event"))
        .await
        .expect_err("past the burst");
    let SendError::RateLimited { retry_after } = refused else {
        panic!("a rate limit error, not {refused:?}");
    };
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1),
        "{retry_after:?}"
    );
    assert!(refused.to_string().contains("rate limit"), "{refused}");
    assert!(!refused.is_outcome_unknown(), "nothing was sent");
    let text = queued(&mut alice);
    assert_eq!(
        text.matches("event: n\n").count(),
        3,
        "the refused event is not delivered: {text}"
    );
    assert!(!text.contains("data: 3"), "{text}");

    // Another user, and sends without a user limit, are unaffected.
    manager
        .send_to_user("bob", Event::named("n", "b").expect("event"))
        .await
        .expect("bob has his own allowance");
    manager
        .send_to_users(["bob", "bob"], Event::named("n", "b2").expect("event"))
        .await
        .expect("a user listed twice counts once");
    manager
        .broadcast(Event::message("all"))
        .await
        .expect("broadcasts are not limited");
    assert!(queued(&mut bob).contains("data: b2"));
    assert!(matches!(
        manager.send_to_users(["bob", "alice"], Event::message("both")).await,
        Err(SendError::RateLimited { .. })
    ));

    // Once the allowance recovers, alice receives again.
    until_accepted(|| manager.send_to_user("alice", Event::named("n", "later").expect("event"))).await;
    assert!(queued(&mut alice).contains("data: later"));
}

#[tokio::test]
async fn a_refused_send_is_not_recorded_for_replay() {
    let manager = manager(|c| c.channel_send_rate(Some(RateLimit::per_second(1).with_burst(2))));
    let first = manager
        .send_to_channel("news", Event::message("one"))
        .await
        .expect("within the burst");
    manager
        .send_to_channel("news", Event::message("two"))
        .await
        .expect("within the burst");
    let refused = manager.send(Target::channel("news"), Event::message("three")).await;
    assert!(matches!(refused, Err(SendError::RateLimited { .. })), "{refused:?}");
    manager
        .send_to_channel("sports", Event::message("other"))
        .await
        .expect("another channel is unaffected");
    let mut resumed = manager
        .connect(ConnectOptions::new().channel("news").last_event_id(first.id))
        .await
        .expect("connected");
    let text = queued(&mut resumed);
    assert!(text.contains("data: two"), "{text}");
    assert!(
        !text.contains("data: three"),
        "the refused event was never recorded: {text}"
    );
    assert_eq!(manager.stats().events_published, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_backplane_a_refused_send_is_not_published() {
    let log = MemoryLog::new();
    let manager = SseManager::builder()
        .configure(|c| c.user_send_rate(Some(RateLimit::per_second(1).with_burst(1))))
        .backplane(log.clone())
        .build()
        .expect("manager");
    manager
        .send_to_user("alice", Event::message("one"))
        .await
        .expect("within the burst");
    let published = log.len();
    let refused = manager.send_to_user("alice", Event::message("two")).await;
    assert!(matches!(refused, Err(SendError::RateLimited { .. })), "{refused:?}");
    let idempotent = manager
        .send_idempotent("k", Target::user("alice"), Event::message("two"))
        .await;
    assert!(
        matches!(idempotent, Err(SendError::RateLimited { .. })),
        "{idempotent:?}"
    );
    assert_eq!(log.len(), published, "nothing reached the log");
}

#[tokio::test]
async fn bad_limits_are_refused_with_the_configuration() {
    for (builder, name) in [
        (
            SseConfig::builder().user_send_rate(Some(RateLimit::per_second(0))),
            "user_send_rate",
        ),
        (
            SseConfig::builder().channel_send_rate(Some(RateLimit::per_second(10).with_burst(0))),
            "channel_send_rate",
        ),
        (
            SseConfig::builder().publish_rate(Some(RateLimit::per_second(2_000_000))),
            "publish_rate",
        ),
        (SseConfig::builder().rate_limit_keys(0), "rate_limit_keys"),
    ] {
        match builder.build() {
            Err(ConfigError::Invalid { name: refused, .. }) => assert_eq!(refused, name),
            other => panic!("{name}: expected an invalid setting, got {other:?}"),
        }
    }
    let config = SseConfig::builder()
        .user_send_rate(Some(RateLimit::per_second(10)))
        .build()
        .expect("valid");
    assert_eq!(config.user_send_rate(), Some(RateLimit::per_second(10).with_burst(10)));
    assert_eq!(config.channel_send_rate(), None, "unlimited by default");
    assert_eq!(config.rate_limit_keys(), 100_000);
}

#[tokio::test]
async fn the_keys_held_are_bounded() {
    let manager = manager(|c| {
        c.channel_send_rate(Some(RateLimit::per_second(1).with_burst(1)))
            .rate_limit_keys(50)
    });
    let mut refused = 0;
    for n in 0..2_000 {
        match manager.send_to_channel(&format!("c{n}"), Event::message("x")).await {
            Ok(_) => {}
            Err(SendError::RateLimited { retry_after }) => {
                assert!(retry_after > Duration::ZERO);
                refused += 1;
            }
            Err(error) => panic!("{error}"),
        }
    }
    assert!(manager.rate_limit_keys() <= 50, "{} keys", manager.rate_limit_keys());
    assert!(refused > 0, "new keys past the bound are refused");

    // The maintenance task drops the keys once their allowance is whole
    // again (every 10 s): memory returns to nothing.
    let deadline = Instant::now() + 3 * WAIT;
    while manager.rate_limit_keys() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} keys still held",
            manager.rate_limit_keys()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
