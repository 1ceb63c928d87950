//! The coordinator of one download: starts a worker per holder, wakes whenever a worker
//! reports (a chunk verified, a worker ended, a fatal error), saves progress and queues chunk
//! reports for the tracker, re-locates holders from time to time, and ends the download on
//! completion, a fatal error, a timeout or a cancel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_proto::protocol::Holder;
use swarm_proto::{FileId, Manifest, PeerId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use super::options::Sources;
use super::peer;
use super::shared::{Env, Shared};
use crate::chunk_io::ChunkFile;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::scheduler::Scheduler;
use crate::store::Held;

/// Longest wait for the tracker; the fetch goes on with the peers it knows meanwhile.
const TRACKER_TIMEOUT: Duration = Duration::from_secs(3);
/// Progress is saved (for `swarm status`) at most this often.
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// How often holders are re-located while chunks lack a holder.
const RELOCATE_STARVED: Duration = Duration::from_secs(3);
/// How often holders are re-located otherwise, to learn which chunks the other downloaders
/// have verified since: as often as this for small answers, less often as the answer (a
/// bitfield per holder) grows, by a second per [`RELOCATE_BYTES_PER_SECOND`], up to
/// [`RELOCATE_SLOWEST`].
const RELOCATE_FASTEST: Duration = Duration::from_secs(1);
const RELOCATE_SLOWEST: Duration = Duration::from_secs(15);
const RELOCATE_BYTES_PER_SECOND: u64 = 256 * 1024;

/// What a download starts from.
pub struct Plan {
    /// The node.
    pub env: Env,
    /// The file.
    pub id: FileId,
    /// Its manifest, checked against the id.
    pub manifest: Arc<Manifest>,
    /// The partial file.
    pub file: Arc<ChunkFile>,
    /// The file as the chunk server sees it; its chunks are the ones already held.
    pub held: Arc<Held>,
    /// The holders the tracker named (already filtered by `sources`).
    pub holders: Vec<Holder>,
    /// Which holders may be used.
    pub sources: Sources,
    /// Give up after this long from `started`.
    pub timeout: Option<Duration>,
    /// When the fetch started.
    pub started: Instant,
    /// Fires when the download is cancelled or the node shuts down.
    pub cancelled: CancellationToken,
    /// Counters for a progress display.
    pub progress: Arc<Progress>,
}

/// What a finished download did.
pub struct Outcome {
    /// Bytes of verified chunks per peer.
    pub received: HashMap<PeerId, u64>,
    /// Peers banned for bad data.
    pub banned: Vec<PeerId>,
}

/// Runs the download to its end.
pub async fn run(plan: Plan) -> Result<Outcome> {
    let scheduler = Scheduler::new(plan.held.chunks());
    let shared = Arc::new(Shared::new(
        plan.env.clone(),
        plan.id,
        plan.manifest.clone(),
        plan.file.clone(),
        plan.held.clone(),
        plan.progress.clone(),
        scheduler,
    ));
    let workers = TaskTracker::new();
    add_holders(&shared, &workers, plan.holders.clone());
    let no_source = {
        let swarm = shared.lock();
        swarm.workers.is_empty() && !swarm.scheduler.is_complete()
    };
    if let (Sources::Only(filter), true) = (&plan.sources, no_source) {
        return Err(Error::NotFound(format!(
            "no live holder of {} is the peer asked for ({filter})",
            plan.id.short()
        )));
    }
    let result = coordinate(&shared, &workers, &plan).await;
    shared.done.cancel();
    workers.close();
    workers.wait().await;
    save_progress(&shared);
    result?;
    let swarm = shared.lock();
    Ok(Outcome {
        received: swarm.received.clone(),
        banned: swarm.banned.clone(),
    })
}

async fn coordinate(shared: &Arc<Shared>, workers: &TaskTracker, plan: &Plan) -> Result<()> {
    let mut last_locate = Instant::now();
    let mut relocate_every = RELOCATE_FASTEST;
    let mut save_at: Option<Instant> = None;
    let mut starved_reported = 0;
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    loop {
        let (newly, complete, unavailable, peers) = {
            let mut swarm = shared.lock();
            if let Some(error) = swarm.fatal.take() {
                return Err(error);
            }
            (
                std::mem::take(&mut swarm.newly_verified),
                swarm.scheduler.is_complete(),
                swarm.scheduler.unavailable(),
                swarm.workers.len(),
            )
        };
        if !newly.is_empty() {
            shared.env.session.report(shared.id, &newly);
            save_at.get_or_insert(Instant::now() + SAVE_EVERY);
        }
        shared.progress.set_peers(peers as u64);
        if complete {
            return Ok(());
        }
        if unavailable > 0 && unavailable != starved_reported {
            warn!("waiting for {unavailable} chunks that no live peer holds");
            starved_reported = unavailable;
        }
        let every = if unavailable > 0 || peers == 0 {
            RELOCATE_STARVED
        } else {
            relocate_every
        };
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = plan.cancelled.cancelled() => return Err(Error::Cancelled),
            _ = tokio::time::sleep_until(plan.timeout.map_or(far, |t| plan.started + t).into()) => {
                let missing = plan.manifest.chunk_count - shared.lock().scheduler.have().count();
                return Err(Error::Timeout(format!(
                    "gave up after {:?}: {missing} chunks still missing ({unavailable} with no live holder)",
                    plan.timeout.unwrap_or_default()
                )));
            }
            _ = tokio::time::sleep_until(save_at.unwrap_or(far).into()) => {
                save_at = None;
                save_progress(shared);
            }
            _ = tokio::time::sleep_until((last_locate + every).into()) => {
                last_locate = Instant::now();
                if let Some(answer_bytes) = relocate(shared, workers, &plan.sources).await {
                    relocate_every = (RELOCATE_FASTEST + Duration::from_secs(answer_bytes / RELOCATE_BYTES_PER_SECOND))
                        .min(RELOCATE_SLOWEST);
                }
            }
        }
    }
}

