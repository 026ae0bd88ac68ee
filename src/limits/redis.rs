//! Budgets and rate limits in Redis, shared by every replica.
//!
//! Each operation is one Lua script, so it is atomic across all the lines or
//! counters it touches. All keys carry the hash tag `{tollgate}` (one slot),
//! so the scripts also run on Redis Cluster.
//!
//! - Money is kept in integer picodollars (`HINCRBY`, exact to $9.2 million
//!   per line); limit comparisons in Lua use doubles, exact to a picodollar
//!   below $9,000 and to better than one part in 10^15 above.
//! - A reservation is a member of a sorted set scored by its expiry. A
//!   replica that dies holding reservations cannot leak them: they expire
//!   (default 30 minutes) and the next operation on the line releases them.
//! - Settlements are queued to a background task with retries, so the
//!   request path never waits for them; [`Ledger::flush`] waits for the queue.
//! - A line's spend is read from the [`SpendHistory`] only when Redis has
//!   never seen the line (or lost it); after that, Redis is the truth.

use super::SpendHistory;
use super::clock::Clock;
use super::ledger::{
    Balance, BudgetLine, Ledger, LedgerBuilder, Reservation, SoftCrossing, SoftHook, load_spent,
    soft_alert,
};
use super::rate::{RateCheck, RateGrant, RateKind, RateLimiter, Remaining, tightest, window};
use crate::error::{Error, ErrorKind};
use crate::pricing::Usd;
use crate::provider::BoxFuture;
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// A Redis connection for the limits, with its key namespace and timeouts.
#[derive(Clone)]
pub struct RedisConn {
    manager: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConn")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConn {
    /// Connects lazily to `url` (`redis://[:password@]host:port[/db]`,
    /// `rediss://` for TLS): nothing is awaited here, the first command
    /// connects. Keys are prefixed with `namespace`.
    pub fn new(url: &str, namespace: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(|e| {
            // The URL may hold a password: report only the kind of problem.
            Error::bad_request(format!("invalid Redis URL: {}", redis_kind(&e)))
        })?;
        let timeout = Duration::from_millis(1_000);
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| Error::internal(format!("cannot set up Redis: {}", redis_kind(&e))))?;
        Ok(RedisConn {
            manager,
            prefix: Arc::from(format!("{namespace}:{{tollgate}}")),
            timeout,
        })
    }

    /// How long one command may take before it counts as a failure
    /// (default 1 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.prefix)
    }

    async fn run(&self, inv: &redis::ScriptInvocation<'_>) -> Result<Vec<String>, Error> {
        let mut con = self.manager.clone();
        let fut = inv.invoke_async::<Value>(&mut con);
        let value = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| unavailable("timed out"))?
            .map_err(|e| unavailable(&redis_kind(&e)))?;
        Ok(strings(value))
    }

    /// Sends `PING`.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut con = self.manager.clone();
        let cmd = redis::cmd("PING");
        let fut = cmd.query_async::<String>(&mut con);
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| unavailable("timed out"))?
            .map_err(|e| unavailable(&redis_kind(&e)))?;
        Ok(())
    }
}

/// The kind of a Redis error, without its detail (which may echo the URL).
fn redis_kind(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
        "cannot connect".to_owned()
    } else {
        format!("{:?}", e.kind())
    }
}

fn unavailable(why: &str) -> Error {
    Error::new(
        ErrorKind::ServiceUnavailable,
        format!("the limits store (Redis) is unavailable: {why}"),
    )
}

fn strings(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.into_iter().map(one_string).collect(),
        other => vec![one_string(other)],
    }
}

fn one_string(v: Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::SimpleString(s) => s,
        Value::Okay => "OK".to_owned(),
        _ => String::new(),
    }
}

fn int(s: Option<&String>) -> i128 {
    s.and_then(|s| s.parse::<i128>().ok()).unwrap_or(0)
}

// ------------------------------------------------------------------ ledger

