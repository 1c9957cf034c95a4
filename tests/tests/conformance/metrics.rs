//! `GET /metrics`: the engine's metrics as Prometheus text, guarded like the
//! administration endpoints. The recorder is shared by every server of the
//! process, so the values here are only checked to move the right way;
//! `tests/metrics.rs` checks exact changes, one scenario at a time.

use reqwest::{Method, StatusCode};
use sse_examples::ServeFn;
use sse_tests::{TestServer, prometheus_samples};

use crate::common::assert_error;

pub(crate) async fn metrics_route_is_guarded_prometheus_text(serve: ServeFn) {
    const TOKEN: &str = "metrics-token";
    let server = TestServer::start(serve, &[("SSE_PUBLISH_TOKEN", TOKEN)]).await;
    for authorization in [None, Some("Bearer wrong-token"), Some(TOKEN)] {
        let mut request = server.client().get(server.url("/metrics"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let (status, answer) = TestServer::send(request).await;
        let what = format!("GET /metrics with authorization {authorization:?}");
        assert_error(status, &answer, StatusCode::UNAUTHORIZED, "", &what);
    }
    let (status, answer) = TestServer::send(server.api(Method::POST, "/metrics")).await;
    assert_error(status, &answer, StatusCode::METHOD_NOT_ALLOWED, "", "POST /metrics");

    let before = server.metrics().await;
    let _alice = server.subscribe("userId=alice").await;
    let response = server
        .api(Method::GET, "/metrics")
        .send()
        .await
        .expect("GET /metrics is answered");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.expect("a body");
    assert!(text.contains("# TYPE sse_connections gauge"), "{text}");
    assert!(text.contains("# TYPE sse_connections_opened_total counter"), "{text}");
    let after = prometheus_samples(&text);
    let opened = |samples: &std::collections::BTreeMap<String, f64>| {
        samples.get("sse_connections_opened_total").copied().unwrap_or(0.0)
    };
    assert!(opened(&after) > opened(&before), "a connection was opened: {text}");
}
