//! Downloading one file from every live holder at once.
//!
//! # Architecture
//! One coordinator task (the caller of [`fetch`]) owns the download. It spawns one worker per
//! holder; a worker keeps one QUIC connection and runs several *lanes*, each a loop of "ask
//! the [`Scheduler`] for a chunk, request it, verify it, write it at its offset". Lanes share
//! the scheduler behind a `std::sync::Mutex` taken only for the synchronous decision, never
//! across an `.await`. The coordinator wakes twice a second to hand newly verified chunks to a
//! reporter task that tells the tracker (so that a slow or absent tracker never holds the
//! download up), persist progress for resuming, re-locate holders from time to time, and
//! notice completion.
//!
//! # Trust
//! The manifest is checked against the requested id before anything else. Each chunk is
//! checked against the manifest before it is written; a peer that sends a bad chunk is banned
//! for this download and the chunk is asked of someone else. Each chunk is then read back from
//! the disk and compared with what was verified ([`crate::chunk_io`]), so by the end the whole
//! file on disk is known to match the manifest, whose chunk hashes add up to the global hash;
//! only then is it renamed into place, in the same directory. A partial or wrong file never
//! appears under the final name.
//!
//! # Durability
//! A chunk is written in place only after it is verified, with direct I/O where the file
//! system allows (so it goes to the device, not to the page cache, as it arrives). The partial
//! file is not synced while the fetch runs (syncing twice a second made the disk, not the
//! network, the limit): on
//! resume every chunk of the partial file is hashed again (cheap next to the network), so a
//! chunk that a crash or power cut lost is simply fetched again, and one written after the
//! last progress record is kept. The sled record of progress is advisory (`swarm status`). The
//! finished file is checked against the global hash, synced, then renamed into place.
//!
//! # Disk space
//! Before fetching, the bytes still to write are compared with the free space of the output's
//! file system (`--preallocate` reserves them instead); a disk that fills up during the fetch
//! stops it with [`Error::NoSpace`], keeping every verified chunk for the next run.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::Connection;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, trace, warn, Instrument};

use crate::bitfield::Bitfield;
use crate::chunk_io::{BufferPool, ChunkFile};
use crate::error::{Error, Result};
use crate::hashing;
use crate::ids::{FileId, PeerId};
use crate::manifest::Manifest;
use crate::meta::{self, FileMeta};
use crate::node::Node;
use crate::out_dir::{Dir, Entry};
use crate::progress::Progress;
use crate::protocol::{ErrorCode, Holder, Request, Response};
use crate::scheduler::{Scheduler, Verdict};
use crate::state::{DownloadRecord, FileStamp};
use crate::store::{self, Held};
use crate::tracker_client::TrackerClient;
use crate::transport;

/// Bytes requested from one peer at once: enough to keep a fast link busy.
const PIPELINE_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes of chunk data requested at once across all peers of one download: each request
/// holds its chunk in memory until it is verified and written, so this bounds the memory a
/// fetch uses, however many peers serve it. It also bounds one download's speed to this much
/// per round trip (160 MiB/s at 100 ms); 32 MiB bought nothing on loopback or a LAN and took
/// a 4-seeder fetch from 45 to 70 MB of memory.
const IN_FLIGHT_BYTES: u64 = 16 * 1024 * 1024;
/// Requests in flight per peer, whatever the chunk size: two keep a peer sending while the
/// next request travels. With more holders than the budget allows this many lanes each, the
/// first holders to get a share keep it.
const MIN_LANES: u64 = 2;
const MAX_LANES: u64 = 32;
/// Chunks verified, written and read back at once: plenty for a disk's queue (each takes a
/// millisecond or two), and few read-back buffers and blocking threads.
const DISK_WRITERS: usize = 4;
/// A chunk transfer that makes no progress for this long is abandoned and asked elsewhere.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer with requests outstanding that sends nothing at all for this long is given up on
/// (its connection closed, its chunks asked of others).
const PEER_SILENCE: Duration = Duration::from_secs(4);
/// Longest wait for the tracker; the fetch goes on with the peers it knows meanwhile.
const TRACKER_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the coordinator wakes.
const TICK: Duration = Duration::from_millis(500);
/// How often holders are re-located while chunks lack a holder.
const RELOCATE_STARVED: Duration = Duration::from_secs(3);
/// How often holders are re-located otherwise, to learn which chunks the other downloaders
/// have verified since: as often as this for small answers, less often as the answer (a
/// bitfield per holder) grows, by a second per [`RELOCATE_BYTES_PER_SECOND`], up to
/// [`RELOCATE_SLOWEST`].
const RELOCATE_FASTEST: Duration = Duration::from_secs(1);
const RELOCATE_SLOWEST: Duration = Duration::from_secs(15);
const RELOCATE_BYTES_PER_SECOND: u64 = 256 * 1024;

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The file is written under this directory, at its manifest name.
    pub out_dir: PathBuf,
    /// Only use the peer with this id (or id prefix) or address.
    pub from: Option<String>,
    /// Replace an existing file with different content.
    pub force: bool,
    /// Replace an existing file with different content only if it is still this version
    /// when the download finishes (how `swarm sync` updates a file nobody edited).
    pub replace_if: Option<FileStamp>,
    /// Give up after this long without finishing.
    pub timeout: Option<Duration>,
    /// Reserve the file's whole size on disk before fetching.
    pub preallocate: bool,
    /// Write through the page cache instead of with direct I/O: for disks where the kernel's
    /// reordering of writes helps more than skipping the cache (spinning disks).
    pub buffered_io: bool,
    /// Counters for a progress display.
    pub progress: Arc<Progress>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            out_dir: PathBuf::from("."),
            from: None,
            force: false,
            replace_if: None,
            timeout: None,
            preallocate: false,
            buffered_io: false,
            progress: Arc::default(),
        }
    }
}