const RESERVE: &str = r#"
-- KEYS: per line, its hash and its reservation set
-- ARGV: now_ms, amount, member, expires_ms, then per line: window, max, ttl_s
local now = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local n = #KEYS / 2
local missing = {}
for i = 1, n do
  local h, z = KEYS[2*i-1], KEYS[2*i]
  local w = tonumber(ARGV[4 + 3*(i-1) + 1])
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, m in ipairs(expired) do
    local amt = string.match(m, '|(%d+)$')
    if amt then redis.call('HINCRBY', h, 'reserved', '-' .. amt) end
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', now) end
  if redis.call('HEXISTS', h, 'spent') == 0 then
    table.insert(missing, i)
  elseif w >= 0 then
    local cw = tonumber(redis.call('HGET', h, 'w') or '-1')
    if cw < w then redis.call('HSET', h, 'w', w, 'spent', 0) end
  end
end
if #missing > 0 then
  local out = {'missing'}
  for _, i in ipairs(missing) do table.insert(out, tostring(i)) end
  return out
end
for i = 1, n do
  local h = KEYS[2*i-1]
  local max = tonumber(ARGV[4 + 3*(i-1) + 2])
  local spent = redis.call('HGET', h, 'spent') or '0'
  local reserved = redis.call('HGET', h, 'reserved') or '0'
  if reserved:sub(1, 1) == '-' then
    redis.call('HSET', h, 'reserved', 0)
    reserved = '0'
  end
  if max >= 0 and tonumber(spent) + tonumber(reserved) + amount > max then
    return {'refused', tostring(i), spent, reserved}
  end
end
for i = 1, n do
  local h, z = KEYS[2*i-1], KEYS[2*i]
  local ttl = tonumber(ARGV[4 + 3*(i-1) + 3])
  redis.call('HINCRBY', h, 'reserved', ARGV[2])
  redis.call('ZADD', z, ARGV[4], ARGV[3])
  if ttl > 0 then
    redis.call('EXPIRE', h, ttl)
    redis.call('EXPIRE', z, ttl)
  end
end
return {'ok'}
"#;

const INIT: &str = r#"
-- KEYS: a line's hash; ARGV: spent, window
if redis.call('HEXISTS', KEYS[1], 'spent') == 0 then
  redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'w', ARGV[2])
end
return {'ok'}
"#;

const SETTLE: &str = r#"
-- KEYS: per line, its hash and its reservation set
-- ARGV: member, amount, actual, then per line: window, soft (-1: none)
local out = {}
local n = #KEYS / 2
for i = 1, n do
  local h, z = KEYS[2*i-1], KEYS[2*i]
  local w = tonumber(ARGV[3 + 2*(i-1) + 1])
  local soft = tonumber(ARGV[3 + 2*(i-1) + 2])
  if redis.call('ZREM', z, ARGV[1]) == 1 then
    redis.call('HINCRBY', h, 'reserved', '-' .. ARGV[2])
  end
  if redis.call('HEXISTS', h, 'spent') == 1 then
    if w >= 0 then
      local cw = tonumber(redis.call('HGET', h, 'w') or '-1')
      if cw < w then redis.call('HSET', h, 'w', w, 'spent', 0) end
    end
    local before = tonumber(redis.call('HGET', h, 'spent'))
    local after = redis.call('HINCRBY', h, 'spent', ARGV[3])
    if soft >= 0 and before <= soft and tonumber(after) > soft then
      table.insert(out, tostring(i))
      table.insert(out, redis.call('HGET', h, 'spent'))
    end
  end
end
return out
"#;

const BALANCE: &str = r#"
-- KEYS: a line's hash and reservation set; ARGV: now_ms, window
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, m in ipairs(expired) do
  local amt = string.match(m, '|(%d+)$')
  if amt then redis.call('HINCRBY', KEYS[1], 'reserved', '-' .. amt) end
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1]) end
local w = tonumber(ARGV[2])
local spent = redis.call('HGET', KEYS[1], 'spent') or '0'
local cw = tonumber(redis.call('HGET', KEYS[1], 'w') or '-1')
if w >= 0 and cw < w then spent = '0' end
return {spent, redis.call('HGET', KEYS[1], 'reserved') or '0'}
"#;

