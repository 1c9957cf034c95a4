//! The HTTP server loop the adapters' `serve` functions share (feature
//! `server`, Tokio and hyper): [`ServerLimits`], the timeouts and the socket
//! cap a server facing the internet needs, and [`serve`], which accepts
//! connections on a [`TcpListener`] and serves each with HTTP/1.1 or HTTP/2
//! under those limits until a shutdown future completes.
//!
//! What each limit closes:
//!
//! * **Request head** ([`ServerLimits::header_timeout`]): a connection whose
//!   request head has not arrived in full within the time, from the moment
//!   the server starts waiting for it: from its accept, and from the end of
//!   the previous request on a kept-alive connection. This covers a
//!   connection that sends nothing, a head sent a byte at a time, and the
//!   wait for the next request. The loop times it itself, as the time
//!   without a request in progress: hyper's own header read timeout, once
//!   set, also closed kept-alive connections busy with one request after
//!   another every time it ran out (measured: every 10 s under a steady
//!   flow of publishes).
//! * **Request body** ([`ServerLimits::body_timeout`]): a request body not
//!   complete within the time after its head ([`TimedBody`]). The handler
//!   reading it gets an error (the adapters answer `400`), and the
//!   connection is closed after the answer, as its body was never read to
//!   the end.
//! * **Idle keep-alive** ([`ServerLimits::keep_alive_timeout`]): a connection
//!   without a request in progress for the time (HTTP/1.1 and HTTP/2). An
//!   event stream is a request in progress: a quiet stream stays open.
//! * **Write** ([`ServerLimits::write_timeout`]): a connection whose socket
//!   accepts no byte of a pending write for the time ([`WriteTimeout`]), such
//!   as a client that stopped reading: the socket is closed, including after
//!   the engine has already unregistered the stream as a slow client.
//! * **Open sockets** ([`ServerLimits::max_sockets`]): at most that many
//!   accepted connections at once. A connection accepted beyond the cap is
//!   closed at once, so that descriptors never run out and the listen
//!   backlog keeps moving; the timeouts above free the places held by
//!   connections that never become requests.
//!
//! Errors of `accept` other than a single connection's failure (running out
//! of descriptors, `EMFILE`, among them) pause accepting for 10 ms, doubling
//! up to 1 s while they last, and are logged at most once a second. Errors of
//! one connection (a client that went away, a timeout above) are logged at
//! `debug` level only.
//!
//! Each request carries the client's socket address as a
//! [`RemoteAddr`] extension, which the per-address
//! limit reads.

mod body;
mod io;
mod own_wake;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};

pub use body::TimedBody;
pub use hyper::body::Incoming;
pub use io::WriteTimeout;
use own_wake::OwnWake;

use crate::SseConfig;
use crate::http::RemoteAddr;

/// The timeouts and the socket cap of [`serve`]; see the [module
/// documentation](self) for what each closes. Start from
/// [`ServerLimits::default`] or [`ServerLimits::for_config`] and change the
/// fields you need; [`serve`] checks them with [`ServerLimits::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// How long a request head may take to arrive in full (HTTP/1.1),
    /// counted from when the server starts waiting for it. Default 10 s.
    pub header_timeout: Duration,
    /// How long a request body may take to arrive in full after its head.
    /// Default 30 s.
    pub body_timeout: Duration,
    /// How long a connection may stay open without a request in progress.
    /// Default 60 s. The wait for the next request is also a wait for a
    /// request head: the shorter of this and
    /// [`header_timeout`](Self::header_timeout) applies.
    pub keep_alive_timeout: Duration,
    /// How long a pending write may make no progress before the connection
    /// is closed. Default 30 s.
    pub write_timeout: Duration,
    /// How many accepted connections may be open at once; one accepted
    /// beyond it is closed at once. Default: the engine's
    /// [`max_connections`](SseConfig::max_connections) plus
    /// [`socket_headroom`](Self::socket_headroom) of it.
    pub max_sockets: usize,
}

/// A [`ServerLimits`] field holds a value [`serve`] cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerLimitsError {
    /// A timeout is shorter than [`ServerLimits::MIN_TIMEOUT`].
    #[error("{field} is {value:?}, shorter than the minimum of 10 ms")]
    TimeoutTooShort {
        /// The field.
        field: &'static str,
        /// Its value.
        value: Duration,
    },
    /// [`ServerLimits::max_sockets`] is zero.
    #[error("max_sockets must be at least 1")]
    NoSockets,
}

impl ServerLimits {
    /// The shortest timeout [`validate`](Self::validate) accepts.
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(10);

