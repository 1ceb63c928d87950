//! What the coordinator and the peer workers of one download share: the scheduler and the
//! bookkeeping behind one short lock (never held across an `.await`), and the in-flight budget
//! that bounds memory. Workers leave what happened (chunks verified, a fatal error, a worker
//! ended) in the bookkeeping and wake the coordinator; wake-ups coalesce, nothing queues up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use swarm_proto::{FileId, Manifest, PeerId};
use tokio::sync::{Notify, Semaphore};

use super::budget::Budget;
use tokio_util::sync::CancellationToken;

use swarm_proto::transport::Transport;
use tokio_util::sync::CancellationToken as Shutdown;

use crate::chunk_io::{BufferPool, ChunkFile};
use crate::db::StateDb;
use crate::downloads::Downloads;
use crate::error::Error;
use crate::held::Held;
use crate::held::HeldFiles;
use crate::progress::Progress;
use crate::ratelimit::RateLimiter;
use crate::scheduler::Scheduler;
use crate::session::Session;

/// What a download needs of the node it runs on.
#[derive(Clone)]
pub struct Env {
    /// Dials the holders.
    pub transport: Transport,
    /// The node's files: a download is served while it runs.
    pub store: Arc<HeldFiles>,
    /// Progress records, for `swarm status`.
    pub state: StateDb,
    /// Locates holders and takes chunk reports.
    pub session: Session,
    /// The node's downloads in flight.
    pub downloads: Downloads,
    /// The node's download cap.
    pub download_limit: Option<Arc<RateLimiter>>,
    /// Fires when the node shuts down.
    pub shutdown: Shutdown,
    /// Finds holders on the local network when the tracker is slow or gone (unless off).
    pub lan: Option<crate::lan_discovery::LanDiscovery>,
}

/// The bookkeeping behind the lock.
pub struct Swarm {
    /// Which chunk from which peer next.
    pub scheduler: Scheduler,
    /// Requests in flight, to cancel the losing copies of endgame requests.
    pub cancels: HashMap<(PeerId, u32), CancellationToken>,
    /// Peers with a worker running.
    pub workers: HashMap<PeerId, Worker>,
    /// Bytes of verified chunks per peer.
    pub received: HashMap<PeerId, u64>,
    /// How each peer reached is connected (direct, punched, relayed).
    pub paths: HashMap<PeerId, crate::nat::Path>,
    /// Peers banned for bad data.
    pub banned: Vec<PeerId>,
    /// Chunks verified since the coordinator last looked.
    pub newly_verified: Vec<u32>,
    /// Why the download cannot go on (the disk failed or filled up), if it cannot.
    pub fatal: Option<Error>,
    /// Whether the scheduler was in its endgame when a lane last took a chunk.
    pub endgame: bool,
    /// Peers that could not be reached: not dialled again for a while (the tracker lists a
    /// killed peer until it expires), and named when chunks are missing.
    pub unreachable: HashMap<PeerId, Unreachable>,
}

/// A holder that could not be reached.
#[derive(Debug, Clone)]
pub struct Unreachable {
    /// When it was last tried.
    pub at: Instant,
    /// Where it was tried.
    pub addrs: Vec<std::net::SocketAddr>,
    /// What went wrong.
    pub why: String,
}

impl Unreachable {
    /// `peer` and where it was tried, for people: `e0d18270 at 10.0.0.5:7071, 10.1.0.5:7071`.
    pub fn describe(&self, peer: PeerId) -> String {
        let addrs: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        format!("{} at {}", peer.short(), addrs.join(", "))
    }
}

/// A running peer worker, as the others see it.
pub struct Worker {
    /// Stops it.
    pub stop: CancellationToken,
    /// Wakes its idle lanes: the peer may have work for them.
    pub news: Arc<Notify>,
    /// The tracker says it holds the whole file (a seeder offers a few chunks at a time).
    pub seed: bool,
}

impl Swarm {
    /// `chunk` went back to the queue: wakes the idle lanes of the peers that could give it.
    pub fn requeued(&self, chunk: u32) {
        for (peer, worker) in &self.workers {
            if self.scheduler.could_give(peer, chunk) {
                worker.news.notify_waiters();
            }
        }
    }

    /// A lane took a chunk: if that began the endgame, every idle lane may now ask for a
    /// chunk requested elsewhere, so all are woken (once per endgame).
    pub fn took_chunk(&mut self) {
        let endgame = self.scheduler.in_endgame();
        if endgame && !self.endgame {
            self.workers.values().for_each(|w| w.news.notify_waiters());
        }
        self.endgame = endgame;
    }
}

