//! The browser client of `clients/js` across tabs and with expiring tokens,
//! in headless Chromium driven through chromedriver, against `axum-demo`.
//!
//! `one_connection_shared_by_three_tabs`: three tabs of one browser profile
//! open the demo page with `?shareAcrossTabs=1`. The server sees one
//! connection; every tab shows every published event exactly once; a
//! channel one tab joins at runtime reaches every tab; closing the tab that
//! holds the connection hands it to another tab, which resumes from the
//! last event id, with no event lost or shown twice, and in the joined
//! channel still.
//!
//! `fresh_token_at_every_reconnection`: the demo requires a JWT
//! (`SSE_AUTH_SECRET`). A test page on another origin (allowed by
//! `SSE_CORS_ORIGINS`) loads the client from the demo and gives it a `url`
//! function that fetches a short-lived token from the page's own server, a
//! token service in this test. Each token expires while connected; the
//! server closes the stream, and the client reconnects with a fresh token,
//! no event lost, without reaching `maxReconnectAttempts` (1). When the
//! service hands out an expired token, the server's 401 makes the client
//! fetch another at once, without counting an attempt.
//!
//! Needs `chromium` and `chromedriver` (see `browser.rs`). Without them the
//! tests are skipped, unless `SSE_CI_STRICT=1`, where they fail.

mod common;

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, Locator};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use common::{Harness, POLL, TIMEOUT, browser_or_skip, open_browser, publish};

/// How long each scenario may take.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// One scenario at a time: each starts a server, chromedriver and a browser.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOKEN_PAGE: &str = include_str!("../../clients/js/test/browser/token-page.html");

/// The secret the demo checks tokens with, and the token service signs them with.
const SECRET: &str = "browser-test-secret";

