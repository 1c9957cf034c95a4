//! The scenarios: the load each one puts on the servers ([`Load`]) and the
//! list of them that the command line picks from ([`scenarios`]).

use crate::Args;

/// One scenario's load.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) connections: usize,
    /// Events published per second (open loop); 0 for an idle phase.
    pub(crate) rate: u64,
    pub(crate) payload: usize,
    /// Publish to one user (`u0`) instead of everyone.
    pub(crate) targeted: bool,
    /// Fraction of clients that stop reading after connecting.
    pub(crate) slow_fraction: f64,
    /// Connects and disconnects per second during the phase.
    pub(crate) churn: u64,
    pub(crate) heartbeat_ms: u64,
    pub(crate) seconds: u64,
    /// Compare the library through a Redis backplane with the library in
    /// memory, instead of the library with the baseline.
    pub(crate) redis: bool,
    /// Compare the library recording its metrics into a Prometheus recorder
    /// with the library recording none (`SSE_METRICS=off`), instead of the
    /// library with the baseline.
    pub(crate) metrics: bool,
    /// Subscribe over HTTP/2 with prior knowledge, the streams spread over
    /// this many connections (0: HTTP/1.1, one connection per stream).
    pub(crate) http2_connections: usize,
    /// Publish with a conflation key among this many (`k0`, `k1`, ...), and
    /// compare with the same load published without keys, both on the
    /// library with a queue of `queue` frames; 0: no keys.
    pub(crate) keys: usize,
    /// `SSE_CLIENT_QUEUE` of the keyed comparison.
    pub(crate) queue: usize,
    /// Compare the library with this write batch window (ms,
    /// `SSE_WRITE_BATCH_MS`) with the library without one; 0: no such
    /// comparison.
    pub(crate) batch_ms: u64,
}

impl Load {
    fn new(connections: usize, rate: u64, seconds: u64) -> Self {
        Load {
            connections,
            rate,
            payload: 100,
            targeted: false,
            slow_fraction: 0.0,
            churn: 0,
            heartbeat_ms: 30_000,
            seconds,
            redis: false,
            metrics: false,
            http2_connections: 0,
            keys: 0,
            queue: 1024,
            batch_ms: 0,
        }
    }
}

pub(crate) fn scenarios(args: &Args) -> Vec<(&'static str, Load)> {
    let n = args.connections;
    let s = args.seconds;
    let mut list = vec![
        ("idle-1k", Load::new(1000.min(n), 0, 2)),
        ("idle-10k", Load::new(n, 0, 2)),
        ("broadcast-10k", Load::new(n, 10, s)),
        ("broadcast-max", Load::new(1000.min(n), 400, s)),
        // 100 sends/s: a rate the baseline sustains without falling behind,
        // so its cost is one wake and filter per connection per event and
        // not a saturated batch.
        (
            "targeted-100",
            Load {
                targeted: true,
                ..Load::new(100.min(n), 100, s)
            },
        ),
        (
            "targeted-1k",
            Load {
                targeted: true,
                ..Load::new(1000.min(n), 100, s)
            },
        ),
        (
            "targeted-10k",
            Load {
                targeted: true,
                ..Load::new(n, 100, s)
            },
        ),
        (
            "heartbeat-10k",
            Load {
                heartbeat_ms: 1000,
                ..Load::new(n, 0, s)
            },
        ),
        // The same load without and with 1% of clients that stop reading:
        // the others' p99 should not move, and the server's memory stays
        // bounded by the queue limits.
        (
            "readers-all",
            Load {
                payload: 16 * 1024,
                ..Load::new(1000.min(n), 20, s)
            },
        ),
        (
            "slow-readers",
            Load {
                slow_fraction: 0.01,
                payload: 16 * 1024,
                ..Load::new(1000.min(n), 20, s)
            },
        ),
        // Slow readers again, on a short queue, with events published under a
        // few conflation keys and without: with keys, a slow reader's queue
        // holds the latest event per key and it stays connected; without,
        // it is closed as too slow. Half the clients stop reading.
        (
            "slow-readers-keyed",
            Load {
                slow_fraction: 0.5,
                payload: 64 * 1024,
                keys: 8,
                queue: 32,
                ..Load::new(20.min(n), 100, s)
            },
        ),
        (
            "churn",
            Load {
                churn: 200,
                ..Load::new(n, 10, s)
            },
        ),
    ];
    // 100 events/s to each client, written as they come or gathered over
    // a window (`--batch-ms`, 5 by default): what batching buys in writes
    // and CPU.
    list.push((
        "batch-100",
        Load {
            batch_ms: args.batch_ms.max(1),
            ..Load::new(1000.min(n), 100, s)
        },
    ));
    // Many streams over few connections, as browsers multiplex an origin's
    // streams over HTTP/2 (100 per connection, within the servers' limit
    // of concurrent streams).
    list.push((
        "h2c-1k",
        Load {
            http2_connections: 10,
            ..Load::new(1000.min(n), 10, s)
        },
    ));
    list.push((
        "h2c-10k",
        Load {
            http2_connections: n.div_ceil(100),
            ..Load::new(n, 10, s)
        },
    ));
    // The broadcasts with and without metrics: what observability costs.
    list.push((
        "metrics-broadcast-10k",
        Load {
            metrics: true,
            ..Load::new(n, 10, s)
        },
    ));
    list.push((
        "metrics-broadcast-max",
        Load {
            metrics: true,
            ..Load::new(1000.min(n), 400, s)
        },
    ));
    list.push((
        "redis-latency",
        Load {
            redis: true,
            ..Load::new(1000.min(n), 100, s)
        },
    ));
    for (name, payload) in [
        ("payload-100B", 100),
        ("payload-1KiB", 1024),
        ("payload-16KiB", 16 * 1024),
    ] {
        list.push((
            name,
            Load {
                payload,
                ..Load::new(1000.min(n), 50, s)
            },
        ));
    }
    if args.scenario.is_empty() {
        list
    } else {
        list.into_iter()
            .filter(|(name, _)| args.scenario.iter().any(|s| s == name))
            .collect()
    }
}
