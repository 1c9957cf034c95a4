//! What the example applications' tests share: an example run as a
//! process on a free port, killed when dropped, and an event stream read
//! as parsed events within a bounded wait.

#![allow(dead_code, reason = "each test binary uses a part of it")]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource as _};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use serde_json::Value;

/// How long a test waits for anything the server should do at once.
pub(crate) const PATIENCE: Duration = Duration::from_secs(15);

/// A running example, killed when dropped.
pub(crate) struct App {
    child: Child,
    pub(crate) base: String,
}

impl App {
    /// Starts `binary` on a free port, with the environment `vars` only,
    /// and waits for its `listening on` line. A short heartbeat (200 ms)
    /// keeps the tests' waits short.
    pub(crate) fn start(binary: &str, vars: &[(&str, &str)]) -> App {
        App::start_with_log(binary, vars, Stdio::null())
    }

    /// As [`App::start`], with the example's log (its standard error) sent
    /// to `log`.
    pub(crate) fn start_with_log(binary: &str, vars: &[(&str, &str)], log: impl Into<Stdio>) -> App {
        let mut child = Command::new(binary)
            .env_clear()
            .env("SSE_ADDR", "127.0.0.1:0")
            .env("SSE_HEARTBEAT_MS", "200")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start the example");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        // Owned by `app` from here, so that a failed wait kills it.
        let mut app = App {
            child,
            base: String::new(),
        };
        let line = lines.recv_timeout(PATIENCE).expect("a line on stdout");
        let address = line
            .strip_prefix("listening on http://")
            .expect("`listening on http://ADDR`");
        address.parse::<std::net::SocketAddr>().expect("a socket address");
        app.base = format!("http://{address}");
        app
    }
}

impl App {
    /// The process id of the running example.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An open event stream, parsed into events.
pub(crate) struct Stream {
    pub(crate) events: BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>,
}

impl Stream {
    /// The next event, within [`PATIENCE`].
    pub(crate) async fn next(&mut self, what: &str) -> Event {
        tokio::time::timeout(PATIENCE, self.events.next())
            .await
            .unwrap_or_else(|_| panic!("waited {PATIENCE:?} for {what}"))
            .unwrap_or_else(|| panic!("the stream ended before {what}"))
            .unwrap_or_else(|failure| panic!("the stream failed before {what}: {failure}"))
    }

    /// The next event, which must be named `name`: its data as JSON.
    pub(crate) async fn expect(&mut self, name: &str) -> (Value, Event) {
        let event = self.next(&format!("a `{name}` event")).await;
        assert_eq!(event.event, name, "expected `{name}`, got {event:?}");
        let data = serde_json::from_str(&event.data).expect("JSON data");
        (data, event)
    }
}

/// Opens the event stream at `url` with `headers`, with `http`; checks the
/// answer's status and content type and the `connected` event, and returns
/// that event's data with the stream.
pub(crate) async fn open_stream(http: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (Value, Stream) {
    let mut request = http.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(PATIENCE, request.send())
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = Stream {
        events: response.bytes_stream().eventsource().boxed(),
    };
    let (connected, _) = stream.expect("connected").await;
    (connected, stream)
}