/// Ends the name of a partial download.
const PARTIAL_SUFFIX: &str = ".swarm-part";

/// What a finished fetch did.
#[derive(Debug, Clone)]
pub struct FetchReport {
    /// The file's id.
    pub id: FileId,
    /// Its manifest.
    pub manifest: Arc<Manifest>,
    /// Where it was written.
    pub path: PathBuf,
    /// The file was already there, complete.
    pub already_complete: bool,
    /// What was announced with the file (its modification time was restored from it).
    pub meta: FileMeta,
    /// Chunks that were already verified on disk from an earlier run.
    pub resumed_chunks: u32,
    /// Bytes of verified chunks received, per peer.
    pub received: HashMap<PeerId, u64>,
    /// Peers banned for sending bad data.
    pub banned: Vec<PeerId>,
    /// Wall time.
    pub elapsed: Duration,
}

impl FetchReport {
    /// Total bytes received in verified chunks.
    pub fn bytes_received(&self) -> u64 {
        self.received.values().sum()
    }
}

/// What the lanes and the coordinator share.
struct Shared {
    scheduler: Scheduler,
    cancels: HashMap<(PeerId, u32), CancellationToken>,
    workers: HashSet<PeerId>,
    newly_verified: Vec<u32>,
    dirty: bool,
    received: HashMap<PeerId, u64>,
    banned: Vec<PeerId>,
    fatal: Option<Error>,
}

struct Context {
    node: Node,
    id: FileId,
    manifest: Arc<Manifest>,
    file: Arc<ChunkFile>,
    buffers: Arc<BufferPool>,
    held: Arc<Held>,
    shared: Mutex<Shared>,
    changed: Notify,
    done: CancellationToken,
    progress: Arc<Progress>,
    lanes: usize,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Chunks being verified, written and read back at once.
    disk_slots: tokio::sync::Semaphore,
}

impl Context {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("fetch state lock poisoned")
    }
}

