//! Appending to the stream: one multiplexed connection shared by every
//! publish, reconnected when needed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, Script};

use crate::{Inner, RedisBackplaneError};

/// The Lua function every append goes through: `append_entry(stream,
/// maxlen, payload, clock)` appends `payload` with the id of the entry
/// before it in `stream` (`0-0` for the first entry of a new stream) as
/// `prev`, atomically, and returns the new entry's id. With `clock` empty,
/// Redis gives the id (`*`); with sharding, `clock` names the key of the
/// last id given in any stream of the prefix, and the id is taken after
/// it, and after the stream's last, from Redis's time in the same
/// `<ms>-<seq>` form: every stream's ids then follow one order, the order
/// of the appends.
pub(crate) const APPEND_FN: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local function append_entry(stream, maxlen, payload, clock)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  local prev = '0-0'
  if last[1] then prev = last[1][1] end
  local id = '*'
  if clock ~= '' then
    local t = redis.call('TIME')
    local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local seq = 0
    local function after(given)
      if not given then return end
      local given_ms, given_seq = string.match(given, '^(%d+)-(%d+)$')
      if not given_ms then return end
      given_ms, given_seq = tonumber(given_ms), tonumber(given_seq)
      if given_ms > ms or (given_ms == ms and given_seq >= seq) then
        ms, seq = given_ms, given_seq + 1
      end
    end
    after(redis.call('GET', clock))
    if last[1] then after(prev) end
    id = string.format('%.0f-%.0f', ms, seq)
    redis.call('SET', clock, id)
  end
  return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, id, 'p', payload, 'prev', prev)
end
";

