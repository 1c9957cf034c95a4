//! Presence across instances, in Redis: what
//! [`Backplane::shares_presence`](sse_core::Backplane::shares_presence)
//! asks of a backplane, done by Lua scripts so that each change, the sums it
//! moves and the notices it appends to the stream are one atomic step.
//!
//! Keys, beside the stream `{prefix}:events`:
//!
//! * `{prefix}:presence:instances`, a sorted set: each instance whose
//!   presence is recorded, scored by the time (Redis's clock, in ms) its
//!   presence lapses;
//! * `{prefix}:presence:i:{instance}`, a hash: that instance's connection
//!   count for each `["channel","user"]` (JSON), and
//!   `{prefix}:presence:l:{instance}` the leave notice of each;
//! * `{prefix}:presence:c:{channel}`, a hash: each present user's
//!   connections in the channel across the recorded instances.
//!
//! A change of a count moves the channel's sum; a sum leaving 0 appends the
//! join notice to the stream, a sum falling to 0 the leave notice, with the
//! `prev` link of every other append. Every renewal first removes the
//! instances whose presence lapsed (up to 64 at a time), as a withdrawal
//! does. Scripts compute these keys themselves: this needs a standalone
//! Redis (or one where every key of the prefix lives on one node).

use std::time::Duration;

use redis::Script;
use sse_core::{PresenceMember, PresenceUpdate};

use crate::writer::APPEND_FN;
use crate::{Inner, RedisBackplaneError};

/// What every presence script starts with. KEYS[1]: the stream; KEYS[2]:
/// the instances; ARGV[1]: the prefix; ARGV[2]: the history size.
const PRELUDE: &str = r"
local prefix, maxlen = ARGV[1], ARGV[2]
local function append(payload)
  local clock = ''
  if CLOCKED then clock = prefix .. ':clock' end
  append_entry(KEYS[1], maxlen, payload, clock)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function counts_key(i) return prefix .. ':presence:i:' .. i end
local function leaves_key(i) return prefix .. ':presence:l:' .. i end
local function set(i, channel, user, n, join, leave)
  local field = cjson.encode({channel, user})
  local old = tonumber(redis.call('HGET', counts_key(i), field) or '0')
  if n > 0 then
    redis.call('HSET', counts_key(i), field, n)
    redis.call('HSET', leaves_key(i), field, leave)
  else
    if not leave then leave = redis.call('HGET', leaves_key(i), field) end
    redis.call('HDEL', counts_key(i), field)
    redis.call('HDEL', leaves_key(i), field)
  end
  if n == old then return end
  local key = prefix .. ':presence:c:' .. channel
  local total = redis.call('HINCRBY', key, user, n - old)
  local before = total - (n - old)
  if total <= 0 then redis.call('HDEL', key, user) end
  if before <= 0 and total > 0 then
    append(join)
  elseif before > 0 and total <= 0 and leave then
    append(leave)
  end
end
local function drop(i)
  local all = redis.call('HGETALL', counts_key(i))
  for k = 1, #all, 2 do
    local pair = cjson.decode(all[k])
    set(i, pair[1], pair[2], 0, nil, nil)
  end
  redis.call('DEL', counts_key(i), leaves_key(i))
  redis.call('ZREM', KEYS[2], i)
end
local function sweep(now, keep)
  local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)
  for _, i in ipairs(lapsed) do
    if i ~= keep then drop(i) end
  end
end
";

/// ARGV[3]: the instance; ARGV[4]: its timeout in ms; ARGV[5]: `1` for a
/// full update; then (channel, user, count, join, leave) from ARGV[6].
/// Returns 0, changing nothing, for a partial update of an instance not
/// recorded.
const UPDATE: &str = r"
local instance, timeout, full = ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1'
if not full and not redis.call('ZSCORE', KEYS[2], instance) then return 0 end
local given = {}
for k = 6, #ARGV, 5 do
  given[cjson.encode({ARGV[k], ARGV[k + 1]})] = true
  set(instance, ARGV[k], ARGV[k + 1], tonumber(ARGV[k + 2]), ARGV[k + 3], ARGV[k + 4])
end
if full then
  local all = redis.call('HGETALL', counts_key(instance))
  for k = 1, #all, 2 do
    if not given[all[k]] then
      local pair = cjson.decode(all[k])
      set(instance, pair[1], pair[2], 0, nil, nil)
    end
  end