/// One download's shared state.
pub struct Shared {
    /// The node.
    pub env: Env,
    /// The file.
    pub id: FileId,
    /// Its manifest, checked against the id.
    pub manifest: Arc<Manifest>,
    /// The partial file.
    pub file: Arc<ChunkFile>,
    /// The file as the node's chunk server sees it: verified chunks are served at once.
    pub held: Arc<Held>,
    /// Counters for a progress display.
    pub progress: Arc<Progress>,
    /// Chunk buffers.
    pub buffers: Arc<BufferPool>,
    /// The in-flight budget, in chunks.
    pub in_flight: Budget,
    /// Chunks being verified, written and read back at once. A write holds its slot until it
    /// ends, even if its request was dropped meanwhile: all slots free means no write runs.
    pub disk_slots: Arc<Semaphore>,
    /// Fires when the download ends, however it ends.
    pub done: CancellationToken,
    /// Wakes every worker and idle lane: a peer went (its chunks are back in the queue and
    /// the others' share of the budget grew). News about one peer goes to its own
    /// [`Worker::news`] instead: waking every lane of 40 neighbours on every chunk was most of
    /// a 40-peer swarm's CPU.
    pub changed: Notify,
    /// Wakes the coordinator: something in the bookkeeping changed.
    pub wake: Notify,
    /// The longest round trip, in microseconds, of the peers that delivered a chunk since the
    /// coordinator last looked ([`Shared::take_rtt`]), as [`Shared::note_round_trip`] counts them.
    longest_rtt: AtomicU64,
    swarm: Mutex<Swarm>,
}

impl Shared {
    /// Shared state for a download that already holds `scheduler.have()`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        env: Env,
        id: FileId,
        manifest: Arc<Manifest>,
        file: Arc<ChunkFile>,
        held: Arc<Held>,
        progress: Arc<Progress>,
        scheduler: Scheduler,
    ) -> Shared {
        let chunk = u64::from(manifest.chunk_size);
        let budget = Budget::new(chunk);
        Shared {
            done: env.shutdown.child_token(),
            env,
            id,
            manifest,
            file,
            held,
            progress,
            buffers: BufferPool::new(budget.ceiling()),
            in_flight: budget,
            disk_slots: Arc::new(Semaphore::new(super::output::DISK_WRITERS)),
            changed: Notify::new(),
            wake: Notify::new(),
            longest_rtt: AtomicU64::new(0),
            swarm: Mutex::new(Swarm {
                scheduler,
                cancels: HashMap::new(),
                workers: HashMap::new(),
                received: HashMap::new(),
                paths: HashMap::new(),
                banned: Vec::new(),
                newly_verified: Vec::new(),
                fatal: None,
                endgame: false,
                unreachable: HashMap::new(),
            }),
        }
    }

    /// Ends the download with `error` (the first one reported wins).
    pub fn fail(&self, error: Error) {
        self.lock().fatal.get_or_insert(error);
        self.wake.notify_one();
    }

    /// The bookkeeping, locked for a synchronous decision.
    pub fn lock(&self) -> MutexGuard<'_, Swarm> {
        self.swarm.lock().expect("download state lock poisoned")
    }

    /// Requests each peer may have in flight now: the budget shared out among the peers with
    /// a worker, each getting at least two and at most a pipeline's worth. It grows when peers
    /// go (a lone survivor gets its whole pipeline) or the budget grows, and shrinks when they
    /// come. A share, not all: a peer that stalls or trickles holds its lanes' permits, and
    /// must leave the others theirs. On a long fat path the pipeline stretches as the budget's
    /// cap does.
    pub fn lanes_per_peer(&self) -> usize {
        let workers = self.lock().workers.len();
        self.in_flight.lanes_per_peer(workers)
    }

    /// A peer delivered a chunk over a path with round trip `rtt`, `took` after it was asked
    /// for (counted as [`super::budget::round_trip_counted`] says).
    pub fn note_round_trip(&self, rtt: Duration, took: Duration) {
        let counted = super::budget::round_trip_counted(rtt, took);
        self.longest_rtt
            .fetch_max(counted.as_micros().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    }

    /// The longest round trip noted since the last call (`None`: no chunk came meanwhile).
    pub fn take_rtt(&self) -> Option<Duration> {
        let micros = self.longest_rtt.swap(0, Ordering::Relaxed);
        (micros > 0).then(|| Duration::from_micros(micros))
    }
}
