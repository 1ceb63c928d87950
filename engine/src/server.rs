//! The chunk server: answers `GetChunk` requests from other peers with chunks from the
//! [`Store`]. Any number of requests run at once on a connection (one per stream); at most
//! [`MAX_UPLOADS`] uploads run at once per node, beyond which the answer is `Busy` so that the
//! fetcher asks someone else rather than queueing here.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use quinn::SendStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use swarm_proto::protocol::{ErrorCode, PeerRequest, PeerResponse, ProtocolError};
use swarm_proto::transport::{self, IncomingStream, Transport};
use swarm_proto::{FileId, PeerId};

use crate::chunk_io::BufferPool;
use crate::downloads::Downloads;
use crate::ratelimit::RateLimiter;
use crate::state::StateDb;
use crate::status;
use crate::store::{ReadError, Store};

/// Uploads served at once by one node. Each holds one chunk in memory (1 MiB by default), so
/// this also bounds the server's buffer memory.
pub const MAX_UPLOADS: usize = 32;
/// Uploads started so far, for sending them in the order they were asked for.
static UPLOAD_ORDER: AtomicU32 = AtomicU32::new(0);
/// Spare chunk buffers an idle server keeps for the next uploads.
const SPARE_BUFFERS: usize = 8;
/// Largest request frame a peer accepts: its requests (`GetChunk`, `Status`) are tiny.
const MAX_REQUEST: u32 = 1024;
/// Under an upload limit, data goes out in slices at most this big so the rate stays smooth.
const RATE_SLICE: usize = 64 * 1024;

/// What the chunk server needs besides its endpoint.
#[derive(Clone)]
pub struct ServerContext {
    /// The files served.
    pub store: Arc<Store>,
    /// Upload cap across all connections.
    pub limit: Option<Arc<RateLimiter>>,
    /// The node's own id: only it may ask for the status.
    pub own_id: PeerId,
    /// The node's saved state, for the status.
    pub state: StateDb,
    /// The node's downloads in flight, for the status.
    pub downloads: Downloads,
    /// Told about files whose bytes on disk no longer match what is held (changed, truncated
    /// or deleted), so that the node re-checks them and updates the tracker.
    pub changed: mpsc::Sender<FileId>,
}

/// Accepts connections on `transport` and serves chunks until `shutdown` fires. Uploads in
/// flight are tracked by `uploads` so the caller can wait for them.
pub async fn serve(transport: Transport, context: ServerContext, shutdown: CancellationToken, uploads: TaskTracker) {
    let permits = Arc::new(Semaphore::new(MAX_UPLOADS));
    let buffers = BufferPool::new(SPARE_BUFFERS);
    transport::accept_streams(transport, shutdown, uploads, move |stream: IncomingStream| {
        let (context, permits, buffers) = (context.clone(), permits.clone(), buffers.clone());
        async move {
            if let Err(e) = serve_stream(stream, &context, &permits, &buffers).await {
                debug!("request failed: {e}");
            }
        }
    })
    .await;
}

async fn serve_stream(
    mut stream: IncomingStream,
    context: &ServerContext,
    permits: &Semaphore,
    buffers: &Arc<BufferPool>,
) -> Result<(), ProtocolError> {
    let (store, limit) = (&context.store, context.limit.as_deref());
    let request = match transport::read_request(&mut stream.recv, MAX_REQUEST).await {
        Ok(request) => request,
        Err(refusal) => {
            transport::refuse_and_close::<PeerResponse>(&mut stream, refusal).await;
            return Ok(());
        }
    };
    let IncomingStream {
        peer: from, mut send, ..
    } = stream;
    let (file, index) = match request {
        PeerRequest::GetChunk { file, index } => (file, index),
        PeerRequest::Status if from != context.own_id => return reply(&mut send, status::refusal()).await,
        PeerRequest::Status => {
            let answer = match status::live(store, &context.downloads, &context.state) {
                Ok(files) => PeerResponse::Status(files),
                Err(e) => error(ErrorCode::Internal, e.to_string()),
            };
            return reply(&mut send, answer).await;
        }
    };
    let Some(held) = store.get(&file) else {
        return reply(
            &mut send,
            error(ErrorCode::NotFound, format!("file {} is not held here", file.short())),
        )
        .await;
    };
    if !held.has(index) {
        return reply(
            &mut send,
            error(
                ErrorCode::NotHeld,
                format!("chunk {index} of {} is not held here", file.short()),
            ),
        )
        .await;
    }
    let Ok(_permit) = permits.try_acquire() else {
        return reply(
            &mut send,
            error(ErrorCode::Busy, "too many uploads in progress; try another peer"),
        )
        .await;
    };
    let buffers = buffers.clone();
    let data = match tokio::task::spawn_blocking(move || held.read_chunk(index, &buffers)).await {
        Ok(Ok(data)) => data,
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
            if !matches!(e, ReadError::NotHeld(_)) {
                warn!(file = %file.short(), chunk = index, "not serving: {e}");
                // Full: a re-check is already queued.
                let _ = context.changed.try_send(file);
            }
            return reply(&mut send, error(code, e.to_string())).await;
        }
        Err(join) => return reply(&mut send, error(ErrorCode::Internal, join.to_string())).await,
    };
    // Oldest request first: QUIC would otherwise interleave every stream's data, so each of
    // a fetcher's requests would finish late and all at once. Wraps after 2^30 requests.
    let order = UPLOAD_ORDER.fetch_add(1, Ordering::Relaxed) & 0x3fff_ffff;
    let _ = send.set_priority(-(order as i32));
    transport::send_frame(&mut send, &PeerResponse::Chunk { len: data.len() as u32 }).await?;
    // Handed to QUIC as it is, not copied; the buffer returns to the pool once sent.
    let data = Bytes::from_owner(data);
    match limit {
        None => send.write_chunk(data).await.map_err(std::io::Error::from)?,
        Some(limit) => {
            // Slices small enough that even a low cap sends something several times a second
            // (a fetcher gives up on a peer that is silent for seconds).
            let slice = (limit.rate() / 16).clamp(1024, RATE_SLICE as u64) as usize;
            for start in (0..data.len()).step_by(slice) {
                let piece = data.slice(start..data.len().min(start + slice));
                limit.acquire(piece.len()).await;
                send.write_chunk(piece).await.map_err(std::io::Error::from)?;
            }
        }
    }
    let _ = send.finish();
    // Wait until the peer has the data (or gives up) so that a graceful exit lets it finish.
    let _ = send.stopped().await;
    Ok(())
}

async fn reply(send: &mut SendStream, response: PeerResponse) -> Result<(), ProtocolError> {
    transport::respond(send, &response).await
}

fn error(code: ErrorCode, message: impl Into<String>) -> PeerResponse {
    PeerResponse::Error {
        code,
        message: message.into(),
    }
}
