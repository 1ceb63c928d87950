//! The chunk server: answers `GetChunk` requests from other peers with chunks from the
//! [`HeldFiles`] (and `GetSmallFiles` with whole small files), one request per stream, any
//! number of streams at once on a connection.
//!
//! Uploads take turns ([`crate::uploads`]): a request takes a free slot, or waits in its
//! peer's line (up to [`QUEUE_WAIT`]), or is answered `Busy` when that line is full; a freed
//! slot goes to the next peer in turn, so a greedy peer cannot take every one. A slot is held
//! only while data moves: an upload whose connection sends nothing for [`UPLOAD_STALL`] (a
//! peer that asks and never reads) is reset and its slot freed.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, SendStream};
use swarm_proto::congestion;
use swarm_proto::protocol::{
    CloseCode, ErrorCode, PeerRequest, PeerResponse, ProtocolError, MAX_PEER_REQUEST, MAX_SMALL_FILE, MAX_SMALL_FILES,
};
use swarm_proto::transport::{self, IncomingStream, Transport, CONNECTION_WINDOW};
use swarm_proto::{Bitfield, FileId, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::chunk_io::{BufferPool, ChunkBuf};
use crate::downloads::Downloads;
use crate::held::{Held, HeldFiles, ReadError};
use crate::ratelimit::RateLimiter;
use crate::status;
use crate::uploads::{Admission, Asker, Limits, UploadSlots, QUEUE_WAIT, REFUSAL_DELAY};
use crate::watch;

/// Spare chunk buffers an idle server keeps for the next uploads.
const SPARE_BUFFERS: usize = 8;
/// Under an upload limit, data goes out in slices at most this big so the rate stays smooth.
const RATE_SLICE: usize = 64 * 1024;
/// Data is handed to QUIC in slices this big, so that a stalled stream is noticed mid-chunk.
const SLICE: usize = 256 * 1024;
/// An upload whose connection has sent less than [`STALL_BYTES`] in this long is stalled: the
/// peer is not reading. Its stream is reset and its slot freed.
pub const UPLOAD_STALL: Duration = Duration::from_secs(5);
/// Bytes a connection must send per [`UPLOAD_STALL`] to count as moving: far above the
/// keepalives and acknowledgements an idle connection sends. Less when the node's whole link
/// is busy and a fair share of it is less (see [`while_moving`]).
const STALL_BYTES: u64 = 32 * 1024;

/// What the chunk server needs besides its endpoint.
#[derive(Clone)]
pub struct ServerContext {
    /// The files served.
    pub store: Arc<HeldFiles>,
    /// Upload cap across all connections.
    pub limit: Option<Arc<RateLimiter>>,
    /// The node's own id: only it may ask for the status.
    pub own_id: PeerId,
    /// The answer to the node's own status request.
    pub status: status::Answerer,
    /// The node's downloads in flight: a peer watching a file is a source for them.
    pub downloads: Downloads,
    /// Told about files whose bytes on disk no longer match what is held (changed, truncated
    /// or deleted), so that the node re-checks them and updates the tracker.
    pub changed: mpsc::Sender<FileId>,
    /// Fires when the node shuts down: watches end then.
    pub shutdown: CancellationToken,
    /// Who is served, for the log.
    pub served: Arc<crate::upload_log::UploadLog>,
}

/// The upload slots and the order in which uploads are sent.
struct Slots {
    /// A waiter is woken with the asker its slot was charged as (its reach when its line began).
    slots: Mutex<UploadSlots<oneshot::Sender<Asker>>>,
    /// Uploads started so far, for sending them in the order they were asked for.
    order: AtomicU32,
    /// Bytes of chunks handed to QUIC so far, over all connections.
    sent: AtomicU64,
    /// The watch streams open, by peer and network.
    watches: Arc<watch::Watches>,
}

/// A held upload slot; dropping it hands it to the next waiter in turn.
struct Slot {
    slots: Arc<Slots>,
    /// Who it was granted to, as they were then.
    asker: Asker,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = self.slots.slots.lock().expect("upload slots lock poisoned");
        let mut handed: VecDeque<_> = slots.release(&self.asker).into();
        // A waiter that gave up meanwhile passes its turn on.
        while let Some((asker, waiter)) = handed.pop_front() {
            if waiter.send(asker).is_err() {
                handed.extend(slots.release(&asker));
            }
        }
    }
}