/// How long a token from the token service lives, in seconds.
const TOKEN_SECONDS: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_shared_by_three_tabs() {
    let Some((chromium, chromedriver)) = browser_or_skip("the shared-tabs browser test") else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut harness = Harness::new();
    match tokio::time::timeout(SCENARIO_TIMEOUT, tabs_scenario(&mut harness, &chromium, &chromedriver)).await {
        Ok(()) => eprintln!(
            "shared-tabs scenario passed in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Err(_) => panic!("the shared-tabs scenario did not finish within {SCENARIO_TIMEOUT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_token_at_every_reconnection() {
    let Some((chromium, chromedriver)) = browser_or_skip("the expiring-token browser test") else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut harness = Harness::new();
    match tokio::time::timeout(SCENARIO_TIMEOUT, token_scenario(&mut harness, &chromium, &chromedriver)).await {
        Ok(()) => eprintln!(
            "expiring-token scenario passed in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Err(_) => panic!("the expiring-token scenario did not finish within {SCENARIO_TIMEOUT:?}"),
    }
}

// ---- three tabs, one connection ----------------------------------------------

/// What one tab of the demo page shows.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tab {
    status: String,
    role: String,
    client_id: String,
    channels: String,
    admin_result: String,
    events: Vec<Shown>,
}

/// One server event in a tab's log.
#[derive(Debug, Deserialize)]
struct Shown {
    event: String,
    id: String,
}

impl Tab {
    fn count(&self, id: &str) -> usize {
        self.events
            .iter()
            .filter(|e| e.id == id && e.event == "notification")
            .count()
    }

    fn holds(&self) -> bool {
        self.role.starts_with("holds")
    }
}

const READ_TAB: &str = r#"
const text = (id) => document.getElementById(id).textContent;
return {
  status: text("status"),
  role: text("tab-role"),
  clientId: text("client-id"),
  channels: text("channels"),
  adminResult: text("admin-result"),
  events: Array.from(document.querySelectorAll('#log li[data-source="server"]')).map((li) => ({
    event: li.dataset.event,
    id: li.dataset.id,
  })),
};
"#;

async fn read_tab(browser: &Client, tab: &WindowHandle) -> Tab {
    browser.switch_to_window(tab.clone()).await.expect("switch to the tab");
    let value = browser.execute(READ_TAB, Vec::new()).await.expect("read the tab");
    serde_json::from_value(value).expect("the tab's state")
}

/// Reads every tab until `ready` holds for all of them together.
async fn wait_tabs(browser: &Client, tabs: &[WindowHandle], what: &str, ready: impl Fn(&[Tab]) -> bool) -> Vec<Tab> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut shown = Vec::new();
        for tab in tabs {
            shown.push(read_tab(browser, tab).await);
        }
        if ready(&shown) {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}; the tabs show {shown:#?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn tabs_scenario(harness: &mut Harness, chromium: &Path, chromedriver: &Path) {
    let http = http_client();
    let addr = harness
        .start_server("127.0.0.1:0")
        .await
        .expect("the demo server starts");
    let demo = format!("http://{addr}");
    let driver = harness
        .start_chromedriver(chromedriver, &http)
        .await
        .expect("chromedriver starts");
    let profile = harness.dir.path().join("profile");
    let browser = open_browser(&driver, chromium, &profile).await;
    let page = format!("{demo}/sse-demo?userId=alice&shareAcrossTabs=1");

    // a. Three tabs; the first holds the connection.
    let first = browser.window().await.expect("the first tab");
    browser.goto(&page).await.expect("open the demo page");
    wait_tabs(
        &browser,
        std::slice::from_ref(&first),
        "the first tab to connect",
        |t| t[0].status == "connected" && t[0].holds() && !t[0].client_id.is_empty(),
    )
    .await;
    let mut tabs = vec![first];
    for _ in 0..2 {
        let tab = browser.new_window(true).await.expect("open a tab").handle;
        browser
            .switch_to_window(tab.clone())
            .await
            .expect("switch to the new tab");
        browser.goto(&page).await.expect("open the demo page");
        tabs.push(tab);
    }
    let shown = wait_tabs(&browser, &tabs, "every tab to share the connection", |t| {
        t.iter()
            .all(|tab| tab.status == "connected" && !tab.client_id.is_empty())
            && t.iter().filter(|tab| tab.holds()).count() == 1
    })
    .await;
    assert!(shown[0].holds(), "{shown:#?}");
    assert!(shown.iter().all(|t| t.client_id == shown[0].client_id), "one clientId");
    let stats = wait_stats(&http, &demo, "one connection for three tabs", |s| s["connections"] == 1).await;
    assert_eq!(stats["connectionsOpened"], 1, "{stats}");

    // b. Every tab shows every event, once.
    let mut published = Vec::new();
    for n in 1..=3 {
        published.push(id_of(
            &publish(&http, &demo, &notification(&format!("before {n}"))).await,
        ));
    }
    wait_tabs(&browser, &tabs, "every event in every tab", |t| {
        t.iter().all(|tab| published.iter().all(|id| tab.count(id) == 1))
    })
    .await;

    // c. The second tab joins a channel at runtime: the holder joins it for
    // the shared connection, and every tab receives its events.
    browser
        .switch_to_window(tabs[1].clone())
        .await
        .expect("switch to the second tab");
    browser
        .find(Locator::Id("channel-name"))
        .await
        .expect("channel input")
        .send_keys("news")
        .await
        .expect("type a channel");
    browser
        .find(Locator::Id("subscribe"))
        .await
        .expect("subscribe button")
        .click()
        .await
        .expect("click Subscribe");
    wait_tabs(&browser, &tabs[1..2], "the second tab to join news", |t| {
        t[0].channels.contains("news") && t[0].admin_result.contains("joined news")
    })
    .await;
    let stats = wait_stats(&http, &demo, "the connection in news", |s| s["channels"]["news"] == 1).await;
    assert_eq!(stats["connections"], 1, "{stats}");
    published.push(id_of(&publish(&http, &demo, &channel_event("news 1")).await));
    wait_tabs(&browser, &tabs, "the channel's event in every tab", |t| {
        t.iter().all(|tab| published.iter().all(|id| tab.count(id) == 1))
    })
    .await;

    // d. The holding tab closes. Events published meanwhile, to the user and
    // to the channel, reach both other tabs once each, through the new holder.
    browser
        .switch_to_window(tabs[0].clone())
        .await
        .expect("switch to the holder");
    browser.close_window().await.expect("close the holding tab");
    let rest = tabs.split_off(1);
    for n in 1..=3 {
        published.push(id_of(
            &publish(&http, &demo, &notification(&format!("during {n}"))).await,
        ));
    }
    published.push(id_of(&publish(&http, &demo, &channel_event("news 2")).await));
    let shown = wait_tabs(&browser, &rest, "the handover and every event", |t| {
        t.iter().filter(|tab| tab.holds()).count() == 1
            && t.iter()
                .all(|tab| tab.status == "connected" && published.iter().all(|id| tab.count(id) == 1))
    })
    .await;
    for tab in &shown {
        for id in &published {
            assert_eq!(tab.count(id), 1, "event {id} once: {tab:#?}");
        }
    }
    let stats = wait_stats(&http, &demo, "one connection, still in news", |s| {
        s["connections"] == 1 && s["channels"]["news"] == 1
    })
    .await;
    assert_eq!(stats["connectionsOpened"], 2, "one new connection: {stats}");
    let after = id_of(&publish(&http, &demo, &channel_event("news 3")).await);
    wait_tabs(&browser, &rest, "the channel's event after the handover", |t| {
        t.iter().all(|tab| tab.count(&after) == 1)
    })
    .await;

    browser.close().await.expect("end the browser session");
}

async fn wait_stats(http: &reqwest::Client, demo: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let stats: Value = http
            .get(format!("{demo}/api/sse/stats"))
            .send()
            .await
            .expect("GET /api/sse/stats")
            .text()
            .await
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
            .expect("the stats as JSON");
        if ready(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}: {stats}"
        );
        tokio::time::sleep(POLL).await;
    }
}

// ---- tokens that expire --------------------------------------------------------

/// The token service: hands out tokens for alice that live [`TOKEN_SECONDS`],
/// or, while `expired` is above zero, tokens that expired already.
struct TokenService {
    issued: AtomicUsize,
    expired: AtomicUsize,
}

#[derive(serde::Serialize)]
struct Claims {
    sub: &'static str,
    exp: u64,
}

async fn token(State(service): State<Arc<TokenService>>) -> impl IntoResponse {
    service.issued.fetch_add(1, Ordering::SeqCst);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let stale = service
        .expired
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let exp = if stale { now - 60 } else { now + TOKEN_SECONDS };
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims { sub: "alice", exp },
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign a token");
    ([(header::CACHE_CONTROL, "no-store")], jwt)
}

/// What the token page reports.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenPage {
    state: String,
    last_error: Option<String>,
    log: Vec<Entry>,
}

/// One callback call on the token page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    kind: String,
    #[serde(rename = "type")]
    event_type: Option<String>,
    id: Option<String>,
    error_kind: Option<String>,
    attempt: Option<u64>,
}

