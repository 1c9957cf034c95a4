//! The demo page in a real browser: headless Chromium, driven through
//! chromedriver, against the `axum-demo` binary. Covers connecting, live
//! events, the publish form, reconnection with `Last-Event-ID` replay after
//! a server-side disconnect, and a `reset` after a server restart.
//!
//! Needs `chromium` and `chromedriver` (found on `PATH`, or named by
//! `SSE_CHROMIUM` and `SSE_CHROMEDRIVER`). Without them the test is skipped,
//! unless `SSE_CI_STRICT=1`, where a missing browser is a failure. With
//! `SSE_BROWSER_SCREENSHOTS=DIR` it saves screenshots of the page to `DIR`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde::Deserialize;
use serde_json::{Value, json};

use common::{Harness, POLL, TIMEOUT, find_browser, open_browser, publish};

/// How long the whole scenario may take.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_in_a_real_browser() {
    let strict = std::env::var("SSE_CI_STRICT").is_ok_and(|v| v == "1");
    let (chromium, chromedriver) = match find_browser() {
        Ok(found) => found,
        Err(reason) if strict => panic!("SSE_CI_STRICT=1 and the browser test cannot run: {reason}"),
        Err(reason) => {
            eprintln!("skipping the browser test: {reason} (set SSE_CI_STRICT=1 to make this a failure)");
            return;
        }
    };
    let started = Instant::now();
    let mut harness = Harness::new();
    match tokio::time::timeout(SCENARIO_TIMEOUT, scenario(&mut harness, &chromium, &chromedriver)).await {
        Ok(()) => eprintln!("browser scenario passed in {:.1} s", started.elapsed().as_secs_f64()),
        Err(_) => panic!("the browser scenario did not finish within {SCENARIO_TIMEOUT:?}"),
    }
}