/// Who asks on `stream`, for the upload slots: its peer, address, and reach (from the shortest
/// round trip its connection has shown).
fn asker(stream: &IncomingStream) -> Asker {
    let ip = transport::network_of(stream.remote.ip());
    Asker::at(stream.peer, ip, congestion::min_rtt(&stream.connection))
}

/// Lets `connection` keep unacknowledged as many slots' worth of data as `asker`'s reach
/// allows it: a far peer's slots would otherwise wait on the plain window, not on its path.
fn widen_send_window(connection: &Connection, asker: &Asker) {
    connection.set_send_window(asker.reach() as u64 * u64::from(CONNECTION_WINDOW));
}

impl Slots {
    /// The slot `asker` was granted.
    fn granted(self: &Arc<Self>, asker: Asker) -> Slot {
        Slot {
            slots: self.clone(),
            asker,
        }
    }

    /// A slot for an upload to `asker` (see [`Slots::acquire`]), or, after [`REFUSAL_DELAY`],
    /// the `Busy` answer to send.
    async fn upload_slot(self: &Arc<Self>, asker: Asker) -> Result<Slot, PeerResponse> {
        if let Some(slot) = self.acquire(asker).await {
            return Ok(slot);
        }
        tokio::time::sleep(REFUSAL_DELAY).await;
        crate::telemetry::busy("slots");
        let message = "too many uploads in progress; try another peer or again later";
        Err(error(ErrorCode::Busy, message))
    }

    /// A slot for `asker` if one is free now, without queueing for one.
    fn try_acquire(self: &Arc<Self>, asker: Asker) -> Option<Slot> {
        let (wake, woken) = oneshot::channel();
        let mut slots = self.slots.lock().expect("upload slots lock poisoned");
        match slots.ask(asker, wake) {
            Admission::Granted => Some(self.granted(asker)),
            Admission::Refused(_) => None,
            Admission::Queued => {
                drop(woken);
                slots.forget_waiters(&asker.peer, |w| w.is_closed());
                None
            }
        }
    }

    /// A slot for `asker`: at once, after waiting its turn, or `None` (busy: its line is full,
    /// or its turn did not come within [`QUEUE_WAIT`]).
    async fn acquire(self: &Arc<Self>, asker: Asker) -> Option<Slot> {
        let (wake, woken) = oneshot::channel();
        let admission = self.slots.lock().expect("upload slots lock poisoned").ask(asker, wake);
        match admission {
            Admission::Granted => Some(self.granted(asker)),
            Admission::Refused(_) => None,
            Admission::Queued => {
                let mut woken = woken;
                match tokio::time::timeout(QUEUE_WAIT, &mut woken).await {
                    // Released as it was charged: a waiter's reach is its line's, which may
                    // differ from this request's (books released at another cost underflowed).
                    Ok(Ok(charged)) => Some(self.granted(charged)),
                    _ => {
                        // Out of patience; but a slot handed over just now is still ours.
                        woken.close();
                        let granted = woken.try_recv().ok();
                        let mut slots = self.slots.lock().expect("upload slots lock poisoned");
                        slots.forget_waiters(&asker.peer, |w| w.is_closed());
                        drop(slots);
                        granted.map(|charged| self.granted(charged))
                    }
                }
            }
        }
    }
}

