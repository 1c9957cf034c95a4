//! Reading a demo's `GET /metrics`: [`TestServer::metrics`] scrapes it and
//! [`prometheus_samples`] reads the Prometheus text exposition into samples
//! by series.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};

use crate::TestServer;
use crate::server::bounded;

impl TestServer {
    /// `GET /metrics` (with the publish token, if any), which must answer
    /// `200` with Prometheus text: its samples, by series.
    ///
    /// # Panics
    /// If the answer is not a `200` with Prometheus text within the wait.
    pub async fn metrics(&self) -> BTreeMap<String, f64> {
        let response = bounded("an HTTP answer", self.api(Method::GET, "/metrics").send())
            .await
            .expect("the request is answered");
        assert_eq!(response.status(), StatusCode::OK, "GET /metrics");
        let text = bounded("a response body", response.text())
            .await
            .expect("the response body is read");
        prometheus_samples(&text)
    }
}

/// The samples of a Prometheus text exposition, by series (`name{labels}`,
/// as written); comments and blank lines are skipped.
///
/// # Panics
/// If a sample line has no numeric value.
pub fn prometheus_samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample line: {line:?}"));
            let value = value.parse().unwrap_or_else(|_| panic!("a numeric value: {line:?}"));
            (series.to_owned(), value)
        })
        .collect()
}