pub(crate) async fn fetch(node: &Node, id: FileId, options: FetchOptions) -> Result<FetchReport> {
    let started = Instant::now();
    let tracker = node.tracker()?.clone();
    let located = tracker.locate(id).await?;
    located
        .manifest
        .verify(&id)
        .map_err(|source| Error::Manifest { file: Some(id), source })?;
    let manifest = Arc::new(located.manifest);
    // Every name below the output directory is reached without following links.
    let out = Dir::open_root(&options.out_dir)?;
    let (dir, file_name) = out.parent_of(&manifest.name)?;
    let final_path = dir.join(file_name);
    options.progress.set_total(manifest.size);

    match dir.entry(file_name)? {
        Entry::Missing => {}
        Entry::File(_) if same_content(&dir, file_name, &manifest).await? => {
            info!(path = %final_path.display(), "already complete");
            options.progress.advance(manifest.size);
            // Our copy keeps its own modification time.
            let modified = dir.open_read(file_name)?.metadata().and_then(|m| m.modified());
            let meta = FileMeta {
                modified_ns: modified.map(meta::nanos_since_epoch).unwrap_or(0),
                ..located.meta
            };
            node.store().add(
                manifest.clone(),
                final_path.clone(),
                Bitfield::full(manifest.chunk_count),
                meta,
            );
            return Ok(FetchReport {
                id,
                manifest,
                path: final_path,
                already_complete: true,
                meta,
                resumed_chunks: 0,
                received: HashMap::new(),
                banned: Vec::new(),
                elapsed: started.elapsed(),
            });
        }
        Entry::File(_) if may_replace(&dir, file_name, &options)? => {}
        Entry::File(_) => return Err(Error::Exists(final_path)),
        Entry::Link if options.force => {}
        Entry::Link => {
            return Err(Error::Unsafe {
                path: final_path,
                why: "is a symbolic link; swarm never writes through links. Remove it (or pass --force to \
                      replace the link itself, never what it points to)"
                    .into(),
            })
        }
        Entry::Other => {
            return Err(Error::Unsafe {
                path: final_path,
                why: "is in the way (not a regular file). Move it away and run again".into(),
            })
        }
    }

    let partial_name = partial_name_for(file_name);
    let partial_path = dir.join(&partial_name);
    let (file, have) = open_partial(&manifest, &dir, &partial_name, options.preallocate).await?;
    let resumed_chunks = have.count();
    options.progress.advance(manifest.bytes_in(&have));
    let held = node
        .store()
        .add(manifest.clone(), partial_path.clone(), have.clone(), located.meta);
    // The download is on record (for `swarm status`) from its start, even if killed at once.
    let record = DownloadRecord {
        manifest: (*manifest).clone(),
        partial: partial_path.clone(),
        chunks: have.clone(),
    };
    node.state().save_download(&id, &record)?;
    node.state().flush()?;
    if let Err(e) = node.announce(&held).await {
        warn!("could not announce the download to the tracker: {e}");
    }

    // The in-flight budget is shared out among the holders known now, so that every one of
    // them is kept busy; each peer gets at least MIN_LANES and at most a pipeline's worth.
    let budget = (IN_FLIGHT_BYTES / u64::from(manifest.chunk_size)).clamp(MIN_LANES, 4 * MAX_LANES);
    let sources = located.holders.iter().filter(|h| h.peer != node.id()).count().max(1) as u64;
    let per_peer = (PIPELINE_BYTES / u64::from(manifest.chunk_size)).clamp(MIN_LANES, MAX_LANES);
    let lanes = (budget / sources).clamp(MIN_LANES, per_peer) as usize;
    let ctx = Arc::new(Context {
        node: node.clone(),
        id,
        manifest: manifest.clone(),
        file: Arc::new(ChunkFile::new(
            (!options.buffered_io)
                .then(|| dir.reopen_direct(&partial_name, &file))
                .flatten(),
            file,
            DISK_WRITERS,
        )),
        buffers: BufferPool::new(budget as usize),
        held: held.clone(),
        shared: Mutex::new(Shared {
            scheduler: Scheduler::new(have),
            cancels: HashMap::new(),
            workers: HashSet::new(),
            newly_verified: Vec::new(),
            dirty: false,
            received: HashMap::new(),
            banned: Vec::new(),
            fatal: None,
        }),
        changed: Notify::new(),
        done: node.shutdown_token().child_token(),
        progress: options.progress.clone(),
        lanes,
        in_flight: Arc::new(tokio::sync::Semaphore::new(budget as usize)),
        disk_slots: tokio::sync::Semaphore::new(DISK_WRITERS),
    });
    let workers = TaskTracker::new();
    let from = options.from.clone();
    add_holders(&ctx, &workers, located.holders, from.as_deref());
    let no_source = {
        let shared = ctx.lock();
        shared.workers.is_empty() && !shared.scheduler.is_complete()
    };
    if from.is_some() && no_source {
        return Err(Error::NotFound(format!(
            "no live holder of {} matches --from {}",
            id.short(),
            from.unwrap_or_default()
        )));
    }

    let (reports, batches) = mpsc::unbounded_channel();
    tokio::spawn(report_chunks(tracker.clone(), id, batches));
    let result = coordinate(
        &ctx,
        &workers,
        &tracker,
        &reports,
        started,
        options.timeout,
        from.as_deref(),
    )
    .await;
    ctx.done.cancel();
    workers.close();
    workers.wait().await;
    let flushed = flush(&ctx, &reports).await;
    drop(reports);
    result?;
    flushed?;

    verify_whole(&ctx, &partial_path)?;
    meta::restore_modified(ctx.file.file(), &partial_path, &located.meta)?;
    let file = ctx.file.file().clone();
    tokio::task::spawn_blocking(move || file.sync_data())
        .await
        .map_err(|e| Error::Transport(e.to_string()))?
        .map_err(|e| Error::io(&partial_path, e))?;
    dir.rename(&partial_name, file_name, may_replace(&dir, file_name, &options)?)?;
    held.set_path(final_path.clone());
    if let Err(e) = node.state().remove_download(&id) {
        warn!("{e}");
    }
    let shared = ctx.lock();
    Ok(FetchReport {
        id,
        manifest,
        path: final_path,
        already_complete: false,
        meta: located.meta,
        resumed_chunks,
        received: shared.received.clone(),
        banned: shared.banned.clone(),
        elapsed: started.elapsed(),
    })
}

