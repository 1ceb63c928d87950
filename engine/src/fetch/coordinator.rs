//! The coordinator of one download: keeps a bounded set of neighbours (a worker each), wakes
//! whenever a worker reports (a chunk verified, a worker ended, a fatal error), saves progress
//! and queues chunk reports for the tracker, takes new neighbours from the tracker when it has
//! too few or they lack what is missing (and from peers that start fetching from this node),
//! and ends the download on completion, a fatal error, a timeout or a cancel.
//!
//! Availability comes from the neighbours themselves ([`crate::watch`]), so the tracker is
//! asked for peers only: once at the start, then every [`RELOCATE_EVERY`], or every few
//! seconds while the neighbours are too few or lack chunks that are still missing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_proto::protocol::Holder;
use swarm_proto::{FileId, Manifest, PeerId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use super::budget::Rate;
use super::options::Sources;
use super::peer;
use super::policy::{may_let_go, relocate_after, room_to_make, NEIGHBOURS, PACE_EVERY, UNREACHABLE_PAUSE};
use super::shared::{Env, Shared, Worker};
use crate::chunk_io::ChunkFile;
use crate::error::{Error, Result};
use crate::held::Held;
use crate::nat::Path;
use crate::progress::{Progress, Source};
use crate::scheduler::Scheduler;

/// Longest wait for the tracker; the fetch goes on with the peers it knows meanwhile.
const TRACKER_TIMEOUT: Duration = Duration::from_secs(3);
/// Progress is saved (for `swarm status`) at most this often.
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// What a download starts from.
pub struct Plan<'a> {
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
    /// Peers fetching this file from this node, offered as neighbours.
    pub offered: &'a mut tokio::sync::mpsc::Receiver<(PeerId, std::net::SocketAddr)>,
    /// Chunks a reader waits for, to fetch first.
    pub hurried: &'a mut tokio::sync::mpsc::Receiver<std::ops::Range<u32>>,
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
pub async fn run(mut plan: Plan<'_>) -> Result<Outcome> {
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
    let result = coordinate(&shared, &workers, &mut plan).await;
    shared.done.cancel();
    workers.close();
    workers.wait().await;
    // A write of a request dropped on the way out may still be running: the file is finished
    // (its time set, renamed) only after every one has ended.
    let _writes_ended = shared
        .disk_slots
        .acquire_many(super::output::DISK_WRITERS as u32)
        .await
        .expect("the disk slots are never closed");
    save_progress(&shared);
    result?;
    let swarm = shared.lock();
    Ok(Outcome {
        received: swarm.received.clone(),
        banned: swarm.banned.clone(),
    })
}

async fn coordinate(shared: &Arc<Shared>, workers: &TaskTracker, plan: &mut Plan<'_>) -> Result<()> {
    let mut last_locate = Instant::now();
    let mut save_at: Option<Instant> = None;
    let mut starved_reported = 0;
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let mut pace = tokio::time::interval(PACE_EVERY);
    let mut rate = Rate::new(shared.progress.done());
    let mut rtt = Duration::ZERO;
    loop {
        let Glance {
            newly,
            complete,
            unavailable,
            peers,
        } = glance(shared)?;
        if !newly.is_empty() {
            shared.env.session.report(shared.id, &newly);
            save_at.get_or_insert(Instant::now() + SAVE_EVERY);
        }
        shared.progress.set_peers(peers as u64);
        if complete {
            return Ok(());
        }
        if unavailable > 0 && unavailable != starved_reported {
            warn_starved(shared, unavailable);
            starved_reported = unavailable;
        }
        let every = relocate_after(unavailable, peers);
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = plan.cancelled.cancelled() => return Err(Error::Cancelled),
            Some((peer, addr)) = plan.offered.recv() => {
                let offered = Holder { peer, addr, other_addrs: Vec::new(), complete: false };
                if plan.sources.admits(&offered) {
                    add_holders(shared, workers, vec![offered]);
                }
            }
            Some(chunks) = plan.hurried.recv() => {
                hurry(shared, chunks);
            }
            _ = tokio::time::sleep_until(plan.timeout.map_or(far, |t| plan.started + t).into()) => {
                let missing = plan.manifest.chunk_count - shared.lock().scheduler.have().count();
                return Err(Error::Timeout(format!(
                    "gave up after {:.0} s: {missing} chunks still missing ({unavailable} held by no peer reachable \
                     from here)",
                    plan.timeout.unwrap_or_default().as_secs_f64()
                )));
            }
            _ = tokio::time::sleep_until(save_at.unwrap_or(far).into()) => {
                save_at = None;
                save_progress(shared);
            }
            _ = pace.tick() => {
                rtt = shared.take_rtt().unwrap_or(rtt);
                pace_downloads(shared, &mut rate, rtt);
            }
            _ = tokio::time::sleep_until((last_locate + every).into()) => {
                last_locate = Instant::now();
                relocate(shared, workers, &plan.sources).await;
            }
        }
    }
}

