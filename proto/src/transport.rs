//! QUIC transport: one endpoint per node that both accepts and dials, mutual TLS that proves
//! node ids, and the request/response exchange on a bidirectional stream.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, Instrument};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::access::{self, Access, PRIVATE_ALPN};
use crate::congestion::Congestion;
use crate::identity::{self, ClientIdVerifier, Identity, ServerIdVerifier};
use crate::ids::PeerId;
use crate::large_datagrams;
use crate::protocol::{self, CloseCode, ErrorCode, ProtocolError, Refusal, ALPN};

/// Why an endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// TLS could not be configured (a broken key).
    #[error("TLS set-up failed: {0}")]
    Tls(String),
}

/// Why a connection to another node failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// The other side proved another id than the one asked for.
    #[error("expected node {expected} but the node there is {actual}")]
    WrongId {
        /// The id asked for.
        expected: PeerId,
        /// The id it proved.
        actual: PeerId,
    },
    /// The other side speaks another protocol version.
    #[error(
        "the node there does not speak swarm protocol v{}; run the same swarm version on both",
        protocol::PROTOCOL_VERSION
    )]
    VersionMismatch,
    /// Nothing answered in time.
    #[error("no answer (is a swarm node running there, and reachable?): {0}")]
    Unreachable(String),
    /// The other side refused or closed the connection.
    #[error("refused: {0}")]
    Refused(String),
    /// The other side is not of this private swarm, or this node is not of its swarm.
    #[error("not admitted: {0}")]
    NotAdmitted(String),
    /// The handshake failed in another way.
    #[error("handshake failed: {0}")]
    Handshake(String),
}

impl ConnectError {
    fn from_quinn(error: quinn::ConnectionError) -> ConnectError {
        use quinn::ConnectionError as E;
        // TLS alert 120, no_application_protocol, as a QUIC crypto error: the ALPN (which
        // carries the version) did not match.
        let no_alpn = quinn::TransportErrorCode::crypto(120);
        match error {
            E::ConnectionClosed(close) if close.error_code == no_alpn => ConnectError::VersionMismatch,
            E::TransportError(e) if e.code == no_alpn => ConnectError::VersionMismatch,
            E::TimedOut => ConnectError::Unreachable("timed out".into()),
            E::ApplicationClosed(close) if close.error_code == CloseCode::Unauthorized.code() => {
                ConnectError::NotAdmitted(String::from_utf8_lossy(&close.reason).into_owned())
            }
            E::ApplicationClosed(close) => ConnectError::Refused(String::from_utf8_lossy(&close.reason).into_owned()),
            E::ConnectionClosed(close) => ConnectError::Refused(close.to_string()),
            other => ConnectError::Handshake(other.to_string()),
        }
    }
}

/// Most streams a remote node may have open towards us at once. Chunk servers further bound
/// concurrent uploads; this only keeps a single connection from holding unbounded state.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// Per-stream flow-control window: two default chunks, so one request never waits for credit.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// Per-connection flow-control window: enough for a full pipeline of requests in flight.
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Between peers, a connection with no traffic at all for this long is dead: a peer killed
/// mid-transfer is noticed this soon (its chunks asked of others, what it was offered offered
/// to others), and pings every [`PEER_KEEP_ALIVE`] keep a live one from looking dead.
const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
const PEER_KEEP_ALIVE: Duration = Duration::from_millis(1500);
/// With a tracker, a connection lives while it is used and ends quietly after this long idle
/// (no pings keep it): a peer that only keeps its session alive (every 90 s by default) dials anew
/// each time. An idle connection costs a tracker about 60 KiB, a handshake a fraction of a
/// millisecond: for 10,000 idle peers, 600 MiB held against a few percent of a core. Longer
/// than a fetcher's 30 s between locates, so that a busy peer keeps its connection.
const TRACKER_IDLE_TIMEOUT: Duration = Duration::from_secs(40);