impl TokenPage {
    fn opens(&self) -> usize {
        self.log.iter().filter(|e| e.kind == "open").count()
    }

    fn count(&self, id: &str) -> usize {
        self.log
            .iter()
            .filter(|e| {
                e.kind == "event" && e.event_type.as_deref() == Some("notification") && e.id.as_deref() == Some(id)
            })
            .count()
    }

    fn errors(&self, kind: &str) -> Vec<&Entry> {
        self.log
            .iter()
            .filter(|e| e.kind == "error" && e.error_kind.as_deref() == Some(kind))
            .collect()
    }
}

async fn token_scenario(harness: &mut Harness, chromium: &Path, chromedriver: &Path) {
    let http = http_client();
    let service = Arc::new(TokenService {
        issued: AtomicUsize::new(0),
        expired: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the token service");
    let origin = format!("http://{}", listener.local_addr().expect("its address"));
    let router = Router::new()
        .route(
            "/token-page.html",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], TOKEN_PAGE) }),
        )
        .route("/token", get(token))
        .with_state(Arc::clone(&service));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let addr = harness
        .start_server_with(
            "127.0.0.1:0",
            &[("SSE_AUTH_SECRET", SECRET), ("SSE_CORS_ORIGINS", &origin)],
        )
        .await
        .expect("the demo server starts");
    let demo = format!("http://{addr}");
    let driver = harness
        .start_chromedriver(chromedriver, &http)
        .await
        .expect("chromedriver starts");
    let profile = harness.dir.path().join("profile");
    let browser = open_browser(&driver, chromium, &profile).await;
    browser
        .goto(&format!("{origin}/token-page.html?demo={demo}"))
        .await
        .expect("open the token page");

    // a. Connected with a token; an event arrives.
    wait_page(&browser, "the page to connect", |p| p.state == "connected").await;
    let first = id_of(&publish(&http, &demo, &notification("first")).await);
    wait_page(&browser, "the first event", |p| p.count(&first) == 1).await;

    // b. The token expires while connected, twice: the server closes the
    // stream, the client comes back with a fresh token. An event published
    // in between arrives once.
    let page = wait_page(&browser, "a reconnection with a fresh token", |p| p.opens() >= 2).await;
    let between = id_of(&publish(&http, &demo, &notification("between")).await);
    let opens = page.opens();
    let page = wait_page(&browser, "another expiry, and the event", |p| {
        p.opens() > opens && p.state == "connected" && p.count(&between) == 1
    })
    .await;
    assert_eq!(page.count(&first), 1);
    let lost: Vec<&Entry> = page.log.iter().filter(|e| e.kind == "error").collect();
    assert!(
        lost.iter()
            .all(|e| e.error_kind.as_deref() == Some("connection") && e.attempt == Some(1)),
        "each expiry is one lost connection, then a success: {lost:#?}"
    );

    // c. The service hands out an expired token once: the demo answers 401,
    // and the client fetches another at once, without counting an attempt.
    service.expired.store(1, Ordering::SeqCst);
    let opens = page.opens();
    let page = wait_page(&browser, "a refusal, then a connection with a fresh token", |p| {
        !p.errors("refused").is_empty() && p.opens() > opens && p.state == "connected"
    })
    .await;
    let refused = page.errors("refused");
    assert_eq!(refused.len(), 1, "{:#?}", page.log);
    assert_eq!(refused[0].attempt, Some(0), "not counted");
    assert_eq!(service.expired.load(Ordering::SeqCst), 0);
    let last = id_of(&publish(&http, &demo, &notification("after the refusal")).await);
    let page = wait_page(&browser, "an event after the refusal", |p| p.count(&last) == 1).await;
    assert!(
        page.log.iter().all(|e| e.kind != "close"),
        "it never gave up: {:#?}",
        page.log
    );
    assert!(page.errors("gave-up").is_empty() && page.errors("closed").is_empty());
    assert_eq!(page.last_error, None);
    for id in [&first, &between, &last] {
        assert_eq!(page.count(id), 1, "event {id} once");
    }
    assert!(service.issued.load(Ordering::SeqCst) >= 4, "a token per connection");

    browser.close().await.expect("end the browser session");
}

