//! The Lua scripts behind the Redis store: each reads and writes one user's keys atomically.
//! Versions and epochs stay strings inside Lua (its numbers are doubles: a 64-bit epoch would
//! lose digits); only the small version is ever incremented as a number.

use redis::Script;
use std::sync::LazyLock;

/// KEYS: cache. ARGV: the version the caller knows (or ""), the sliding window and the least
/// slide worth a write (ms). Nothing: no row. Else {version, epoch, ttl, value}, with ttl -1
/// and value "" when the row is still at the known version.
pub static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local r = redis.call('HMGET', KEYS[1], 'ver', 'ep')
if not r[1] then return false end
if r[1] == ARGV[1] then return {r[1], r[2], -1, ''} end
local value = redis.call('HGET', KEYS[1], 'v')
if not value then return false end
local ttl = redis.call('PTTL', KEYS[1])
local window = tonumber(ARGV[2])
if ttl < 0 or window - ttl > tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = window
end
return {r[1], r[2], ttl, value}
",
    )
});

/// KEYS: cache, lease. ARGV: the expected version ("" for an absent row), the sealed value,
/// the sliding window (ms), the lease owner whose lease the write ends (or ""), the session
/// epoch for a new row, the expected row's epoch (or "": any). {1, new version, epoch} or, on a
/// conflict, {0, current version or -1, 0}.
pub static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('HGET', KEYS[1], 'ver')
if ARGV[1] == '' then
  if current then return {0, current, 0} end
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 'ver', '1', 'ep', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('DEL', KEYS[2])
  return {1, 1, ARGV[5]}
end
if current ~= ARGV[1] then return {0, current or -1, 0} end
if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], 'ep') ~= ARGV[6] then
  return {0, current, 0}
end
local version = tonumber(current) + 1
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'ver', tostring(version))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then
  redis.call('DEL', KEYS[2])
end
return {1, version, redis.call('HGET', KEYS[1], 'ep')}
",
    )
});

/// KEYS: cache, lease. ARGV: version, owner, term (ms). 1 taken, 2 the row is at another
/// version (or gone), 3 someone else holds a live lease.
pub static TAKE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'ver') ~= ARGV[1] then return 2 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 3
",
    )
});

/// KEYS: lease. ARGV: owner, term (ms). 1 renewed, 0 not this owner's (or expired).
pub static CONFIRM_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// KEYS: lease. ARGV: owner. 1 released, 0 not this owner's.
pub static RELEASE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
",
    )
});

/// KEYS: cache, lease. {version or -1, 1 when a live lease exists}.
pub static VERSION_AND_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local version = redis.call('HGET', KEYS[1], 'ver')
return {version or -1, redis.call('EXISTS', KEYS[2])}
",
    )
});

/// KEYS: cache, lease. ARGV: session epoch. Deletes both when the row's epoch matches and
/// returns the sealed value it held; nothing otherwise.
pub static DELETE_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local r = redis.call('HMGET', KEYS[1], 'v', 'ep')
if not r[2] or r[2] ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1], KEYS[2])
return r[1] or ''
",
    )
});
