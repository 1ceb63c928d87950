//! What runs beside the requests: spot checks of claims, saving an embedded tracker's state,
//! and expiring silent peers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::audit::Verdict;
use crate::change::Expire;
use crate::telemetry;

use super::inner::{Service, Store};

/// How often an embedded tracker saves who holds what and the shares, for a restart.
const SAVE_HOLDERS_EVERY: Duration = Duration::from_secs(1);
/// Who holds what is saved this often even when only keepalives came.
const SAVE_ANYWAY_EVERY: Duration = Duration::from_secs(30);

/// Checks a claim picked at random every `every`; a holder caught lying is dropped.
pub(super) async fn audit_loop(service: Arc<Service>, shutdown: CancellationToken, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // A claim whose check was deferred first, else one at random.
        let deferred = service
            .deferred
            .lock()
            .expect("deferred claims lock poisoned")
            .pop_front();
        let claim = deferred.or_else(|| service.state().random_claim(rand::random()));
        let Some(claim) = claim else { continue };
        let verdict = tokio::select! {
            verdict = service.auditor.check(&claim) => verdict,
            _ = shutdown.cancelled() => return,
        };
        let lied = match &verdict {
            Some(Verdict::Lied(why)) => {
                warn!(peer = %claim.peer.short(), file = %claim.file.short(), "spot check failed; dropped as a holder: {why}");
                true
            }
            Some(Verdict::Held) => false,
            _ => continue,
        };
        service.record_check(&claim, lied).await;
    }
}

/// Saves who holds what and the shares every [`SAVE_HOLDERS_EVERY`] if anything but a
/// keepalive changed, and every [`SAVE_ANYWAY_EVERY`] in any case (how long peers have been
/// silent); the tracker saves once more when it stops. A tracker killed outright so loses at
/// most the last second of registrations and announcements.
pub(super) async fn save_loop(service: Arc<Service>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(SAVE_HOLDERS_EVERY);
    ticker.tick().await;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let changed = service.unsaved.swap(0, std::sync::atomic::Ordering::Relaxed) > 0;
        if !changed && last.elapsed() < SAVE_ANYWAY_EVERY {
            continue;
        }
        last = Instant::now();
        let service = service.clone();
        let _ = tokio::task::spawn_blocking(move || service.save_state()).await;
    }
}

pub(super) async fn expiry_loop(
    service: Arc<Service>,
    shutdown: CancellationToken,
    timeout: Duration,
    forget_after: Duration,
) {
    let period = (timeout.min(forget_after) / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Ok(expired) = service.commit(Expire).await else {
            continue;
        };
        {
            let state = service.state();
            telemetry::state(state.peer_count(), state.file_count(), state.usage().total());
        }
        for peer in expired.peers {
            info!(peer = %peer.short(), "expired after {timeout:?} of silence");
        }
        for file in expired.files {
            info!(file = %file.short(), "forgotten: no live peer held it for {forget_after:?}");
            if let Store::Embedded(store) = &service.store {
                store.remove(&file);
            }
        }
        // Forget the request counts of peers that have been quiet long enough to be full.
        service.requests.retain_recent();
    }
}