/// A budget ledger in Redis: one set of budgets for all replicas.
///
/// ```no_run
/// use std::sync::Arc;
/// use tollgate::limits::{MemoryLedger, RedisConn, RedisLedger};
///
/// # fn main() -> Result<(), tollgate::Error> {
/// let conn = RedisConn::new("redis://127.0.0.1:6379", "prod")?;
/// let ledger = RedisLedger::new(conn, MemoryLedger::builder());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLedger {
    inner: Arc<RedisLedgerInner>,
}

struct RedisLedgerInner {
    conn: RedisConn,
    history: Arc<dyn SpendHistory>,
    clock: Arc<dyn Clock>,
    on_soft: Option<SoftHook>,
    reservation_ttl: Duration,
    next_id: AtomicU64,
    instance: String,
    pending: AtomicUsize,
    settled: Notify,
    reserve: Script,
    init: Script,
    settle: Script,
    balance: Script,
}

impl fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLedger")
            .field("conn", &self.inner.conn)
            .finish_non_exhaustive()
    }
}

impl RedisLedger {
    /// A ledger on `conn` with the history, clock and soft-budget hook of
    /// `options` (see [`MemoryLedger::builder`](super::MemoryLedger::builder)).
    pub fn new(conn: RedisConn, options: LedgerBuilder) -> Self {
        let (history, clock, on_soft) = options.parts();
        RedisLedger {
            inner: Arc::new(RedisLedgerInner {
                conn,
                history,
                clock,
                on_soft,
                reservation_ttl: Duration::from_secs(30 * 60),
                next_id: AtomicU64::new(1),
                instance: uuid::Uuid::now_v7().simple().to_string(),
                pending: AtomicUsize::new(0),
                settled: Notify::new(),
                reserve: Script::new(RESERVE),
                init: Script::new(INIT),
                settle: Script::new(SETTLE),
                balance: Script::new(BALANCE),
            }),
        }
    }

    /// How long a reservation lives if its replica dies before settling it
    /// (default 30 minutes; make it longer than your longest request).
    pub fn reservation_ttl(mut self, ttl: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.reservation_ttl = ttl;
        }
        self
    }

    fn keys(&self, line: &BudgetLine) -> (String, String) {
        let name = line.storage_key();
        (
            self.inner.conn.key("budget", &name),
            self.inner.conn.key("budget-holds", &name),
        )
    }

    fn member(&self, id: u64, amount: Usd) -> String {
        format!("{}-{id}|{}", self.inner.instance, amount.pico().max(0))
    }

    async fn settle_now(
        &self,
        lines: &[BudgetLine],
        member: &str,
        amount: Usd,
        actual: Usd,
    ) -> Result<(), Error> {
        let now = self.inner.clock.now_secs();
        let mut inv = self.inner.settle.prepare_invoke();
        for line in lines {
            let (h, z) = self.keys(line);
            inv.key(h).key(z);
        }
        inv.arg(member)
            .arg(amount.pico().max(0).to_string())
            .arg(actual.pico().max(0).to_string());
        for line in lines {
            inv.arg(line.window_at(now).map_or(-1, |w| w.index as i64))
                .arg(
                    line.soft_budget
                        .map_or("-1".to_owned(), |s| s.pico().to_string()),
                );
        }
        let out = self.inner.conn.run(&inv).await?;
        for pair in out.chunks(2) {
            if let [i, spent] = pair
                && let Some(line) = i
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| lines.get(i.wrapping_sub(1)))
            {
                soft_alert(
                    &SoftCrossing {
                        line: line.clone(),
                        spent: Usd::from_pico(int(Some(spent))),
                    },
                    self.inner.on_soft.as_ref(),
                );
            }
        }
        Ok(())
    }
}