/// May the file `name` in `dir` (if any) be replaced by the download? Only with `--force`, or
/// when it is still the regular file the caller allowed (`replace_if`).
fn may_replace(dir: &Dir, name: &str, options: &FetchOptions) -> Result<bool> {
    if options.force {
        return Ok(true);
    }
    let Some(allowed) = options.replace_if else {
        return Ok(false);
    };
    Ok(matches!(dir.entry(name)?, Entry::File(m) if FileStamp::of(&m) == allowed))
}

/// Is `path` a partial download (`.NAME.swarm-part`)?
pub fn is_partial(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(PARTIAL_SUFFIX))
}

/// `.NAME.swarm-part`: hidden, in the same directory so the final rename is atomic.
fn partial_name_for(file_name: &str) -> String {
    format!(".{file_name}{PARTIAL_SUFFIX}")
}

/// Does the regular file `name` in `dir` hold exactly the manifest's content?
async fn same_content(dir: &Dir, name: &str, manifest: &Manifest) -> Result<bool> {
    let file = dir.open_read(name)?;
    let path = dir.join(name);
    let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
    if len != manifest.size {
        return Ok(false);
    }
    let chunk_size = manifest.chunk_size;
    let hashes = tokio::task::spawn_blocking(move || {
        hashing::hash_open_file(&file, chunk_size).map_err(|e| Error::io(&path, e))
    })
    .await
    .map_err(|e| Error::Transport(e.to_string()))??;
    Ok(hashes.global == manifest.hash)
}

/// Opens (or creates) the partial file at its full size, finds the chunks an earlier run left
/// verified in it, and makes sure the rest will fit on its file system.
///
/// Every chunk of an existing partial file is hashed again, not only the ones recorded in sled:
/// a chunk written after the last record (just before a crash) is kept too, and one changed on
/// disk since is dropped. Holes read as zeros and hash fast; hashing runs on every core and is
/// far quicker than fetching the chunk again.
///
/// The partial file is opened through [`Dir`]: never through a link, only if it is a regular
/// file with no other hard link, and checked so before it is resized.
async fn open_partial(manifest: &Arc<Manifest>, dir: &Dir, name: &str, preallocate: bool) -> Result<(File, Bitfield)> {
    let path = &dir.join(name);
    let (file, existed) = dir.open_or_create(name)?;
    if file.metadata().map_err(|e| Error::io(path, e))?.len() != manifest.size {
        file.set_len(manifest.size).map_err(|e| Error::io(path, e))?;
    }
    let (file, have) = if existed && manifest.chunk_count > 0 {
        let (file, manifest) = (Arc::new(file), manifest.clone());
        let check = file.clone();
        let have = tokio::task::spawn_blocking(move || store::chunks_on_disk(&check, &manifest))
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        info!(
            chunks = have.count(),
            "resuming with the chunks already verified on disk"
        );
        (Arc::try_unwrap(file).expect("the check task has ended"), have)
    } else {
        (file, Bitfield::new(manifest.chunk_count))
    };
    let missing = manifest.size - manifest.bytes_in(&have);
    let room = if preallocate {
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, manifest.size)
            .map_err(|e| no_space_or_io(path, missing, &file, e.into()))
    } else {
        match free_space(&file) {
            Some(available) if available < missing => Err(Error::NoSpace {
                path: path.to_owned(),
                needed: missing,
                available,
            }),
            _ => Ok(()),
        }
    };
    if let Err(e) = room {
        if !existed {
            // Nothing was fetched into it yet: leave no empty file behind.
            let _ = dir.remove(name);
        }
        return Err(e);
    }
    Ok((file, have))
}