/// Flow-control windows of a tracker connection: a locate answer with a manifest of the
/// largest file (8 MiB) in one go.
const TRACKER_WINDOW: u32 = 8 * 1024 * 1024;

/// The congestion controller of every connection: chosen by where the peer is
/// ([`crate::by_path`]). Across the internet BBR, measured through wan-relay (512 MiB,
/// 1 Gbit/s, 50 ms): with 0.5% random loss a fetch made 52 MB/s where CUBIC made 0.5 (a loss
/// read as congestion halves its window); without loss the two were level (96 and 95 MB/s).
/// BBR's version 1 does not slow down for loss at all: where many peers send into one shallow
/// queue it lost a quarter of the packets, so it runs under a bound set by heavy loss
/// ([`crate::loss_bound`]), which random loss under 2% never sets. On the local network
/// CUBIC, which shares a link evenly where BBR's shares stayed uneven (ten hosts at
/// 100 Mbit/s: the slowest fetcher at 1.36x-1.54x the floor with BBR, 1.22x-1.37x with CUBIC,
/// same sitting); on loopback BBR also cost about a tenth of the speed (420 against 464 MB/s,
/// 1 GiB, one seeder).
pub const PEER_CONGESTION: Congestion = Congestion::ByPath;

/// What a connection is for, which sets how soon silence means death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Between peers: transfers, watched closely.
    Peer,
    /// With a tracker: mostly idle, kept cheaply.
    Tracker,
}
/// Most connections (open or in handshake) accepted from one IP address at once. Node ids
/// cost nothing to make, so this, not a per-id limit, bounds what one machine can hold open.
pub const MAX_CONNECTIONS_PER_IP: usize = 64;
/// A request frame must arrive this soon after its stream opens.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Name presented in TLS; ids, not names, are what is checked.
const SERVER_NAME: &str = "swarm";

/// A node's QUIC endpoint, identity and access rule.
#[derive(Clone)]
pub struct Transport {
    endpoint: Endpoint,
    identity: Arc<Identity>,
    access: Access,
    /// TLS settings per node dialled, kept so that its sessions are resumed (rustls resumes
    /// only with the same certificate verifier): a resumed handshake skips the certificate
    /// signature and its check, about half of what a handshake costs (a tracker of thousands
    /// of peers that hang up between requests pays for one per request).
    dialers: Arc<Dialers>,
    /// The endpoint's UDP socket (a second handle to it), for the bare datagrams that cross
    /// NATs ([`Transport::send_datagram`]): they must leave from the port QUIC uses.
    socket: Arc<std::net::UdpSocket>,
    /// The settings connections are accepted with, but for each one's path MTU search
    /// ([`Transport::server_config_for`]).
    server: quinn::ServerConfig,
    profile: Profile,
}

/// Client TLS settings by the id a dial expects (`None`: any).
#[derive(Default)]
struct Dialers(std::sync::Mutex<HashMap<Option<PeerId>, Dialer>>);

/// The TLS settings for dialling one node, and the verifier inside them.
type Dialer = (Arc<rustls::ClientConfig>, Arc<ServerIdVerifier>);

/// Nodes whose TLS sessions a node remembers.
const REMEMBERED_SESSIONS: usize = 1024;