impl Ledger for RedisLedger {
    fn reserve(
        &self,
        lines: Arc<[BudgetLine]>,
        amount: Usd,
    ) -> BoxFuture<Result<Reservation, Error>> {
        let this = self.clone();
        Box::pin(async move {
            let id = this.inner.next_id.fetch_add(1, Ordering::Relaxed);
            let member = this.member(id, amount);
            for _attempt in 0..3 {
                let now_ms = this.inner.clock.now_ms();
                let now = now_ms / 1000;
                let expires = now_ms + this.inner.reservation_ttl.as_millis() as u64;
                let mut inv = this.inner.reserve.prepare_invoke();
                for line in lines.iter() {
                    let (h, z) = this.keys(line);
                    inv.key(h).key(z);
                }
                inv.arg(now_ms)
                    .arg(amount.pico().max(0).to_string())
                    .arg(&member)
                    .arg(expires);
                for line in lines.iter() {
                    let window = line.window_at(now);
                    // Keep the line a little past its window (or the
                    // reservation TTL), then let Redis drop it.
                    let ttl = window.map_or(0, |w| {
                        w.end.saturating_sub(now) + 3_600 + this.inner.reservation_ttl.as_secs()
                    });
                    inv.arg(window.map_or(-1, |w| w.index as i64))
                        .arg(
                            line.max_budget
                                .map_or("-1".to_owned(), |m| m.pico().to_string()),
                        )
                        .arg(ttl);
                }
                let out = this.inner.conn.run(&inv).await?;
                match out.first().map(String::as_str) {
                    Some("ok") => {
                        return Ok(Reservation { id, lines, amount });
                    }
                    Some("refused") => {
                        let line = out
                            .get(1)
                            .and_then(|i| i.parse::<usize>().ok())
                            .and_then(|i| lines.get(i.wrapping_sub(1)))
                            .ok_or_else(|| Error::internal("bad answer from the budget script"))?;
                        return Err(line.exceeded(
                            Usd::from_pico(int(out.get(2))),
                            Usd::from_pico(int(out.get(3))),
                            amount,
                        ));
                    }
                    Some("missing") => {
                        for i in out.iter().skip(1).filter_map(|i| i.parse::<usize>().ok()) {
                            let Some(line) = lines.get(i.wrapping_sub(1)) else {
                                continue;
                            };
                            let window = line.window_at(now);
                            let spent = load_spent(&*this.inner.history, line, window).await?;
                            let (h, _) = this.keys(line);
                            let mut inv = this.inner.init.prepare_invoke();
                            inv.key(h)
                                .arg(spent.pico().max(0).to_string())
                                .arg(window.map_or(-1, |w| w.index as i64));
                            this.inner.conn.run(&inv).await?;
                        }
                    }
                    _ => return Err(Error::internal("bad answer from the budget script")),
                }
            }
            Err(unavailable("budget lines keep disappearing"))
        })
    }

