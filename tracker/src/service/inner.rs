//! What the tracker's request handlers and loops share: the state, the store behind it, the
//! request limits and the auditor; and how a change is made.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use governor::{DefaultKeyedRateLimiter, Quota};
use swarm_proto::protocol::{ErrorCode, Refusal};
use swarm_proto::PeerId;
use tracing::warn;

use crate::audit::{Auditor, Claim};
use crate::change::Apply;
use crate::introductions::Introducer;
use crate::shared_log::SharedLog;
use crate::state::TrackerState;
use crate::store::CatalogueStore;

/// Claims spot-checked in one batch of announcements, at most.
pub(super) const AUDITS_PER_BATCH: usize = 2;

/// Whether a claim a request makes is spot-checked before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Audit {
    /// Yes (as the audit budget allows).
    Claim,
    /// No: it is one of many in a batch.
    Skip,
}

/// Requests one peer may make per second, on average; bursts of twice as many pass.
/// Beyond that it is answered `Busy` without its request being read.
pub const REQUESTS_PER_SECOND: u32 = 500;

pub(super) struct Service {
    pub(super) state: Arc<Mutex<TrackerState>>,
    pub(super) store: Store,
    /// Changes other than keepalives made since who holds what was last saved.
    pub(super) unsaved: std::sync::atomic::AtomicU64,
    pub(super) requests: DefaultKeyedRateLimiter<PeerId>,
    pub(super) auditor: Auditor,
    pub(super) introducer: Arc<Introducer>,
    /// Who reads what from its origin now.
    pub(super) leases: crate::origin_leases::OriginLeases,
    /// Claims of holders behind NATs, checked by the audit loop rather than before the
    /// announcement is answered (reaching such a holder takes an introduction, or fails).
    pub(super) deferred: Mutex<std::collections::VecDeque<Claim>>,
    /// The state directory's lock, held as long as the store it guards is open (a task that
    /// outlives the [`super::Tracker`] still holds both).
    pub(super) _lock: swarm_proto::dir_lock::DirLock,
}

/// Most claims waiting for a deferred check; beyond it they are left to the random checks.
pub(super) const MAX_DEFERRED: usize = 1000;

/// The store behind a running tracker.
pub(super) enum Store {
    /// Changes are applied at once; new manifests are persisted here.
    Embedded(CatalogueStore),
    /// Changes go through the shared log.
    Shared(Arc<SharedLog>),
}

pub(super) fn request_limiter() -> DefaultKeyedRateLimiter<PeerId> {
    let rate = NonZeroU32::new(REQUESTS_PER_SECOND).expect("non-zero");
    let burst = NonZeroU32::new(2 * REQUESTS_PER_SECOND).expect("non-zero");
    governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
}

impl Service {
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.state.lock().expect("tracker state lock poisoned")
    }

    /// Saves who holds what and the shares, if the store is embedded (a shared store keeps
    /// them in Redis).
    pub(super) fn save_state(&self) {
        if let Store::Embedded(store) = &self.store {
            let (peers, shares) = {
                let state = self.state();
                (state.snapshot_peers(Instant::now()), state.snapshot_shares())
            };
            store.save_state(peers, shares);
        }
    }

    /// Makes `change`: at once in the embedded store, through the log in the shared one.
    pub(super) async fn commit<C: Apply>(&self, change: C) -> Result<C::Outcome, Refusal> {
        match &self.store {
            Store::Embedded(_) => {
                if C::SAVED {
                    self.unsaved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(change.apply(&mut self.state(), Instant::now()))
            }
            Store::Shared(log) => {
                // What this tracker's copy of the state would refuse for lack of budget is
                // refused here, before it reaches the log that every tracker reads.
                change.precheck(&self.state())?;
                log.commit(change).await.map_err(|e| {
                    warn!("{e}");
                    Refusal::new(
                        ErrorCode::Busy,
                        format!("this tracker cannot reach its store ({}); try again shortly", e.message),
                    )
                })
            }
        }
    }
}

/// Milliseconds since the Unix epoch (at least 1: epoch 0 means "no share").
pub(super) fn unix_ms_now() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(1, |d| d.as_millis() as u64).max(1)
}