/// The settings of a connection of `profile`, whose path MTU search goes as far as the route
/// to `peer` carries (without one, as far as quinn's default).
fn transport_config(profile: Profile, peer: Option<SocketAddr>) -> Arc<quinn::TransportConfig> {
    let (idle, keep_alive) = match profile {
        Profile::Peer => (PEER_IDLE_TIMEOUT, Some(PEER_KEEP_ALIVE)),
        Profile::Tracker => (TRACKER_IDLE_TIMEOUT, None),
    };
    let mut config = quinn::TransportConfig::default();
    config
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS_PER_CONNECTION))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(u64::from(CONNECTION_WINDOW))
        .keep_alive_interval(keep_alive)
        .max_idle_timeout(Some(idle.try_into().expect("minutes fit")))
        // swarm sends no unreliable datagrams: nothing to buffer for them.
        .datagram_receive_buffer_size(None)
        .congestion_controller_factory(Congestion::from_env_or(PEER_CONGESTION).factory(peer));
    if let Some(peer) = peer {
        config.mtu_discovery_config(Some(large_datagrams::mtu_discovery(peer)));
    }
    if profile == Profile::Tracker {
        // Requests and answers of at most a few megabytes, one at a time or nearly.
        config
            .max_concurrent_bidi_streams(VarInt::from_u32(16))
            .stream_receive_window(VarInt::from_u32(TRACKER_WINDOW))
            .receive_window(VarInt::from_u32(TRACKER_WINDOW))
            .send_window(u64::from(TRACKER_WINDOW));
    }
    Arc::new(config)
}

impl Transport {
    /// Binds an endpoint of an open swarm on `addr` (port 0 picks a free one) for `identity`.
    pub fn bind(identity: Arc<Identity>, addr: SocketAddr) -> Result<Transport, BindError> {
        Self::bind_with(identity, addr, Access::Open)
    }

    /// Binds an endpoint on `addr` for `identity`, talking only to nodes `access` allows
    /// (see [`crate::access`]). A tracker binds with [`Profile::Tracker`] (its connections may
    /// idle for minutes), a peer with [`Profile::Peer`].
    pub fn bind_with(identity: Arc<Identity>, addr: SocketAddr, access: Access) -> Result<Transport, BindError> {
        Self::bind_as(identity, addr, access, Profile::Peer)
    }

