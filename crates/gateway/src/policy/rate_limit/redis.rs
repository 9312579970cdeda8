//! Rate limiting, `scope: global`: the buckets live in Redis, shared by every replica. Decisions
//! are batched: requests hand their key to a driver task, which sends everything waiting as one
//! atomic Lua script call — the same GCRA as `gcra`, on Redis's own clock so replicas need no
//! synchronised clocks — and hands each request its answer. Under load a batch holds whatever
//! arrived during the previous round trip, so Redis runs one script per round trip instead of one
//! per request; an idle gateway sends batches of one. Every decision is bounded by
//! `redis.timeout`; past it, or on any error, the caller's `onStoreError` decides. The connection
//! manager reconnects by itself.
//!
//! Each thread that asks gets a lane of its own — a driver and a connection on its own runtime —
//! so a worker's decisions never cross to another thread: the question, the Redis socket and the
//! wake-up of the waiting request all stay on the worker's event loop. (One shared driver on the
//! control thread cost two cross-thread wake-ups and context switches per batch, and doubled the
//! gateway's CPU per request.) Lanes are to each other what two replicas are: the script is
//! atomic, so the limit stays exact.

use super::gcra::{Decision, Gcra};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Client;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// The GCRA of `gcra.rs`, in microseconds, atomically in Redis, for every key of the batch:
/// `ARGV` holds an interval and a capacity per key. Each distinct key is read once and written
/// once per batch, however many of the batch's decisions it has (one client's concurrent
/// requests share a key: Redis's cost was two calls a decision, ~10 µs of its CPU). Returns one
/// string, `allowed remaining wait_us` per key, in order, all separated by spaces: one bulk reply
/// is parsed in a few instructions, where an array of three integers a key cost the client's
/// generic RESP parser ~180 instructions a decision. A key expires when its bucket would be full
/// again, so idle keys cost nothing. (All keys of a batch go to one Redis: a Redis Cluster would
/// need a batch per slot.)
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local written = {}
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local tat = tats[key]
  if tat == nil then
    tat = tonumber(redis.call('GET', key) or '0')
    tats[key] = tat
  end
  if tat < now then tat = now end
  local new_tat = tat + interval
  local ahead = new_tat - now
  if ahead > capacity then
    out[i] = string.format('0 0 %d', ahead - capacity)
  else
    tats[key] = new_tat
    written[key] = true
    out[i] = string.format('1 %d %d', math.floor((capacity - ahead) / interval), ahead)
  end
end
for key in pairs(written) do
  local ahead = tats[key] - now
  redis.call('SET', key, string.format('%d', tats[key]), 'PX', math.ceil(ahead / 1000) + 1)
end
return table.concat(out, ' ')
";

/// Redis's answer to `EVALSHA` of a script it does not know.
const NO_SCRIPT: redis::ErrorKind = redis::ErrorKind::Server(redis::ServerErrorKind::NoScript);

/// Most decisions in one script call: bounds how long Redis runs one script (it serves nothing
/// else meanwhile) and the size of one command.
const MAX_BATCH: usize = 256;

/// Batches in flight at once per lane: a slow batch does not hold back the ones behind it, and
/// the connection stays pipelined.
const MAX_IN_FLIGHT: usize = 4;

/// Lanes per store: one per worker thread is the aim; threads past the last share it (they
/// still get answers, across threads).
const MAX_LANES: usize = 32;

/// Why a global decision could not be made.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// Redis did not answer within `redis.timeout`.
    Timeout,
    /// Redis answered with an error, or the connection failed.
    Failed(Arc<redis::RedisError>),
    /// The driver task is gone (the runtime is shutting down).
    Closed,
    /// The script's reply did not have one decision per key (another script under its name?).
    Malformed,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("Redis did not answer in time"),
            StoreError::Failed(e) => write!(f, "Redis failed: {e}"),
            StoreError::Closed => f.write_str("the Redis driver has stopped"),
            StoreError::Malformed => f.write_str("Redis answered the limit script unexpectedly"),
        }
    }
}

/// One request's question to the driver.
struct Pending {
    key: String,
    gcra: Gcra,
    reply: oneshot::Sender<Result<Decision, StoreError>>,
}

