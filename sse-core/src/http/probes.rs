//! The answers of the health and readiness probes, for an application to
//! serve at the paths its orchestrator asks (the demos: `GET /healthz` and
//! `GET /readyz`): liveness says the process serves requests; readiness
//! says whether it should take new clients ([`SseManager::ready`]), and
//! turns false as soon as the instance starts draining.

use bytes::Bytes;
use http::{Response, StatusCode};

use super::json;
use crate::error::NotReady;
use crate::manager::SseManager;

/// The liveness answer: `200` with `{"status": "ok"}`, as long as the
/// process answers at all.
pub fn healthz() -> Response<Bytes> {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// The readiness answer: `200` with `{"status": "ready"}`, or `503` with
/// `{"status": "not-ready", "reason": ...}` (`draining`, `shut-down` or
/// `backplane`, with an `error` for the last), as a Kubernetes probe
/// expects.
///
/// ```
/// use sse_core::SseManager;
/// use sse_core::http::readyz;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = SseManager::builder().build()?;
/// assert_eq!(readyz(&manager).await.status(), 200);
/// manager.drain();
/// assert_eq!(readyz(&manager).await.status(), 503);
/// # Ok(())
/// # }
/// ```
pub async fn readyz(manager: &SseManager) -> Response<Bytes> {
    match manager.ready().await {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Err(not_ready) => {
            let reason = match &not_ready {
                NotReady::Draining => "draining",
                NotReady::ShutDown => "shut-down",
                _ => "backplane",
            };
            let mut body = serde_json::json!({ "status": "not-ready", "reason": reason });
            if let NotReady::Backplane(error) = &not_ready {
                body["error"] = serde_json::Value::String(error.to_string());
            }
            json(StatusCode::SERVICE_UNAVAILABLE, &body)
        }
    }
}
