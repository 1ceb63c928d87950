//! The link to the shared store in Redis: appending changes, following the stream, and
//! keeping snapshots (the one module that uses redis).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::format::{
    decode_framed, encode_framed, LogEntry, SnapshotRecord, Unreadable, FORMAT_VERSION, LOG_KEPT, LOG_MAGIC,
    SNAPSHOT_EVERY, SNAPSHOT_MAGIC,
};
use super::store_error::{redact, StoreError};
use crate::budget::Budgets;
use crate::change::Apply;
use crate::state::TrackerState;

/// Longest wait for a change to come back from the stream applied.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for any one Redis command (a blocking read waits [`READ_BLOCK`] within it).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read waits in Redis for new changes.
const READ_BLOCK: Duration = Duration::from_millis(1000);
/// Most changes read at once.
const READ_BATCH: usize = 1024;
/// How often a tracker that reads nothing new checks that the stream did not go back.
const WENT_BACK_CHECK: Duration = Duration::from_secs(2);
/// A change stamped later than this after Redis's present time is applied at the present
/// time instead: a stream id far in the future (written by hand) must not move the shared
/// clock there.
const MAX_AHEAD: Duration = Duration::from_secs(10);

/// Applies one of this tracker's changes and hands its outcome to the commit that made it.
type Applier = Box<dyn FnOnce(&mut TrackerState, Instant) + Send>;

/// Redis's stream ids as times on this machine's monotonic clock, so that every tracker
/// applies each change at the time Redis stamped on it (the milliseconds of its id).
struct LogClock {
    instant: Instant,
    redis_ms: u64,
}

impl LogClock {
    fn at(&self, ms: u64) -> Instant {
        if ms >= self.redis_ms {
            self.instant + Duration::from_millis(ms - self.redis_ms)
        } else {
            self.instant
                .checked_sub(Duration::from_millis(self.redis_ms - ms))
                .unwrap_or(self.instant)
        }
    }

    /// Redis's time in milliseconds now, as this machine sees it.
    fn now_ms(&self) -> u64 {
        self.redis_ms + self.instant.elapsed().as_millis() as u64
    }

    /// When a change with stream id `id` is applied: at Redis's stamp, or at the present time
    /// if the stamp is further ahead than [`MAX_AHEAD`].
    fn at_id(&self, id: &str) -> Instant {
        let limit = self.now_ms() + MAX_AHEAD.as_millis() as u64;
        self.at(id_ms(id).min(limit))
    }
}

/// A tracker's link to the shared store.
pub struct SharedLog {
    client: redis::Client,
    url: String,
    log_key: String,
    snapshot_key: String,
    writer: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    me: u64,
    next_seq: AtomicU64,
    /// This tracker's changes on their way through the log, by sequence number: the entry's
    /// bytes, and what applies the change and hands its outcome back.
    waiting: Mutex<HashMap<u64, (Vec<u8>, Applier)>>,
    state: Arc<Mutex<TrackerState>>,
    peer_timeout: Duration,
    budgets: Budgets,
    clock: LogClock,
    /// The id of the last change applied.
    applied: Mutex<String>,
    /// Set when Redis was unreachable: on reconnecting, check it still has a snapshot.
    reconnected: AtomicBool,
    /// Set on meeting a change of another format version: nothing more is applied.
    incompatible: AtomicBool,
    /// Set when a change stamped far in the future was seen (said once).
    warned_ahead: AtomicBool,
}

