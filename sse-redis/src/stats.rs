//! Statistics across instances, in Redis: what
//! [`Backplane::shares_stats`](sse_core::Backplane::shares_stats) asks of a
//! backplane, each step one Lua script on Redis's clock.
//!
//! Keys, beside the stream `{prefix}:events`:
//!
//! * `{prefix}:stats:instances`, a sorted set: each instance with a
//!   standing report, scored by the time (ms) its report lapses;
//! * `{prefix}:stats:reports` and `{prefix}:stats:at`, hashes: each
//!   instance's latest statistics (JSON) and when it reported them;
//! * `{prefix}:stats:users:{instance}`, a HyperLogLog of the instance's
//!   users, rebuilt at each report and expiring with it.
//!
//! A query first removes the instances whose report lapsed, then answers
//! with the others and `PFCOUNT` over their HyperLogLogs: the distinct users
//! across the cluster, within Redis's standard error of 0.81% (and exact in
//! practice for a few hundred users). The three shared keys expire twice a
//! report's lifetime after the last report, so a cluster that is gone
//! leaves nothing behind. Like the presence scripts, these compute their
//! keys themselves: a standalone Redis (or one node for the prefix).

use std::time::Duration;

use redis::Script;
use sse_core::{ClusterReport, InstanceReport, Stats, StatsReport};

use crate::{Inner, RedisBackplaneError};

/// What every script starts with. ARGV[1]: the prefix.
const PRELUDE: &str = r"
local prefix = ARGV[1]
local instances = prefix .. ':stats:instances'
local reports = prefix .. ':stats:reports'
local at = prefix .. ':stats:at'
local function users_key(i) return prefix .. ':stats:users:' .. i end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function drop(i)
  redis.call('HDEL', reports, i)
  redis.call('HDEL', at, i)
  redis.call('ZREM', instances, i)
  redis.call('DEL', users_key(i))
end
";

/// ARGV[2]: the instance; ARGV[3]: its report's lifetime in ms; ARGV[4]:
/// its statistics; then its users.
const REPORT: &str = r"
local instance, ttl = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
redis.call('HSET', reports, instance, ARGV[4])
redis.call('HSET', at, instance, now)
redis.call('ZADD', instances, now + ttl, instance)
for _, key in ipairs({instances, reports, at}) do
  if redis.call('PTTL', key) < 2 * ttl then redis.call('PEXPIRE', key, 2 * ttl) end
end
local users = users_key(instance)
redis.call('DEL', users)
for k = 5, #ARGV, 1000 do
  redis.call('PFADD', users, unpack(ARGV, k, math.min(k + 999, #ARGV)))
end
redis.call('PEXPIRE', users, ttl)
return 1
";

/// ARGV[2]: the instance, withdrawn.
const WITHDRAW: &str = r"
drop(ARGV[2])
return 1
";

/// Removes the lapsed reports; returns Redis's time, the distinct users,
/// then (instance, statistics, age in ms) for each standing report.
const QUERY: &str = r"
local now = now_ms()
for _, i in ipairs(redis.call('ZRANGEBYSCORE', instances, '-inf', '(' .. now)) do drop(i) end
local live = redis.call('ZRANGE', instances, 0, -1)
local keys = {}
for _, i in ipairs(live) do table.insert(keys, users_key(i)) end
local unique = 0
if #keys > 0 then unique = redis.call('PFCOUNT', unpack(keys)) end
local answer = {tostring(now), tostring(unique)}
for _, i in ipairs(live) do
  local stats, reported = redis.call('HGET', reports, i), redis.call('HGET', at, i)
  if stats and reported then
    table.insert(answer, i)
    table.insert(answer, stats)
    table.insert(answer, tostring(math.max(0, now - tonumber(reported))))
  end
end
return answer
";

/// The statistics scripts, compiled once.
pub(crate) struct Scripts {
    report: Script,
    withdraw: Script,
    query: Script,
    prefix: String,
}

impl Scripts {
    pub(crate) fn new(prefix: &str) -> Self {
        let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            report: script(REPORT),
            withdraw: script(WITHDRAW),
            query: script(QUERY),
            prefix: prefix.to_owned(),
        }
    }
}

/// Records `report` as `instance`'s latest.
pub(crate) async fn report(inner: &Inner, instance: u64, report: StatsReport) -> Result<(), RedisBackplaneError> {
    let scripts = &inner.stats;
    let stats = serde_json::to_string(&report.stats).map_err(|error| RedisBackplaneError::Task(error.to_string()))?;
    let mut invocation = scripts.report.prepare_invoke();
    invocation
        .arg(&scripts.prefix)
        .arg(instance)
        .arg(u64::try_from(report.ttl.as_millis()).unwrap_or(u64::MAX).max(1))
        .arg(stats);
    for user in &report.users {
        invocation.arg(user);
    }
    inner
        .writer
        .call(inner, |mut connection| async move {
            invocation.invoke_async::<i64>(&mut connection).await
        })
        .await?;
    Ok(())
}

/// Removes `instance`'s report.
pub(crate) async fn withdraw(inner: &Inner, instance: u64) -> Result<(), RedisBackplaneError> {
    let scripts = &inner.stats;
    let mut invocation = scripts.withdraw.prepare_invoke();
    invocation.arg(&scripts.prefix).arg(instance);
    inner
        .writer
        .call(inner, |mut connection| async move {
            invocation.invoke_async::<i64>(&mut connection).await
        })
        .await?;
    Ok(())
}

/// Every standing report, and the distinct users across them. A report
/// that does not parse (written by an incompatible version) is left out,
/// with a warning.
pub(crate) async fn query(inner: &Inner) -> Result<ClusterReport, RedisBackplaneError> {
    let scripts = &inner.stats;
    let mut invocation = scripts.query.prepare_invoke();
    invocation.arg(&scripts.prefix);
    let answer: Vec<String> = inner
        .writer
        .call(inner, |mut connection| async move {
            invocation.invoke_async(&mut connection).await
        })
        .await?;
    let unique_users = answer.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    let instances = answer
        .get(2..)
        .unwrap_or_default()
        .chunks_exact(3)
        .filter_map(|report| {
            let [instance, stats, age] = report else { return None };
            let parsed = instance
                .parse::<u64>()
                .ok()
                .zip(serde_json::from_str::<Stats>(stats).ok());
            if parsed.is_none() {
                tracing::warn!(%instance, "sse-redis: skipping a statistics report that does not parse");
            }
            let (instance, stats) = parsed?;
            let age = Duration::from_millis(age.parse().unwrap_or(0));
            Some(InstanceReport::new(instance, stats, age))
        })
        .collect();
    Ok(ClusterReport::new(instances, unique_users))
}