    fn settle(&self, reservation: Reservation, actual: Usd) {
        let this = self.clone();
        let member = self.member(reservation.id, reservation.amount);
        self.inner.pending.fetch_add(1, Ordering::SeqCst);
        let work = async move {
            let mut delay = Duration::from_millis(50);
            for attempt in 0..5 {
                match this
                    .settle_now(&reservation.lines, &member, reservation.amount, actual)
                    .await
                {
                    Ok(()) => break,
                    Err(e) if attempt == 4 => tracing::error!(
                        target: "tollgate::budget",
                        error = %e,
                        actual_usd = actual.as_f64(),
                        "could not record a settlement in Redis; the reservation expires on its own"
                    ),
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
            if this.inner.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                this.inner.settled.notify_waiters();
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(work);
            }
            Err(_) => {
                self.inner.pending.fetch_sub(1, Ordering::SeqCst);
                tracing::error!(
                    target: "tollgate::budget",
                    "a settlement arrived outside a runtime; the reservation expires on its own"
                );
            }
        }
    }

    fn balance(&self, line: &BudgetLine) -> BoxFuture<Result<Balance, Error>> {
        let this = self.clone();
        let line = line.clone();
        Box::pin(async move {
            let now_ms = this.inner.clock.now_ms();
            let window = line.window_at(now_ms / 1000);
            let (h, z) = this.keys(&line);
            let mut inv = this.inner.balance.prepare_invoke();
            inv.key(h)
                .key(z)
                .arg(now_ms)
                .arg(window.map_or(-1, |w| w.index as i64));
            let out = this.inner.conn.run(&inv).await?;
            Ok(Balance {
                spent: Usd::from_pico(int(out.first())),
                reserved: Usd::from_pico(int(out.get(1)).max(0)),
                window,
            })
        })
    }

    fn flush(&self) -> BoxFuture<()> {
        let this = self.clone();
        Box::pin(async move {
            loop {
                let notified = this.inner.settled.notified();
                if this.inner.pending.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        })
    }
}

// ------------------------------------------------------------- rate limits

const ACQUIRE: &str = r#"
-- KEYS: one per check
-- ARGV: now_ms, slot, oldest_live_slot, tokens, member, expires_ms, then per check: kind, limit
local now = tonumber(ARGV[1])
local slot = tonumber(ARGV[2])
local oldest = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local counts = {}
for i = 1, #KEYS do
  local kind = ARGV[6 + 2*(i-1) + 1]
  local limit = tonumber(ARGV[6 + 2*(i-1) + 2])
  local k = KEYS[i]
  if kind == 'parallel' then
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
    local c = redis.call('ZCARD', k)
    if c >= limit then return {'refused', tostring(i)} end
    counts[i] = c
  else
    local n = 1
    if kind == 'tpm' then n = tokens end
    local all = redis.call('HGETALL', k)
    local count = 0
    local live = {}
    for j = 1, #all, 2 do
      local id = tonumber(all[j])
      if id < oldest then
        redis.call('HDEL', k, all[j])
      else
        count = count + tonumber(all[j+1])
        table.insert(live, all[j])
        table.insert(live, all[j+1])
      end
    end
    if not (count + n <= limit or (n > limit and count == 0)) then
      local out = {'refused', tostring(i)}
      for _, v in ipairs(live) do table.insert(out, v) end
      return out
    end
    counts[i] = count
  end
end
local out = {'ok'}
for i = 1, #KEYS do
  local kind = ARGV[6 + 2*(i-1) + 1]
  local k = KEYS[i]
  if kind == 'parallel' then
    redis.call('ZADD', k, ARGV[6], ARGV[5])
    redis.call('PEXPIRE', k, tonumber(ARGV[6]) - now + 60000)
  else
    local n = 1
    if kind == 'tpm' then n = tokens end
    redis.call('HINCRBY', k, ARGV[2], n)
    redis.call('PEXPIRE', k, 130000)
  end
  table.insert(out, tostring(counts[i]))
end
return out
"#;

const FINISH: &str = r#"
-- KEYS: one per check; ARGV: member, slot, was, now_tokens, then per check: kind
for i = 1, #KEYS do
  local kind = ARGV[4 + i]
  if kind == 'parallel' then
    redis.call('ZREM', KEYS[i], ARGV[1])
  elseif kind == 'tpm' then
    local cur = redis.call('HGET', KEYS[i], ARGV[2])
    if cur then
      local v = tonumber(cur) + tonumber(ARGV[4]) - tonumber(ARGV[3])
      if v < 0 then v = 0 end
      redis.call('HSET', KEYS[i], ARGV[2], string.format('%d', v))
    end
  end
end
return {'ok'}
"#;

/// Rate limits in Redis: one set of counters for all replicas, with the
/// same sliding-window arithmetic as [`MemoryRateLimiter`](super::MemoryRateLimiter).
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<RedisRateInner>,
}

struct RedisRateInner {
    conn: RedisConn,
    clock: Arc<dyn Clock>,
    next_id: AtomicU64,
    instance: String,
    slot_ttl: Duration,
    fail_open: bool,
    pending: AtomicUsize,
    finished: Notify,
    acquire: Script,
    finish: Script,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("conn", &self.inner.conn)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on `conn`.
    pub fn new(conn: RedisConn, clock: Arc<dyn Clock>) -> Self {
        RedisRateLimiter {
            inner: Arc::new(RedisRateInner {
                conn,
                clock,
                next_id: AtomicU64::new(1),
                instance: uuid::Uuid::now_v7().simple().to_string(),
                slot_ttl: Duration::from_secs(30 * 60),
                fail_open: false,
                pending: AtomicUsize::new(0),
                finished: Notify::new(),
                acquire: Script::new(ACQUIRE),
                finish: Script::new(FINISH),
            }),
        }
    }

