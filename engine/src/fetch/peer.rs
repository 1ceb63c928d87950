//! One worker per holder: a QUIC connection and several *lanes*, each a loop of "ask the
//! scheduler for a chunk, request it, verify it, write it and read it back". A lane that hits
//! a fatal error (the disk) tells the coordinator and the download ends; anything else about a
//! peer (busy, gone, silent, lying) stays with the worker and the scheduler. A holder reached
//! through a relay is tried now and then without it; once a direct path opens, the lanes
//! finish the chunks they are fetching and the worker moves over to it.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, RecvStream, VarInt};
use swarm_proto::protocol::{Availability, CloseCode, ErrorCode, PeerRequest, PeerResponse};
use swarm_proto::{transport, FileId, PeerId};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, trace, warn, Instrument};

use super::output::no_space_or_io;
use super::policy::STALL_TIMEOUT;
use super::shared::{Shared, Swarm};
use crate::chunk_io::ChunkBuf;
use crate::error::Error;
use crate::nat::Path;
use crate::scheduler::Verdict;
use crate::traversal;
use crate::watch::{self, Watching};

/// An idle lane looks for work again after this long even if nothing woke it (a safety net:
/// every change that gives a peer work wakes its lanes).
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// Largest answer frame a peer may send to a chunk request (the chunk's bytes follow it).
const MAX_ANSWER: u32 = 1024;
/// A worker on a relayed connection first tries for a direct path this long after it
/// connected, then twice as long after each try, up to [`LOOK_FOR_DIRECT_AT_MOST`].
const LOOK_FOR_DIRECT_FIRST: Duration = Duration::from_secs(5);
/// See [`LOOK_FOR_DIRECT_FIRST`].
const LOOK_FOR_DIRECT_AT_MOST: Duration = Duration::from_secs(60);

/// Works one neighbour for the download until the download ends, the neighbour goes, is
/// banned, or is let go (`stop`): a watch tells what it holds (and keeps telling), and lanes
/// fetch from it, woken by `news` when it may have work for them.
pub async fn worker(
    shared: Arc<Shared>,
    peer: PeerId,
    addrs: Vec<SocketAddr>,
    stop: CancellationToken,
    news: Arc<Notify>,
) {
    let connected = tokio::select! {
        _ = stop.cancelled() => None,
        c = traversal::reach(&shared.env.transport, &shared.env.session, peer, &addrs) => match c {
            Ok(reached) => {
                shared.lock().paths.insert(peer, reached.path);
                Some(reached)
            }
            Err(e) => {
                let unreachable = super::shared::Unreachable {
                    at: std::time::Instant::now(),
                    addrs: addrs.clone(),
                    why: e.to_string(),
                };
                let said = format!("holder {} did not answer: unreachable from here ({e})", unreachable.describe(peer));
                if shared.lock().unreachable.insert(peer, unreachable).is_none() {
                    warn!("{said}");
                }
                None
            }
        },
    };
    let mut watched = match connected {
        Some(reached) => watched(&shared, peer, reached).await,
        None => None,
    };
    while let Some(Watched {
        connection,
        watching,
        path,
    }) = watched.take()
    {
        let better = async {
            if path != Path::Relayed {
                return std::future::pending().await;
            }
            direct_path(&shared, peer, &addrs).await
        };
        let moved = work(&shared, peer, &connection, watching, &stop, &news, better).await;
        connection.close(CloseCode::Done.code(), b"done");
        if let Some(moved) = moved {
            tracing::info!(peer = %peer.short(), via = %moved.connection.remote_address(), "moved from the relay to a direct path");
            shared.lock().paths.insert(peer, moved.path);
            watched = Some(moved);
        }
    }
    let mut swarm = shared.lock();
    swarm.workers.remove(&peer);
    if !swarm.scheduler.is_banned(&peer) {
        swarm.scheduler.remove_peer(&peer);
    }
    drop(swarm);
    shared.changed.notify_waiters();
    shared.wake.notify_one();
}

/// A connection to a holder with its watch open: what it holds is known, and followed.
struct Watched {
    connection: Connection,
    watching: Watching,
    path: Path,
}