impl SharedLog {
    /// Connects to the store at `url` (`redis://HOST:PORT/DB`), loads the newest snapshot and
    /// applies the changes after it. Nothing is served until this returns.
    pub async fn open(
        url: &str,
        prefix: &str,
        peer_timeout: Duration,
        budgets: Budgets,
    ) -> Result<(Arc<SharedLog>, Arc<Mutex<TrackerState>>), StoreError> {
        let shown = redact(url);
        let fail = |message: String| StoreError {
            url: shown.clone(),
            message,
        };
        let client = redis::Client::open(url).map_err(|e| fail(format!("not a Redis address: {e}")))?;
        let mut conn = connect(&client).await.map_err(|e| {
            fail(match e.kind() {
                redis::ErrorKind::AuthenticationFailed => {
                    "Redis refused the password: give the right one in the URL, redis://:PASSWORD@HOST:PORT/DB \
                     (percent-encode characters like / @ : + % in it)"
                        .to_owned()
                }
                _ if e.is_io_error() || e.is_timeout() => format!("{e}; is redis-server running there?"),
                _ => e.to_string(),
            })
        })?;
        let (secs, micros): (u64, u64) = command(&mut conn, &mut redis::cmd("TIME"))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let clock = LogClock {
            instant: Instant::now(),
            redis_ms: secs * 1000 + micros / 1000,
        };
        let log_key = format!("{prefix}log");
        let snapshot_key = format!("{prefix}snapshot");
        let (state, applied) = match fetch_snapshot(&mut conn, &snapshot_key)
            .await
            .map_err(|e| fail(e.to_string()))?
        {
            Some(record) => {
                let now = clock.at_id(&record.log_id);
                let state = TrackerState::restore(record.snapshot, peer_timeout, budgets, now);
                info!(
                    files = state.list().len(),
                    peers = state.peer_count(),
                    "loaded the shared state's snapshot"
                );
                (state, record.log_id)
            }
            None => (TrackerState::new(peer_timeout, budgets), "0-0".to_owned()),
        };
        let state = Arc::new(Mutex::new(state));
        let log = Arc::new(SharedLog {
            client,
            url: shown.clone(),
            log_key,
            snapshot_key,
            writer: tokio::sync::Mutex::new(Some(conn.clone())),
            me: rand::random(),
            next_seq: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
            state: state.clone(),
            peer_timeout,
            budgets,
            clock,
            applied: Mutex::new(applied),
            reconnected: AtomicBool::new(false),
            incompatible: AtomicBool::new(false),
            warned_ahead: AtomicBool::new(false),
        });
        // Catch up with the stream before serving.
        loop {
            let entries = log.read(&mut conn, None).await.map_err(|e| fail(e.to_string()))?;
            if entries.is_empty() {
                break;
            }
            log.apply(entries);
        }
        Ok((log, state))
    }

    fn error(&self, message: impl Into<String>) -> StoreError {
        StoreError {
            url: self.url.clone(),
            message: message.into(),
        }
    }