/// Bytes an unprivileged writer may still use on the file system holding `file`, if it says.
fn free_space(file: &File) -> Option<u64> {
    let stats = rustix::fs::fstatvfs(file).ok()?;
    (stats.f_blocks > 0).then(|| stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Turns "disk full" into [`Error::NoSpace`] with the figures, anything else into an I/O error.
fn no_space_or_io(path: &Path, needed: u64, file: &File, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Error::NoSpace {
            path: path.to_owned(),
            needed,
            available: free_space(file).unwrap_or(0),
        },
        _ => Error::io(path, e),
    }
}

fn add_holders(ctx: &Arc<Context>, workers: &TaskTracker, holders: Vec<Holder>, from: Option<&str>) {
    let me = ctx.node.id();
    let mut shared = ctx.lock();
    for holder in holders {
        if holder.peer == me || !matches_from(&holder, from) {
            continue;
        }
        shared.scheduler.add_peer(holder.peer, &holder.chunks);
        if shared.scheduler.is_active(&holder.peer) && shared.workers.insert(holder.peer) {
            let ctx = ctx.clone();
            let span = tracing::debug_span!("peer", peer = %holder.peer.short(), addr = %holder.addr);
            workers.spawn(async move { peer_worker(ctx, holder.peer, holder.addr).await }.instrument(span));
        }
    }
    drop(shared);
    ctx.changed.notify_waiters();
}

fn matches_from(holder: &Holder, from: Option<&str>) -> bool {
    match from {
        None => true,
        Some(from) => {
            from.parse::<SocketAddr>().is_ok_and(|a| a == holder.addr)
                || (from.len() >= 8 && holder.peer.to_string().starts_with(&from.to_ascii_lowercase()))
        }
    }
}

async fn coordinate(
    ctx: &Arc<Context>,
    workers: &TaskTracker,
    tracker: &TrackerClient,
    reports: &mpsc::UnboundedSender<Vec<u32>>,
    started: Instant,
    timeout: Option<Duration>,
    from: Option<&str>,
) -> Result<()> {
    let mut ticker = tokio::time::interval(TICK);
    let mut last_locate = Instant::now();
    let mut relocate_every = RELOCATE_FASTEST;
    let mut starved_reported = 0;
    loop {
        tokio::select! {
            _ = ctx.done.cancelled() => {}
            _ = ticker.tick() => {}
        }
        if let Some(e) = ctx.lock().fatal.take() {
            return Err(e);
        }
        if ctx.node.is_shutting_down() {
            return Err(Error::Cancelled);
        }
        let (complete, unavailable, peers) = {
            let shared = ctx.lock();
            (
                shared.scheduler.is_complete(),
                shared.scheduler.unavailable(),
                shared.workers.len(),
            )
        };
        ctx.progress.set_peers(peers as u64);
        if complete {
            return Ok(());
        }
        flush(ctx, reports).await?;
        if unavailable > 0 && unavailable != starved_reported {
            warn!("waiting for {unavailable} chunks that no live peer holds");
            starved_reported = unavailable;
        }
        let every = if unavailable > 0 || peers == 0 {
            RELOCATE_STARVED
        } else {
            relocate_every
        };
        if last_locate.elapsed() >= every {
            last_locate = Instant::now();
            match tokio::time::timeout(TRACKER_TIMEOUT, tracker.locate(ctx.id)).await {
                Ok(Ok(located)) if located.manifest == *ctx.manifest => {
                    let answer_bytes = located.holders.len() as u64 * u64::from(ctx.manifest.chunk_count) / 8;
                    relocate_every = (RELOCATE_FASTEST + Duration::from_secs(answer_bytes / RELOCATE_BYTES_PER_SECOND))
                        .min(RELOCATE_SLOWEST);
                    add_holders(ctx, workers, located.holders, from)
                }
                Ok(Ok(_)) => warn!("the tracker now returns a different manifest for this id; ignoring it"),
                Ok(Err(e)) => debug!("re-locating holders failed (continuing with known peers): {e}"),
                Err(_) => debug!("the tracker did not answer a locate (continuing with known peers)"),
            }
        }
        if let Some(limit) = timeout {
            if started.elapsed() >= limit {
                let missing = ctx.manifest.chunk_count - ctx.lock().scheduler.have().count();
                return Err(Error::Timeout(format!(
                    "gave up after {limit:?}: {missing} chunks still missing ({unavailable} with no live holder)"
                )));
            }
        }
    }
}

/// Records progress in sled (for `swarm status`; resuming does not trust it) and hands newly
/// verified chunks to the reporter task.
async fn flush(ctx: &Arc<Context>, reports: &mpsc::UnboundedSender<Vec<u32>>) -> Result<()> {
    let (newly, dirty) = {
        let mut shared = ctx.lock();
        let dirty = std::mem::take(&mut shared.dirty);
        (std::mem::take(&mut shared.newly_verified), dirty)
    };
    if dirty {
        ctx.node.state().save_progress(&ctx.id, &ctx.held.chunks())?;
    }
    if !newly.is_empty() {
        // The reporter task outlives the fetch only until its last try.
        let _ = reports.send(newly);
    }
    Ok(())
}

/// Tells the tracker about newly verified chunks without ever holding up the download: the
/// coordinator hands batches over, and this task sends them, keeping them for the next try
/// while the tracker cannot be reached. Ends after a last try once the fetch drops its sender.
async fn report_chunks(tracker: Arc<TrackerClient>, id: FileId, mut batches: mpsc::UnboundedReceiver<Vec<u32>>) {
    let mut pending: Vec<u32> = Vec::new();
    while let Some(batch) = batches.recv().await {
        pending.extend(batch);
        while let Ok(more) = batches.try_recv() {
            pending.extend(more);
        }
        match tokio::time::timeout(TRACKER_TIMEOUT, tracker.have(id, pending.clone())).await {
            Ok(Ok(_)) => pending.clear(),
            Ok(Err(e)) => debug!(
                "could not tell the tracker about {} new chunks (will retry): {e}",
                pending.len()
            ),
            Err(_) => debug!(
                "the tracker did not answer about {} new chunks (will retry)",
                pending.len()
            ),
        }
    }
}

/// The whole-file check before the rename. Every chunk of the partial file has been checked
/// against what the disk gave back, not only in memory: resumed chunks were hashed from disk
/// when the download resumed, the others read back right after their write (with direct I/O,
/// from the device) and compared with the verified bytes. Their hashes add up to the global
/// hash (checked when the manifest was fetched). So the file is whole if every chunk is still
/// confirmed (the chunk server unmarks chunks it finds changed on disk) and the size is right.
fn verify_whole(ctx: &Context, partial: &Path) -> Result<()> {
    let confirmed = ctx.held.chunks();
    let size = ctx.file.file().metadata().map_err(|e| Error::io(partial, e))?.len();
    if !confirmed.is_complete() || size != ctx.manifest.size {
        return Err(Error::Integrity(format!(
            "{} does not hold the whole file after download ({} of {} chunks confirmed on disk, {size} of {} bytes); \
             was it changed by another program? Run the fetch again to repair it",
            partial.display(),
            confirmed.count(),
            ctx.manifest.chunk_count,
            ctx.manifest.size
        )));
    }
    Ok(())
}

/// Why one chunk request did not deliver.
enum Failure {
    /// The data did not match the manifest.
    Corrupt(String),
    /// The peer says it lacks the chunk.
    NotHeld,
    /// The peer is busy.
    Busy,
    /// The connection is gone.
    Gone(String),
    /// Anything else (stall, protocol error, peer-side failure).
    Other(String),
}

async fn peer_worker(ctx: Arc<Context>, peer: PeerId, addr: SocketAddr) {
    let connection = tokio::select! {
        _ = ctx.done.cancelled() => None,
        c = ctx.node.transport().connect(addr, Some(peer)) => match c {
            Ok((connection, _)) => Some(connection),
            Err(e) => {
                warn!("cannot reach peer {} at {addr}: {e}", peer.short());
                None
            }
        },
    };
    if let Some(connection) = connection {
        let activity = Arc::new(Activity::default());
        let lanes: Vec<_> = (0..ctx.lanes)
            .map(|_| {
                let lane = lane(ctx.clone(), connection.clone(), peer, activity.clone());
                tokio::spawn(lane.in_current_span())
            })
            .collect();
        let watchdog = tokio::spawn(watch_for_silence(connection.clone(), activity));
        for lane in lanes {
            let _ = lane.await;
        }
        watchdog.abort();
        connection.close(0u32.into(), b"done");
    }
    let mut shared = ctx.lock();
    shared.workers.remove(&peer);
    if !shared.scheduler.is_banned(&peer) {
        shared.scheduler.remove_peer(&peer);
    }
    drop(shared);
    ctx.changed.notify_waiters();
}

/// What a peer's lanes have seen lately, for the silence watchdog.
struct Activity {
    /// Requests waiting for an answer or for data.
    in_flight: std::sync::atomic::AtomicUsize,
    /// When the peer last sent anything.
    last_heard: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: Default::default(),
            last_heard: Mutex::new(Instant::now()),
        }
    }
}