/// `reached`, with the holder's watch opened on it and what it offers given to the scheduler;
/// `None` (the connection closed) if the holder would not say what it holds.
async fn watched(shared: &Shared, peer: PeerId, reached: crate::nat::Reached) -> Option<Watched> {
    match watch::open(&reached.connection, shared.id, &shared.held).await {
        Ok((watching, offered)) => {
            // Adding a peer again adds only the chunks it did not offer before.
            shared.lock().scheduler.add_peer(peer, &offered);
            Some(Watched {
                connection: reached.connection,
                watching,
                path: reached.path,
            })
        }
        Err(e) => {
            debug!("this peer would not say what it holds: {e}");
            reached.connection.close(CloseCode::Done.code(), b"no watch");
            None
        }
    }
}

/// A direct path to `peer` (its watch open), looked for now and then while it is reached
/// through a relay; pending for ever if none opens.
async fn direct_path(shared: &Shared, peer: PeerId, addrs: &[SocketAddr]) -> Watched {
    let mut pause = LOOK_FOR_DIRECT_FIRST;
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LOOK_FOR_DIRECT_AT_MOST);
        let env = &shared.env;
        if let Some(reached) = traversal::reach_without_relay(&env.transport, &env.session, peer, addrs).await {
            if let Some(watched) = watched(shared, peer, reached).await {
                return watched;
            }
        }
    }
}

/// Runs the lanes for `peer` while its watch tells what it holds. Returns the connection to
/// move to if `better` found one (the lanes finished the chunks they were fetching first).
async fn work(
    shared: &Arc<Shared>,
    peer: PeerId,
    connection: &Connection,
    watching: Watching,
    stop: &CancellationToken,
    news: &Arc<Notify>,
    better: impl std::future::Future<Output = Watched>,
) -> Option<Watched> {
    let following = {
        let (shared, news) = (shared.clone(), news.clone());
        watching.follow(shared.held.clone(), move |change| {
            let mut swarm = shared.lock();
            match change {
                Availability::Gained(chunks) => {
                    swarm.scheduler.gained(&peer, &chunks);
                    news.notify_waiters();
                }
                Availability::Lost(chunks) => chunks.iter().for_each(|&c| swarm.scheduler.lacks(&peer, c)),
            }
        })
    };
    tokio::pin!(following, better);
    let draining = CancellationToken::new();
    let tells = TaskTracker::new();
    let mut moving = None;
    let mut lanes = JoinSet::new();
    let mut window = u64::from(transport::CONNECTION_WINDOW);
    loop {
        // As many lanes as this peer's share of the budget allows now.
        let want = shared.lanes_per_peer();
        // The connection takes as many bytes unread as are asked for (long fat paths only:
        // elsewhere the default window is larger than a pipeline).
        let asked = want as u64 * u64::from(shared.manifest.chunk_size);
        if asked > window {
            window = asked;
            connection.set_receive_window(VarInt::from_u64(window).unwrap_or(VarInt::MAX));
        }
        while lanes.len() < want {
            let index = lanes.len();
            let lane = lane(
                shared.clone(),
                connection.clone(),
                peer,
                index,
                news.clone(),
                tells.clone(),
                draining.clone(),
            );
            lanes.spawn(lane.in_current_span());
        }
        let changed = shared.changed.notified();
        tokio::select! {
            _ = stop.cancelled() => break,
            found = &mut better, if moving.is_none() => {
                // No new request on this connection; those under way finish on it.
                draining.cancel();
                moving = Some(found);
                while lanes.join_next().await.is_some() {}
                told(shared, tells).await;
                return moving;
            }
            ended = &mut following => {
                if let Err(e) = ended {
                    debug!("the peer's watch ended: {e}");
                }
                break;
            }
            ended = lanes.join_next() => if ended.is_none() { break },
            _ = changed => {}
        }
        let stopped = {
            let swarm = shared.lock();
            shared.done.is_cancelled() || !swarm.scheduler.is_active(&peer) || swarm.scheduler.is_complete()
        };
        if stopped {
            break;
        }
    }
    lanes.shutdown().await;
    told(shared, tells).await;
    None
}