    /// Admit requests when Redis cannot be reached (default: refuse them
    /// with a 503). Either way the outage is logged.
    pub fn fail_open(mut self, yes: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.fail_open = yes;
        }
        self
    }

    fn member(&self, id: u64) -> String {
        format!("{}-{id}", self.inner.instance)
    }

    async fn try_acquire(
        &self,
        checks: &Arc<[RateCheck]>,
        tokens: u64,
        id: u64,
    ) -> Result<RateGrant, Error> {
        let now = self.inner.clock.now_ms();
        let slot = now / window::SLOT_MS;
        let mut inv = self.inner.acquire.prepare_invoke();
        for c in checks.iter() {
            inv.key(self.inner.conn.key("rate", &c.storage_key()));
        }
        inv.arg(now)
            .arg(slot)
            .arg(window::oldest_live(now))
            .arg(tokens)
            .arg(self.member(id))
            .arg(now + self.inner.slot_ttl.as_millis() as u64);
        for c in checks.iter() {
            inv.arg(c.kind.as_str()).arg(c.limit);
        }
        let out = self.inner.conn.run(&inv).await?;
        match out.first().map(String::as_str) {
            Some("ok") => {
                let mut remaining = Vec::new();
                for (c, count) in checks.iter().zip(out.iter().skip(1)) {
                    let count: u64 = count.parse().unwrap_or(0);
                    let n = match c.kind {
                        RateKind::Requests => 1,
                        RateKind::Tokens => tokens,
                        RateKind::Parallel => continue,
                    };
                    remaining.push(Remaining {
                        kind: c.kind,
                        limit: c.limit,
                        remaining: c.limit.saturating_sub(count + n),
                        reset_secs: 60,
                    });
                }
                Ok(RateGrant {
                    id,
                    checks: checks.clone(),
                    tokens,
                    bucket: slot,
                    remaining: tightest(remaining),
                })
            }
            Some("refused") => {
                let check = out
                    .get(1)
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| checks.get(i.wrapping_sub(1)))
                    .ok_or_else(|| Error::internal("bad answer from the rate-limit script"))?;
                let mut live: Vec<(u64, u64)> = out[2..]
                    .chunks(2)
                    .filter_map(|p| Some((p.first()?.parse().ok()?, p.get(1)?.parse().ok()?)))
                    .collect();
                live.sort_unstable();
                let n = if check.kind == RateKind::Tokens {
                    tokens
                } else {
                    1
                };
                let wait = match check.kind {
                    RateKind::Parallel => 1_000,
                    _ => window::retry_after_ms(&live, n, check.limit, now),
                };
                Err(check.refused(Duration::from_millis(wait)))
            }
            _ => Err(Error::internal("bad answer from the rate-limit script")),
        }
    }
}

impl RateLimiter for RedisRateLimiter {
    fn acquire(
        &self,
        checks: Arc<[RateCheck]>,
        tokens: u64,
    ) -> BoxFuture<Result<RateGrant, Error>> {
        let this = self.clone();
        Box::pin(async move {
            let id = this.inner.next_id.fetch_add(1, Ordering::Relaxed);
            match this.try_acquire(&checks, tokens, id).await {
                Err(e) if e.kind() == ErrorKind::ServiceUnavailable && this.inner.fail_open => {
                    tracing::warn!(target: "tollgate::ratelimit", error = %e, "rate limits not enforced: Redis is unavailable");
                    Ok(RateGrant {
                        id,
                        checks: Arc::from(Vec::new()),
                        tokens,
                        bucket: 0,
                        remaining: Vec::new(),
                    })
                }
                other => other,
            }
        })
    }

