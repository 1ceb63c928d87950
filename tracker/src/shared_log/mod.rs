//! The shared store: any number of trackers on one Redis. The records' format is in
//! [`format`]; the link to Redis (the one module that uses redis) in `redis_log`, built with
//! the `shared-store` feature (on by default).
//!
//! Trackers share their state by sharing the changes to it. Every [`Change`](crate::change::Change) (a register, an
//! announce, a chunk report, a spot check's outcome, an expiry round) is appended to one Redis
//! stream; every tracker reads that stream and applies each change to its own
//! [`TrackerState`](crate::state::TrackerState), in stream order, at the time Redis stamped on it. Same changes, same order,
//! same clock: every tracker holds the same state, so a peer may ask any of them and budgets and
//! audits hold wherever a request lands. A tracker answers a change only once it has applied
//! it from the stream, so its answer is the one every tracker computes.
//!
//! Reads (locate, list, search) are answered from memory and never touch Redis; Redis sees
//! one `XADD` per change and one blocking `XREAD` per tracker.
//!
//! A tracker that joins starts from the newest snapshot (the whole state, written every
//! [`SNAPSHOT_EVERY`] by each tracker) and the changes after it. The stream keeps the last
//! [`LOG_KEPT`] of changes; a tracker that fell further behind (Redis's record of the newest
//! id it trimmed is past the tracker's last one) starts again from the newest snapshot.
//!
//! # Keys (under the prefix, `swarm:` by default)
//! - `log`: the stream of changes; each entry has one field, `c`: [`LOG_MAGIC`], the format
//!   version ([`FORMAT_VERSION`], one byte), then a [`LogEntry`] (bincode).
//! - `snapshot`: [`SNAPSHOT_MAGIC`], the format version, then a [`SnapshotRecord`] (bincode):
//!   the stream id it was taken at, and the state.
//!
//! The golden tests below pin both byte for byte. An entry that is not of this format (no
//! magic, or bytes that do not decode) is skipped with a warning; an entry or a snapshot of
//! another format version stops this tracker from following (it says so, and refuses changes)
//! rather than misread it: trackers of two versions must not share a Redis.
//!
//! # Who may write to Redis
//! Whoever can write to the Redis is inside the trackers' trust boundary: trackers apply what
//! the stream says without checking it again (a tracker checks requests before it appends
//! them; share changes stay signed, and peers check those themselves). Keep the Redis on a
//! private network or behind a password (`redis://:PASSWORD@HOST:PORT/DB`) and TLS
//! (`rediss://`). What a stranger's writes can do is bounded all the same: an entry that does
//! not decode is skipped, one stamped far in the future is applied at the present time, and a
//! stream that goes back (Redis emptied) is followed from its start again.
//!
//! # When Redis restarts
//! Trackers keep their state in memory and answer reads throughout; changes are refused
//! ("store unreachable", which peers retry) until Redis is back. A tracker that reconnects and
//! finds no snapshot writes one at once, so a Redis that lost everything is refilled from the
//! trackers' memory. Only when Redis and every tracker restart together is the state lost;
//! peers then register and announce again on their own.

mod format;
#[cfg(feature = "shared-store")]
mod redis_log;
mod store_error;
#[cfg(not(feature = "shared-store"))]
mod without_redis;

pub use format::{
    read_entry, read_snapshot, LogEntry, SnapshotRecord, FORMAT_VERSION, LOG_KEPT, LOG_MAGIC, SNAPSHOT_EVERY,
    SNAPSHOT_MAGIC,
};
#[cfg(feature = "shared-store")]
pub use redis_log::SharedLog;
pub use store_error::StoreError;
#[cfg(not(feature = "shared-store"))]
pub use without_redis::SharedLog;