impl Activity {
    fn heard(&self) {
        *self.last_heard.lock().expect("activity lock poisoned") = Instant::now();
    }
}

/// Closes the connection to a peer that has requests outstanding but has sent nothing at all
/// for [`PEER_SILENCE`]: a peer killed mid-transfer is noticed this soon instead of after the
/// QUIC idle timeout, and its chunks go back to the queue for the others.
async fn watch_for_silence(connection: Connection, activity: Arc<Activity>) {
    let mut ticker = tokio::time::interval(PEER_SILENCE / 4);
    loop {
        ticker.tick().await;
        let busy = activity.in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0;
        let silent = activity.last_heard.lock().expect("activity lock poisoned").elapsed();
        if busy && silent >= PEER_SILENCE {
            warn!("peer sent nothing for {silent:.1?} with requests outstanding; asking others instead");
            connection.close(0u32.into(), b"silent");
            return;
        }
    }
}

async fn lane(ctx: Arc<Context>, connection: Connection, peer: PeerId, activity: Arc<Activity>) {
    // A request holds one chunk in memory: the download's budget bounds them all. A lane keeps
    // its share while it has work, so that every peer that got one stays busy, and gives it
    // back when it idles.
    let mut permit = None;
    loop {
        if permit.is_none() {
            permit = tokio::select! {
                _ = ctx.done.cancelled() => return,
                p = ctx.in_flight.clone().acquire_owned() => Some(p.expect("the budget is never closed")),
            };
        }
        let next = {
            let mut shared = ctx.lock();
            if ctx.done.is_cancelled() || !shared.scheduler.is_active(&peer) || shared.scheduler.is_complete() {
                return;
            }
            shared.scheduler.next(&peer).map(|chunk| {
                let token = ctx.done.child_token();
                shared.cancels.insert((peer, chunk), token.clone());
                (chunk, token)
            })
        };
        let Some((chunk, token)) = next else {
            permit = None;
            let changed = ctx.changed.notified();
            tokio::select! {
                _ = ctx.done.cancelled() => return,
                _ = changed => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            continue;
        };
        let outcome = tokio::select! {
            _ = token.cancelled() => None,
            result = request_chunk(&ctx, &connection, chunk, &activity) => Some(result),
        };
        match settle(&ctx, peer, chunk, outcome) {
            Next::Continue => {}
            Next::Stop => return,
            Next::BackOff => {
                permit = None;
                tokio::time::sleep(Duration::from_millis(100 + rand::random::<u64>() % 200)).await;
            }
        }
    }
}

/// Counts a request as outstanding for as long as it lives.
struct InFlight<'a>(&'a Activity);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a lane does after a request settled.
enum Next {
    Continue,
    BackOff,
    Stop,
}

