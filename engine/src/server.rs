//! The chunk server: answers `GetChunk` requests from other peers with chunks from the
//! [`Store`]. Any number of requests run at once on a connection (one per stream); at most
//! [`MAX_UPLOADS`] uploads run at once per node, beyond which the answer is `Busy` so that the
//! fetcher asks someone else rather than queueing here.

use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use crate::protocol::{self, ErrorCode, ProtocolError, Request, Response};
use crate::ratelimit::RateLimiter;
use crate::store::{ReadError, Store};
use crate::transport::{self, Transport};

/// Uploads served at once by one node. Each holds one chunk in memory (1 MiB by default), so
/// this also bounds the server's buffer memory.
pub const MAX_UPLOADS: usize = 32;
/// A request frame must arrive this soon after its stream opens.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
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
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => break,
            incoming = transport.endpoint().accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let store = store.clone();
        let permits = permits.clone();
        let uploads = uploads.clone();
        let shutdown = shutdown.clone();
        let limit = limit.clone();
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(e) => {
                    debug!("incoming connection failed: {e}");
                    return;
                }
            };
            let peer = transport::remote_id(&connection)
                .map(|id| id.short())
                .unwrap_or_default();
            let span = tracing::debug_span!("conn", %peer, addr = %connection.remote_address());
            serve_connection(connection, store, permits, uploads, shutdown, limit)
                .instrument(span)
                .await;
        });
    }
}

async fn serve_connection(
    connection: Connection,
    store: Arc<Store>,
    permits: Arc<Semaphore>,
    uploads: TaskTracker,
    shutdown: CancellationToken,
    limit: Option<Arc<RateLimiter>>,
) {
    loop {
        let (send, recv) = tokio::select! {
            _ = shutdown.cancelled() => return,
            stream = connection.accept_bi() => match stream {
                Ok(stream) => stream,
                Err(e) => {
                    debug!("connection ended: {e}");
                    return;
                }
            },
        };
        let store = store.clone();
        let permits = permits.clone();
        let limit = limit.clone();
        uploads.spawn(async move {
            if let Err(e) = serve_stream(send, recv, &store, &permits, limit.as_deref()).await {
                debug!("request failed: {e}");
            }
        });
    }
}

async fn serve_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    store: &Store,
    permits: &Semaphore,
    limit: Option<&RateLimiter>,
) -> Result<(), ProtocolError> {
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, protocol::read_frame::<Request, _>(&mut recv)).await {
        Err(_) => {
            return reply(
                &mut send,
                Response::error(ErrorCode::Malformed, "no request within 10 s"),
            )
            .await
        }
        Ok(Err(e)) => {
            let code = match e {
                ProtocolError::Version { .. } => ErrorCode::VersionMismatch,
                _ => ErrorCode::Malformed,
            };
            reply(&mut send, Response::error(code, e.to_string())).await?;
            return Err(e);
        }
        Ok(Ok(request)) => request,
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
    transport::send_frame(send, &response).await?;
    let _ = send.finish();
    Ok(())
}