async fn scenario(harness: &mut Harness, chromium: &Path, chromedriver: &Path) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .build()
        .expect("HTTP client");
    let addr = harness
        .start_server("127.0.0.1:0")
        .await
        .expect("the demo server starts");
    let base = format!("http://{addr}");
    let driver = harness
        .start_chromedriver(chromedriver, &http)
        .await
        .expect("chromedriver starts");
    let profile = harness.dir.path().join("profile");
    let client = open_browser(&driver, chromium, &profile).await;

    // a. The page connects as alice.
    client
        .goto(&format!("{base}/sse-demo?userId=alice"))
        .await
        .expect("open the demo page");
    let page = wait_for(&client, "the page to connect", |p| {
        p.status == "connected" && !p.client_id.is_empty()
    })
    .await;
    let connected = page.named("connected");
    assert_eq!(connected.len(), 1, "one connected event: {page:#?}");
    let info: Value = serde_json::from_str(&connected[0].data).expect("connected data is JSON");
    assert_eq!(info["clientId"], page.client_id.as_str());
    assert_eq!(info["userId"], "alice");
    assert_eq!(page.reconnects, 0);
    harness.screenshot(&client, "1-connected").await;

    // b. Events published over HTTP, and through the page's own form, appear
    // in the log. An extra event name is listened to through the page.
    client
        .find(Locator::Id("listen-name"))
        .await
        .expect("listen input")
        .send_keys("order-shipped")
        .await
        .expect("type an event name");
    client
        .find(Locator::Css("#listen-form button"))
        .await
        .expect("listen button")
        .click()
        .await
        .expect("click Listen");
    let mut expected = Vec::new();
    for (body, shown) in [
        (
            json!({"event": "notification", "data": {"title": "hello", "n": 1}, "target": "user", "targetId": "alice"}),
            Shown::Json(json!({"title": "hello", "n": 1})),
        ),
        (
            json!({"event": "order-shipped", "data": "line1\nline2", "target": "user", "targetId": "alice"}),
            Shown::text("line1\nline2"),
        ),
        (
            json!({"data": "a plain message", "target": "users", "targetIds": ["alice", "carol"]}),
            Shown::text("a plain message"),
        ),
    ] {
        let answer = publish(&http, &base, &body).await;
        expected.push(Published::new(&body, &answer, shown));
    }
    let for_bob = json!({"event": "notification", "data": "for bob only", "target": "user", "targetId": "bob"});
    publish(&http, &base, &for_bob).await;
    let page = wait_for(&client, "the published events", |p| {
        expected.iter().all(|e| p.count(e) == 1)
    })
    .await;
    assert_eq!(page.last_event_id, expected[2].id, "the last event id is shown");

    client
        .find(Locator::Id("target"))
        .await
        .expect("target select")
        .select_by_value("user")
        .await
        .expect("choose the user target");
    let target_id = client.find(Locator::Id("target-id")).await.expect("targetId input");
    assert_eq!(
        target_id.prop("value").await.expect("targetId value").as_deref(),
        Some("alice"),
        "the user target is prefilled with the page's own userId"
    );
    let name = client.find(Locator::Id("event-name")).await.expect("event name input");
    name.clear().await.expect("clear the event name");
    name.send_keys("update").await.expect("type the event name");
    let data = client.find(Locator::Id("data")).await.expect("data textarea");
    data.clear().await.expect("clear the data");
    data.send_keys(r#"{"via": "form"}"#).await.expect("type the data");
    client
        .find(Locator::Id("publish"))
        .await
        .expect("publish button")
        .click()
        .await
        .expect("click Publish");
    // The event can arrive before the answer to the publish request is shown.
    let page = wait_for(&client, "the form's event and the publish answer", |p| {
        !p.publish_result.is_empty()
            && p.events
                .iter()
                .any(|e| e.event == "update" && json_eq(&e.data, &json!({"via": "form"})))
    })
    .await;
    assert!(page.publish_result.starts_with("HTTP 200"), "{:?}", page.publish_result);
    let form_event = page
        .events
        .iter()
        .find(|e| e.event == "update")
        .expect("the form's event")
        .clone();
    let answer: Value = serde_json::from_str(page.publish_result.trim_start_matches("HTTP 200").trim())
        .expect("the publish answer is shown as JSON");
    assert_eq!(answer["id"], form_event.id.as_str());
    assert_eq!(answer["delivered"], 1);

    // The page subscribes its connection to a channel, then shows the stats.
    client
        .find(Locator::Id("channel-name"))
        .await
        .expect("channel input")
        .send_keys("news")
        .await
        .expect("type a channel");
    client
        .find(Locator::Id("subscribe"))
        .await
        .expect("subscribe button")
        .click()
        .await
        .expect("click Subscribe");
    wait_for(&client, "the subscription", |p| {
        p.admin_result.starts_with("HTTP 200") && p.channels == "news"
    })
    .await;
    let body = json!({"event": "update", "data": "news for subscribers", "target": "channel", "targetId": "news"});
    let answer = publish(&http, &base, &body).await;
    expected.push(Published::new(&body, &answer, Shown::text("news for subscribers")));
    client
        .find(Locator::Id("show-stats"))
        .await
        .expect("stats button")
        .click()
        .await
        .expect("click Show stats");
    let page = wait_for(&client, "the channel event and the stats", |p| {
        p.count(&expected[3]) == 1 && p.admin_result.contains("\"uniqueUsers\"")
    })
    .await;
    let stats: Value = serde_json::from_str(page.admin_result.trim_start_matches("HTTP 200").trim())
        .expect("the stats are shown as JSON");
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["channels"]["news"], 1);
    harness.screenshot(&client, "2-events").await;

    // c. The server closes the connection; events published before the
    // browser is back are replayed through Last-Event-ID, exactly once.
    let before = page;
    let response = http
        .delete(format!("{base}/api/sse/connections/{}", before.client_id))
        .send()
        .await
        .expect("disconnect request");
    assert_eq!(response.status(), 204, "DELETE answers 204");
    let mut missed = Vec::new();
    for n in 1..=3 {
        let body = json!({"event": "notification", "data": format!("while reconnecting {n}"), "target": "user", "targetId": "alice"});
        let answer = publish(&http, &base, &body).await;
        let delivered = answer["delivered"].clone();
        missed.push((
            Published::new(&body, &answer, Shown::text(format!("while reconnecting {n}"))),
            delivered,
        ));
    }
    assert_eq!(
        missed[0].1, 0,
        "the first event after the disconnect reached no connection (the browser waits 500 ms before reconnecting)"
    );
    let page = wait_for(&client, "the browser to reconnect by itself", |p| {
        p.status == "connected"
            && !p.client_id.is_empty()
            && p.client_id != before.client_id
            && p.reconnects > before.reconnects
    })
    .await;
    assert_eq!(page.reconnects, before.reconnects + 1);
    let marker_body =
        json!({"event": "notification", "data": "after the reconnection", "target": "user", "targetId": "alice"});
    let marker_answer = publish(&http, &base, &marker_body).await;
    let marker = Published::new(&marker_body, &marker_answer, Shown::text("after the reconnection"));
    let missed: Vec<Published> = missed.into_iter().map(|(published, _)| published).collect();
    let page = wait_for(&client, "the replayed events and a live one", |p| {
        missed.iter().chain([&marker]).all(|e| p.count(e) >= 1)
    })
    .await;
    for published in expected.iter().chain(&missed).chain([&marker]) {
        assert_eq!(page.count(published), 1, "exactly once: {published:?} in {page:#?}");
    }
    let positions: Vec<usize> = missed.iter().chain([&marker]).map(|e| page.position(e)).collect();
    assert!(
        positions.is_sorted(),
        "replayed in order, before live events: {page:#?}"
    );
    assert!(
        page.named("reset").is_empty(),
        "no reset while the ids are held: {page:#?}"
    );
    assert!(
        page.events.iter().all(|e| e.data != "for bob only"),
        "an event for another user is never shown: {page:#?}"
    );
    harness.screenshot(&client, "3-reconnected").await;

    // d. The server restarts on the same address: the browser reconnects by
    // itself and, the old ids being unknown to the new process, gets a reset.
    let before = page;
    let status = harness.stop_server().await;
    assert!(
        status.success(),
        "the demo exits with status 0 on SIGTERM, not {status}"
    );
    wait_for(&client, "the page to notice the server is gone", |p| {
        p.status != "connected"
    })
    .await;
    harness
        .restart_server(&addr.to_string())
        .await
        .expect("the demo server restarts on the same address");
    let page = wait_for(&client, "a reconnection and a reset from the new server", |p| {
        p.status == "connected"
            && !p.client_id.is_empty()
            && p.client_id != before.client_id
            && p.reconnects > before.reconnects
            && !p.named("reset").is_empty()
    })
    .await;
    assert_eq!(page.named("reset").len(), 1, "one reset: {page:#?}");
    let body = json!({"event": "notification", "data": "after the restart", "target": "user", "targetId": "alice"});
    let answer = publish(&http, &base, &body).await;
    let after_restart = Published::new(&body, &answer, Shown::text("after the restart"));
    let page = wait_for(&client, "an event from the new server", |p| {
        p.count(&after_restart) == 1
    })
    .await;
    let reset = page.named("reset")[0];
    assert!(
        page.position_of(reset) < page.position(&after_restart),
        "the reset comes before live events: {page:#?}"
    );
    harness.screenshot(&client, "4-restarted").await;

    client.close().await.expect("end the browser session");
}