/// The connection to the Gateway's `redis`, shared by every global limit; it outlives reloads
/// that keep `redis` unchanged. Dropping it ends every lane's driver.
pub(crate) struct RedisStore {
    client: Client,
    config: ConnectionManagerConfig,
    /// A driver's queue per asking thread, started by that thread's first question.
    lanes: Box<[OnceLock<mpsc::UnboundedSender<Pending>>]>,
    /// Lanes handed out so far.
    next_lane: AtomicUsize,
    /// Tells this store's lanes apart from another store's in a thread's cache.
    id: u64,
    timeout: Duration,
}

thread_local! {
    /// The last store this thread asked and its lane there: `(store id, lane)`.
    static LANE: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

impl RedisStore {
    /// A store for `url` (not connected yet: each lane connects on its first question).
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let client = Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
        // Reconnecting is the manager's job; each attempt is bounded so that a dead Redis makes
        // decisions fail fast (the caller's timeout bounds them anyway).
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(100))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(RedisStore {
            client,
            config,
            lanes: (0..MAX_LANES).map(|_| OnceLock::new()).collect(),
            next_lane: AtomicUsize::new(0),
            id: IDS.fetch_add(1, Ordering::Relaxed),
            timeout,
        })
    }

    /// Decides for one request of `key` under `gcra`, within the store's timeout.
    pub(crate) async fn check(&self, key: String, gcra: Gcra) -> Result<Decision, StoreError> {
        let answer = self.ask(key, gcra)?;
        match tokio::time::timeout(self.timeout, answer).await {
            Err(_) => Err(StoreError::Timeout),
            Ok(Err(_)) => Err(StoreError::Closed),
            Ok(Ok(result)) => result,
        }
    }

    /// Queues the question on this thread's lane without waiting: the decision arrives on the
    /// receiver. Must run inside a tokio runtime, which runs the lane's driver.
    fn ask(&self, key: String, gcra: Gcra) -> Result<Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        match self.lane()?.send(Pending { key, gcra, reply }) {
            Ok(()) => Ok(answer),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// This thread's lane, started on the current runtime at its first question.
    fn lane(&self) -> Result<&mpsc::UnboundedSender<Pending>, StoreError> {
        let index = LANE.with(|cached| {
            let (store, lane) = cached.get();
            if store == self.id {
                return lane;
            }
            let lane = self
                .next_lane
                .fetch_add(1, Ordering::Relaxed)
                .min(MAX_LANES - 1);
            cached.set((self.id, lane));
            lane
        });
        let slot = &self.lanes[index];
        if let Some(queue) = slot.get() {
            return Ok(queue);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StoreError::Closed)?;
        Ok(slot.get_or_init(|| {
            let (queue, rx) = mpsc::unbounded_channel();
            let (client, config) = (self.client.clone(), self.config.clone());
            runtime.spawn(async move {
                // The manager spawns its connection task where it is made: on this lane's runtime.
                match ConnectionManager::new_lazy_with_config(client, config) {
                    Ok(conn) => drive(rx, conn, redis::Script::new(SCRIPT)).await,
                    Err(e) => fail_queue(rx, Arc::new(e)).await,
                }
            });
            queue
        }))
    }
}

/// A lane whose connection could not be set up answers every question with that error.
async fn fail_queue(mut rx: mpsc::UnboundedReceiver<Pending>, e: Arc<redis::RedisError>) {
    while let Some(p) = rx.recv().await {
        let _ = p.reply.send(Err(StoreError::Failed(e.clone())));
    }
}

/// Where one request's decision arrives.
type Answer = oneshot::Receiver<Result<Decision, StoreError>>;

/// The driver: takes everything waiting (up to `MAX_BATCH`) as one batch, at most
/// `MAX_IN_FLIGHT` batches at a time, until the store is dropped.
async fn drive(
    mut rx: mpsc::UnboundedReceiver<Pending>,
    conn: ConnectionManager,
    script: redis::Script,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let script = Arc::new(script);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // Wait for a free slot first: what arrives meanwhile joins the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        // Requests whose caller gave up (timed out) need no answer.
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        // Exactly the batch's size: the queue's buffer (room for `MAX_BATCH`) stays here, where
        // `mem::take` would hand it over and have the next batch allocate it again.
        #[allow(clippy::drain_collect)]
        let taken: Vec<Pending> = batch.drain(..).collect();
        let (conn, script) = (conn.clone(), script.clone());
        tokio::spawn(async move {
            answer(taken, conn, &script).await;
            drop(slot);
        });
    }
}