    /// Appends `change` to the stream and returns its outcome once this tracker has applied it.
    pub async fn commit<C: Apply>(&self, change: C) -> Result<C::Outcome, StoreError> {
        if self.incompatible.load(Ordering::Relaxed) {
            return Err(self.error(
                "the shared store holds changes of another format version; this tracker stopped following it (upgrade it)",
            ));
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (sender, outcome) = oneshot::channel();
        let entry = encode_framed(
            LOG_MAGIC,
            &LogEntry {
                writer: self.me,
                seq,
                change: change.clone().into(),
            },
        );
        let applier: Applier = Box::new(move |state, at| {
            let _ = sender.send(change.apply(state, at));
        });
        self.waiting
            .lock()
            .expect("lock poisoned")
            .insert(seq, (entry.clone(), applier));
        let result = match self.append(&entry).await {
            Ok(()) => match tokio::time::timeout(COMMIT_TIMEOUT, outcome).await {
                Ok(Ok(outcome)) => Ok(outcome),
                _ => Err(self.error(format!("the change was not read back within {COMMIT_TIMEOUT:?}"))),
            },
            Err(e) => Err(self.error(e.to_string())),
        };
        if result.is_err() {
            self.waiting.lock().expect("lock poisoned").remove(&seq);
        }
        result
    }

    /// The shared connection for commands other than the blocking read, dialled if needed.
    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = self.writer.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = connect(&self.client).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs `cmd` on the shared connection, dropping the connection if it failed.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> redis::RedisResult<T> {
        let mut conn = self.connection().await?;
        let result = command(&mut conn, cmd).await;
        if result.is_err() {
            *self.writer.lock().await = None;
        }
        result
    }

    async fn append(&self, entry: &[u8]) -> redis::RedisResult<()> {
        let _id: String = self
            .run(redis::cmd("XADD").arg(&self.log_key).arg("*").arg("c").arg(entry))
            .await?;
        Ok(())
    }

    /// Reads the changes after the last one applied: waiting up to `block` for some, or not
    /// at all.
    async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        block: Option<Duration>,
    ) -> redis::RedisResult<Vec<(String, Vec<u8>)>> {
        let after = self.applied.lock().expect("lock poisoned").clone();
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(READ_BATCH);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.log_key).arg(after);
        let reply: Value = command(conn, &mut cmd).await?;
        Ok(stream_entries(reply))
    }

    /// Applies changes read from the stream, handing each of this tracker's own back to the
    /// request that made it. Foreign entries are skipped; one of another format version stops
    /// the following.
    fn apply(&self, entries: Vec<(String, Vec<u8>)>) {
        let mut state = self.state.lock().expect("tracker state lock poisoned");
        let mut applied = self.applied.lock().expect("lock poisoned");
        for (id, bytes) in entries {
            if self.incompatible.load(Ordering::Relaxed) {
                return;
            }
            if !id_after(&id, &applied) {
                continue;
            }
            let ahead = id_ms(&id) > self.clock.now_ms() + MAX_AHEAD.as_millis() as u64;
            if ahead && !self.warned_ahead.swap(true, Ordering::Relaxed) {
                warn!(store = %self.url, "change {id} in {} is stamped far in the future (written by hand?); changes are applied at the present time", self.log_key);
            }
            match decode_framed::<LogEntry>(LOG_MAGIC, &bytes, false) {
                Ok(entry) => {
                    let at = self.clock.at_id(&id);
                    let mine = if entry.writer == self.me {
                        self.waiting.lock().expect("lock poisoned").remove(&entry.seq)
                    } else {
                        None
                    };
                    match mine {
                        // This tracker's own change, as it wrote it: applied by its typed
                        // applier, which hands the outcome back to the commit waiting for it.
                        Some((written, applier)) if written == bytes => applier(&mut state, at),
                        // Anyone else's (or bytes that only claim to be this tracker's: the
                        // commit waiting for that number gets no outcome and fails).
                        _ => entry.change.apply(&mut state, at),
                    }
                }
                Err(Unreadable::Foreign(why)) => {
                    warn!(store = %self.url, "skipping change {id} in {}: {why}", self.log_key)
                }
                Err(Unreadable::Version(version)) => {
                    tracing::error!(
                        store = %self.url,
                        "change {id} in {} is of format version {version}, this tracker reads version {FORMAT_VERSION}: \
                         it stops following the store (upgrade every tracker sharing it to one version)",
                        self.log_key
                    );
                    self.incompatible.store(true, Ordering::Relaxed);
                    return;
                }
            }
            *applied = id;
        }
    }

    /// If the stream's newest id is before the last change applied, the stream went back
    /// (Redis lost its data, or the last id was written by hand far in the future and the
    /// stream was emptied since): follows it from its start again, instead of waiting for ids
    /// that will not come.
    async fn follow_again_if_went_back(&self) {
        let newest = match self
            .run::<Value>(redis::cmd("XINFO").arg("STREAM").arg(&self.log_key))
            .await
        {
            Ok(info) => field(&info, "last-generated-id").unwrap_or_else(|| "0-0".into()),
            // No stream at all: an emptied Redis that nobody wrote to yet.
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => "0-0".into(),
            Err(_) => return,
        };
        let mut applied = self.applied.lock().expect("lock poisoned");
        if id_after(&applied, &newest) {
            warn!(store = %self.url, "the stream went back (to {newest} from {}): following it from its start again", *applied);
            *applied = "0-0".into();
        }
    }

    /// Follows the stream until `shutdown`, reconnecting when Redis goes away.
    pub async fn follow(self: Arc<Self>, shutdown: CancellationToken) {
        let mut conn: Option<MultiplexedConnection> = None;
        let mut down_since: Option<Instant> = None;
        let mut last_check = Instant::now();
        loop {
            let attempt = async {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => conn.insert(connect(&self.client).await?),
                };
                self.read(c, Some(READ_BLOCK)).await
            };
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                result = attempt => result,
            };
            match result {
                Ok(entries) => {
                    if let Some(since) = down_since.take() {
                        info!(store = %self.url, "store reachable again after {:.1?}", since.elapsed());
                        self.reconnected.store(true, Ordering::Relaxed);
                        self.follow_again_if_went_back().await;
                    }
                    if entries.is_empty() && last_check.elapsed() >= WENT_BACK_CHECK {
                        last_check = Instant::now();
                        self.follow_again_if_went_back().await;
                    }
                    self.apply(entries);
                }
                Err(e) => {
                    conn = None;
                    if down_since.is_none() {
                        warn!(store = %self.url, "store unreachable ({e}); changes are refused until it is back");
                        down_since = Some(Instant::now());
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
            }
        }
    }

    /// Writes a snapshot every [`SNAPSHOT_EVERY`], and at once after a reconnection to a Redis
    /// that lost the one it had, until `shutdown`.
    pub async fn keep_snapshots(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // After Redis was away: if it came back empty, write the state back at once (a
            // failed check is tried again on the next tick).
            let lost = if self.reconnected.load(Ordering::Relaxed) {
                match self.has_snapshot().await {
                    Ok(true) => {
                        self.reconnected.store(false, Ordering::Relaxed);
                        false
                    }
                    Ok(false) => true,
                    Err(_) => continue,
                }
            } else {
                false
            };
            if lost || last.elapsed() >= SNAPSHOT_EVERY {
                if !lost {
                    self.catch_up_if_trimmed().await;
                }
                match self.write_snapshot().await {
                    Ok(()) if lost => {
                        self.reconnected.store(false, Ordering::Relaxed);
                        info!(store = %self.url, "the store had lost its state; wrote it back from memory");
                    }
                    Ok(()) => {}
                    Err(e) => warn!(store = %self.url, "could not write a snapshot: {e}"),
                }
                last = Instant::now();
            }
        }
    }

    /// If changes this tracker never applied were trimmed from the stream (it fell more than
    /// [`LOG_KEPT`] behind), starts again from the newest snapshot.
    async fn catch_up_if_trimmed(&self) {
        let Ok(info) = self
            .run::<Value>(redis::cmd("XINFO").arg("STREAM").arg(&self.log_key))
            .await
        else {
            return;
        };
        let trimmed = field(&info, "max-deleted-entry-id").unwrap_or_default();
        let applied = self.applied.lock().expect("lock poisoned").clone();
        if !id_after(&trimmed, &applied) {
            return;
        }
        let mut conn = match self.connection().await {
            Ok(conn) => conn,
            Err(_) => return,
        };
        match fetch_snapshot(&mut conn, &self.snapshot_key).await {
            Ok(Some(record)) if !id_after(&trimmed, &record.log_id) => {
                let now = self.clock.at_id(&record.log_id);
                let restored = TrackerState::restore(record.snapshot, self.peer_timeout, self.budgets, now);
                let mut state = self.state.lock().expect("tracker state lock poisoned");
                let mut applied = self.applied.lock().expect("lock poisoned");
                warn!(store = %self.url, behind = %*applied, "fell behind the trimmed log; starting again from the snapshot at {}", record.log_id);
                *state = restored;
                *applied = record.log_id;
            }
            _ => warn!(store = %self.url, "fell behind the trimmed log, and no newer snapshot is there yet"),
        }
    }

    async fn has_snapshot(&self) -> redis::RedisResult<bool> {
        let exists: u64 = self.run(redis::cmd("EXISTS").arg(&self.snapshot_key)).await?;
        Ok(exists > 0)
    }

    /// Writes this tracker's state as the snapshot, and trims the stream to [`LOG_KEPT`]
    /// before it.
    pub async fn write_snapshot(&self) -> redis::RedisResult<()> {
        let record = {
            let state = self.state.lock().expect("tracker state lock poisoned");
            let log_id = self.applied.lock().expect("lock poisoned").clone();
            let at = if log_id == "0-0" {
                self.clock.at(self.clock.now_ms())
            } else {
                self.clock.at_id(&log_id)
            };
            encode_framed(
                SNAPSHOT_MAGIC,
                &SnapshotRecord {
                    snapshot: state.snapshot(at),
                    log_id,
                },
            )
        };
        let () = self.run(redis::cmd("SET").arg(&self.snapshot_key).arg(record)).await?;
        let keep_from = self.clock.now_ms().saturating_sub(LOG_KEPT.as_millis() as u64);
        let _trimmed: u64 = self
            .run(
                redis::cmd("XTRIM")
                    .arg(&self.log_key)
                    .arg("MINID")
                    .arg("~")
                    .arg(keep_from),
            )
            .await?;
        Ok(())
    }
}

