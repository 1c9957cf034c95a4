//! The backplane conformance suite (`sse_core::test_util::backplane_suite`)
//! on Redis: the shared server at 127.0.0.1:6379 (or `SSE_TEST_REDIS_URL`)
//! with a key prefix of each test's own, and, for the restart, a
//! `redis-server` of the test's own, without persistence, so that the
//! restart loses the stream. Skipped with a printed reason without them,
//! failed under `SSE_CI_STRICT=1`.

use std::sync::Mutex;

use sse_core::test_util::backplane_suite::{self as suite, SharedLog};
use sse_core::{SseManager, async_trait};

mod common;

use common::*;

struct Redis {
    fx: Fixture,
    /// Spread channel events over this many shards (0: none).
    shards: u32,
    /// A server of the test's own, on this port: stopped and started again.
    own: Option<(u16, Mutex<Option<Server>>)>,
}

#[async_trait]
impl SharedLog for Redis {
    async fn instance(&self, history: usize) -> SseManager {
        if self.shards == 0 {
            return self.fx.instance(history).await;
        }
        let backplane = self.fx.backplane(history).shards(self.shards).build().await;
        SseManager::builder()
            .configure(|c| c.history_size(history))
            .backplane(backplane.expect("backplane"))
            .build()
            .expect("manager")
    }

    /// What a restart of Redis without persistence looks like to a reader.
    async fn lose_history(&self) -> bool {
        redis::cmd("DEL")
            .arg(self.fx.key())
            .query_async::<usize>(&mut self.fx.redis().await)
            .await
            .expect("DEL");
        true
    }

    fn can_restart(&self) -> bool {
        self.own.is_some()
    }

    async fn stop_broker(&self) {
        if let Some((_, server)) = &self.own {
            let stopped = server.lock().expect("server").take();
            drop(stopped);
        }
    }

    async fn start_broker(&self) -> bool {
        if let Some((port, server)) = &self.own {
            let started = Server::start(*port, &std::env::temp_dir()).expect("redis-server restarts");
            *server.lock().expect("server") = Some(started);
            wait_for_redis(&self.fx.url).await;
        }
        false
    }
}

async fn shared(test: &str) -> Option<Redis> {
    Some(Redis {
        fx: fixture(test).await?,
        shards: 0,
        own: None,
    })
}

/// The log with channel events on 8 shards: every check holds as it is.
async fn sharded(test: &str) -> Option<Redis> {
    Some(Redis {
        fx: fixture(test).await?,
        shards: 8,
        own: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_every_target_kind_across_instances() {
    let Some(log) = sharded("suite-sharded-targets").await else {
        return;
    };
    suite::every_target_kind_across_instances(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_resume_on_another_instance_with_exactly_the_gap() {
    let Some(log) = sharded("suite-sharded-resume").await else {
        return;
    };
    suite::resume_on_another_instance_with_exactly_the_gap(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_late_instance_preloads() {
    let Some(log) = sharded("suite-sharded-late").await else {
        return;
    };
    suite::late_instance_preloads(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_history_lost_resets_resuming_clients() {
    let Some(log) = sharded("suite-sharded-lost").await else {
        return;
    };
    suite::history_lost_resets_resuming_clients(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_concurrent_publishers_agree_on_one_order() {
    let Some(log) = sharded("suite-sharded-order").await else {
        return;
    };
    suite::concurrent_publishers_agree_on_one_order(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_kind_across_instances() {
    let Some(log) = shared("suite-targets").await else {
        return;
    };
    suite::every_target_kind_across_instances(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_another_instance_with_exactly_the_gap() {
    let Some(log) = shared("suite-resume").await else {
        return;
    };
    suite::resume_on_another_instance_with_exactly_the_gap(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_instance_preloads() {
    let Some(log) = shared("suite-preload").await else {
        return;
    };
    suite::late_instance_preloads(&log).await;
}

/// The stream deleted (`DEL`) under the running instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lost_resets_resuming_clients() {
    let Some(log) = shared("suite-lost").await else { return };
    suite::history_lost_resets_resuming_clients(&log).await;
}

/// Redis without persistence: the restart loses the stream. The first
/// publish after it succeeds on an instance that did not publish while
/// Redis was down and still holds a connection to the old server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream() {
    restart(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_broker_restart_mid_stream() {
    restart(8).await;
}

/// The restart check on a `redis-server` of the test's own.
async fn restart(shards: u32) {
    let Some((server, fx, port)) = own_server("suite-restart").await else {
        return;
    };
    let log = Redis {
        fx,
        shards,
        own: Some((port, Mutex::new(Some(server)))),
    };
    suite::broker_restart_mid_stream(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_agree_on_one_order() {
    let Some(log) = shared("suite-order").await else { return };
    suite::concurrent_publishers_agree_on_one_order(&log).await;
}