/// Accepts connections on `transport` and serves chunks until `shutdown` fires. Uploads in
/// flight are tracked by `uploads` so the caller can wait for them.
pub async fn serve(transport: Transport, context: ServerContext, shutdown: CancellationToken, uploads: TaskTracker) {
    let slots = Arc::new(Slots {
        slots: Mutex::new(UploadSlots::new(Limits::SERVER)),
        order: AtomicU32::new(0),
        sent: AtomicU64::new(0),
        watches: Arc::default(),
    });
    let buffers = BufferPool::new(SPARE_BUFFERS);
    transport::accept_streams(transport, shutdown, uploads, move |stream: IncomingStream| {
        let (context, slots, buffers) = (context.clone(), slots.clone(), buffers.clone());
        async move {
            if let Err(e) = serve_stream(stream, &context, &slots, &buffers).await {
                debug!("request failed: {e}");
            }
        }
    })
    .await;
}

async fn serve_stream(
    mut stream: IncomingStream,
    context: &ServerContext,
    slots: &Arc<Slots>,
    buffers: &Arc<BufferPool>,
) -> Result<(), ProtocolError> {
    let request = match transport::read_request(&mut stream.recv, MAX_PEER_REQUEST).await {
        Ok(request) => request,
        Err(refusal) => {
            transport::refuse_and_close::<PeerResponse>(&mut stream, refusal).await;
            return Ok(());
        }
    };
    let from = asker(&stream);
    match request {
        PeerRequest::GetChunk { file, index } => {
            serve_chunk(stream, from, context, slots, buffers, (file, index)).await
        }
        PeerRequest::Rejected { file, index } => {
            let answer = check_rejected(context, slots, buffers, from, file, index).await;
            reply(&mut stream.send, answer).await
        }
        PeerRequest::Watch { file, have } => serve_watch(stream, context, slots, file, have).await,
        PeerRequest::GetManifest { file } => send_manifest(context, slots, from, file, &mut stream.send).await,
        PeerRequest::GetSmallFiles { files } => send_small_files(stream, from, context, slots, buffers, files).await,
        PeerRequest::Status if stream.peer != context.own_id => reply(&mut stream.send, status::refusal()).await,
        PeerRequest::Status => reply(&mut stream.send, context.status.answer()).await,
    }
}

/// Tells the peer which chunks of `file` this node gains, for as long as it watches (and the
/// node runs); a peer that fetches a file from this node is a source for the node's own
/// download of it.
async fn serve_watch(
    stream: IncomingStream,
    context: &ServerContext,
    slots: &Arc<Slots>,
    file: FileId,
    have: Bitfield,
) -> Result<(), ProtocolError> {
    let IncomingStream {
        peer: from,
        mut send,
        recv,
        remote,
        ..
    } = stream;
    let Some(held) = context.store.get(&file) else {
        return reply(&mut send, not_held(file)).await;
    };
    if have.len() != held.manifest.chunk_count || !have.is_well_formed() {
        let message = "the bitfield does not fit the file";
        return reply(&mut send, error(ErrorCode::Invalid, message)).await;
    }
    let _counted = match slots.watches.admit(from, remote.ip()) {
        Ok(pass) => pass,
        Err(why) => {
            let message = format!("{why}; end a watch first");
            return reply(&mut send, error(ErrorCode::Busy, message)).await;
        }
    };
    context.downloads.offer_source(&file, from, remote);
    tokio::select! {
        result = watch::serve(held, from, have, send, recv) => result,
        _ = context.shutdown.cancelled() => Ok(()),
    }
}

