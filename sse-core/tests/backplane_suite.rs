//! The backplane conformance suite (`test_util::backplane_suite`) on the
//! in-memory log, `test_util::MemoryLog`: the reference every other log is
//! held to.
#![cfg(feature = "tokio")]

use sse_core::test_util::MemoryLog;
use sse_core::test_util::backplane_suite::{self as suite, SharedLog};
use sse_core::{SseManager, async_trait};

struct Memory(MemoryLog);

#[async_trait]
impl SharedLog for Memory {
    async fn instance(&self, history: usize) -> SseManager {
        SseManager::builder()
            .configure(|c| c.history_size(history))
            .backplane(self.0.clone())
            .build()
            .expect("manager")
    }

    async fn lose_history(&self) -> bool {
        self.0.lose_history();
        true
    }

    fn can_restart(&self) -> bool {
        true
    }

    async fn stop_broker(&self) {
        self.0.set_available(false);
    }

    async fn start_broker(&self) -> bool {
        self.0.set_available(true);
        true
    }
}

fn log() -> Memory {
    Memory(MemoryLog::new())
}

#[tokio::test]
async fn every_target_kind_across_instances() {
    suite::every_target_kind_across_instances(&log()).await;
}

#[tokio::test]
async fn resume_on_another_instance_with_exactly_the_gap() {
    suite::resume_on_another_instance_with_exactly_the_gap(&log()).await;
}

#[tokio::test]
async fn late_instance_preloads() {
    suite::late_instance_preloads(&log()).await;
}

#[tokio::test]
async fn history_lost_resets_resuming_clients() {
    suite::history_lost_resets_resuming_clients(&log()).await;
}

#[tokio::test]
async fn broker_restart_mid_stream() {
    suite::broker_restart_mid_stream(&log()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_agree_on_one_order() {
    suite::concurrent_publishers_agree_on_one_order(&log()).await;
}