async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    // The client's own response timeout (half a second by default) would cut the blocking
    // read short; every command is bounded by `command` instead.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(COMMAND_TIMEOUT));
    client.get_multiplexed_async_connection_with_config(&config).await
}

async fn command<T: redis::FromRedisValue>(
    conn: &mut MultiplexedConnection,
    cmd: &mut redis::Cmd,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async(conn)).await {
        Ok(result) => result,
        Err(_) => Err(timed_out()),
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {COMMAND_TIMEOUT:?}"),
    ))
}

/// The snapshot stored under `key`, if there is a readable one; one of another format
/// version is an error (this tracker must not start from it).
async fn fetch_snapshot(conn: &mut MultiplexedConnection, key: &str) -> redis::RedisResult<Option<SnapshotRecord>> {
    let stored: Option<Vec<u8>> = command(conn, redis::cmd("GET").arg(key)).await?;
    let Some(bytes) = stored else {
        return Ok(None);
    };
    match decode_framed::<SnapshotRecord>(SNAPSHOT_MAGIC, &bytes, true) {
        Ok(record) => Ok(Some(record)),
        Err(Unreadable::Foreign(why)) => {
            warn!("the shared state's snapshot in {key} is unreadable ({why}); ignoring it");
            Ok(None)
        }
        Err(Unreadable::Version(version)) => Err(redis::RedisError::from(std::io::Error::other(format!(
            "the snapshot in {key} is of format version {version}, this tracker reads version {FORMAT_VERSION}: \
             trackers of different versions cannot share a store (upgrade them together)"
        )))),
    }
}