/// Sends chunk `index` of `file`, if it is held, not on its way to another peer (super-seeding)
/// and an upload slot frees in time; an upload the peer stops reading is reset.
async fn serve_chunk(
    stream: IncomingStream,
    asker: Asker,
    context: &ServerContext,
    slots: &Arc<Slots>,
    buffers: &Arc<BufferPool>,
    (file, index): (FileId, u32),
) -> Result<(), ProtocolError> {
    let IncomingStream {
        peer: from,
        mut send,
        connection,
        remote,
        ..
    } = stream;
    let Some(held) = context.store.get(&file) else {
        return reply(&mut send, not_held(file)).await;
    };
    if !held.has(index) {
        let message = format!("chunk {index} of {} is not held here", file.short());
        return reply(&mut send, error(ErrorCode::NotHeld, message)).await;
    }
    if crate::offer::leave_to_others(held.as_ref(), &from, index) {
        let message = format!("chunk {index} is held by other peers of the swarm; ask them for it");
        crate::telemetry::busy("super-seeding");
        return reply(&mut send, error(ErrorCode::Busy, message)).await;
    }
    let Some(_sending) = held.start_sending(index) else {
        let message = format!("chunk {index} is on its way to another peer; ask the others for it");
        crate::telemetry::busy("super-seeding");
        return reply(&mut send, error(ErrorCode::Busy, message)).await;
    };
    let _slot = match slots.upload_slot(asker).await {
        Ok(slot) => slot,
        Err(busy) => return reply(&mut send, busy).await,
    };
    widen_send_window(&connection, &asker);
    let data = match read_for_upload(context, &held, file, index, buffers).await {
        Ok(data) => data,
        Err(refusal) => return reply(&mut send, refusal).await,
    };
    // Oldest request first: QUIC would otherwise interleave every stream's data, so each of
    // a fetcher's requests would finish late and all at once. Wraps after 2^30 requests.
    let order = slots.order.fetch_add(1, Ordering::Relaxed) & 0x3fff_ffff;
    let _ = send.set_priority(-(order as i32));
    // Handed to QUIC as it is, not copied; the buffer returns to the pool once sent.
    let data = Bytes::from_owner(data);
    let limit = context.limit.as_deref();
    let moving = moving_bytes(limit);
    held.count_upload(index, true);
    let bytes = data.len() as u64;
    let _in_flight = crate::telemetry::UploadInFlight::start();
    let limit = limit.map(|limit| (limit, crate::uploads::network(remote.ip())));
    let upload = send_chunk(&mut send, data, limit, &slots.sent);
    match while_moving(&connection, moving, slots, upload).await {
        Some(Ok(())) => {
            crate::telemetry::chunk_uploaded(&file, bytes);
            held.note_served(bytes);
            let now = std::time::Instant::now();
            context
                .served
                .record(from, remote, file, &held.manifest.name, bytes, now);
            Ok(())
        }
        Some(Err(e)) => {
            held.count_upload(index, false);
            Err(e)
        }
        None => {
            debug!(file = %file.short(), chunk = index, "upload stalled (the peer does not read); reset");
            held.count_upload(index, false);
            let _ = send.reset(CloseCode::Cancelled.code());
            Ok(())
        }
    }
}

/// Reads chunk `index` of `held` from the disk, checked against what was verified, or the
/// refusal to send: a file changed on disk is queued to be checked again whole.
async fn read_for_upload(
    context: &ServerContext,
    held: &Arc<Held>,
    file: FileId,
    index: u32,
    buffers: &Arc<BufferPool>,
) -> Result<ChunkBuf, PeerResponse> {
    let (buffers, reading) = (buffers.clone(), held.clone());
    match tokio::task::spawn_blocking(move || reading.read_chunk(index, &buffers)).await {
        Ok(Ok(data)) => Ok(data),
        Ok(Err(e)) => {
            let code = match &e {
                ReadError::NotHeld(_) => ErrorCode::NotHeld,
                ReadError::Changed { .. } => ErrorCode::NotHeld,
                ReadError::Io { source, .. }
                    if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof) =>
                {
                    ErrorCode::NotHeld
                }
                ReadError::Io { .. } => ErrorCode::Internal,
            };
            stop_serving_if_changed(context, file, index, &e);
            Err(error(code, e.to_string()))
        }
        Err(join) => Err(error(ErrorCode::Internal, join.to_string())),
    }
}

/// A read of chunk `index` of `file` failed with `e`: unless the chunk was simply not held,
/// the file changed on disk, and is queued to be checked again whole.
fn stop_serving_if_changed(context: &ServerContext, file: FileId, index: u32, e: &ReadError) {
    if !matches!(e, ReadError::NotHeld(_)) {
        warn!(file = %file.short(), chunk = index, "not serving: {e}");
        // Full: a re-check is already queued.
        let _ = context.changed.try_send(file);
    }
}

