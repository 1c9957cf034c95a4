//! The demos' `GET /metrics`: the engine's metrics (sse-core's `metrics`
//! feature) in the Prometheus text format, from a `metrics-exporter-prometheus`
//! recorder installed once per process, guarded like the administration
//! endpoints (with `SSE_PUBLISH_TOKEN`, the same bearer token, or a JWT with
//! the role `sse:admin`).
//!
//! The recorder is global: a process running several demos (the
//! conformance suite does) installs it once, and every demo's `/metrics`
//! shows the same process-wide figures.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sse_core::http::{PublishAuthorizer, RouteGroup};

/// The path the demos serve the metrics at.
pub const METRICS_PATH: &str = "/metrics";

/// The `Content-Type` of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The latency histogram's buckets, in seconds: from 100µs (a local
/// fan-out) to 10s (a backplane that is slow to answer).
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

/// The backplane lag histogram's buckets, in seconds: from 1 ms to a
/// minute behind.
const LAG_BUCKETS: [f64; 12] = [
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0, 60.0,
];

/// The queue depth histogram's buckets, in frames: powers of two up to the
/// default queue bound.
const DEPTH_BUCKETS: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// How often histograms are drained between scrapes, bounding their memory.
const UPKEEP: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder, installed at the first call (with
/// the engine's metric descriptions); `None` if another recorder was
/// installed first, which is logged.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("sse_delivery_latency_seconds".to_owned()),
                    &LATENCY_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("sse_backplane_lag_seconds".to_owned()), &LAG_BUCKETS)
                })
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("sse_queue_depth".to_owned()), &DEPTH_BUCKETS))
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    sse_core::metrics::describe();
                    let upkeep = handle.clone();
                    let spawned = std::thread::Builder::new()
                        .name("metrics-upkeep".to_owned())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(UPKEEP);
                                upkeep.run_upkeep();
                            }
                        });
                    if let Err(error) = spawned {
                        tracing::warn!(%error, "metrics: no upkeep thread; histograms drain at each scrape");
                    }
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics: the Prometheus recorder could not be installed");
                    None
                }
            }
        })
        .as_ref()
}

/// `GET /metrics` of one demo: its guard, the publish authorizer of its
/// endpoints (none when publishing is open).
#[derive(Clone)]
pub struct MetricsRoute {
    guard: Option<Arc<dyn PublishAuthorizer>>,
    /// `false` with `SSE_METRICS=off`: the route is not served.
    served: bool,
}

impl fmt::Debug for MetricsRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsRoute")
            .field("guarded", &self.guard.is_some())
            .field("served", &self.served)
            .finish()
    }
}

impl MetricsRoute {
    /// The route, guarded by `guard` as an administration endpoint
    /// ([`RouteGroup::Admin`]) when there is one. Installs the recorder if
    /// it is not yet.
    pub fn new(guard: Option<Arc<dyn PublishAuthorizer>>) -> Self {
        recorder();
        MetricsRoute { guard, served: true }
    }

    /// No route: `SSE_METRICS=off`. Installs no recorder, so the engine's
    /// metrics go nowhere.
    pub fn off() -> Self {
        MetricsRoute {
            guard: None,
            served: false,
        }
    }

    /// Answers `GET` (or `HEAD`) `/metrics`: `200` with the metrics as
    /// Prometheus text; the guard's `401`/`403` for a request it refuses;
    /// `405` for another method; `503` if the process has no Prometheus
    /// recorder. `None` for any other path.
    pub async fn answer(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response<Bytes>> {
        if path != METRICS_PATH || !self.served {
            return None;
        }
        if method != Method::GET && method != Method::HEAD {
            return Some(sse_core::http::method_not_allowed(&[Method::GET, Method::HEAD]));
        }
        if let Some(guard) = &self.guard {
            let (mut parts, ()) = Request::new(()).into_parts();
            parts.method = method.clone();
            parts.headers = headers.clone();
            if let Err(error) = guard.authorize_group(&parts, RouteGroup::Admin).await {
                return Some(sse_core::http::auth_error(&error));
            }
        }
        let Some(handle) = recorder() else {
            return Some(sse_core::http::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "metrics are not recorded in this process",
            ));
        };
        let mut response = Response::new(Bytes::from(handle.render()));
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
        Some(response)
    }
}
