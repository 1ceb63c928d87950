//! The relay: datagrams from any client to `listen` go on to `target` from a socket of the
//! client's own (so the target sees one address per client), and the target's answers go back
//! to the client, each direction through its [`Link`]. Batches are received with GRO and
//! recvmmsg and sent with GSO, as quinn does, so the relay moves more than the QUIC it carries.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::link::Link;

/// Largest datagram batch the kernel hands over at once (GRO) or takes (GSO).
const BATCH_BYTES: usize = 64 * 1024;
/// Batches waiting for their moment, per direction: when full, the relay stops reading and the
/// kernel's socket buffer takes the excess, as a real router's would.
const QUEUED_BATCHES: usize = 16 * 1024;
/// Socket buffers asked for: room for bursts at a gigabit and more.
const SOCKET_BUFFER: usize = 16 * 1024 * 1024;

/// A UDP socket with quinn's batching state.
pub struct Socket {
    io: UdpSocket,
    state: UdpSocketState,
}

impl Socket {
    /// Binds `addr` with large buffers.
    pub fn bind(addr: SocketAddr) -> io::Result<Arc<Socket>> {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        let state = UdpSocketState::new((&std).into())?;
        // Best effort: the kernel caps these at its own limits.
        let _ = state.set_send_buffer_size((&std).into(), SOCKET_BUFFER);
        let _ = state.set_recv_buffer_size((&std).into(), SOCKET_BUFFER);
        Ok(Arc::new(Socket {
            io: UdpSocket::from_std(std)?,
            state,
        }))
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Receives a batch into `into`: the number of datagram groups filled.
    async fn recv(&self, into: &mut Received) -> io::Result<usize> {
        let mut slices: Vec<IoSliceMut> = into.buffers.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        loop {
            self.io.readable().await?;
            match self.io.try_io(Interest::READABLE, || {
                self.state.recv((&self.io).into(), &mut slices, &mut into.metas)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// Sends `contents` to `to`, cut into datagrams of `segment` bytes (the last may be
    /// shorter).
    pub async fn send(&self, to: SocketAddr, contents: &[u8], segment: usize) -> io::Result<()> {
        let transmit = transmit(to, contents, segment);
        loop {
            self.io.writable().await?;
            match self
                .io
                .try_io(Interest::WRITABLE, || self.state.send((&self.io).into(), &transmit))
            {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// [`Socket::send`] from a thread outside the runtime: waits out a full socket buffer.
    fn send_blocking(&self, to: SocketAddr, contents: &[u8], segment: usize) -> io::Result<()> {
        let transmit = transmit(to, contents, segment);
        loop {
            match self.state.send((&self.io).into(), &transmit) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_micros(50))
                }
                other => return other,
            }
        }
    }

    /// Most datagrams one send may carry.
    fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }
}

/// Room for one receive: up to [`BATCH_SIZE`] groups of datagrams (GRO), each up to
/// [`BATCH_BYTES`], and what the kernel said of each.
struct Received {
    buffers: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
}

impl Received {
    fn new() -> Received {
        Received {
            buffers: vec![vec![0u8; BATCH_BYTES]; BATCH_SIZE],
            metas: vec![RecvMeta::default(); BATCH_SIZE],
        }
    }

    /// The first `n` groups: who sent each, its bytes, and the size of its datagrams.
    fn groups(&self, n: usize) -> impl Iterator<Item = (&RecvMeta, &[u8])> {
        self.metas[..n]
            .iter()
            .zip(&self.buffers)
            .map(|(meta, buffer)| (meta, &buffer[..meta.len]))
    }
}

/// `contents` for `to`, cut into datagrams of `segment` bytes by the kernel (GSO).
fn transmit(to: SocketAddr, contents: &[u8], segment: usize) -> Transmit<'_> {
    Transmit {
        destination: to,
        ecn: None,
        contents,
        segment_size: (contents.len() > segment).then_some(segment),
        src_ip: None,
    }
}

/// Datagrams of one size (the last may be shorter) due to leave together.
struct Batch {
    due: Instant,
    out: Arc<Socket>,
    to: SocketAddr,
    data: Vec<u8>,
    segment: usize,
}

/// One direction's sender: a thread of its own that sends each batch when it is due, in
/// order. A thread, not a task: tokio's timers tick in milliseconds, and at a gigabit a
/// millisecond of batches sent at once (125 KB and more when the runtime is late) overflows a
/// receiver's default socket buffer, a loss no real path would cause. A thread's sleep wakes
/// within tens of microseconds.
fn spawn_sender() -> mpsc::Sender<Batch> {
    let (tx, mut rx) = mpsc::channel::<Batch>(QUEUED_BATCHES);
    std::thread::spawn(move || {
        while let Some(batch) = rx.blocking_recv() {
            let now = Instant::now();
            if batch.due > now {
                std::thread::sleep(batch.due - now);
            }
            // A send that fails (the far end is gone) is a lost datagram, as on a real path.
            let _ = batch.out.send_blocking(batch.to, &batch.data, batch.segment);
        }
    });
    tx
}

/// Reads batches from `from` forever and queues what `link` lets through; `route` names, for
/// a datagram's sender, the socket it leaves by and where it goes.
async fn pump(
    from: Arc<Socket>,
    link: Arc<Link>,
    queue: mpsc::Sender<Batch>,
    mut route: impl FnMut(SocketAddr) -> io::Result<(Arc<Socket>, SocketAddr)>,
) -> io::Result<()> {
    let mut received = Received::new();
    let max_segments = from.max_segments();
    loop {
        let n = from.recv(&mut received).await?;
        let now = Instant::now();
        for (meta, bytes) in received.groups(n) {
            let (socket, destination) = route(meta.addr)?;
            let stride = meta.stride.max(1);
            let datagrams = bytes.chunks(stride);
            // Runs of consecutive datagrams that all pass leave as one batch, at the time the
            // last of them is due.
            let mut run: Option<Batch> = None;
            for datagram in datagrams {
                match link.admit(datagram.len(), now) {
                    Some(due) => {
                        let batch = run.get_or_insert_with(|| Batch {
                            due,
                            out: socket.clone(),
                            to: destination,
                            data: Vec::with_capacity(meta.len),
                            segment: stride,
                        });
                        batch.due = due;
                        batch.data.extend_from_slice(datagram);
                        if batch.data.len() >= stride * max_segments || datagram.len() < stride {
                            flush(&queue, &mut run).await;
                        }
                    }
                    None => flush(&queue, &mut run).await,
                }
            }
            flush(&queue, &mut run).await;
        }
    }
}

/// Queues the run of datagrams gathered so far, if any.
async fn flush(queue: &mpsc::Sender<Batch>, run: &mut Option<Batch>) {
    if let Some(batch) = run.take() {
        // The sender only stops when the relay does.
        let _ = queue.send(batch).await;
    }
}

/// Relays between clients of `listen` and `target`, `up` shaping what clients send and `down`
/// what comes back. Runs until an I/O error on the listening socket.
pub async fn run(listen: Arc<Socket>, target: SocketAddr, up: Arc<Link>, down: Arc<Link>) -> io::Result<()> {
    let (up_queue, down_queue) = (spawn_sender(), spawn_sender());
    let mut clients: HashMap<SocketAddr, Arc<Socket>> = HashMap::new();
    let unspecified: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let route = {
        let listen = listen.clone();
        move |client: SocketAddr| -> io::Result<(Arc<Socket>, SocketAddr)> {
            if let Some(socket) = clients.get(&client) {
                return Ok((socket.clone(), target));
            }
            // A socket of the client's own towards the target, and a pump for the answers.
            let socket = Socket::bind(unspecified)?;
            clients.insert(client, socket.clone());
            let back = listen.clone();
            let answers = pump(socket.clone(), down.clone(), down_queue.clone(), move |_| {
                Ok((back.clone(), client))
            });
            tokio::spawn(async move {
                if let Err(e) = answers.await {
                    eprintln!("wan-relay: answers to {client} stopped: {e}");
                }
            });
            Ok((socket, target))
        }
    };
    pump(listen, up, up_queue, route).await
}

/// Receives on `socket` forever, adding the bytes that arrive to `total`.
pub async fn count(socket: &Socket, total: &std::sync::atomic::AtomicU64) -> io::Result<()> {
    let mut received = Received::new();
    loop {
        let n = socket.recv(&mut received).await?;
        let bytes: usize = received.groups(n).map(|(_, bytes)| bytes.len()).sum();
        total.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }
}