/// Sends the manifest of `file`, under an upload slot if one is free now (so that asking for it
/// again and again costs a peer its turn, as fetching chunks does).
async fn send_manifest(
    context: &ServerContext,
    slots: &Arc<Slots>,
    from: Asker,
    file: FileId,
    send: &mut SendStream,
) -> Result<(), ProtocolError> {
    let Some(held) = context.store.get(&file) else {
        return reply(send, not_held(file)).await;
    };
    // Not queued for: the asker has other holders, and the tracker, to ask at once.
    let Some(_slot) = slots.try_acquire(from) else {
        let message = "too many uploads in progress; ask another peer";
        return reply(send, error(ErrorCode::Busy, message)).await;
    };
    reply(send, PeerResponse::Manifest((*held.manifest).clone())).await
}

/// Sends `files` whole, each as its manifest and its one chunk (or an error frame for one not
/// sent), all under one upload slot: see [`PeerRequest::GetSmallFiles`]. Files this small are
/// not held back for super-seeding: a copy of one costs less than the request for it.
async fn send_small_files(
    stream: IncomingStream,
    asker: Asker,
    context: &ServerContext,
    slots: &Arc<Slots>,
    buffers: &Arc<BufferPool>,
    files: Vec<FileId>,
) -> Result<(), ProtocolError> {
    let IncomingStream {
        peer: from,
        mut send,
        connection,
        remote,
        ..
    } = stream;
    if files.len() > MAX_SMALL_FILES {
        let message = format!("asked for {} files; at most {MAX_SMALL_FILES} a request", files.len());
        return reply(&mut send, error(ErrorCode::Invalid, message)).await;
    }
    let _slot = match slots.upload_slot(asker).await {
        Ok(slot) => slot,
        Err(busy) => return reply(&mut send, busy).await,
    };
    widen_send_window(&connection, &asker);
    let held: Vec<Result<Arc<Held>, PeerResponse>> = files.iter().map(|file| small_file(context, *file)).collect();
    // Read in one blocking task: at most MAX_SMALL_FILES of MAX_SMALL_FILE bytes.
    let (reading, pool) = (held.iter().flatten().cloned().collect::<Vec<_>>(), buffers.clone());
    let read = tokio::task::spawn_blocking(move || reading.iter().map(|h| h.read_chunk(0, &pool)).collect::<Vec<_>>())
        .await
        .map_err(|join| ProtocolError::Io(io::Error::other(join.to_string())))?;
    let limit = context
        .limit
        .as_deref()
        .map(|limit| (limit, crate::uploads::network(remote.ip())));
    let moving = moving_bytes(context.limit.as_deref());
    let upload = send_files(&mut send, context, &files, held, read, limit, &slots.sent);
    match while_moving(&connection, moving, slots, upload).await {
        Some(Ok(served)) => {
            let now = std::time::Instant::now();
            for held in served {
                let bytes = held.manifest.size;
                crate::telemetry::chunk_uploaded(&held.id, bytes);
                held.note_served(bytes);
                context
                    .served
                    .record(from, remote, held.id, &held.manifest.name, bytes, now);
            }
            Ok(())
        }
        Some(Err(e)) => Err(e),
        None => {
            debug!("upload of small files stalled (the peer does not read); reset");
            let _ = send.reset(CloseCode::Cancelled.code());
            Ok(())
        }
    }
}