/// What the coordinator looks at each time it wakes.
struct Glance {
    /// Chunks verified since it last looked.
    newly: Vec<u32>,
    complete: bool,
    /// Chunks no live peer offers (0 while a seeder offers a few at a time).
    unavailable: u32,
    /// Workers running.
    peers: usize,
}

/// A look at the download under its lock; the fatal error a worker left, if any.
fn glance(shared: &Shared) -> Result<Glance> {
    let mut swarm = shared.lock();
    if let Some(error) = swarm.fatal.take() {
        return Err(error);
    }
    Ok(Glance {
        newly: std::mem::take(&mut swarm.newly_verified),
        complete: swarm.scheduler.is_complete(),
        // A seeder offers a few chunks at a time: the others are not missing.
        unavailable: if swarm.workers.values().any(|w| w.seed) {
            0
        } else {
            swarm.scheduler.unavailable()
        },
        peers: swarm.workers.len(),
    })
}

/// Says that `unavailable` chunks wait for a holder, naming the holders that could not be
/// reached from here.
fn warn_starved(shared: &Shared, unavailable: u32) {
    let mut unreachable: Vec<(std::time::Instant, String)> = shared
        .lock()
        .unreachable
        .iter()
        .map(|(peer, u)| (u.at, format!("{} ({})", u.describe(*peer), u.why)))
        .collect();
    if unreachable.is_empty() {
        warn!("waiting for {unavailable} chunks that no live peer holds");
        return;
    }
    // The latest few: forty holders' reasons in one line said nothing anyone could read.
    unreachable.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let named: Vec<&str> = unreachable
        .iter()
        .take(NAMED_UNREACHABLE)
        .map(|(_, s)| s.as_str())
        .collect();
    let more = unreachable.len().saturating_sub(NAMED_UNREACHABLE);
    warn!(
        "waiting for {unavailable} chunks that no reachable peer holds; {} holder(s) the tracker named \
         could not be reached from here: {}{}",
        unreachable.len(),
        named.join(", "),
        if more > 0 {
            format!(", and {more} more")
        } else {
            String::new()
        }
    );
}

/// Unreachable holders named in a warning, the latest first.
const NAMED_UNREACHABLE: usize = 3;

/// Every [`PACE_EVERY`]: records what each source sent (for people), and sizes the requests in
/// flight to the rate and round-trip time measured.
fn pace_downloads(shared: &Shared, rate: &mut Rate, rtt: Duration) {
    let sources: Vec<Source> = {
        let swarm = shared.lock();
        swarm
            .received
            .iter()
            .map(|(&peer, &bytes)| Source {
                peer,
                bytes,
                path: swarm.paths.get(&peer).copied().unwrap_or(Path::Direct),
            })
            .collect()
    };
    shared.progress.set_sources(sources);
    let before = shared.in_flight.size();
    shared.in_flight.follow(rate.sample(shared.progress.done()), rtt);
    if shared.in_flight.size() > before {
        // More lanes per peer: the workers start them.
        shared.changed.notify_waiters();
    }
}