/// Appends the payload; see [`APPEND_FN`].
///
/// KEYS[1]: the stream; ARGV[1]: the history size; ARGV[2]: the payload;
/// ARGV[3]: the clock's key, or empty.
const APPEND: &str = r"
return append_entry(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
";

/// As [`APPEND`], unless an entry was appended with the same key within the
/// window: then nothing is appended. Returns the entry's id and 1 for an
/// earlier entry, 0 for this one.
///
/// KEYS[1]: the stream; KEYS[2]: the key's record; ARGV[1]: the history
/// size; ARGV[2]: the payload; ARGV[3]: the window in ms; ARGV[4]: the
/// clock's key, or empty.
const APPEND_ONCE: &str = r"
local earlier = redis.call('GET', KEYS[2])
if earlier then return {earlier, 1} end
local id = append_entry(KEYS[1], ARGV[1], ARGV[2], ARGV[4])
redis.call('SET', KEYS[2], id, 'PX', ARGV[3])
return {id, 0}
";

/// Whether Redis itself answered `error` (the command was refused, not
/// lost): the connection is fine, and the command did not take effect.
pub(crate) fn answered(error: &RedisError) -> bool {
    matches!(error.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// A publishing connection idle for longer than this is checked with a
/// `PING` before an append: an append that fails cannot be retried (it may
/// have been stored), a `PING` can.
const IDLE_CHECK: Duration = Duration::from_secs(1);

pub(crate) struct Writer {
    config: AsyncConnectionConfig,
    link: tokio::sync::Mutex<Option<Link>>,
    /// Numbers the connections, to forget only the one that failed.
    next_link: AtomicU64,
    /// Failed connection attempts so far: a publish that waited for another
    /// one's attempt does not try again at once when that one failed.
    connect_failures: AtomicU64,
    /// When the current connection last answered, in ms since `epoch`.
    last_ok_ms: AtomicU64,
    /// Check the current connection before the next append: the reader's
    /// connection just broke, so this one may have too.
    suspect: AtomicBool,
    epoch: Instant,
    script: Script,
    once: Script,
}

struct Link {
    connection: MultiplexedConnection,
    id: u64,
}

impl Writer {
    pub(crate) fn new(timeout: Duration) -> Self {
        Writer {
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
            link: tokio::sync::Mutex::new(None),
            next_link: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            last_ok_ms: AtomicU64::new(0),
            suspect: AtomicBool::new(false),
            epoch: Instant::now(),
            script: Script::new(&format!("{APPEND_FN}{APPEND}")),
            once: Script::new(&format!("{APPEND_FN}{APPEND_ONCE}")),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn answered(&self) {
        self.last_ok_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The shared connection: the current one, checked first if idle, or a
    /// new one.
    async fn connection(&self, inner: &Inner) -> Result<(MultiplexedConnection, u64), RedisBackplaneError> {
        let failures = self.connect_failures.load(Ordering::Acquire);
        let mut link = self.link.lock().await;
        if let Some(current) = link.as_mut() {
            let idle_ms = self.now_ms().saturating_sub(self.last_ok_ms.load(Ordering::Relaxed));
            let suspect = self.suspect.swap(false, Ordering::AcqRel);
            if !suspect && Duration::from_millis(idle_ms) < IDLE_CHECK {
                return Ok((current.connection.clone(), current.id));
            }
            match redis::cmd("PING").query_async::<()>(&mut current.connection).await {
                Ok(()) => {
                    self.answered();
                    return Ok((current.connection.clone(), current.id));
                }
                Err(error) => {
                    tracing::debug!(%error, "sse-redis: the publishing connection no longer answers; reconnecting");
                    *link = None;
                }
            }
        }
        if self.connect_failures.load(Ordering::Acquire) != failures {
            return Err(RedisBackplaneError::Unavailable);
        }
        match inner
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
        {
            Ok(connection) => {
                let id = self.next_link.fetch_add(1, Ordering::Relaxed);
                *link = Some(Link {
                    connection: connection.clone(),
                    id,
                });
                self.answered();
                Ok((connection, id))
            }
            Err(error) => {
                self.connect_failures.fetch_add(1, Ordering::AcqRel);
                Err(RedisBackplaneError::Connect(error))
            }
        }
    }

    /// After `error` on connection `id`: forgets it if it is broken.
    async fn failed(&self, id: u64, error: &RedisError) {
        if answered(error) {
            return; // Redis answered: the connection is fine.
        }
        let mut link = self.link.lock().await;
        if link.as_ref().is_some_and(|link| link.id == id) {
            *link = None;
        }
    }

    /// Records the outcome of a command on connection `id`: the time of an
    /// answer, or a broken connection forgotten.
    async fn settle<T>(&self, id: u64, result: Result<T, RedisError>) -> Result<T, RedisBackplaneError> {
        match result {
            Ok(value) => {
                self.answered();
                Ok(value)
            }
            Err(error) => {
                self.failed(id, &error).await;
                Err(RedisBackplaneError::Command(error))
            }
        }
    }

    /// Has the current connection checked before its next append.
    pub(crate) fn suspect(&self) {
        self.suspect.store(true, Ordering::Release);
    }

    /// Forgets the current connection, whatever it is.
    pub(crate) fn forget_connection(&self) {
        if let Ok(mut link) = self.link.try_lock() {
            *link = None;
        }
    }

    /// Appends `payload` to the stream; returns its id. `sent` is set once
    /// the command is on its way: a failure after that may hide a success.
    pub(crate) async fn append(
        &self,
        inner: &Inner,
        shard: Option<u32>,
        payload: &[u8],
        sent: &AtomicBool,
    ) -> Result<String, RedisBackplaneError> {
        let (mut connection, id) = self.connection(inner).await?;
        sent.store(true, Ordering::Release);
        let result = self
            .script
            .key(inner.stream_of(shard).as_ref())
            .arg(inner.history)
            .arg(payload)
            .arg(inner.clock_key())
            .invoke_async::<String>(&mut connection)
            .await;
        self.settle(id, result).await
    }

    /// As [`Writer::append`], once per `key` within `window_ms`: the
    /// entry's id, and whether it is an earlier one.
    pub(crate) async fn append_once(
        &self,
        inner: &Inner,
        shard: Option<u32>,
        payload: &[u8],
        key: &str,
        window_ms: u64,
        sent: &AtomicBool,
    ) -> Result<(String, bool), RedisBackplaneError> {
        let (mut connection, id) = self.connection(inner).await?;
        sent.store(true, Ordering::Release);
        let result = self
            .once
            .key(inner.stream_of(shard).as_ref())
            .key(format!("{}:once:{key}", inner.prefix))
            .arg(inner.history)
            .arg(payload)
            .arg(window_ms)
            .arg(inner.clock_key())
            .invoke_async::<(String, u8)>(&mut connection)
            .await;
        self.settle(id, result).await.map(|(id, earlier)| (id, earlier == 1))
    }

    /// Runs `command` on the shared connection.
    pub(crate) async fn call<T, F, Fut>(&self, inner: &Inner, command: F) -> Result<T, RedisBackplaneError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let (connection, id) = self.connection(inner).await?;
        let result = command(connection).await;
        self.settle(id, result).await
    }

    /// The last `history` entries of the stream, oldest first.
    pub(crate) async fn recent(&self, inner: &Inner) -> Result<Vec<crate::reader::Entry>, RedisBackplaneError> {
        let (mut connection, id) = self.connection(inner).await?;
        let result = crate::reader::recent(&mut connection, &inner.key, inner.history).await;
        self.settle(id, result).await
    }

    /// Checks that Redis answers.
    pub(crate) async fn ping(&self, inner: &Inner) -> Result<(), RedisBackplaneError> {
        let (mut connection, id) = self.connection(inner).await?;
        match redis::cmd("PING").query_async::<()>(&mut connection).await {
            Ok(()) => {
                self.answered();
                Ok(())
            }
            Err(error) => {
                self.failed(id, &error).await;
                Err(RedisBackplaneError::Command(error))
            }
        }
    }
}
