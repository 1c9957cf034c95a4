//! The soak's clients and the check of what they received: each client
//! reads the stream of one live instance, resumes on another with
//! `Last-Event-ID` when its stream ends, records every event and `reset`,
//! and leaves when told to (churn) or at the end.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use parking_lot::Mutex;

use crate::Live;

/// One event the publisher had confirmed.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) seq: u64,
    pub(crate) started: Instant,
    pub(crate) confirmed: Instant,
}

/// A `reset` a client received: it excuses the events after `after` (the
/// last sequence number received before it) published before `at`.
#[derive(Debug, Clone)]
pub(crate) struct Reset {
    after: u64,
    at: Instant,
}

/// What one client saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientLog {
    index: usize,
    /// When its first stream said `connected`.
    began: Option<Instant>,
    /// When it stopped reading.
    ended: Option<Instant>,
    received: HashSet<u64>,
    duplicates: u64,
    resets: Vec<Reset>,
    reconnects: u64,
    pauses: u64,
}

/// How long a paused client stays away before it resumes.
const PAUSE: Duration = Duration::from_secs(5);

/// Reads streams until told to leave or stop; when told to pause, drops
/// its stream and resumes it [`PAUSE`] later.
pub(crate) async fn run_client(
    index: usize,
    live: Live,
    log: Arc<Mutex<ClientLog>>,
    leave: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    log.lock().index = index;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let done = || leave.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
    let mut last_id: Option<String> = None;
    let mut last_seq = 0u64;
    let mut attempt = index;
    // Since when the client has had no stream: if it leaves before it
    // resumes, its session ended then.
    let mut away_since: Option<Instant> = None;
    while !done() {
        attempt += 1;
        let bases: Vec<String> = live.lock().iter().flatten().cloned().collect();
        let Some(base) = bases.get(attempt % bases.len().max(1)) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut request = http.get(format!("{base}/api/sse?userId=c{index}"));
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id.as_str());
        }
        let response = match request.send().await {
            Ok(response) if response.status().is_success() => response,
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        away_since = None;
        // A pause asked for while the client was away is forgotten: it
        // catches up first.
        pause.store(false, Ordering::Relaxed);
        let mut events = Box::pin(response.bytes_stream().eventsource());
        loop {
            let next = tokio::time::timeout(Duration::from_millis(250), events.next()).await;
            if done() {
                break;
            }
            if pause.swap(false, Ordering::Relaxed) {
                // Away for a while: the events meanwhile come back as the
                // replay of `Last-Event-ID` (or a reset excuses them).
                drop(events);
                away_since = Some(Instant::now());
                log.lock().pauses += 1;
                tokio::time::sleep(PAUSE).await;
                break;
            }
            let event = match next {
                Err(_) => continue,
                Ok(Some(Ok(event))) => event,
                Ok(_) => break,
            };
            let mut log = log.lock();
            match event.event.as_str() {
                "connected" => {
                    log.began.get_or_insert_with(Instant::now);
                }
                "reset" => log.resets.push(Reset {
                    after: last_seq,
                    at: Instant::now(),
                }),
                "soak" => {
                    if let Ok(seq) = event.data.parse::<u64>() {
                        if !log.received.insert(seq) {
                            log.duplicates += 1;
                        }
                        last_seq = last_seq.max(seq);
                        last_id = Some(event.id);
                    }
                }
                _ => {}
            }
        }
        away_since.get_or_insert_with(Instant::now);
        if !done() {
            // A stream that ended (or a pause) is resumed the same way.
            log.lock().reconnects += 1;
            tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(..200))).await;
        }
    }
    log.lock().ended = Some(away_since.unwrap_or_else(Instant::now));
}

/// The check over every client.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) expected: u64,
    pub(crate) received: u64,
    pub(crate) excused: u64,
    pub(crate) lost: u64,
    pub(crate) duplicates: u64,
    pub(crate) resets: u64,
    pub(crate) reconnects: u64,
    pub(crate) pauses: u64,
    /// The first few losses: (client, seq).
    pub(crate) examples: Vec<(usize, u64)>,
}

/// Checks every client's record against the confirmed events.
pub(crate) fn check(logs: &[ClientLog], published: &[Published]) -> Summary {
    let mut summary = Summary::default();
    for log in logs {
        summary.duplicates += log.duplicates;
        summary.resets += log.resets.len() as u64;
        summary.reconnects += log.reconnects;
        summary.pauses += log.pauses;
        let (Some(began), Some(ended)) = (log.began, log.ended) else {
            continue;
        };
        // A second for delivery before the client stopped reading.
        let Some(horizon) = ended.checked_sub(Duration::from_secs(1)) else {
            continue;
        };
        for event in published {
            if event.started <= began || event.confirmed >= horizon {
                continue;
            }
            summary.expected += 1;
            if log.received.contains(&event.seq) {
                summary.received += 1;
            } else if log.resets.iter().any(|r| event.seq > r.after && event.started < r.at) {
                summary.excused += 1;
            } else {
                summary.lost += 1;
                if summary.examples.len() < 10 {
                    summary.examples.push((log.index, event.seq));
                    if std::env::var_os("SOAK_DEBUG").is_some() {
                        let mut got: Vec<u64> = log.received.iter().copied().collect();
                        got.sort_unstable();
                        eprintln!(
                            "client {} lost {} (published {:?} after its start, confirmed {:?} before its end): \
                             pauses {}, reconnects {}, resets {:?}, received {} events, around: {:?}",
                            log.index,
                            event.seq,
                            event.started - began,
                            horizon - event.confirmed,
                            log.pauses,
                            log.reconnects,
                            log.resets.iter().map(|r| (r.after, r.at - began)).collect::<Vec<_>>(),
                            got.len(),
                            got.iter().filter(|s| s.abs_diff(event.seq) < 5).collect::<Vec<_>>(),
                        );
                    }
                }
            }
        }
    }
    summary
}