end
redis.call('ZADD', KEYS[2], now_ms() + timeout, instance)
return 1
";

/// ARGV[3]: the instance; ARGV[4]: its timeout in ms. Removes lapsed
/// instances, then renews this one; returns 0 if it is not recorded.
const RENEW: &str = r"
local instance, timeout = ARGV[3], tonumber(ARGV[4])
local now = now_ms()
sweep(now, instance)
if not redis.call('ZSCORE', KEYS[2], instance) then return 0 end
redis.call('ZADD', KEYS[2], now + timeout, instance)
return 1
";

/// ARGV[3]: the instance, withdrawn; lapsed instances are removed too.
const WITHDRAW: &str = r"
drop(ARGV[3])
sweep(now_ms(), ARGV[3])
return 1
";

/// The presence scripts, compiled once.
pub(crate) struct Scripts {
    update: Script,
    renew: Script,
    withdraw: Script,
    instances: String,
    prefix: String,
}

impl Scripts {
    /// The scripts for `prefix`; `clocked` with sharding (see
    /// [`APPEND_FN`]).
    pub(crate) fn new(prefix: &str, clocked: bool) -> Self {
        let script = |body: &str| Script::new(&format!("{APPEND_FN}\nlocal CLOCKED = {clocked}\n{PRELUDE}{body}"));
        Scripts {
            update: script(UPDATE),
            renew: script(RENEW),
            withdraw: script(WITHDRAW),
            instances: format!("{prefix}:presence:instances"),
            prefix: prefix.to_owned(),
        }
    }

    /// `script` with the keys and arguments every presence script takes.
    fn invocation<'a>(&'a self, inner: &Inner, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&inner.key)
            .key(&self.instances)
            .arg(&self.prefix)
            .arg(inner.history);
        invocation
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Applies `update` of `instance`; `false` if it was partial and the
/// instance is not recorded.
pub(crate) async fn update(inner: &Inner, instance: u64, update: PresenceUpdate) -> Result<bool, RedisBackplaneError> {
    let scripts = &inner.presence;
    let mut invocation = scripts.invocation(inner, &scripts.update);
    invocation
        .arg(instance)
        .arg(millis(update.timeout))
        .arg(u8::from(update.full));
    for count in &update.counts {
        invocation
            .arg(&count.channel)
            .arg(&count.user_id)
            .arg(count.connections)
            .arg(count.join.as_ref())
            .arg(count.leave.as_ref());
    }
    let applied: i64 = inner
        .writer
        .call(inner, |mut connection| async move {
            invocation.invoke_async(&mut connection).await
        })
        .await?;
    Ok(applied == 1)
}

/// Renews `instance`'s presence for `timeout`, after removing lapsed ones;
/// `false` if it is not recorded.
pub(crate) async fn renew(inner: &Inner, instance: u64, timeout: Duration) -> Result<bool, RedisBackplaneError> {
    let scripts = &inner.presence;
    let mut invocation = scripts.invocation(inner, &scripts.renew);
    invocation.arg(instance).arg(millis(timeout));
    let renewed: i64 = inner
        .writer
        .call(inner, |mut connection| async move {
            invocation.invoke_async(&mut connection).await
        })
        .await?;
    Ok(renewed == 1)
}

/// Removes `instance`'s presence.
pub(crate) async fn withdraw(inner: &Inner, instance: u64) -> Result<(), RedisBackplaneError> {
    let scripts = &inner.presence;
    let mut invocation = scripts.invocation(inner, &scripts.withdraw);
    invocation.arg(instance);
    inner
        .writer
        .call(inner, |mut connection| async move {
            invocation.invoke_async::<i64>(&mut connection).await
        })
        .await?;
    Ok(())
}

/// Who is in `channel` across the recorded instances, sorted by user.
pub(crate) async fn members(inner: &Inner, channel: &str) -> Result<Vec<PresenceMember>, RedisBackplaneError> {
    let key = format!("{}:presence:c:{channel}", inner.presence.prefix);
    let counts: Vec<(String, i64)> = inner
        .writer
        .call(inner, |mut connection| async move {
            redis::cmd("HGETALL").arg(&key).query_async(&mut connection).await
        })
        .await?;
    let mut members: Vec<PresenceMember> = counts
        .into_iter()
        .filter_map(|(user, n)| {
            usize::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .map(|n| PresenceMember::new(user, n))
        })
        .collect();
    members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    Ok(members)
}