/// Fetches `chunks` first. Seeders offer a few chunks at a time, but the tracker says they
/// hold all: they are asked for urgent chunks they did not offer (one that lied answers that
/// it lacks the chunk, and is asked no more for it).
fn hurry(shared: &Shared, chunks: std::ops::Range<u32>) {
    let mut swarm = shared.lock();
    swarm.scheduler.hurry(chunks);
    let urgent: Vec<u32> = swarm.scheduler.urgent().collect();
    let seeds: Vec<PeerId> = swarm.workers.iter().filter(|(_, w)| w.seed).map(|(p, _)| *p).collect();
    for seed in &seeds {
        swarm.scheduler.gained(seed, &urgent);
    }
    drop(swarm);
    // Idle lanes may now have work; busy ones take the urgent chunks next.
    shared.changed.notify_waiters();
}

/// Asks the tracker for more neighbours; when at the cap, lets go of neighbours that hold
/// nothing missing here to make room.
async fn relocate(shared: &Arc<Shared>, workers: &TaskTracker, sources: &Sources) {
    let ask = shared.env.session.locate(shared.id, false, NEIGHBOURS);
    match tokio::time::timeout(TRACKER_TIMEOUT, ask).await {
        Ok(Ok(located)) => {
            let fresh: Vec<Holder> = {
                let swarm = shared.lock();
                located
                    .holders
                    .into_iter()
                    .filter(|h| {
                        sources.admits(h) && !swarm.workers.contains_key(&h.peer) && !swarm.scheduler.is_banned(&h.peer)
                    })
                    .collect()
            };
            make_room(shared, fresh.len());
            add_holders(shared, workers, fresh);
        }
        Ok(Err(e)) => debug!("asking for more neighbours failed (continuing with those known): {e}"),
        Err(_) => debug!("the tracker did not answer a locate (continuing with the neighbours known)"),
    }
}

/// Lets go of up to `wanted` (at most [`REPLACED_AT_ONCE`]) neighbours that hold nothing
/// missing here and are not seeds ([`may_let_go`]), if the neighbours are at the cap.
fn make_room(shared: &Shared, wanted: usize) {
    let swarm = shared.lock();
    let over = room_to_make(swarm.workers.len(), wanted);
    let useless: Vec<&CancellationToken> = swarm
        .workers
        .iter()
        .filter(|(peer, worker)| may_let_go(swarm.scheduler.useful(peer), worker.seed))
        .map(|(_, worker)| &worker.stop)
        .take(over)
        .collect();
    for stop in useless {
        stop.cancel();
    }
}

/// Starts a worker for each new holder, up to the cap on neighbours.
fn add_holders(shared: &Arc<Shared>, workers: &TaskTracker, holders: Vec<Holder>) {
    let me = shared.env.transport.id();
    let mut swarm = shared.lock();
    for holder in holders {
        let full = swarm.workers.len() >= usize::from(NEIGHBOURS);
        let unreachable = swarm
            .unreachable
            .get(&holder.peer)
            .is_some_and(|u| u.at.elapsed() < UNREACHABLE_PAUSE);
        if holder.peer == me
            || full
            || unreachable
            || swarm.workers.contains_key(&holder.peer)
            || swarm.scheduler.is_banned(&holder.peer)
        {
            continue;
        }
        let worker = Worker {
            stop: shared.done.child_token(),
            news: Arc::new(Notify::new()),
            seed: holder.complete,
        };
        let (stop, news) = (worker.stop.clone(), worker.news.clone());
        swarm.workers.insert(holder.peer, worker);
        let span = tracing::debug_span!("peer", peer = %holder.peer.short(), addr = %holder.addr);
        workers.spawn(peer::worker(shared.clone(), holder.peer, holder.addrs(), stop, news).instrument(span));
    }
}

/// Records progress in sled (for `swarm status`; resuming does not trust it).
fn save_progress(shared: &Shared) {
    if let Err(e) = shared.env.state.save_progress(&shared.id, &shared.held.chunks()) {
        warn!("could not save progress: {e}");
    }
}