async fn wait_page(browser: &Client, what: &str, ready: impl Fn(&TokenPage) -> bool) -> TokenPage {
    poll(
        browser,
        "return window.readPage ? window.readPage() : null;",
        what,
        ready,
    )
    .await
}

// ---- helpers ---------------------------------------------------------------------

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .build()
        .expect("HTTP client")
}

fn notification(text: &str) -> Value {
    json!({"event": "notification", "data": text, "target": "user", "targetId": "alice"})
}

fn channel_event(text: &str) -> Value {
    json!({"event": "notification", "data": text, "target": "channel", "targetId": "news"})
}

fn id_of(answer: &Value) -> String {
    answer["id"].as_str().expect("the publish answer has an id").to_owned()
}

/// Runs `script` until what it returns satisfies `ready`, failing after
/// [`TIMEOUT`] with the last answer.
async fn poll<T: DeserializeOwned + Debug>(
    browser: &Client,
    script: &str,
    what: &str,
    ready: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let value = browser
            .execute(script, Vec::new())
            .await
            .expect("run a script in the page");
        match serde_json::from_value::<T>(value.clone()) {
            Ok(answer) if ready(&answer) => return answer,
            Ok(answer) => assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?} waiting for {what}; the page shows {answer:#?}"
            ),
            Err(error) => assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?} waiting for {what}; the page answers {value} ({error})"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}