/// The text of field `name` in a reply made of name/value pairs (`XINFO STREAM`).
fn field(reply: &Value, name: &str) -> Option<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match reply {
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| text(&pair[0]).as_deref() == Some(name))
            .and_then(|pair| pair.get(1).and_then(text)),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}

/// `(id, c)` of each entry in an `XREAD` reply (nil when nothing came).
fn stream_entries(reply: Value) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let Value::Array(streams) = reply else {
        return found;
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else { continue };
        let Some(Value::Array(entries)) = parts.pop() else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut entry) = entry else { continue };
            let (Some(Value::Array(fields)), Some(Value::BulkString(id))) = (entry.pop(), entry.pop()) else {
                continue;
            };
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                if let (Value::BulkString(name), Value::BulkString(value)) = (name, value) {
                    if name == b"c" {
                        found.push((String::from_utf8_lossy(&id).into_owned(), value));
                    }
                }
            }
        }
    }
    found
}

/// The milliseconds part of a stream id (`MS-SEQ`).
fn id_ms(id: &str) -> u64 {
    id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0)
}

/// Is stream id `a` after `b`?
fn id_after(a: &str, b: &str) -> bool {
    let parts = |id: &str| -> (u64, u64) {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
    };
    parts(a) > parts(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_compare_by_time_then_sequence() {
        assert!(id_after("5-1", "5-0"));
        assert!(id_after("6-0", "5-9"));
        assert!(id_after("10-0", "9-0"));
        assert!(!id_after("5-0", "5-0"));
        assert!(id_after("1-0", "0-0"));
        assert_eq!(id_ms("1700000000123-4"), 1_700_000_000_123);
    }

    /// The bytes of a log entry and of a snapshot never change within a format version: two
    /// builds of one version on one Redis read each other's writes.

    #[test]
    fn a_stamp_far_ahead_is_applied_at_the_present_time() {
        let clock = LogClock {
            instant: Instant::now(),
            redis_ms: 1_000_000,
        };
        assert_eq!(clock.at_id("1000500-0"), clock.instant + Duration::from_millis(500));
        let far = clock.at_id("99999999999999-0");
        assert!(far <= Instant::now() + MAX_AHEAD + Duration::from_secs(1), "{far:?}");
    }
}