/// Waits until the peers told of bad chunks on `tells` have answered (or the download is
/// done): a peer checks its copy before it answers, and a connection closed under it would
/// leave it serving the bad chunk.
async fn told(shared: &Shared, tells: TaskTracker) {
    tells.close();
    tokio::select! {
        _ = tells.wait() => {}
        _ = shared.done.cancelled() => {}
    }
}

/// What a lane does after a request settled.
enum Next {
    Continue,
    BackOff,
    Stop,
}

/// Lane `index` of the worker for `peer`. It ends when the download does, when the peer is
/// dropped, when the peer's share of the budget no longer covers `index`, or when its
/// connection is `draining` (after the chunk it is fetching). A bad chunk is told to the peer
/// on `tells`.
async fn lane(
    shared: Arc<Shared>,
    connection: Connection,
    peer: PeerId,
    index: usize,
    news: Arc<Notify>,
    tells: TaskTracker,
    draining: CancellationToken,
) {
    // A request holds one chunk in memory: the download's budget bounds them all. A lane keeps
    // its share while it has work, so that every peer that got one stays busy, and gives it
    // back when it idles.
    let mut permit = None;
    loop {
        if index >= shared.lanes_per_peer() || draining.is_cancelled() {
            return;
        }
        if permit.is_none() {
            permit = tokio::select! {
                _ = shared.done.cancelled() => return,
                p = shared.in_flight.acquire() => Some(p),
            };
        }
        // Listening before looking, so that news arriving in between is not missed.
        let (mut about_peer, mut about_all) = (pin!(news.notified()), pin!(shared.changed.notified()));
        about_peer.as_mut().enable();
        about_all.as_mut().enable();
        let next = {
            let mut swarm = shared.lock();
            if shared.done.is_cancelled() || !swarm.scheduler.is_active(&peer) || swarm.scheduler.is_complete() {
                return;
            }
            let next = swarm.scheduler.next(&peer).map(|chunk| {
                let token = shared.done.child_token();
                swarm.cancels.insert((peer, chunk), token.clone());
                (chunk, token)
            });
            if next.is_some() {
                swarm.took_chunk();
            }
            next
        };
        let Some((chunk, token)) = next else {
            permit = None;
            tokio::select! {
                _ = shared.done.cancelled() => return,
                _ = draining.cancelled() => return,
                _ = about_peer => {}
                _ = about_all => {}
                _ = tokio::time::sleep(IDLE_LOOK) => {}
            }
            continue;
        };
        let asked = std::time::Instant::now();
        let outcome = tokio::select! {
            _ = token.cancelled() => None,
            result = request_chunk(&shared, &connection, chunk) => Some(result),
        };
        if matches!(outcome, Some(Ok(_))) {
            shared.note_round_trip(connection.rtt(), asked.elapsed());
            if shared.in_flight.answered() {
                // More lanes per peer: the workers start them.
                shared.changed.notify_waiters();
            }
        }
        if matches!(&outcome, Some(Err(Failure::Mismatch))) {
            tells.spawn(tell_rejected(connection.clone(), shared.id, chunk).in_current_span());
        }
        let fatal = matches!(&outcome, Some(Err(Failure::Fatal(_))));
        let next = settle(&shared, peer, chunk, outcome);
        if fatal {
            return;
        }
        match next {
            Next::Continue => {}
            Next::Stop => return,
            Next::BackOff => {
                permit = None;
                tokio::time::sleep(Duration::from_millis(100 + rand::random::<u64>() % 200)).await;
            }
        }
    }
}

/// Why one chunk request did not deliver.
enum Failure {
    /// The data did not match the manifest's hash: the peer is told ([`tell_rejected`]).
    Mismatch,
    /// The peer broke the protocol for this chunk (a wrong length, a short stream).
    Corrupt(String),
    /// The peer says it lacks the chunk.
    NotHeld,
    /// The peer is busy.
    Busy,
    /// The connection is gone.
    Gone(String),
    /// Anything else about this peer (stall, protocol error, peer-side failure).
    Other(String),
    /// The download cannot go on; the coordinator has been told.
    Fatal(String),
}