/// What the page shows, read in one go.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    status: String,
    client_id: String,
    last_event_id: String,
    reconnects: u64,
    publish_result: String,
    admin_result: String,
    channels: String,
    /// Server events in the log, oldest first.
    events: Vec<Entry>,
}

/// One server event in the page's log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Entry {
    event: String,
    id: String,
    data: String,
}

impl Page {
    fn named(&self, name: &str) -> Vec<&Entry> {
        self.events.iter().filter(|e| e.event == name).collect()
    }

    fn count(&self, published: &Published) -> usize {
        self.events.iter().filter(|e| published.matches(e)).count()
    }

    fn position(&self, published: &Published) -> usize {
        self.events
            .iter()
            .position(|e| published.matches(e))
            .expect("the event is in the log")
    }

    fn position_of(&self, entry: &Entry) -> usize {
        self.events
            .iter()
            .position(|e| e == entry)
            .expect("the entry is in the log")
    }
}

const READ_PAGE: &str = r#"
const text = (id) => document.getElementById(id).textContent;
const entries = Array.from(document.querySelectorAll('#log > li[data-source="server"]'));
return {
  status: text("status"),
  clientId: text("client-id"),
  lastEventId: text("last-event-id"),
  reconnects: Number(text("reconnects")),
  publishResult: text("publish-result"),
  adminResult: text("admin-result"),
  channels: text("channels"),
  events: entries.reverse().map((li) => ({
    event: li.dataset.event,
    id: li.dataset.id,
    data: li.querySelector(".data").textContent,
  })),
};
"#;

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

/// How a published event's data shows in the log.
#[derive(Debug)]
enum Shown {
    Text(String),
    Json(Value),
}

impl Shown {
    fn text(text: impl Into<String>) -> Self {
        Shown::Text(text.into())
    }
}

/// An event published by the test, as the page should show it.
#[derive(Debug)]
struct Published {
    event: String,
    id: String,
    shown: Shown,
}

impl Published {
    fn new(body: &Value, answer: &Value, shown: Shown) -> Self {
        Published {
            event: body["event"].as_str().unwrap_or("message").to_owned(),
            id: answer["id"].as_str().expect("the publish answer has an id").to_owned(),
            shown,
        }
    }

    fn matches(&self, entry: &Entry) -> bool {
        entry.event == self.event
            && entry.id == self.id
            && match &self.shown {
                Shown::Text(text) => entry.data == *text,
                Shown::Json(value) => json_eq(&entry.data, value),
            }
    }
}

fn json_eq(text: &str, value: &Value) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|v| v == *value)
}
