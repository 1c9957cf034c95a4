//! The administration page in a real browser: headless Chromium, driven
//! through chromedriver, against the `axum-demo` binary with
//! `SSE_PUBLISH_TOKEN` set. The page asks for the token, shows the live
//! connection count and list and the events-per-second chart, and closes a
//! connection from its list; screenshots of it (`sse-admin.png`, and
//! `sse-admin-login.png` of the token form) are saved as PNG, at the paths
//! the test prints (in `SSE_BROWSER_SCREENSHOTS` if set, else in the
//! target's temporary directory).
//!
//! Needs `chromium` and `chromedriver` (found on `PATH`, or named by
//! `SSE_CHROMIUM` and `SSE_CHROMEDRIVER`). Without them the test is skipped,
//! unless `SSE_CI_STRICT=1`, where a missing browser is a failure.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde::Deserialize;
use serde_json::{Value, json};

use common::{Harness, POLL, TIMEOUT, browser_or_skip, open_browser};

/// How long the whole scenario may take.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

const TOKEN: &str = "admin-page-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser_or_skip("the admin page browser test") else {
        return;
    };
    let started = Instant::now();
    let mut harness = Harness::new();
    match tokio::time::timeout(SCENARIO_TIMEOUT, scenario(&mut harness, &chromium, &chromedriver)).await {
        Ok(()) => eprintln!("admin page scenario passed in {:.1} s", started.elapsed().as_secs_f64()),
        Err(_) => panic!("the admin page scenario did not finish within {SCENARIO_TIMEOUT:?}"),
    }
}

