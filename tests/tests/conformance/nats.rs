//! Two instances sharing NATS JetStream with `SSE_NATS_URL`
//! (`docs/http-api.md`, "Several instances"): the cases of `redis.rs` that
//! do not depend on Redis, on a stream of each test's own.

use sse_examples::ServeFn;
use sse_tests::NatsPrefix;

use crate::redis::{idempotency_key_spans_instances, resume_on_another_instance, targets_across_instances};

pub(crate) async fn nats_targets_across_instances(serve: ServeFn) {
    let Some(prefix) = NatsPrefix::new_or_skip("nats_targets_across_instances").await else {
        return;
    };
    targets_across_instances(serve, &prefix.settings()).await;
}

pub(crate) async fn nats_resume_on_another_instance(serve: ServeFn) {
    let Some(prefix) = NatsPrefix::new_or_skip("nats_resume_on_another_instance").await else {
        return;
    };
    resume_on_another_instance(serve, &prefix.settings()).await;
}

pub(crate) async fn nats_idempotency_key_spans_instances(serve: ServeFn) {
    let Some(prefix) = NatsPrefix::new_or_skip("nats_idempotency_key_spans_instances").await else {
        return;
    };
    idempotency_key_spans_instances(serve, &prefix.settings()).await;
}

pub(crate) async fn nats_cluster_stats_are_not_shared(serve: ServeFn) {
    let Some(prefix) = NatsPrefix::new_or_skip("nats_cluster_stats_are_not_shared").await else {
        return;
    };
    let server = sse_tests::TestServer::start(serve, &prefix.settings()).await;
    let (status, body) = sse_tests::TestServer::send(server.api(reqwest::Method::GET, "/api/sse/stats/cluster")).await;
    crate::common::assert_error(
        status,
        &body,
        reqwest::StatusCode::NOT_IMPLEMENTED,
        "does not share statistics",
        "GET /api/sse/stats/cluster over NATS",
    );
    // The instance's own statistics still answer.
    assert_eq!(server.stats().await["connections"], 0);
}