/// Records the outcome of a request (`None`: cancelled) in the scheduler.
fn settle(shared: &Shared, peer: PeerId, chunk: u32, outcome: Option<Result<u32, Failure>>) -> Next {
    let mut swarm = shared.lock();
    swarm.cancels.remove(&(peer, chunk));
    // A peer gone, banned or dropped puts all it was asked for back in the queue.
    let mut peer_went = false;
    let next = match outcome {
        None => {
            swarm.scheduler.cancelled(&peer, chunk);
            swarm.requeued(chunk);
            Next::Continue
        }
        Some(Ok(len)) => {
            if let Some(others) = swarm.scheduler.completed(&peer, chunk) {
                for other in others {
                    if let Some(token) = swarm.cancels.remove(&(other, chunk)) {
                        token.cancel();
                    }
                }
                shared.held.mark(chunk);
                crate::telemetry::chunk_fetched(&shared.held.id, u64::from(len));
                *swarm.received.entry(peer).or_default() += u64::from(len);
                shared.progress.advance(u64::from(len));
                swarm.newly_verified.push(chunk);
                shared.wake.notify_one();
            }
            Next::Continue
        }
        Some(Err(Failure::Mismatch)) => {
            peer_went = ban(&mut swarm, peer, chunk, "content does not match the manifest");
            Next::Stop
        }
        Some(Err(Failure::Corrupt(why))) => {
            peer_went = ban(&mut swarm, peer, chunk, &why);
            Next::Stop
        }
        Some(Err(Failure::NotHeld)) => {
            swarm.scheduler.lacks(&peer, chunk);
            swarm.requeued(chunk);
            Next::Continue
        }
        Some(Err(Failure::Busy)) => {
            swarm.scheduler.cancelled(&peer, chunk);
            swarm.requeued(chunk);
            Next::BackOff
        }
        Some(Err(Failure::Gone(why))) => {
            debug!("connection lost: {why}");
            swarm.scheduler.remove_peer(&peer);
            peer_went = true;
            Next::Stop
        }
        Some(Err(Failure::Other(why) | Failure::Fatal(why))) => {
            debug!(chunk, "chunk failed: {why}");
            if swarm.scheduler.failed(&peer, chunk) == Verdict::Dropped {
                warn!("peer failed too often; not using it for this download");
                peer_went = true;
                Next::Stop
            } else {
                swarm.requeued(chunk);
                Next::Continue
            }
        }
    };
    drop(swarm);
    if peer_went {
        shared.changed.notify_waiters();
    }
    next
}

/// Bans `peer`, which sent a bad `chunk`, for the rest of the download; false if it already was.
fn ban(swarm: &mut Swarm, peer: PeerId, chunk: u32, why: &str) -> bool {
    if swarm.scheduler.is_banned(&peer) {
        return false;
    }
    warn!(chunk, "peer sent a bad chunk ({why}); banned for this download");
    crate::telemetry::chunk_rejected("bad data");
    crate::telemetry::peer_banned("bad data");
    swarm.scheduler.ban(&peer);
    swarm.banned.push(peer);
    true
}