/// Sends each of `files` (with what was found `held` of it and `read` from disk for those held)
/// as its manifest and bytes, or the error frame saying why not; then waits until the peer has
/// it all. Returns the files sent.
async fn send_files(
    send: &mut SendStream,
    context: &ServerContext,
    files: &[FileId],
    held: Vec<Result<Arc<Held>, PeerResponse>>,
    read: Vec<Result<ChunkBuf, ReadError>>,
    limit: Option<(&RateLimiter, std::net::IpAddr)>,
    sent: &AtomicU64,
) -> Result<Vec<Arc<Held>>, ProtocolError> {
    let mut read = read.into_iter();
    let mut served = Vec::new();
    for (file, held) in files.iter().zip(held) {
        let held = match held {
            Ok(held) => held,
            Err(refusal) => {
                transport::send_frame(send, &refusal).await?;
                continue;
            }
        };
        let data = match read.next().expect("one read per file held") {
            Ok(data) => data,
            Err(e) => {
                stop_serving_if_changed(context, *file, 0, &e);
                transport::send_frame(send, &error(ErrorCode::NotHeld, e.to_string())).await?;
                continue;
            }
        };
        transport::send_frame(send, &PeerResponse::Manifest((*held.manifest).clone())).await?;
        held.count_upload(0, true);
        send_data(send, Bytes::from_owner(data), limit, sent).await?;
        served.push(held);
    }
    let _ = send.finish();
    let _ = send.stopped().await;
    Ok(served)
}

/// The held file `file` if it may be sent whole in answer to a request for small files, or
/// the answer saying why not.
fn small_file(context: &ServerContext, file: FileId) -> Result<Arc<Held>, PeerResponse> {
    let held = context.store.get(&file).ok_or_else(|| not_held(file))?;
    let manifest = &held.manifest;
    if manifest.chunk_count != 1 || manifest.size > MAX_SMALL_FILE {
        let message = format!("{} is not a small file; ask for its chunks", file.short());
        return Err(error(ErrorCode::Invalid, message));
    }
    if !held.has(0) {
        return Err(error(
            ErrorCode::NotHeld,
            format!("file {} is not complete here", file.short()),
        ));
    }
    Ok(held)
}

/// A fetcher found chunk `index` of `file` did not match its manifest: hashes it again from
/// disk (under an upload slot, so that asking costs a peer as much as fetching the chunk).
async fn check_rejected(
    context: &ServerContext,
    slots: &Arc<Slots>,
    buffers: &Arc<BufferPool>,
    from: Asker,
    file: FileId,
    index: u32,
) -> PeerResponse {
    let Some(held) = context.store.get(&file) else {
        return not_held(file);
    };
    let Some(_slot) = slots.acquire(from).await else {
        return error(ErrorCode::Busy, "too many uploads in progress; try again later");
    };
    let buffers = buffers.clone();
    match tokio::task::spawn_blocking(move || held.check_chunk(index, &buffers)).await {
        Ok(Ok(())) => PeerResponse::Checked { intact: true },
        Ok(Err(e)) => {
            stop_serving_if_changed(context, file, index, &e);
            PeerResponse::Checked { intact: false }
        }
        Err(join) => error(ErrorCode::Internal, join.to_string()),
    }
}

/// Sends the chunk header and `data` (in slices, under `limit` if any, at the share of the
/// peer's network), then waits until the peer has it all, so that a graceful exit lets it
/// finish.
async fn send_chunk(
    send: &mut SendStream,
    data: Bytes,
    limit: Option<(&RateLimiter, std::net::IpAddr)>,
    sent: &AtomicU64,
) -> Result<(), ProtocolError> {
    send_data(send, data, limit, sent).await?;
    let _ = send.finish();
    let _ = send.stopped().await;
    Ok(())
}

/// Sends a chunk header and `data`, in slices, under `limit` if any (at the share of the
/// peer's network).
async fn send_data(
    send: &mut SendStream,
    data: Bytes,
    limit: Option<(&RateLimiter, std::net::IpAddr)>,
    sent: &AtomicU64,
) -> Result<(), ProtocolError> {
    transport::send_frame(send, &PeerResponse::Chunk { len: data.len() as u32 }).await?;
    // Under a cap, slices small enough that even a low cap sends something several times a
    // second (a fetcher gives up on a transfer that stalls for seconds).
    let slice = limit.map_or(SLICE, |(l, _)| (l.rate() / 16).clamp(1024, RATE_SLICE as u64) as usize);
    for start in (0..data.len()).step_by(slice) {
        let piece = data.slice(start..data.len().min(start + slice));
        if let Some((limit, network)) = limit {
            limit.acquire_for(network, piece.len()).await;
        }
        let len = piece.len() as u64;
        send.write_chunk(piece).await.map_err(io::Error::from)?;
        sent.fetch_add(len, Ordering::Relaxed);
    }
    Ok(())
}