    fn finish(&self, grant: RateGrant, actual_tokens: Option<u64>) {
        let needs_work = grant.checks.iter().any(|c| {
            c.kind == RateKind::Parallel
                || (c.kind == RateKind::Tokens && actual_tokens.is_some_and(|a| a != grant.tokens))
        });
        if !needs_work {
            return;
        }
        let this = self.clone();
        self.inner.pending.fetch_add(1, Ordering::SeqCst);
        let work = async move {
            let mut inv = this.inner.finish.prepare_invoke();
            for c in grant.checks.iter() {
                inv.key(this.inner.conn.key("rate", &c.storage_key()));
            }
            inv.arg(this.member(grant.id))
                .arg(grant.bucket)
                .arg(grant.tokens)
                .arg(actual_tokens.unwrap_or(grant.tokens));
            for c in grant.checks.iter() {
                inv.arg(c.kind.as_str());
            }
            let mut delay = Duration::from_millis(50);
            for attempt in 0..5 {
                match this.inner.conn.run(&inv).await {
                    Ok(_) => break,
                    Err(e) if attempt == 4 => tracing::error!(
                        target: "tollgate::ratelimit",
                        error = %e,
                        "could not release a rate-limit slot in Redis; it expires on its own"
                    ),
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
            if this.inner.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                this.inner.finished.notify_waiters();
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(work);
            }
            Err(_) => {
                self.inner.pending.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn flush(&self) -> BoxFuture<()> {
        let this = self.clone();
        Box::pin(async move {
            loop {
                let notified = this.inner.finished.notified();
                if this.inner.pending.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        })
    }
}

// --------------------------------------------------------------- cooldowns

const READ_COOLDOWNS: &str = r#"
-- KEYS: one per deployment; returns the remaining ms of each (<= 0: none)
local out = {}
for i = 1, #KEYS do table.insert(out, tostring(redis.call('PTTL', KEYS[i]))) end
return out
"#;

/// Router cooldowns shared by replicas: a cooldown one replica starts is
/// written to Redis (with its length as TTL) and picked up by the others
/// within one sync interval. Requests never wait on Redis for this.
#[derive(Clone, Debug)]
pub struct SharedCooldowns {
    conn: RedisConn,
}

impl SharedCooldowns {
    /// Shares cooldowns through `conn`.
    pub fn new(conn: RedisConn) -> Self {
        SharedCooldowns { conn }
    }

    /// Reports `router`'s cooldowns to Redis and applies the other replicas'
    /// every `every`, until the returned task is aborted.
    pub fn attach(
        &self,
        router: &crate::router::Router,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        router.set_cooldown_sink(Arc::new(self.clone()));
        let this = self.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let ids = router.deployment_ids();
            let script = Script::new(READ_COOLDOWNS);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = this.sync_once(&router, &ids, &script).await {
                    tracing::debug!(target: "tollgate::router", error = %e, "cooldown sync skipped");
                }
            }
        })
    }

    /// Applies the cooldowns recorded in Redis to `router` once.
    pub async fn sync(&self, router: &crate::router::Router) -> Result<(), Error> {
        self.sync_once(
            router,
            &router.deployment_ids(),
            &Script::new(READ_COOLDOWNS),
        )
        .await
    }

    async fn sync_once(
        &self,
        router: &crate::router::Router,
        ids: &[Arc<str>],
        script: &Script,
    ) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut inv = script.prepare_invoke();
        for id in ids {
            inv.key(self.conn.key("cooldown", id));
        }
        let out = self.conn.run(&inv).await?;
        for (id, ms) in ids.iter().zip(out) {
            if let Ok(ms) = ms.parse::<i64>()
                && ms > 0
            {
                router.apply_cooldown(id, Duration::from_millis(ms as u64));
            }
        }
        Ok(())
    }
}

impl crate::router::CooldownSink for SharedCooldowns {
    fn cooled_down(&self, deployment_id: &str, length: Duration) {
        let conn = self.conn.clone();
        let key = conn.key("cooldown", deployment_id);
        let ms = length.as_millis().max(1) as u64;
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                let mut con = conn.manager.clone();
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key).arg("1").arg("PX").arg(ms);
                let fut = cmd.query_async::<Value>(&mut con);
                if tokio::time::timeout(conn.timeout, fut).await.is_err() {
                    tracing::debug!(target: "tollgate::router", "could not share a cooldown: Redis timed out");
                }
            });
        }
    }
}