    /// [`Transport::bind_with`] for a given kind of node.
    pub fn bind_as(
        identity: Arc<Identity>,
        addr: SocketAddr,
        access: Access,
        profile: Profile,
    ) -> Result<Transport, BindError> {
        let provider = identity::provider();
        let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(Arc::new(ClientIdVerifier { provider }))
            .with_single_cert(identity.cert_chain(), identity.private_key())
            .map_err(tls_error)?;
        // Both, so that a node of the other kind is told what is wrong (access::admit).
        tls.alpn_protocols = vec![ALPN.to_vec(), PRIVATE_ALPN.to_vec()];
        tls.max_early_data_size = 0;
        // Stateless tickets: resumption without keeping a session per client.
        tls.ticketer = rustls::crypto::ring::Ticketer::new().map_err(tls_error)?;
        tls.send_tls13_tickets = 1;
        let crypto = QuicServerConfig::try_from(tls).map_err(tls_error)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport_config(profile, None));
        let cannot_listen = |source| BindError::Listen { addr, source };
        let socket = bind_udp(addr).map_err(cannot_listen)?;
        let raw = Arc::new(socket.try_clone().map_err(cannot_listen)?);
        let endpoint = large_datagrams::endpoint(Some(server.clone()), socket).map_err(cannot_listen)?;
        Ok(Transport {
            endpoint,
            identity,
            access,
            dialers: Arc::default(),
            socket: raw,
            server,
            profile,
        })
    }

    /// Who this endpoint talks to.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The same endpoint dialling out as `identity`: many simulated nodes on one socket (the
    /// tracker load generator). Connections it accepts still prove the endpoint's own id.
    pub fn with_identity(&self, identity: Arc<Identity>) -> Transport {
        Transport {
            endpoint: self.endpoint.clone(),
            identity,
            access: self.access.clone(),
            dialers: Arc::default(),
            socket: self.socket.clone(),
            server: self.server.clone(),
            profile: self.profile,
        }
    }

    /// Sends one bare UDP datagram to `to` from the endpoint's own socket (see
    /// [`crate::traversal`]). Best effort, like all UDP: a full send buffer is not waited for.
    pub fn send_datagram(&self, to: SocketAddr, datagram: &[u8]) -> std::io::Result<()> {
        self.socket
            .send_to(datagram, addressed_for(self.local_addr(), to))
            .map(|_| ())
    }

    /// This node's id.
    pub fn id(&self) -> PeerId {
        self.identity.id()
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr().expect("a bound endpoint has an address")
    }

    /// The settings to accept a connection from `peer` with: the endpoint's, with a path MTU
    /// search as far as the route to `peer` carries.
    pub fn server_config_for(&self, peer: SocketAddr) -> Arc<quinn::ServerConfig> {
        let mut server = self.server.clone();
        server.transport_config(transport_config(self.profile, Some(peer)));
        Arc::new(server)
    }

    /// The underlying endpoint, for accepting connections.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Dials the peer at `addr`. With `expected` set, the handshake fails unless the other side
    /// proves that id ([`ConnectError::WrongId`] names the id it proved); either way the id it
    /// proved is returned.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<(Connection, PeerId), ConnectError> {
        self.connect_as(addr, expected, Profile::Peer).await
    }

    /// [`Transport::connect`] for a connection of the given kind (to a tracker, say).
    pub async fn connect_as(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
        profile: Profile,
    ) -> Result<(Connection, PeerId), ConnectError> {
        let (tls, verifier) = self.dialer(expected)?;
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| ConnectError::Handshake(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(transport_config(profile, Some(addr)));
        // Sessions are remembered by server name: one per node (ids, not names, are checked).
        let name = expected.map_or_else(|| SERVER_NAME.to_owned(), server_name_of);
        let connecting = self
            .endpoint
            .connect_with(client, addr, &name)
            .map_err(|e| ConnectError::Handshake(e.to_string()))?;
        let connection = connecting.await.map_err(|e| {
            let seen = *verifier.seen.lock().expect("verifier lock poisoned");
            match (expected, seen) {
                (Some(expected), Some(actual)) if expected != actual => ConnectError::WrongId { expected, actual },
                _ => ConnectError::from_quinn(e),
            }
        })?;
        let id = remote_id(&connection)
            .ok_or_else(|| ConnectError::Handshake("the other side showed no usable certificate".into()))?;
        if let Access::Private(key) = &self.access {
            access::prove_as_client(&connection, key)
                .await
                .map_err(ConnectError::NotAdmitted)?;
        }
        Ok((connection, id))
    }

    /// The client TLS settings for dialling a node that must prove `expected` (made once per
    /// node, so that its sessions are resumed).
    fn dialer(
        &self,
        expected: Option<PeerId>,
    ) -> Result<(Arc<rustls::ClientConfig>, Arc<ServerIdVerifier>), ConnectError> {
        let mut dialers = self.dialers.0.lock().expect("dialers lock poisoned");
        if let Some(found) = dialers.get(&expected) {
            return Ok(found.clone());
        }
        let provider = identity::provider();
        let verifier = Arc::new(ServerIdVerifier {
            expected,
            provider: provider.clone(),
            seen: Default::default(),
        });
        let setup = |e: rustls::Error| ConnectError::Handshake(e.to_string());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(setup)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_auth_cert(self.identity.cert_chain(), self.identity.private_key())
            .map_err(setup)?;
        tls.alpn_protocols = vec![access::alpn_of(&self.access).to_vec()];
        tls.resumption = rustls::client::Resumption::in_memory_sessions(4);
        if dialers.len() >= REMEMBERED_SESSIONS {
            dialers.clear();
        }
        let made = (Arc::new(tls), verifier);
        dialers.insert(expected, made.clone());
        Ok(made)
    }

    /// Stops accepting, closes every connection and waits briefly for the close to be sent.
    pub async fn close(&self) {
        self.endpoint.close(CloseCode::ShuttingDown.code(), b"shutting down");
        let _ = tokio::time::timeout(CLOSE_GRACE, self.endpoint.wait_idle()).await;
    }
}

/// How long a closing endpoint waits for its connections to drain. The close itself goes out
/// at once; draining then lasts three probe timeouts, over a second for a connection whose
/// other end never answered (a tracker that is gone): a command would wait that long to exit.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

