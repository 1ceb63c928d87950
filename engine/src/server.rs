//! The chunk server: answers `GetChunk` requests from other peers with chunks from the
//! [`Store`]. Any number of requests run at once on a connection (one per stream); at most
//! [`MAX_UPLOADS`] uploads run at once per node, beyond which the answer is `Busy` so that the
//! fetcher asks someone else rather than queueing here.

use std::sync::Arc;

use quinn::{RecvStream, SendStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::protocol::{ErrorCode, ProtocolError, Request, Response};
use crate::ratelimit::RateLimiter;
use crate::store::{ReadError, Store};
use crate::transport::{self, IncomingStream, Transport};

/// Uploads served at once by one node. Each holds one chunk in memory (1 MiB by default), so
/// this also bounds the server's buffer memory.
pub const MAX_UPLOADS: usize = 32;
/// Under an upload limit, data goes out in slices this big so the rate stays smooth.
const RATE_SLICE: usize = 64 * 1024;

/// Accepts connections on `transport` and serves chunks from `store` until `shutdown` fires.
/// Uploads in flight are tracked by `uploads` so the caller can wait for them.
pub async fn serve(
    transport: Transport,
    store: Arc<Store>,
    shutdown: CancellationToken,
    uploads: TaskTracker,
    limit: Option<Arc<RateLimiter>>,
) {
    let permits = Arc::new(Semaphore::new(MAX_UPLOADS));
    transport::accept_streams(transport, shutdown, uploads, move |stream: IncomingStream| {
        let (store, permits, limit) = (store.clone(), permits.clone(), limit.clone());
        async move {
            if let Err(e) = serve_stream(stream.send, stream.recv, &store, &permits, limit.as_deref()).await {
                debug!("request failed: {e}");
            }
        }
    })
    .await;
}

async fn serve_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    store: &Store,
    permits: &Semaphore,
    limit: Option<&RateLimiter>,
) -> Result<(), ProtocolError> {
    let request = match transport::read_request(&mut recv).await {
        Ok(request) => request,
        Err(refusal) => return reply(&mut send, refusal).await,
    };
    let Request::GetChunk { file, index } = request else {
        return reply(
            &mut send,
            Response::error(ErrorCode::Unsupported, "this node is a peer; it only answers GetChunk"),
        )
        .await;
    };
    let Some(held) = store.get(&file) else {
        return reply(
            &mut send,
            Response::error(ErrorCode::NotFound, format!("file {} is not held here", file.short())),
        )
        .await;
    };
    if !held.has(index) {
        return reply(
            &mut send,
            Response::error(
                ErrorCode::NotHeld,
                format!("chunk {index} of {} is not held here", file.short()),
            ),
        )
        .await;
    }
    let Ok(_permit) = permits.try_acquire() else {
        return reply(
            &mut send,
            Response::error(ErrorCode::Busy, "too many uploads in progress; try another peer"),
        )
        .await;
    };
    let data = match tokio::task::spawn_blocking(move || held.read_chunk(index)).await {
        Ok(Ok(data)) => data,
        Ok(Err(e)) => {
            if matches!(e, ReadError::Changed { .. }) {
                warn!(file = %file.short(), chunk = index, "not serving: {e}");
            }
            let code = match e {
                ReadError::Io { .. } => ErrorCode::Internal,
                _ => ErrorCode::NotHeld,
            };
            return reply(&mut send, Response::error(code, e.to_string())).await;
        }
        Err(join) => return reply(&mut send, Response::error(ErrorCode::Internal, join.to_string())).await,
    };
    transport::send_frame(&mut send, &Response::Chunk { len: data.len() as u32 }).await?;
    match limit {
        None => send.write_all(&data).await.map_err(std::io::Error::from)?,
        Some(limit) => {
            for slice in data.chunks(RATE_SLICE) {
                limit.acquire(slice.len()).await;
                send.write_all(slice).await.map_err(std::io::Error::from)?;
            }
        }
    }
    let _ = send.finish();
    // Wait until the peer has the data (or gives up) so that a graceful exit lets it finish.
    let _ = send.stopped().await;
    Ok(())
}

async fn reply(send: &mut SendStream, response: Response) -> Result<(), ProtocolError> {
    transport::respond(send, &response).await
}
