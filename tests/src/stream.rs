//! Reading an event stream: [`SseResponse`] is the answer before its body
//! is read, [`SseStream`] the body parsed into events by the
//! `eventsource-stream` parser, with the raw bytes and their arrival times
//! recorded for the cases that check exact bytes or timing.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource as _};
use futures_util::{Stream, StreamExt as _};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::WAIT;

/// The answer to `GET /api/sse`, before its body is read.
#[derive(Debug)]
pub struct SseResponse {
    pub(crate) response: reqwest::Response,
    pub(crate) opened: Instant,
}

impl SseResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The value of header `name` as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap_or_else(|_| panic!("header {name} is not text")))
    }

    /// When the request was sent.
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// Checks the status and headers the contract requires of an event
    /// stream: `200`, `content-type: text/event-stream`, a `cache-control`
    /// holding `no-cache` and `no-transform`, `x-accel-buffering: no`, and
    /// no `content-encoding`.
    ///
    /// # Panics
    /// On the first requirement not met.
    pub fn assert_event_stream(&self) {
        assert_eq!(self.status(), StatusCode::OK, "status of the event stream");
        let content_type = self.header("content-type").expect("a content-type");
        assert!(
            content_type.split(';').next().map(str::trim) == Some("text/event-stream"),
            "content-type is text/event-stream, not {content_type:?}"
        );
        let cache_control: Vec<String> = self
            .headers()
            .get_all("cache-control")
            .iter()
            .flat_map(|value| value.to_str().expect("cache-control is text").split(','))
            .map(|directive| directive.trim().to_ascii_lowercase())
            .collect();
        for directive in ["no-cache", "no-transform"] {
            assert!(
                cache_control.iter().any(|d| d == directive),
                "cache-control holds {directive}: {cache_control:?}"
            );
        }
        assert_eq!(self.header("x-accel-buffering"), Some("no"), "x-accel-buffering");
        assert_eq!(
            self.header("content-encoding"),
            None,
            "an event stream is never compressed"
        );
    }

    /// Reads the body as an event stream.
    pub fn into_stream(self) -> SseStream {
        let recording = Arc::new(Mutex::new(Recording::default()));
        let tee = recording.clone();
        let bytes = self.response.bytes_stream().map(move |chunk| {
            if let Ok(bytes) = &chunk {
                tee.lock().expect("recording lock").push(bytes);
            }
            chunk
        });
        SseStream {
            events: Box::pin(bytes.eventsource()),
            recording,
            opened: self.opened,
            end: None,
        }
    }

    /// Reads the whole body (which must end within [`WAIT`]) as an event
    /// stream: the events, and how it ended.
    pub async fn read_to_end(self) -> (SseStream, Vec<Event>, End) {
        let mut stream = self.into_stream();
        let (events, end) = stream.events_until_end().await;
        (stream, events, end)
    }
}

/// The raw bytes of a stream, as they arrived.
#[derive(Debug, Default)]
struct Recording {
    bytes: Vec<u8>,
    /// For each chunk: when it arrived, and the length of `bytes` after it.
    chunks: Vec<(Instant, usize)>,
}

