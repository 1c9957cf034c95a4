//! The brokers of the backplane cases: the Redis at [`REDIS_URL`] and the
//! NATS at [`NATS_ADDR`], a key prefix of one test's own on each
//! ([`RedisPrefix`], [`NatsPrefix`]) that is cleaned up when dropped, and
//! whether a missing broker fails the test ([`strict`]).

use std::io::{self, Read as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The Redis of the Redis cases.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

const REDIS_ADDR: &str = "127.0.0.1:6379";

/// A key prefix no other test, run or process uses: `test`, the process,
/// the time and a count.
fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("sse-conformance-{test}-{}-{nanos:x}-{n}", std::process::id())
}

/// Whether `SSE_CI_STRICT=1`: what a test needs must be there.
pub fn strict() -> bool {
    std::env::var("SSE_CI_STRICT").is_ok_and(|value| value == "1")
}

/// A key prefix of one test's own on the Redis at [`REDIS_URL`], for the
/// servers of that test (`SSE_REDIS_PREFIX`); its keys are deleted when
/// the prefix is dropped.
#[derive(Debug)]
pub struct RedisPrefix {
    prefix: String,
}

impl RedisPrefix {
    /// A fresh prefix for `test`, or `None` (after printing why) when
    /// nothing answers `PING` at [`REDIS_URL`].
    ///
    /// # Panics
    /// Instead of returning `None`, under `SSE_CI_STRICT=1`.
    pub async fn new_or_skip(test: &str) -> Option<RedisPrefix> {
        let ping = async {
            let mut stream = TcpStream::connect(REDIS_ADDR).await?;
            stream.write_all(b"PING\r\n").await?;
            let mut answer = [0; 7];
            stream.read_exact(&mut answer).await?;
            Ok::<_, io::Error>(answer)
        };
        let reason = match tokio::time::timeout(Duration::from_secs(3), ping).await {
            Ok(Ok(answer)) if &answer == b"+PONG\r\n" => {
                return Some(RedisPrefix {
                    prefix: unique_prefix(test),
                });
            }
            Ok(Ok(answer)) => format!("{REDIS_ADDR} answered PING with {:?}", String::from_utf8_lossy(&answer)),
            Ok(Err(error)) => format!("no Redis at {REDIS_ADDR}: {error}"),
            Err(_) => format!("no answer to PING from {REDIS_ADDR} within 3 s"),
        };
        assert!(!strict(), "SSE_CI_STRICT=1 and {test} cannot run: {reason}");
        eprintln!("skipping {test}: {reason} (set SSE_CI_STRICT=1 to make this a failure)");
        None
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `SSE_REDIS_URL` and `SSE_REDIS_PREFIX` for [`TestServer::start`](crate::TestServer::start).
    pub fn settings(&self) -> [(&str, &str); 2] {
        [("SSE_REDIS_URL", REDIS_URL), ("SSE_REDIS_PREFIX", &self.prefix)]
    }
}

impl Drop for RedisPrefix {
    /// Deletes every key of the prefix: the stream, and the presence
    /// records of instances that did not withdraw theirs.
    fn drop(&mut self) {
        const DELETE: &str = "local keys = redis.call('KEYS', ARGV[1]) \
            for _, key in ipairs(keys) do redis.call('DEL', key) end return #keys";
        let pattern = format!("{}:*", self.prefix);
        let args = ["EVAL", DELETE, "0", pattern.as_str()];
        let mut command = format!("*{}\r\n", args.len());
        for arg in args {
            command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        let deleted = (|| {
            let addr = REDIS_ADDR.parse().map_err(io::Error::other)?;
            let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(command.as_bytes())?;
            let mut answer = [0; 1];
            stream.read_exact(&mut answer)
        })();
        if let Err(error) = deleted {
            eprintln!("could not delete the keys {pattern}: {error}");
        }
    }
}

/// The NATS server of the NATS cases.
pub const NATS_ADDR: &str = "127.0.0.1:4222";

/// A stream of one test's own on the NATS at [`NATS_ADDR`], for the servers
/// of that test (`SSE_NATS_PREFIX`); the stream is deleted when the prefix
/// is dropped.
#[derive(Debug)]
pub struct NatsPrefix {
    prefix: String,
}

impl NatsPrefix {
    /// A fresh prefix for `test`, or `None` (after printing why) when no
    /// NATS with JetStream answers at [`NATS_ADDR`].
    ///
    /// # Panics
    /// Instead of returning `None`, under `SSE_CI_STRICT=1`.
    pub async fn new_or_skip(test: &str) -> Option<NatsPrefix> {
        let info = async {
            let stream = TcpStream::connect(NATS_ADDR).await?;
            let mut line = String::new();
            tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(stream), &mut line).await?;
            Ok::<_, io::Error>(line)
        };
        let reason = match tokio::time::timeout(Duration::from_secs(3), info).await {
            Ok(Ok(line)) if line.starts_with("INFO ") && line.contains("\"jetstream\":true") => {
                return Some(NatsPrefix {
                    prefix: unique_prefix(test),
                });
            }
            Ok(Ok(line)) => format!("{NATS_ADDR} is not a NATS server with JetStream: {line:?}"),
            Ok(Err(error)) => format!("no NATS at {NATS_ADDR}: {error}"),
            Err(_) => format!("no greeting from {NATS_ADDR} within 3 s"),
        };
        assert!(!strict(), "SSE_CI_STRICT=1 and {test} cannot run: {reason}");
        eprintln!("skipping {test}: {reason} (set SSE_CI_STRICT=1 to make this a failure)");
        None
    }

    /// `SSE_NATS_URL` and `SSE_NATS_PREFIX` for [`TestServer::start`](crate::TestServer::start).
    pub fn settings(&self) -> [(&str, &str); 2] {
        [
            ("SSE_NATS_URL", "nats://127.0.0.1:4222"),
            ("SSE_NATS_PREFIX", &self.prefix),
        ]
    }
}

impl Drop for NatsPrefix {
    /// Deletes the stream, through the JetStream API, waiting for its
    /// answer.
    fn drop(&mut self) {
        let command = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB _sse_cleanup 1\r\n\
             PUB $JS.API.STREAM.DELETE.{}-events _sse_cleanup 0\r\n\r\n",
            self.prefix
        );
        let deleted = (|| {
            let addr = NATS_ADDR.parse().map_err(io::Error::other)?;
            let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(command.as_bytes())?;
            let mut seen = Vec::new();
            let mut buffer = [0; 512];
            while !String::from_utf8_lossy(&seen).contains("MSG _sse_cleanup") {
                let read = stream.read(&mut buffer)?;
                if read == 0 {
                    return Err(io::Error::other("the connection closed"));
                }
                seen.extend_from_slice(&buffer[..read]);
            }
            Ok(())
        })();
        if let Err(error) = deleted {
            eprintln!("could not delete the stream {}-events: {error}", self.prefix);
        }
    }
}