/// Kernel buffer asked for on each side of a node's UDP socket. At full speed a whole
/// congestion window can arrive while the endpoint task is busy; with the usual 208 KiB
/// default the kernel drops datagrams, and QUIC reads every drop as congestion and slows down.
const SOCKET_BUFFER: usize = 8 << 20;

/// A UDP socket bound to `addr` with the buffers a node's endpoint gets (see
/// `SOCKET_BUFFER`); public so that benchmarks of bare QUIC set up theirs alike. `[::]`
/// takes both families (whatever the system's `bindv6only`); on a machine without IPv6 it
/// falls back to `0.0.0.0` on the same port.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = match addr {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => match bind_dual_stack(addr) {
            Err(e) if ipv6_missing(&e) => {
                tracing::debug!("no IPv6 here ({e}): listening on IPv4 only");
                std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, v6.port()))?
            }
            bound => bound?,
        },
        _ => std::net::UdpSocket::bind(addr)?,
    };
    widen_socket_buffers(&socket);
    Ok(socket)
}

/// An IPv6 socket on `addr` that takes IPv4 too (as `::ffff:a.b.c.d`).
fn bind_dual_stack(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_only_v6(false)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Whether binding failed because this machine has no IPv6 (switched off in the kernel).
fn ipv6_missing(error: &std::io::Error) -> bool {
    let no_family = rustix::io::Errno::AFNOSUPPORT.raw_os_error();
    let no_address = rustix::io::Errno::ADDRNOTAVAIL.raw_os_error();
    matches!(error.raw_os_error(), Some(code) if code == no_family || code == no_address)
}

/// `addr` as one family sees it: an IPv4 peer of a dual-stack socket shows as
/// `[::ffff:a.b.c.d]:port`, which is `a.b.c.d:port` everywhere else (records, limits, answers).
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        // Only a mapped address is rebuilt: a link-local one keeps its interface (scope id).
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// `to` as a socket bound to `local` can send to it: an IPv4 address mapped into IPv6 for a
/// dual-stack socket, a mapped one taken back for an IPv4 socket.
pub fn addressed_for(local: SocketAddr, to: SocketAddr) -> SocketAddr {
    match (local, to) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        (SocketAddr::V4(_), SocketAddr::V6(_)) => canonical(to),
        _ => to,
    }
}

/// Raises the socket's receive and send buffers to [`SOCKET_BUFFER`]: within the system's
/// limit (net.core.rmem_max / wmem_max), or beyond it when running with CAP_NET_ADMIN. Says
/// once if the system keeps them small.
fn widen_socket_buffers(socket: &std::net::UdpSocket) {
    use rustix::net::sockopt;
    let _ = sockopt::set_socket_recv_buffer_size(socket, SOCKET_BUFFER);
    if sockopt::socket_recv_buffer_size(socket).unwrap_or(0) < SOCKET_BUFFER {
        let _ = sockopt::set_socket_recv_buffer_size_force(socket, SOCKET_BUFFER);
    }
    let _ = sockopt::set_socket_send_buffer_size(socket, SOCKET_BUFFER);
    if sockopt::socket_send_buffer_size(socket).unwrap_or(0) < SOCKET_BUFFER {
        let _ = sockopt::set_socket_send_buffer_size_force(socket, SOCKET_BUFFER);
    }
    let got = sockopt::socket_recv_buffer_size(socket).unwrap_or(0);
    if got < SOCKET_BUFFER {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "the UDP receive buffer is {} KiB, under the {} KiB asked for: transfers will be slower; \
                 raise it with `sysctl -w net.core.rmem_max={SOCKET_BUFFER}`",
                got / 1024,
                SOCKET_BUFFER / 1024
            )
        });
    }
}

/// A DNS name standing for node `id` (two labels of 32 hex digits under `swarm`, since a
/// name whose last label is all digits is refused as one), under which its TLS sessions are
/// remembered.
fn server_name_of(id: PeerId) -> String {
    let hex = id.to_string();
    format!("{}.{}.{SERVER_NAME}", &hex[..32], &hex[32..])
}