/// Tells the peer on `connection` that chunk `index` of `file` it sent did not match, so that
/// it checks its copy and stops serving it if it changed ([`crate::trust`]). The lane does not
/// wait for the answer: the chunk is asked of another peer meanwhile.
async fn tell_rejected(connection: Connection, file: FileId, index: u32) {
    let request = PeerRequest::Rejected { file, index };
    let told = transport::exchange::<_, PeerResponse>(&connection, &request, MAX_ANSWER);
    match tokio::time::timeout(STALL_TIMEOUT, told).await {
        Ok(Ok((PeerResponse::Checked { intact }, _))) => debug!(chunk = index, intact, "told the peer"),
        Ok(Ok((other, _))) => debug!(chunk = index, "told the peer; it answered {other:?}"),
        Ok(Err(e)) => debug!(chunk = index, "could not tell the peer: {e}"),
        Err(_) => debug!(chunk = index, "the peer did not answer"),
    }
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

/// Asks for one chunk, verifies it and writes it in place. Returns its length.
async fn request_chunk(shared: &Shared, connection: &Connection, chunk: u32) -> Result<u32, Failure> {
    let (recv, expected) = ask_for_chunk(shared, connection, chunk).await?;
    let data = receive_chunk(shared, connection, recv, expected).await?;
    let (manifest, file, held) = (shared.manifest.clone(), shared.file.clone(), shared.held.clone());
    let slot = shared
        .disk_slots
        .clone()
        .acquire_owned()
        .await
        .expect("the disk slots are never closed");
    // The blocking write runs to its end even if this request is dropped (an endgame copy
    // cancelled): it keeps its slot till then, so that the download waits for it to end.
    let written = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        if !manifest.chunk_matches(chunk, &data) {
            return Ok(Written::Corrupt);
        }
        // Another peer's copy got here first (endgame): the file is not written again, which
        // once the download is complete would touch the modification time it was given.
        if held.has(chunk) {
            return Ok(Written::Confirmed);
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
        Ok(Written::Corrupt) => return Err(Failure::Mismatch),
        Ok(Written::ReadBackDiffers) => Error::Integrity(format!(
            "chunk {chunk} read back from {} differs from what was just written to it: the disk or file \
             system is losing data; check it (dmesg, SMART) and run the fetch again",
            shared.held.path().display()
        )),
        Err(e) => {
            let path = shared.held.path();
            let missing = shared.manifest.size - shared.manifest.bytes_in(&shared.held.chunks());
            no_space_or_io(&path, missing, shared.file.file(), e)
        }
    };
    let why = error.to_string();
    shared.fail(error);
    Err(Failure::Fatal(why))
}

/// Sends the request for `chunk` and reads the answer's head: the stream its bytes follow on,
/// and their length (the chunk's).
async fn ask_for_chunk(shared: &Shared, connection: &Connection, chunk: u32) -> Result<(RecvStream, u32), Failure> {
    if let Some(reason) = connection.close_reason() {
        return Err(Failure::Gone(reason.to_string()));
    }
    let request = PeerRequest::GetChunk {
        file: shared.id,
        index: chunk,
    };
    let exchange = tokio::time::timeout(STALL_TIMEOUT, transport::exchange(connection, &request, MAX_ANSWER));
    let (response, mut recv) = match exchange.await {
        Err(_) => return Err(Failure::Other("no answer within the stall timeout".into())),
        Ok(Err(e)) if connection.close_reason().is_some() => return Err(Failure::Gone(e.to_string())),
        Ok(Err(e)) => return Err(Failure::Other(e.to_string())),
        Ok(Ok(answer)) => answer,
    };
    let expected = shared.manifest.chunk_len(chunk);
    match response {
        PeerResponse::Chunk { len } if len == expected => Ok((recv, expected)),
        PeerResponse::Chunk { len } => {
            let _ = recv.stop(CloseCode::Cancelled.code());
            Err(Failure::Corrupt(format!(
                "announced {len} bytes, the chunk has {expected}"
            )))
        }
        PeerResponse::Error {
            code: ErrorCode::Busy, ..
        } => Err(Failure::Busy),
        PeerResponse::Error {
            code: ErrorCode::NotHeld | ErrorCode::NotFound,
            ..
        } => Err(Failure::NotHeld),
        PeerResponse::Error { code, message } => Err(Failure::Other(format!("{code:?}: {message}"))),
        other => Err(Failure::Other(format!("unexpected answer {other:?}"))),
    }
}

/// Reads the `expected` bytes of a chunk from `recv` (within the download cap, if any).
async fn receive_chunk(
    shared: &Shared,
    connection: &Connection,
    mut recv: RecvStream,
    expected: u32,
) -> Result<ChunkBuf, Failure> {
    let mut data = shared.buffers.take(expected as usize);
    let mut filled = 0;
    // Under a download cap, read in slices small enough that waiting for our own limiter never
    // looks like a stalled transfer.
    let limit = shared.env.download_limit.as_deref();
    let slice = limit.map_or(usize::MAX, |l| (l.rate() / 16).clamp(1024, 64 * 1024) as usize);
    while filled < data.len() {
        let end = filled.saturating_add(slice).min(data.len());
        match tokio::time::timeout(STALL_TIMEOUT, recv.read(&mut data[filled..end])).await {
            Err(_) => {
                let _ = recv.stop(CloseCode::Cancelled.code());
                return Err(Failure::Other("transfer stalled".into()));
            }
            Ok(Ok(Some(n))) => {
                filled += n;
                if let Some(limit) = limit {
                    limit.acquire(n).await;
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
    Ok(data)
}
