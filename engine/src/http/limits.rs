//! What the HTTP port may cost: at most [`MAX_CONNECTIONS`] connections at once (more wait
//! in the kernel's queue), each closed after [`IDLE_TIMEOUT`] with no byte moving either way
//! (a client that sends nothing, or stops reading its answer), and at most [`READER_MEMORY`]
//! of chunk buffers for all `/files/ID` readers together ([`ReaderBudget`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection on which no byte moved for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of chunk buffers held by all readers of `/files/ID` together: a reader holds two
/// chunks (the one being read and the one being sent).
pub const READER_MEMORY: u64 = 64 << 20;

/// A listener that holds a slot per connection and closes idle ones.
pub(super) struct Bounded {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl Bounded {
    pub(super) fn new(listener: TcpListener) -> Bounded {
        Bounded {
            listener,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Idle<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        let _ = stream.set_nodelay(true);
        (Idle::new(stream, slot), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A stream that fails once no byte has moved either way for [`IDLE_TIMEOUT`], holding its
/// connection slot until dropped.
///
/// Written here because the crate for I/O timeouts (tokio-io-timeout) times reads and writes
/// apart: its read timeout would cut a long download, during which the server keeps a read
/// pending only to notice a hang-up.
pub(super) struct Idle<S> {
    inner: S,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl<S> Idle<S> {
    fn new(inner: S, slot: OwnedSemaphorePermit) -> Idle<S> {
        Idle {
            inner,
            deadline: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            _slot: slot,
        }
    }

    /// Pushes the deadline back after progress; on no progress, fails once it has passed.
    fn after<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>, moved: bool) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                if moved {
                    self.deadline.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no byte moved on this connection for a minute",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let moved = buf.filled().len() > before;
        self.after(cx, polled, moved)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        let moved = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.after(cx, polled, moved)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let moved = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.after(cx, polled, moved)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.after(cx, polled, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The chunk buffers that `/files/ID` readers may hold, in KiB.
#[derive(Debug, Clone)]
pub(super) struct ReaderBudget(Arc<Semaphore>);

impl Default for ReaderBudget {
    fn default() -> ReaderBudget {
        ReaderBudget(Arc::new(Semaphore::new((READER_MEMORY >> 10) as usize)))
    }
}

impl ReaderBudget {
    /// Room for one reader of a file of `chunk_size` chunks, or `None` while the budget is
    /// spent.
    pub(super) fn reserve(&self, chunk_size: u32) -> Option<OwnedSemaphorePermit> {
        let kib = (2 * u64::from(chunk_size)).div_ceil(1024) as u32;
        self.0.clone().try_acquire_many_owned(kib).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_connection_with_nothing_moving_is_closed_and_frees_its_slot() {
        let slots = Arc::new(Semaphore::new(1));
        let (client, server) = tokio::io::duplex(64);
        let mut server = Idle::new(server, slots.clone().try_acquire_owned().unwrap());
        let mut client = client;
        // Bytes moving keep it open past the timeout.
        for _ in 0..3 {
            tokio::time::sleep(IDLE_TIMEOUT / 2).await;
            client.write_all(b"x").await.unwrap();
            let mut byte = [0];
            server.read_exact(&mut byte).await.unwrap();
        }
        // Then silence: the pending read fails once the timeout passes.
        let mut byte = [0];
        let error = server.read(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(slots.available_permits(), 0);
        drop(server);
        assert_eq!(slots.available_permits(), 1, "the slot is back");
    }

    #[test]
    fn readers_share_a_bounded_budget() {
        let budget = ReaderBudget::default();
        let readers: Vec<_> = std::iter::from_fn(|| budget.reserve(1 << 20)).take(1000).collect();
        assert_eq!(readers.len() as u64, READER_MEMORY / (2 << 20));
        assert!(budget.reserve(64 << 10).is_none());
        drop(readers);
        assert!(budget.reserve(16 << 20).is_some());
    }
}