fn tls_error(e: impl std::fmt::Display) -> BindError {
    BindError::Tls(e.to_string())
}

/// The id the remote side of `connection` proved during the handshake.
pub fn remote_id(connection: &Connection) -> Option<PeerId> {
    let certs = connection
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    identity::peer_id_of(certs.first()?).ok()
}

/// Sends `request` on a new stream of `connection` and reads the answer frame (of at most
/// `max` bytes). The stream is returned so that the caller can read data that follows an answer
/// (a chunk).
pub async fn exchange<Q, A>(connection: &Connection, request: &Q, max: u32) -> Result<(A, RecvStream), ProtocolError>
where
    Q: Serialize,
    A: DeserializeOwned,
{
    let (mut send, mut recv) = connection.open_bi().await.map_err(closed)?;
    // The other side may answer without reading the whole request (a tracker refusing a
    // flood does), and stop our sending side: its answer is still read.
    let sent = match send_frame(&mut send, request).await {
        Ok(()) => send
            .finish()
            .map_err(|e| ProtocolError::Io(std::io::Error::other(e.to_string()))),
        Err(e) => Err(e),
    };
    match protocol::read_frame(&mut recv, max).await {
        Ok(response) => Ok((response, recv)),
        Err(_) if connection.close_reason().is_some() => Err(closed(connection.close_reason().expect("checked"))),
        Err(read_error) => Err(sent.err().unwrap_or(read_error)),
    }
}

/// The error for a connection that is closed: the other side's reason when it gave one.
fn closed(reason: quinn::ConnectionError) -> ProtocolError {
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) if close.error_code == CloseCode::Unauthorized.code() => {
            ProtocolError::NotAdmitted(String::from_utf8_lossy(&close.reason).into_owned())
        }
        quinn::ConnectionError::ApplicationClosed(close) if !close.reason.is_empty() => {
            ProtocolError::Closed(String::from_utf8_lossy(&close.reason).into_owned())
        }
        other => ProtocolError::Io(other.into()),
    }
}

/// Writes one frame to `stream`.
pub async fn send_frame<T: Serialize>(stream: &mut SendStream, message: &T) -> Result<(), ProtocolError> {
    stream
        .write_all(&protocol::encode_frame(message))
        .await
        .map_err(std::io::Error::from)?;
    Ok(())
}

/// A request stream opened by a remote node.
pub struct IncomingStream {
    /// The id the remote node proved in the TLS handshake.
    pub peer: PeerId,
    /// Where it connected from (an IPv4 address as IPv4, see [`canonical`]).
    pub remote: SocketAddr,
    /// Our sending half.
    pub send: SendStream,
    /// Our receiving half.
    pub recv: RecvStream,
    /// The connection it belongs to.
    pub connection: Connection,
}

impl IncomingStream {
    /// The address of ours the remote node reached (an IPv4 address as IPv4), if the system
    /// tells.
    pub fn local_ip(&self) -> Option<std::net::IpAddr> {
        self.connection.local_ip().map(|ip| ip.to_canonical())
    }
}