/// Bytes an upload's connection must send per [`UPLOAD_STALL`] to count as moving, under the
/// upload cap `limit` if any (a low cap sends little even when nothing is wrong).
fn moving_bytes(limit: Option<&RateLimiter>) -> u64 {
    limit.map_or(STALL_BYTES, |l| STALL_BYTES.min(l.rate() * UPLOAD_STALL.as_secs() / 4))
}

/// Runs `work` as long as `connection` keeps sending; `None` once it sent, in an
/// [`UPLOAD_STALL`], less than `bytes` and less than a quarter of a fair share of what the
/// node sent over all its uploads then. A peer that never reads is so told from one that is
/// merely slow because the node's link is shared by many (at 4 Mbit/s over 36 peers, each
/// connection moves about 14 KB/s, and resetting them wasted half the seeder's upload).
async fn while_moving<F: std::future::Future>(
    connection: &Connection,
    bytes: u64,
    slots: &Slots,
    work: F,
) -> Option<F::Output> {
    tokio::pin!(work);
    let mut sent = connection.stats().udp_tx.bytes;
    let mut node_sent = slots.sent.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            done = &mut work => return Some(done),
            _ = tokio::time::sleep(UPLOAD_STALL) => {
                let now = connection.stats().udp_tx.bytes;
                let node_now = slots.sent.load(Ordering::Relaxed);
                let uploads = slots.slots.lock().expect("upload slots lock poisoned").held().max(1) as u64;
                let fair_share = node_now.saturating_sub(node_sent) / uploads;
                if now.saturating_sub(sent) < bytes.min(fair_share / 4) {
                    return None;
                }
                sent = now;
                node_sent = node_now;
            }
        }
    }
}

async fn reply(send: &mut SendStream, response: PeerResponse) -> Result<(), ProtocolError> {
    transport::respond(send, &response).await
}

/// The answer to a request for a file this node does not hold.
fn not_held(file: FileId) -> PeerResponse {
    error(ErrorCode::NotFound, format!("file {} is not held here", file.short()))
}

fn error(code: ErrorCode, message: impl Into<String>) -> PeerResponse {
    PeerResponse::Error {
        code,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uploads::Limits;

    fn asker(id: u8, round_trip_ms: u64) -> Asker {
        let ip = std::net::IpAddr::from([10, 0, 0, id]);
        Asker::at(PeerId([id; 32]), ip, Duration::from_millis(round_trip_ms))
    }

    /// A request that waited in a line begun at another reach is charged as its line was, and
    /// released so: the books balance (released at its own cost, they underflowed and the
    /// seeder aborted).
    #[tokio::test]
    async fn a_slot_handed_over_is_released_as_it_was_charged() {
        let one = Limits {
            total: 1,
            per_peer: 16,
            per_ip: 16,
            per_network: 16,
            waiting_per_peer: 16,
        };
        let slots = Arc::new(Slots {
            slots: Mutex::new(UploadSlots::new(one)),
            order: AtomicU32::new(0),
            sent: AtomicU64::new(0),
            watches: Arc::default(),
        });
        let holder = slots.acquire(asker(1, 1)).await.expect("a free slot");
        // A far peer's line begins (reach 3); its next request comes at reach 1.
        let (first, _woken_first) = oneshot::channel();
        assert!(matches!(
            slots.slots.lock().unwrap().ask(asker(2, 200), first),
            Admission::Queued
        ));
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(asker(2, 1)).await }
        });
        // Hand over only once the second request waits in the line too.
        while slots.slots.lock().unwrap().waiting() < 2 {
            tokio::task::yield_now().await;
        }
        drop(holder);
        let second = waiting.await.unwrap().expect("handed over");
        drop(second);
        let books = slots.slots.lock().unwrap();
        assert_eq!(books.held(), 1, "the first waiter's slot is still held");
    }
}
