//! The backplane conformance suite (`sse_core::test_util::backplane_suite`)
//! on NATS JetStream: the shared server at 127.0.0.1:4222 (or
//! `SSE_TEST_NATS_URL`) with a stream of each test's own, and, for the
//! restart, a `nats-server` of the test's own that keeps its storage across
//! the restart. Skipped with a printed reason without them, failed under
//! `SSE_CI_STRICT=1`.

use std::path::PathBuf;
use std::sync::Mutex;

use sse_core::test_util::backplane_suite::{self as suite, SharedLog};
use sse_core::{SseManager, async_trait};

mod common;

use common::*;

struct Nats {
    fx: Fixture,
    own: Option<Own>,
}

/// A server of the test's own: stopped and started again on the same port
/// and storage.
struct Own {
    binary: PathBuf,
    port: u16,
    dir: TempDir,
    server: Mutex<Option<Server>>,
}

#[async_trait]
impl SharedLog for Nats {
    async fn instance(&self, history: usize) -> SseManager {
        self.fx.instance(history).await
    }

    async fn lose_history(&self) -> bool {
        self.fx.delete().await;
        true
    }

    fn can_restart(&self) -> bool {
        self.own.is_some()
    }

    async fn stop_broker(&self) {
        if let Some(own) = &self.own {
            let server = own.server.lock().expect("server").take();
            drop(server);
        }
    }

    async fn start_broker(&self) -> bool {
        if let Some(own) = &self.own {
            let server = Server::start(&own.binary, own.port, &own.dir.0).expect("nats-server restarts");
            *own.server.lock().expect("server") = Some(server);
            wait_for_nats(&self.fx.url).await;
        }
        true
    }
}

async fn shared(test: &str) -> Option<Nats> {
    Some(Nats {
        fx: fixture(test).await?,
        own: None,
    })
}

/// A log on a `nats-server` of the test's own.
async fn own(test: &str) -> Option<Nats> {
    let Some(binary) = nats_server_binary() else {
        skip("the nats-server binary is not installed");
        return None;
    };
    let port = free_port();
    let dir = TempDir::new(test).expect("store directory");
    let server = Server::start(&binary, port, &dir.0).expect("nats-server starts");
    let url = format!("nats://127.0.0.1:{port}");
    wait_for_nats(&url).await;
    let fx = fixture_at(&url, test).await?;
    Some(Nats {
        fx,
        own: Some(Own {
            binary,
            port,
            dir,
            server: Mutex::new(Some(server)),
        }),
    })
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

/// The stream deleted under the running instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lost_resets_resuming_clients() {
    let Some(log) = shared("suite-lost").await else { return };
    suite::history_lost_resets_resuming_clients(&log).await;
}

/// The server keeps its storage across the restart: so does the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream() {
    let Some(log) = own("suite-restart").await else { return };
    suite::broker_restart_mid_stream(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_agree_on_one_order() {
    let Some(log) = shared("suite-order").await else { return };
    suite::concurrent_publishers_agree_on_one_order(&log).await;
}