/// Accepts connections on `transport` until `shutdown` fires and runs `handle` on every
/// stream they open, as a task tracked by `streams` (so callers can wait for work in flight).
/// Each connection gets a span with the peer's id and address.
pub async fn accept_streams<H, F>(transport: Transport, shutdown: CancellationToken, streams: TaskTracker, handle: H)
where
    H: Fn(IncomingStream) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let live = LiveConnections::default();
    let per_ip = ConnectionsPerIp::default();
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => return,
            incoming = transport.endpoint().accept() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
        };
        let Some(slot) = per_ip.admit(incoming.remote_address().ip().to_canonical()) else {
            debug!(addr = %incoming.remote_address(), "refused: {MAX_CONNECTIONS_PER_IP} connections from this address already");
            incoming.refuse();
            continue;
        };
        let (shutdown, streams, handle, live) = (shutdown.clone(), streams.clone(), handle.clone(), live.clone());
        let transport = transport.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let remote = incoming.remote_address();
            let accepted = match incoming.accept_with(transport.server_config_for(remote)) {
                Ok(connecting) => connecting.await,
                Err(e) => Err(e),
            };
            let connection = match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    debug!("incoming connection failed: {e}");
                    return;
                }
            };
            let Some(peer) = remote_id(&connection) else {
                connection.close(CloseCode::NoCertificate.code(), b"no usable certificate");
                return;
            };
            // The node's own key (`swarm status`) proves more than a swarm secret would.
            if peer != transport.id() && !access::admit(&connection, transport.access()).await {
                debug!(peer = %peer.short(), "refused: not of this swarm");
                return;
            }
            let remote = canonical(connection.remote_address());
            live.insert(peer, &connection);
            let span = tracing::info_span!("peer", peer = %peer.short(), addr = %remote);
            let (forget, closing) = (live.clone(), connection.clone());
            async move {
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
                    let stream = IncomingStream {
                        peer,
                        remote,
                        send,
                        recv,
                        connection: connection.clone(),
                    };
                    streams.spawn(handle(stream).in_current_span());
                }
            }
            .instrument(span)
            .await;
            forget.remove(peer, &closing);
        });
    }
}

/// How many connections each remote IP address has open (or in handshake).
#[derive(Clone, Default)]
struct ConnectionsPerIp(Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>);

/// One admitted connection; dropping it frees the slot.
struct IpSlot {
    table: ConnectionsPerIp,
    ip: IpAddr,
}

/// An address valid on one link only (169.254.0.0/16, fe80::/10): it means nothing to
/// another machine without naming an interface of its own.
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// The network an address stands for when counting what one machine uses: an IPv4 address
/// itself, an IPv6 address by its /64 (one machine usually has a whole /64 to pick from).
pub fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