/// Records the outcome of a request (`None`: cancelled) in the scheduler.
fn settle(ctx: &Context, peer: PeerId, chunk: u32, outcome: Option<Result<u32, Failure>>) -> Next {
    let mut shared = ctx.lock();
    shared.cancels.remove(&(peer, chunk));
    let next = match outcome {
        None => {
            shared.scheduler.cancelled(&peer, chunk);
            Next::Continue
        }
        Some(Ok(len)) => {
            if let Some(others) = shared.scheduler.completed(&peer, chunk) {
                for other in others {
                    if let Some(token) = shared.cancels.remove(&(other, chunk)) {
                        token.cancel();
                    }
                }
                ctx.held.mark(chunk);
                shared.newly_verified.push(chunk);
                shared.dirty = true;
                *shared.received.entry(peer).or_default() += u64::from(len);
                ctx.progress.advance(u64::from(len));
                if shared.scheduler.is_complete() {
                    ctx.done.cancel();
                }
            }
            Next::Continue
        }
        Some(Err(Failure::Corrupt(why))) => {
            if !shared.scheduler.is_banned(&peer) {
                warn!(
                    "peer {} sent a bad chunk {chunk} ({why}); banned for this download",
                    peer.short()
                );
                shared.scheduler.ban(&peer);
                shared.banned.push(peer);
            }
            Next::Stop
        }
        Some(Err(Failure::NotHeld)) => {
            shared.scheduler.lacks(&peer, chunk);
            Next::Continue
        }
        Some(Err(Failure::Busy)) => {
            shared.scheduler.cancelled(&peer, chunk);
            Next::BackOff
        }
        Some(Err(Failure::Gone(why))) => {
            debug!("connection lost: {why}");
            shared.scheduler.remove_peer(&peer);
            Next::Stop
        }
        Some(Err(Failure::Other(why))) => {
            debug!("chunk {chunk} failed: {why}");
            if shared.scheduler.failed(&peer, chunk) == Verdict::Dropped {
                warn!("peer {} failed too often; not using it for this download", peer.short());
                Next::Stop
            } else {
                Next::Continue
            }
        }
    };
    drop(shared);
    ctx.changed.notify_waiters();
    next
}