    /// The defaults, with [`max_sockets`](Self::max_sockets) derived from
    /// `config`'s connection limit.
    pub fn for_config(config: &SseConfig) -> Self {
        ServerLimits {
            max_sockets: Self::socket_headroom(config.max_connections()),
            ..ServerLimits::default()
        }
    }

    /// The socket cap derived from a limit of `max_connections` streams:
    /// the streams, plus a tenth of them and at least 1,024 more for the
    /// requests that are not streams (publish, administration, a stream
    /// being refused) and for connections still sending their first head.
    pub fn socket_headroom(max_connections: usize) -> usize {
        max_connections.saturating_add((max_connections / 10).max(1024))
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`ServerLimitsError::TimeoutTooShort`] naming the first timeout
    /// shorter than 10 ms; [`ServerLimitsError::NoSockets`] for a cap of 0.
    pub fn validate(&self) -> Result<(), ServerLimitsError> {
        for (field, value) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("keep_alive_timeout", self.keep_alive_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if value < Self::MIN_TIMEOUT {
                return Err(ServerLimitsError::TimeoutTooShort { field, value });
            }
        }
        if self.max_sockets == 0 {
            return Err(ServerLimitsError::NoSockets);
        }
        Ok(())
    }
}

impl Default for ServerLimits {
    /// 10 s for a request head, 30 s for a body, 60 s idle between requests,
    /// 30 s for a write that makes no progress, and 11,024 sockets (the
    /// engine's default of 10,000 connections plus
    /// [`socket_headroom`](Self::socket_headroom)).
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_sockets: Self::socket_headroom(SseConfig::default().max_connections()),
        }
    }
}

/// Serves `handler` on `listener` under `limits` until `shutdown` completes,
/// then stops accepting, shuts every connection down gracefully (requests in
/// progress finish, idle connections close) and returns once all are closed.
///
/// `handler` answers one request, whose body it should wrap in a
/// [`TimedBody`] with [`ServerLimits::body_timeout`] before reading it (the
/// adapters do). The request carries the client's address as a
/// [`RemoteAddr`] extension. Must run inside a Tokio runtime.
///
/// # Errors
/// [`std::io::ErrorKind::InvalidInput`] when `limits` do not
/// [`validate`](ServerLimits::validate). Accept errors never end the loop.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    limits: ServerLimits,
    handler: H,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    limits
        .validate()
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No `header_read_timeout`: the loop bounds the wait for a head itself
    // (see the module's documentation).
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let sockets = Arc::new(Semaphore::new(limits.max_sockets.min(Semaphore::MAX_PERMITS)));
    let (stop, _) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Backoff::default();
    let mut refused_log = Throttle::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(error) if is_connection_error(&error) => {
                tracing::debug!(%error, "a connection failed while it was accepted");
                continue;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                if let Some(suppressed) = backoff.log.ready() {
                    tracing::warn!(%error, ?delay, suppressed, "cannot accept connections; pausing");
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&sockets).try_acquire_owned() else {
            if let Some(suppressed) = refused_log.ready() {
                tracing::warn!(
                    max_sockets = limits.max_sockets,
                    suppressed,
                    "open socket cap reached: closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        let io = TokioIo::new(WriteTimeout::new(stream, limits.write_timeout));
        let activity = Arc::new(Activity::default());
        let service = {
            let (handler, activity) = (handler.clone(), Arc::clone(&activity));
            hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(RemoteAddr(peer));
                let guard = activity.begin();
                // Boxed: hyper keeps the allocation of its request future for
                // the connection's lifetime, sized for the future it holds.
                // The handler's future, freed once it has answered, leaves
                // a box of a few words behind instead of 1 KiB per stream.
                let answer = Box::pin(handler(request));
                async move {
                    let response = answer.await;
                    Ok::<_, Infallible>(response.map(|body| body::Tracked::new(body, guard)))
                }
            })
        };
        let (builder, mut stopped) = (Arc::clone(&builder), stop.subscribe());
        // Without a request in progress, a connection waits for a head: the
        // shorter of the two bounds applies.
        let idle = limits.keep_alive_timeout.min(limits.header_timeout);
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let mut connection = std::pin::pin!(builder.serve_connection_with_upgrades(io, service));
            // The watchers are polled only when one of them was woken
            // (`OwnWake`), not on every wake of the connection: a stream
            // woken to write an event costs one poll of the connection.
            let watch = OwnWake::new(async {
                tokio::select! {
                    _ = stopped.changed() => Watched::Stopping,
                    () = activity.idle_for(idle) => Watched::Idle,
                }
            });
            let mut watch = std::pin::pin!(Some(watch));
            // Set once an idle connection was asked to close: one that is
            // still reading a head then (a slow one) does not get to finish.
            // Boxed: rarely needed, and the connection's task stays smaller.
            let mut give_up = None::<Pin<Box<OwnWake<tokio::time::Sleep>>>>;
            let closed = std::future::poll_fn(|cx| {
                loop {
                    if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                        return Poll::Ready(Some(result));
                    }
                    if let Some(give_up) = give_up.as_mut()
                        && give_up.as_mut().poll(cx).is_ready()
                    {
                        tracing::debug!(%peer, "closing a connection still sending a request head");
                        return Poll::Ready(None);
                    }
                    let Some(Poll::Ready(watched)) = watch.as_mut().as_pin_mut().map(|watch| watch.poll(cx)) else {
                        return Poll::Pending;
                    };
                    watch.set(None);
                    if matches!(watched, Watched::Idle) {
                        if !activity.began() {
                            // Before its first request the protocol is not
                            // known yet, and hyper could not close it.
                            tracing::debug!(%peer, "closing a connection without a request head");
                            return Poll::Ready(None);
                        }
                        tracing::debug!(%peer, "closing an idle connection");
                        give_up = Some(Box::pin(OwnWake::new(tokio::time::sleep(header_timeout))));
                    }
                    // Polled again at once: the close makes progress on a poll.
                    connection.as_mut().graceful_shutdown();
                }
            })
            .await;
            if let Some(Err(error)) = closed {
                tracing::debug!(%peer, error = %Chain(&*error), "connection closed with an error");
            }
        });
    }
    drop(listener);
    stop.send_replace(());
    stop.closed().await;
    Ok(())
}