/// Asks the tracker for the holders again and starts workers for new ones. Returns the size
/// of the answer's bitfields, or `None` if the tracker did not answer usefully.
async fn relocate(shared: &Arc<Shared>, workers: &TaskTracker, sources: &Sources) -> Option<u64> {
    match tokio::time::timeout(TRACKER_TIMEOUT, shared.env.session.locate(shared.id)).await {
        Ok(Ok(located)) if located.manifest == *shared.manifest => {
            let answer_bytes = located.holders.len() as u64 * u64::from(shared.manifest.chunk_count) / 8;
            let holders = located.holders.into_iter().filter(|h| sources.admits(h)).collect();
            add_holders(shared, workers, holders);
            Some(answer_bytes)
        }
        Ok(Ok(_)) => {
            warn!("the tracker now returns a different manifest for this id; ignoring it");
            None
        }
        Ok(Err(e)) => {
            debug!("re-locating holders failed (continuing with known peers): {e}");
            None
        }
        Err(_) => {
            debug!("the tracker did not answer a locate (continuing with known peers)");
            None
        }
    }
}

/// Adds what `holders` hold to the scheduler and starts a worker for each new one.
fn add_holders(shared: &Arc<Shared>, workers: &TaskTracker, holders: Vec<Holder>) {
    let me = shared.env.transport.id();
    let mut swarm = shared.lock();
    for holder in holders {
        if holder.peer == me {
            continue;
        }
        swarm.scheduler.add_peer(holder.peer, &holder.chunks);
        if swarm.scheduler.is_active(&holder.peer) && swarm.workers.insert(holder.peer) {
            let span = tracing::debug_span!("peer", peer = %holder.peer.short(), addr = %holder.addr);
            workers.spawn(peer::worker(shared.clone(), holder.peer, holder.addr).instrument(span));
        }
    }
    drop(swarm);
    shared.changed.notify_waiters();
}

/// Records progress in sled (for `swarm status`; resuming does not trust it).
fn save_progress(shared: &Shared) {
    if let Err(e) = shared.env.state.save_progress(&shared.id, &shared.held.chunks()) {
        warn!("could not save progress: {e}");
    }
}