impl ConnectionsPerIp {
    fn admit(&self, ip: IpAddr) -> Option<IpSlot> {
        let ip = network_of(ip);
        let mut table = self.0.lock().expect("connection table lock poisoned");
        let count = table.entry(ip).or_default();
        if *count >= MAX_CONNECTIONS_PER_IP {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut table = self.table.0.lock().expect("connection table lock poisoned");
        if let Some(count) = table.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

/// The connections accepted from each peer. A node process uses one endpoint, so a new
/// connection from the same peer id but another address means that the peer restarted (for
/// instance after a crash): its old connections are dead even if no timeout has said so yet,
/// and are closed at once so that they stop holding uploads.
#[derive(Clone, Default)]
struct LiveConnections(Arc<std::sync::Mutex<HashMap<PeerId, Vec<Connection>>>>);

impl LiveConnections {
    fn insert(&self, peer: PeerId, connection: &Connection) {
        let mut live = self.0.lock().expect("connection table lock poisoned");
        let mine = live.entry(peer).or_default();
        mine.retain(|old| {
            let stale = old.remote_address() != connection.remote_address();
            if stale {
                debug!(peer = %peer.short(), old = %old.remote_address(), "peer reconnected from a new address; closing its old connection");
                old.close(CloseCode::Superseded.code(), b"superseded by a newer connection from the same peer");
            }
            !stale
        });
        mine.push(connection.clone());
    }

    fn remove(&self, peer: PeerId, connection: &Connection) {
        let mut live = self.0.lock().expect("connection table lock poisoned");
        if let Some(mine) = live.get_mut(&peer) {
            mine.retain(|c| c.stable_id() != connection.stable_id());
            if mine.is_empty() {
                live.remove(&peer);
            }
        }
    }
}

/// Reads the request frame (of at most `max_len` bytes) of an incoming stream; on failure,
/// returns the refusal to send back.
pub async fn read_request<T: DeserializeOwned>(recv: &mut RecvStream, max_len: u32) -> Result<T, Refusal> {
    match tokio::time::timeout(REQUEST_TIMEOUT, protocol::read_frame::<T, _>(recv, max_len)).await {
        Err(_) => Err(Refusal::new(ErrorCode::Malformed, "no request within 10 s")),
        Ok(Err(e)) => Err(Refusal::new(ErrorCode::Malformed, e.to_string())),
        Ok(Ok(request)) => Ok(request),
    }
}

/// Answers a request that could not be read with `refusal` (as the service's response type
/// `R`), lets it arrive (for up to two seconds), then closes the whole connection: a peer that
/// breaks the protocol once is not trusted with the rest of it.
pub async fn refuse_and_close<R: Serialize + From<Refusal>>(stream: &mut IncomingStream, refusal: Refusal) {
    debug!("closing the connection after a bad request: {refusal:?}");
    let reason = refusal.message.clone();
    if respond(&mut stream.send, &R::from(refusal)).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.send.stopped()).await;
    }
    let reason = reason.as_bytes();
    stream
        .connection
        .close(CloseCode::ProtocolViolation.code(), &reason[..reason.len().min(200)]);
}

/// Sends `response` as the answer on `send` and finishes the stream.
pub async fn respond<T: Serialize>(send: &mut SendStream, response: &T) -> Result<(), ProtocolError> {
    send_frame(send, response).await?;
    let _ = send.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node dialled again resumes its TLS session: its certificate is not checked again.
    #[tokio::test]
    async fn a_second_connection_resumes_the_tls_session() {
        use std::sync::atomic::Ordering;
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback).unwrap();
        let client = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback).unwrap();
        let accepting = server.endpoint().clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                tokio::spawn(async move {
                    if let Ok(connection) = incoming.await {
                        if let Ok((mut send, mut recv)) = connection.accept_bi().await {
                            let _ = recv.read_to_end(10).await;
                            let _ = send.write_all(b"y").await;
                            let _ = send.finish();
                            let _ = connection.closed().await;
                        }
                    }
                });
            }
        });
        let before = identity::FULL_HANDSHAKES.load(Ordering::Relaxed);
        for _ in 0..3 {
            let (connection, _) = client.connect(server.local_addr(), Some(server.id())).await.unwrap();
            // One request and its answer, then hang up, as a peer that only keeps its session
            // alive does.
            let (mut send, mut recv) = connection.open_bi().await.unwrap();
            send.write_all(b"x").await.unwrap();
            send.finish().unwrap();
            let _ = recv.read_to_end(10).await;
            connection.close(CloseCode::Done.code(), b"bye");
        }
        let full = identity::FULL_HANDSHAKES.load(Ordering::Relaxed) - before;
        assert_eq!(full, 1, "{full} full handshakes for 3 connections");
    }

    #[test]
    fn addresses_are_told_in_the_family_their_socket_speaks() {
        let v4: SocketAddr = "10.0.0.5:7070".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:7070".parse().unwrap();
        let link_local: SocketAddr = "[fe80::1%3]:7070".parse().unwrap();
        assert_eq!(canonical(mapped), v4);
        assert_eq!(canonical(v4), v4);
        assert_eq!(canonical(link_local), link_local, "the interface is kept");
        let any_v6: SocketAddr = "[::]:0".parse().unwrap();
        let any_v4: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert_eq!(addressed_for(any_v6, v4), mapped);
        assert_eq!(addressed_for(any_v4, mapped), v4);
        assert_eq!(addressed_for(any_v6, link_local), link_local);
    }

    #[test]
    fn every_id_gives_a_valid_server_name() {
        for id in [PeerId([0; 32]), PeerId([1; 32]), PeerId([0xab; 32])] {
            rustls::pki_types::ServerName::try_from(server_name_of(id)).expect("a valid DNS name");
        }
    }

    #[test]
    fn one_machine_is_one_ipv4_address_or_one_ipv6_64() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(network_of(v4), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(network_of(a), network_of(other));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(network_of(mapped), v4);
    }
}