/// Asks for one chunk, verifies it and writes it in place. Returns its length.
async fn request_chunk(
    ctx: &Context,
    connection: &Connection,
    chunk: u32,
    activity: &Activity,
) -> Result<u32, Failure> {
    if let Some(reason) = connection.close_reason() {
        return Err(Failure::Gone(reason.to_string()));
    }
    if activity.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
        // Silence is counted from the moment something is asked.
        activity.heard();
    }
    let _done = InFlight(activity);
    let request = Request::GetChunk {
        file: ctx.id,
        index: chunk,
    };
    let exchange = tokio::time::timeout(STALL_TIMEOUT, transport::exchange(connection, &request));
    let (response, mut recv) = match exchange.await {
        Err(_) => return Err(Failure::Other("no answer within the stall timeout".into())),
        Ok(Err(e)) if connection.close_reason().is_some() => return Err(Failure::Gone(e.to_string())),
        Ok(Err(e)) => return Err(Failure::Other(e.to_string())),
        Ok(Ok(answer)) => answer,
    };
    activity.heard();
    let expected = ctx.manifest.chunk_len(chunk);
    match response {
        Response::Chunk { len } if len == expected => {}
        Response::Chunk { len } => {
            let _ = recv.stop(crate::protocol::CANCELLED.into());
            return Err(Failure::Corrupt(format!(
                "announced {len} bytes, the chunk has {expected}"
            )));
        }
        Response::Error {
            code: ErrorCode::Busy, ..
        } => return Err(Failure::Busy),
        Response::Error {
            code: ErrorCode::NotHeld | ErrorCode::NotFound,
            ..
        } => return Err(Failure::NotHeld),
        Response::Error { code, message } => return Err(Failure::Other(format!("{code:?}: {message}"))),
        other => return Err(Failure::Other(format!("unexpected answer {other:?}"))),
    }
    let mut data = ctx.buffers.take(expected as usize);
    let mut filled = 0;
    // Under a download cap, read in slices small enough that waiting for our own limiter never
    // looks like a silent peer to the watchdog.
    let limit = ctx.node.download_limit();
    let slice = limit.map_or(usize::MAX, |l| (l.rate() / 16).clamp(1024, 64 * 1024) as usize);
    while filled < data.len() {
        let end = filled.saturating_add(slice).min(data.len());
        match tokio::time::timeout(STALL_TIMEOUT, recv.read(&mut data[filled..end])).await {
            Err(_) => {
                let _ = recv.stop(crate::protocol::CANCELLED.into());
                return Err(Failure::Other("transfer stalled".into()));
            }
            Ok(Ok(Some(n))) => {
                filled += n;
                activity.heard();
                if let Some(limit) = limit {
                    limit.acquire(n).await;
                    activity.heard();
                }
            }
            Ok(Ok(None)) => {
                return Err(Failure::Corrupt(format!(
                    "stream ended after {filled} of {expected} bytes"
                )))
            }
            Ok(Err(e)) if connection.close_reason().is_some() => return Err(Failure::Gone(e.to_string())),
            Ok(Err(e)) => return Err(Failure::Other(e.to_string())),
        }
    }
    let (manifest, file) = (ctx.manifest.clone(), ctx.file.clone());
    let _slot = ctx.disk_slots.acquire().await.expect("the disk slots are never closed");
    let written = tokio::task::spawn_blocking(move || {
        if !manifest.chunk_matches(chunk, &data) {
            return Ok(Written::Corrupt);
        }
        let offset = manifest.chunk_offset(chunk);
        // Read back from the device (the write bypassed the page cache): the whole-file check.
        if !file.write_confirmed(&data, offset)? {
            return Ok(Written::ReadBackDiffers);
        }
        // Logged here, right after the write, so that a trace of a killed run is exact.
        trace!(chunk, bytes = data.len(), "chunk written");
        Ok(Written::Confirmed)
    })
    .in_current_span()
    .await
    .map_err(|e| Failure::Other(e.to_string()))?;
    let error = match written {
        Ok(Written::Confirmed) => return Ok(expected),
        Ok(Written::Corrupt) => return Err(Failure::Corrupt("content does not match the manifest".into())),
        Ok(Written::ReadBackDiffers) => Error::Integrity(format!(
            "chunk {chunk} read back from {} differs from what was just written to it: the disk or file \
             system is losing data; check it (dmesg, SMART) and run the fetch again",
            ctx.held.path().display()
        )),
        Err(e) => {
            let path = ctx.held.path();
            let missing = ctx.manifest.size - ctx.manifest.bytes_in(&ctx.held.chunks());
            no_space_or_io(&path, missing, ctx.file.file(), e)
        }
    };
    let mut shared = ctx.lock();
    if shared.fatal.is_none() {
        shared.fatal = Some(error);
    }
    drop(shared);
    ctx.done.cancel();
    Err(Failure::Other("write failed".into()))
}

/// What became of a received chunk on its way to disk.
enum Written {
    /// Verified, written, and read back intact.
    Confirmed,
    /// It did not match the manifest: nothing was written.
    Corrupt,
    /// It matched, but the disk gave back something else.
    ReadBackDiffers,
}