/// Sends one batch and hands each request its decision (or the batch's error).
async fn answer(batch: Vec<Pending>, mut conn: ConnectionManager, script: &redis::Script) {
    // One `EVALSHA` command with its arguments in one buffer (`ScriptInvocation` would allocate
    // each key and argument on its own, three allocations a decision).
    let keys: usize = batch.iter().map(|p| p.key.len()).sum();
    let mut call = redis::Cmd::with_capacity(2 + 3 * batch.len(), 64 + keys + 24 * batch.len());
    call.arg("EVALSHA").arg(script.get_hash()).arg(batch.len());
    for p in &batch {
        call.arg(p.key.as_str());
    }
    let mut digits = itoa::Buffer::new();
    for p in &batch {
        call.arg(digits.format(p.gcra.interval.div_ceil(1000).max(1)));
        call.arg(digits.format(p.gcra.capacity.div_ceil(1000).max(1)));
    }
    // Bounded by the connection manager's response timeout (`redis.timeout`); each caller also
    // bounds its own wait.
    let mut reply = call.query_async::<Vec<u8>>(&mut conn).await;
    if matches!(&reply, Err(e) if e.kind() == NO_SCRIPT) {
        // A new Redis, or one whose scripts were flushed: load the script, ask once more.
        reply = match script.prepare_invoke().load_async(&mut conn).await {
            Ok(_) => call.query_async::<Vec<u8>>(&mut conn).await,
            Err(e) => Err(e),
        };
    }
    match reply {
        Ok(reply) => {
            let mut numbers = reply.split(|&b| b == b' ').map(parse_u64);
            let mut decisions = Vec::with_capacity(batch.len());
            for _ in 0..batch.len() {
                match (numbers.next(), numbers.next(), numbers.next()) {
                    (Some(Some(allowed)), Some(Some(remaining)), Some(Some(wait))) => decisions
                        .push(Decision {
                            allowed: allowed == 1,
                            remaining,
                            wait: Duration::from_micros(wait),
                        }),
                    _ => return fail_all(batch, || StoreError::Malformed),
                }
            }
            if numbers.next().is_some() {
                return fail_all(batch, || StoreError::Malformed);
            }
            for (p, d) in batch.into_iter().zip(decisions) {
                let _ = p.reply.send(Ok(d));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            fail_all(batch, || StoreError::Failed(e.clone()))
        }
    }
}

/// A decimal number of the script's reply (the script never sends a negative one).
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

fn fail_all(batch: Vec<Pending>, error: impl Fn() -> StoreError) {
    for p in batch {
        let _ = p.reply.send(Err(error()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_testkit::Redis;

    /// Script calls Redis ran since its stats were reset.
    fn script_calls(redis: &Redis) -> usize {
        let info = redis.command("INFO commandstats");
        (info.lines())
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum()
    }

    /// Asks `n` questions for one key before the driver runs (the test runtime has one thread,
    /// so the driver is polled only once the test awaits), then collects every answer.
    /// A store on `redis` whose script Redis already knows (the first call of a fresh Redis is
    /// an `EVALSHA` refused with `NOSCRIPT`, the `SCRIPT LOAD` and the `EVALSHA` again), stats then
    /// reset.
    async fn warm_store(redis: &Redis) -> RedisStore {
        let store = RedisStore::new(&redis.url, Duration::from_secs(10)).unwrap();
        let warm = Gcra::new(1, Duration::from_secs(1), 1);
        store
            .check("warm".into(), warm)
            .await
            .expect("Redis answers");
        assert!(redis.command("CONFIG RESETSTAT").starts_with("+OK"));
        store
    }

    async fn ask_at_once(store: &RedisStore, n: usize, gcra: Gcra) -> Vec<Decision> {
        let asked: Vec<_> = (0..n)
            .map(|_| store.ask("k".into(), gcra).expect("driver running"))
            .collect();
        let mut decisions = Vec::with_capacity(n);
        for answer in asked {
            decisions.push(answer.await.expect("answered").expect("decided"));
        }
        decisions
    }

    #[tokio::test(flavor = "current_thread")]
    async fn questions_waiting_together_share_one_script_call_and_stay_exact() {
        let redis = Redis::start();
        let store = warm_store(&redis).await;
        let gcra = Gcra::new(100, Duration::from_secs(3600), 100);
        let decisions = ask_at_once(&store, 200, gcra).await;
        let admitted = decisions.iter().filter(|d| d.allowed).count();
        assert_eq!(admitted, 100, "the limit holds inside one batch");
        // In order: the first hundred are admitted, counting down what remains.
        assert!(decisions[..100].iter().all(|d| d.allowed));
        assert_eq!(decisions[99].remaining, 0);
        assert_eq!(decisions[0].remaining, 99);
        assert_eq!(
            script_calls(&redis),
            1,
            "200 waiting questions, one script call"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_long_queue_is_cut_into_batches_of_at_most_max_batch() {
        let redis = Redis::start();
        let store = warm_store(&redis).await;
        let n = 2 * MAX_BATCH + 10;
        let gcra = Gcra::new(n as u64, Duration::from_secs(3600), n as u64);
        let decisions = ask_at_once(&store, n, gcra).await;
        assert!(decisions.iter().all(|d| d.allowed));
        assert_eq!(
            script_calls(&redis),
            3,
            "{n} questions in batches of {MAX_BATCH}"
        );
    }

    /// Keys interleaved in one batch: each key's decisions follow its own bucket, and each key
    /// is stored once, with its expiry.
    #[tokio::test(flavor = "current_thread")]
    async fn interleaved_keys_in_one_batch_keep_their_own_buckets() {
        let redis = Redis::start();
        let store = warm_store(&redis).await;
        let gcra = Gcra::new(2, Duration::from_secs(3600), 2);
        let asked: Vec<_> = ["a", "b", "a", "b", "a", "c"]
            .iter()
            .map(|k| store.ask((*k).into(), gcra).expect("driver running"))
            .collect();
        let mut allowed = Vec::new();
        for answer in asked {
            allowed.push(answer.await.expect("answered").expect("decided").allowed);
        }
        assert_eq!(allowed, [true, true, true, true, false, true]);
        assert_eq!(script_calls(&redis), 1);
        for key in ["a", "b", "c"] {
            let ttl: i64 = (redis
                .command(&format!("PTTL {key}"))
                .trim_start_matches(':')
                .trim())
            .parse()
            .expect("a number");
            assert!(ttl > 0, "{key} stored with an expiry, PTTL {ttl}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_flushed_script_is_loaded_again_and_the_decision_made() {
        let redis = Redis::start();
        let store = warm_store(&redis).await;
        assert!(redis.command("SCRIPT FLUSH").starts_with("+OK"));
        let gcra = Gcra::new(1, Duration::from_secs(3600), 1);
        let first = store.check("f".into(), gcra).await.expect("decided");
        let second = store.check("f".into(), gcra).await.expect("decided");
        assert!(first.allowed && !second.allowed, "{first:?} {second:?}");
    }

    #[test]
    fn reply_numbers_are_plain_decimals() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(
            parse_u64(b"18446744073709551"),
            Some(18_446_744_073_709_551)
        );
        for bad in [&b""[..], b"-1", b"1e+16", b"12a", b"99999999999999999999"] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }

    /// Two worker-like threads (each its own single-threaded runtime) get a lane each, and the
    /// limit stays exact across them as it does across replicas.
    #[test]
    fn each_thread_gets_its_own_lane_and_the_limit_holds_across_them() {
        let redis = Redis::start();
        let store = Arc::new(RedisStore::new(&redis.url, Duration::from_secs(10)).unwrap());
        let gcra = Gcra::new(150, Duration::from_secs(3600), 150);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let decisions = ask_at_once(&store, 100, gcra).await;
                        decisions.iter().filter(|d| d.allowed).count()
                    })
                })
            })
            .collect();
        let admitted: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(
            admitted, 150,
            "200 questions from two lanes against a limit of 150"
        );
        assert_eq!(
            store.next_lane.load(Ordering::Relaxed),
            2,
            "a lane per thread"
        );
    }
}