/// What a connection's watchers saw.
enum Watched {
    /// The server is shutting down.
    Stopping,
    /// No request has been in progress for the idle time.
    Idle,
}

/// Whether an `accept` error concerns one connection only (it went away
/// before it was accepted), after which accepting goes on at once.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// The pause after an `accept` error: 10 ms, doubling up to 1 s while
/// errors last, back to 10 ms after a connection is accepted.
#[derive(Debug, Default)]
struct Backoff {
    delay: Option<Duration>,
    log: Throttle,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn next_delay(&mut self) -> Duration {
        let delay = self.delay.map_or(Self::FIRST, |delay| (delay * 2).min(Self::MAX));
        self.delay = Some(delay);
        delay
    }

    fn reset(&mut self) {
        self.delay = None;
    }
}

/// Lets a repeated log line through at most once a second.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    const PERIOD: Duration = Duration::from_secs(1);

    /// `Some(how many were suppressed since the last one)` when a line may
    /// be logged now.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < Self::PERIOD) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The requests in progress on one connection, for the idle timeout: a
/// request counts from its head until its response body is done.
#[derive(Debug, Default)]
struct Activity {
    active: AtomicUsize,
    began: std::sync::atomic::AtomicBool,
    changed: Notify,
}

/// One request in progress on a connection; ends when dropped.
#[derive(Debug)]
struct ActiveGuard(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.began.store(true, Ordering::Release);
        self.active.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        ActiveGuard(Arc::clone(self))
    }

    /// Whether a request has begun on the connection.
    fn began(&self) -> bool {
        self.began.load(Ordering::Acquire)
    }

    /// Completes once no request has been in progress for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.active.load(Ordering::Acquire) == 0 {
                // Boxed: a connection busy with a stream does not hold the
                // timer's memory.
                tokio::select! {
                    () = Box::pin(tokio::time::sleep(idle)) => return,
                    () = changed => {}
                }
            } else {
                changed.await;
            }
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

/// An error with its sources, on one line.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let limits = ServerLimits::default();
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.max_sockets, 11_024);
        assert_eq!(limits.validate(), Ok(()));
        let config = SseConfig::builder().max_connections(50_000).build().expect("valid");
        assert_eq!(ServerLimits::for_config(&config).max_sockets, 55_000);
        let short = ServerLimits {
            write_timeout: Duration::from_millis(9),
            ..ServerLimits::default()
        };
        assert!(matches!(
            short.validate(),
            Err(ServerLimitsError::TimeoutTooShort {
                field: "write_timeout",
                ..
            })
        ));
        let none = ServerLimits {
            max_sockets: 0,
            ..ServerLimits::default()
        };
        assert_eq!(none.validate(), Err(ServerLimitsError::NoSockets));
    }

    #[test]
    fn backoff_doubles_up_to_a_second_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> = (0..9).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(10));
    }

    #[test]
    fn throttle_lets_one_line_through_a_second() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.ready(), Some(0));
        assert_eq!(throttle.ready(), None);
        assert_eq!(throttle.ready(), None);
        throttle.last = Some(Instant::now() - Duration::from_secs(2));
        assert_eq!(throttle.ready(), Some(2));
    }
}