async fn scenario(harness: &mut Harness, chromium: &Path, chromedriver: &Path) {
    let http = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
    let addr = harness
        .start_server_with("127.0.0.1:0", &[("SSE_PUBLISH_TOKEN", TOKEN)])
        .await
        .expect("the demo server starts");
    let base = format!("http://{addr}");
    let driver = harness
        .start_chromedriver(chromedriver, &http)
        .await
        .expect("chromedriver starts");
    let profile = harness.dir.path().join("profile");
    let client = open_browser(&driver, chromium, &profile).await;

    // The page holds no data: it asks for the token the feed needs.
    client
        .goto(&format!("{base}/sse-admin"))
        .await
        .expect("open the admin page");
    wait_for(&client, "the page to ask for the token", |p| {
        p.login_shown && p.status == "token needed"
    })
    .await;
    client
        .find(Locator::Id("token"))
        .await
        .expect("token input")
        .send_keys("not-the-token")
        .await
        .expect("type a wrong token");
    submit_token(&client).await;
    let page = wait_for(&client, "the wrong token to be refused", |p| {
        p.login_shown && !p.login_error.is_empty()
    })
    .await;
    assert!(page.login_error.contains("unauthorized"), "{page:#?}");
    let login = client.screenshot().await.expect("take a screenshot");
    let login_path = screenshot_path("sse-admin-login.png");
    std::fs::write(&login_path, &login).expect("write the screenshot");
    eprintln!("screenshot: {}", login_path.display());
    client
        .find(Locator::Id("token"))
        .await
        .expect("token input")
        .send_keys(TOKEN)
        .await
        .expect("type the token");
    submit_token(&client).await;
    wait_for(&client, "the live feed", |p| {
        !p.login_shown && p.status == "live" && p.connections == "0"
    })
    .await;

    // Three clients connect; events are published over a few seconds.
    let mut streams = Vec::new();
    for query in [
        "userId=alice&channel=news",
        "userId=bob&channel=news&channel=orders",
        "userId=carol",
    ] {
        let response = http
            .get(format!("{base}/api/sse?{query}"))
            .send()
            .await
            .expect("a client stream");
        assert_eq!(response.status(), 200, "{query}");
        streams.push(response);
    }
    let listed = wait_for_listed(&http, &base, 3).await;
    for n in 0..12 {
        publish(
            &http,
            &base,
            &json!({"event": "tick", "data": n, "target": "channel", "targetId": "news"}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let page = wait_for(&client, "three connections, listed, and the events/s chart", |p| {
        p.connections == "3"
            && p.users == "3"
            && p.client_ids() == listed
            && p.rate_points >= 2
            && p.published == "12"
            && p.dropped == "0"
            && p.conflated == "0"
    })
    .await;
    let bob = page
        .rows
        .iter()
        .find(|r| r.user == "bob")
        .expect("bob is listed")
        .clone();
    assert_eq!(bob.channels, "newsorders", "{page:#?}");
    assert_eq!(page.rows[0].user, "carol", "the newest first: {page:#?}");

    // Disconnect bob from the page.
    client
        .find(Locator::Css(&format!(
            r#"tr[data-client-id="{}"] button.disconnect"#,
            bob.client_id
        )))
        .await
        .expect("bob's disconnect button")
        .click()
        .await
        .expect("click Disconnect");
    let gone =
        |p: &Page| p.connections == "2" && p.rows.len() == 2 && p.rows.iter().all(|r| r.client_id != bob.client_id);
    let page = wait_for(&client, "bob to leave the list", gone).await;
    assert!(page.notice.contains(&bob.client_id), "{page:#?}");
    let stats = admin_get(&http, &base, "/api/sse/stats").await;
    assert_eq!(stats["connections"], 2, "{stats}");
    assert!(!wait_for_listed(&http, &base, 2).await.contains(&bob.client_id));

    // A little more traffic for the charts, then the screenshot.
    for n in 0..8 {
        publish(&http, &base, &json!({"event": "tick", "data": n})).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let before = read_page(&client).await.updated;
    wait_for(&client, "the next snapshot", |p| p.updated != before && gone(p)).await;
    let png = client.screenshot().await.expect("take a screenshot");
    let path = screenshot_path("sse-admin.png");
    std::fs::write(&path, &png).expect("write the screenshot");
    eprintln!("screenshot: {}", path.display());
    let (width, height) = png_size(&png);
    assert!(width >= 800 && height >= 600, "a full page, not {width}x{height}");
    assert!(png.len() > 20_000, "a screenshot with content, not {} bytes", png.len());

    drop(streams);
    client.close().await.expect("end the browser session");
}

async fn submit_token(client: &Client) {
    client
        .find(Locator::Css("#login-form button"))
        .await
        .expect("connect button")
        .click()
        .await
        .expect("click Connect");
}

/// Where the screenshot `name` goes: in `SSE_BROWSER_SCREENSHOTS`, or in
/// the target's temporary directory.
fn screenshot_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("SSE_BROWSER_SCREENSHOTS")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir.join(name)
}

/// The width and height of a PNG, which must be one.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is a PNG");
    assert_eq!(png.get(12..16), Some(&b"IHDR"[..]), "the PNG starts with its header");
    let number = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("four bytes"));
    (number(16), number(20))
}

async fn admin_get(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let response = http
        .get(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("an admin request");
    assert_eq!(response.status(), 200, "GET {path}");
    let text = response.text().await.expect("an answer");
    serde_json::from_str(&text).expect("a JSON answer")
}

async fn publish(http: &reqwest::Client, base: &str, body: &Value) {
    let response = http
        .post(format!("{base}/api/sse/publish"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("publish request");
    assert_eq!(response.status(), 200, "publish {body}");
}

/// Polls `GET /api/sse/connections` until it lists `count` connections;
/// their client ids.
async fn wait_for_listed(http: &reqwest::Client, base: &str, count: usize) -> BTreeSet<String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let list = admin_get(http, base, "/api/sse/connections").await;
        let ids: BTreeSet<String> = list
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|c| c["clientId"].as_str().map(str::to_owned))
            .collect();
        if ids.len() == count {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "waited {TIMEOUT:?} for {count} connections: {list}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// What the page shows, read in one go.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    status: String,
    login_shown: bool,
    login_error: String,
    connections: String,
    users: String,
    published: String,
    dropped: String,
    conflated: String,
    rate_points: u64,
    updated: String,
    notice: String,
    rows: Vec<Row>,
}

impl Page {
    fn client_ids(&self) -> BTreeSet<String> {
        self.rows.iter().map(|r| r.client_id.clone()).collect()
    }
}

/// A row of the connection list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    client_id: String,
    user: String,
    channels: String,
}

const READ_PAGE: &str = r##"
const text = (id) => document.getElementById(id).textContent;
return {
  status: text("status"),
  loginShown: !document.getElementById("login").hidden,
  loginError: text("login-error"),
  connections: text("connections-value"),
  users: text("users-value"),
  published: text("published-value"),
  dropped: text("dropped-value"),
  conflated: text("conflated-value"),
  ratePoints: Number(document.getElementById("chart-rate").dataset.points),
  updated: text("updated"),
  notice: text("notice"),
  rows: Array.from(document.querySelectorAll("#connections tbody tr")).map((row) => ({
    clientId: row.dataset.clientId,
    user: row.cells[1].textContent,
    channels: row.cells[3].textContent,
  })),
};
"##;

async fn read_page(client: &Client) -> Page {
    let value = client.execute(READ_PAGE, Vec::new()).await.expect("read the page");
    serde_json::from_value(value).expect("the page has the expected elements")
}

/// Polls the page until `ready` holds, failing after [`TIMEOUT`] with what
/// the page shows.
async fn wait_for(client: &Client, what: &str, ready: impl Fn(&Page) -> bool) -> Page {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let page = read_page(client).await;
        if ready(&page) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}; the page shows {page:#?}"
        );
        tokio::time::sleep(POLL).await;
    }
}