impl Recording {
    fn push(&mut self, chunk: &Bytes) {
        self.bytes.extend_from_slice(chunk);
        self.chunks.push((Instant::now(), self.bytes.len()));
    }
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The body ended normally (the final chunk of a chunked body, or the
    /// announced length).
    Clean,
    /// The connection broke, or the stream could not be parsed.
    Error(String),
}

/// One step of a stream.
#[derive(Debug)]
pub enum Next {
    /// A dispatched event.
    Event(Event),
    /// The stream ended.
    End(End),
    /// Nothing happened within the time given.
    Idle,
}

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// An event stream being read: parsed events, plus the raw bytes and their
/// arrival times.
pub struct SseStream {
    events: Events,
    recording: Arc<Mutex<Recording>>,
    opened: Instant,
    end: Option<End>,
}

impl fmt::Debug for SseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseStream")
            .field("raw", &String::from_utf8_lossy(&self.raw()))
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl SseStream {
    /// The next event, or the end, or [`Next::Idle`] after `within`.
    pub async fn next_within(&mut self, within: Duration) -> Next {
        if let Some(end) = &self.end {
            return Next::End(end.clone());
        }
        match tokio::time::timeout(within, self.events.next()).await {
            Err(_) => Next::Idle,
            Ok(Some(Ok(event))) => Next::Event(event),
            Ok(None) => {
                self.end = Some(End::Clean);
                Next::End(End::Clean)
            }
            Ok(Some(Err(error))) => {
                let end = End::Error(error.to_string());
                self.end = Some(end.clone());
                Next::End(end)
            }
        }
    }

    /// The next event.
    ///
    /// # Panics
    /// If the stream ends, or no event arrives within [`WAIT`].
    pub async fn next_event(&mut self) -> Event {
        match self.next_within(WAIT).await {
            Next::Event(event) => event,
            Next::End(end) => panic!("expected an event, the stream ended ({end:?}); it held {self:?}"),
            Next::Idle => panic!("expected an event, none came within {WAIT:?}; the stream held {self:?}"),
        }
    }

    /// The next event, which must be named `name`.
    pub async fn expect_event(&mut self, name: &str) -> Event {
        let event = self.next_event().await;
        assert_eq!(event.event, name, "expected event {name:?}, got {event:?}");
        event
    }

    /// Every event until the stream ends, and how it ended.
    ///
    /// # Panics
    /// If the stream has not ended within [`WAIT`].
    pub async fn events_until_end(&mut self) -> (Vec<Event>, End) {
        let deadline = Instant::now() + WAIT;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Next::Event(event) => events.push(event),
                Next::End(end) => return (events, end),
                Next::Idle => panic!("the stream did not end within {WAIT:?}; it held {self:?}"),
            }
        }
    }

    /// Reads for `duration`; returns the events that came.
    ///
    /// # Panics
    /// If the stream ends meanwhile.
    pub async fn events_during(&mut self, duration: Duration) -> Vec<Event> {
        let deadline = Instant::now() + duration;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return events;
            }
            match self.next_within(left).await {
                Next::Event(event) => events.push(event),
                Next::End(end) => panic!("the stream ended ({end:?}) while it should stay open; it held {self:?}"),
                Next::Idle => return events,
            }
        }
    }

    /// Whether the stream has been seen to end.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// When the request was sent.
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// Every byte read so far.
    pub fn raw(&self) -> Vec<u8> {
        self.recording.lock().expect("recording lock").bytes.clone()
    }

    /// The frames read so far (the raw text up to and including each blank
    /// line), with the instant each one had fully arrived. The server ends
    /// lines with LF, so a frame ends at `\n\n`. This only delimits frames to
    /// time them and compare their bytes; events are parsed by the
    /// `eventsource-stream` parser.
    pub fn frames(&self) -> Vec<(Instant, String)> {
        let recording = self.recording.lock().expect("recording lock");
        let bytes = &recording.bytes;
        let mut frames = Vec::new();
        let mut start = 0;
        let mut chunk = 0;
        for end in 1..bytes.len() {
            if bytes[end - 1] == b'\n' && bytes[end] == b'\n' && end > start {
                while recording.chunks[chunk].1 <= end {
                    chunk += 1;
                }
                let arrived = recording.chunks[chunk].0;
                frames.push((arrived, String::from_utf8_lossy(&bytes[start..=end]).into_owned()));
                start = end + 1;
            }
        }
        frames
    }
}

/// The value of a leading `retry:` frame (`retry: N` and a blank line), the
/// reconnection hint an event stream opens with.
pub fn leading_retry(raw: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(raw).ok()?;
    let (frame, _) = text.split_once("\n\n")?;
    frame.strip_prefix("retry: ")?.parse().ok()
}
