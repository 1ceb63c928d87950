//! Finding holders on the local network, with no tracker (the messages are in
//! [`swarm_proto::lan`]): every node answers queries for the files it holds; a fetch whose
//! tracker is slow or gone asks the link.
//!
//! Sockets are set up with `socket2`: several nodes of one machine share the port, and a
//! query goes out of each interface in turn, over IPv4 and IPv6 alike.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use socket2::{Domain, Protocol, Socket, Type};
use swarm_proto::access::Access;
use swarm_proto::lan::{tag_of, LanMessage, GROUP, GROUP_V6, MAX_MESSAGE, PORT};
use swarm_proto::protocol::Holder;
use swarm_proto::transport;
use swarm_proto::{FileId, PeerId};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::held::HeldFiles;

/// Most queries a node looks at a second: a node on the link cannot make it work or send more.
const ANSWERS_PER_SECOND: NonZeroU32 = NonZeroU32::new(50).expect("not zero");
/// How long a query waits for more answers once the first came.
const MORE_ANSWERS: Duration = Duration::from_millis(50);
/// A query is sent this many times (datagrams get lost), [`QUERY_AGAIN`] apart.
const QUERIES_SENT: u32 = 3;
/// See [`QUERIES_SENT`].
const QUERY_AGAIN: Duration = Duration::from_millis(200);

/// A node's part in local discovery: who it is, and the swarm it belongs to.
#[derive(Clone)]
pub struct LanDiscovery {
    own: PeerId,
    access: Access,
}

impl LanDiscovery {
    /// Local discovery for node `own` of the swarm `access` admits to.
    pub fn new(own: PeerId, access: Access) -> LanDiscovery {
        LanDiscovery { own, access }
    }

    /// Answers the link's queries for the files in `store` with this node's QUIC `port`,
    /// until `shutdown`. Fails if the discovery port cannot be opened for either family.
    pub fn serve(&self, store: Arc<HeldFiles>, port: u16, shutdown: CancellationToken) -> std::io::Result<()> {
        let sockets = listening_sockets()?;
        let this = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = this.answer(&sockets, &store, port) => {}
            }
        });
        Ok(())
    }

    async fn answer(&self, sockets: &[UdpSocket], store: &HeldFiles, port: u16) {
        let mut buffer = [0u8; MAX_MESSAGE + 1];
        let pace = RateLimiter::direct(Quota::per_second(ANSWERS_PER_SECOND));
        let mut tags = Tags::new(self.access.clone());
        loop {
            let (socket, len, from) = match receive_on_any(sockets, &mut buffer).await {
                Ok(received) => received,
                Err(e) => {
                    debug!("local queries: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(LanMessage::Query { tag, nonce }) = LanMessage::decode(&buffer[..len]) else {
                continue;
            };
            if pace.check().is_err() {
                continue;
            }
            if !tags.holds(store, &tag) {
                continue;
            }
            let here = LanMessage::Here {
                nonce,
                peer: self.own,
                port,
            };
            if let Err(e) = socket.send_to(&here.encode(), from).await {
                debug!("could not answer a local query from {from}: {e}");
            }
        }
    }

    /// The holders of `file` on the local network that answer within `wait` (less once one
    /// has: a moment more for others), this node left out.
    pub async fn holders(&self, file: FileId, wait: Duration) -> Vec<Holder> {
        match self.ask(file, wait).await {
            Ok(holders) => holders,
            Err(e) => {
                debug!("could not ask the local network for {}: {e}", file.short());
                Vec::new()
            }
        }
    }

    async fn ask(&self, file: FileId, wait: Duration) -> std::io::Result<Vec<Holder>> {
        let sockets = asking_sockets()?;
        let nonce = rand::random::<u64>();
        let query = LanMessage::Query {
            tag: tag_of(&file, &self.access),
            nonce,
        }
        .encode();
        let started = tokio::time::Instant::now();
        let mut deadline = started + wait;
        let mut sends = (0..QUERIES_SENT).map(|n| started + QUERY_AGAIN * n);
        let mut next_send = sends.next();
        let mut holders: Vec<Holder> = Vec::new();
        let mut buffer = [0u8; MAX_MESSAGE + 1];
        loop {
            let until = next_send.map_or(deadline, |at| at.min(deadline));
            let received = match tokio::time::timeout_at(until, receive_on_any(&sockets, &mut buffer)).await {
                Ok(received) => received,
                Err(_) if until == deadline => break,
                Err(_) => {
                    for socket in &sockets {
                        send_everywhere(socket, &query);
                    }
                    next_send = sends.next();
                    continue;
                }
            };
            let Ok((_, len, from)) = received else {
                break;
            };
            let Some(LanMessage::Here {
                nonce: quoted,
                peer,
                port,
            }) = LanMessage::decode(&buffer[..len])
            else {
                continue;
            };
            if quoted != nonce || peer == self.own || holders.iter().any(|h| h.peer == peer) {
                continue;
            }
            // The answer's address with the holder's port (an IPv6 link-local one keeps its
            // interface, which it cannot be dialled without).
            let mut addr = from;
            addr.set_port(port);
            holders.push(Holder {
                peer,
                addr: transport::canonical(addr),
                other_addrs: Vec::new(),
                complete: false,
            });
            deadline = deadline.min(tokio::time::Instant::now() + MORE_ANSWERS);
            next_send = None;
        }
        Ok(holders)
    }
}

/// The tags of the files a node holds, each file hashed once (not at every query): a query
/// names its file by tag only.
struct Tags {
    access: Access,
    of: HashMap<[u8; 32], FileId>,
    tagged: HashSet<FileId>,
}

impl Tags {
    fn new(access: Access) -> Tags {
        Tags {
            access,
            of: HashMap::new(),
            tagged: HashSet::new(),
        }
    }

    /// Whether `store` holds the file tagged `tag`; files held since the last look are tagged
    /// first, and files no longer held forgotten.
    fn holds(&mut self, store: &HeldFiles, tag: &[u8; 32]) -> bool {
        if let Some(id) = self.of.get(tag) {
            if store.get(id).is_some() {
                return true;
            }
        }
        let held = store.all();
        if held.len() < self.tagged.len() / 2 {
            self.of.clear();
            self.tagged.clear();
        }
        for file in held {
            if self.tagged.insert(file.id) {
                self.of.insert(tag_of(&file.id, &self.access), file.id);
            }
        }
        self.of.get(tag).is_some_and(|id| store.get(id).is_some())
    }
}

/// Waits for a datagram on any of `sockets`; returns the socket it came on, its length and
/// its sender.
async fn receive_on_any<'a>(
    sockets: &'a [UdpSocket],
    buffer: &mut [u8],
) -> std::io::Result<(&'a UdpSocket, usize, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for socket in sockets {
            let mut read = tokio::io::ReadBuf::new(&mut *buffer);
            if let Poll::Ready(received) = socket.poll_recv_from(cx, &mut read) {
                return Poll::Ready(received.map(|from| (socket, read.filled().len(), from)));
            }
        }
        Poll::Pending
    })
    .await
}

/// Sends `query` to its family's group out of each interface of that family in turn (the
/// routing table would pick one at most).
fn send_everywhere(socket: &UdpSocket, query: &[u8]) {
    let on = socket2::SockRef::from(socket);
    let sent: Vec<(String, std::io::Result<()>)> = match socket.local_addr() {
        Ok(SocketAddr::V6(_)) => v6_interfaces()
            .into_iter()
            .map(|index| {
                let sent = on
                    .set_multicast_if_v6(index)
                    .and_then(|()| socket.try_send_to(query, SocketAddr::from((GROUP_V6, PORT))));
                (format!("interface {index}"), sent.map(drop))
            })
            .collect(),
        _ => v4_interfaces()
            .into_iter()
            .map(|interface| {
                let sent = on
                    .set_multicast_if_v4(&interface)
                    .and_then(|()| socket.try_send_to(query, SocketAddr::from((GROUP, PORT))));
                (interface.to_string(), sent.map(drop))
            })
            .collect(),
    };
    for (interface, sent) in sent {
        if let Err(e) = sent {
            debug!("could not send a local query out of {interface}: {e}");
        }
    }
}

/// A socket of each family this machine has, on any port, to ask from.
fn asking_sockets() -> std::io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::new();
    let mut failed = None;
    for (domain, any) in [
        (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    ] {
        let opened = family_socket(domain, SocketAddr::new(any, 0), false).and_then(|socket| {
            socket.set_nonblocking(true)?;
            UdpSocket::from_std(socket.into())
        });
        match opened {
            Ok(socket) => sockets.push(socket),
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) if sockets.is_empty() => Err(e),
        _ => Ok(sockets),
    }
}

/// Sockets on the discovery port, shared with the other nodes of this machine: one in the
/// IPv4 group on every IPv4 interface, one in the IPv6 group on every IPv6 interface; either
/// may be missing (a machine without IPv6), not both.
fn listening_sockets() -> std::io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::new();
    let mut failed = Vec::new();
    for opened in [listening_socket_v4(), listening_socket_v6()] {
        match opened {
            Ok(socket) => sockets.push(socket),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if sockets.is_empty() {
        return Err(std::io::Error::other(failed.join("; ")));
    }
    for e in failed {
        debug!("local queries of one family will go unanswered: {e}");
    }
    Ok(sockets)
}

fn listening_socket_v4() -> std::io::Result<UdpSocket> {
    let socket = shared_port_socket(Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
    let joined = v4_interfaces()
        .into_iter()
        .filter(|interface| match socket.join_multicast_v4(&GROUP, interface) {
            Ok(()) => true,
            Err(e) => {
                debug!("could not listen for local queries on {interface}: {e}");
                false
            }
        })
        .count();
    in_use(socket, joined, "IPv4")
}

fn listening_socket_v6() -> std::io::Result<UdpSocket> {
    let socket = shared_port_socket(Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))?;
    let joined = v6_interfaces()
        .into_iter()
        .filter(|&index| match socket.join_multicast_v6(&GROUP_V6, index) {
            Ok(()) => true,
            Err(e) => {
                debug!("could not listen for local queries on interface {index}: {e}");
                false
            }
        })
        .count();
    in_use(socket, joined, "IPv6")
}

/// A socket of `domain` bound to the discovery port on `any`, the port shared with the other
/// nodes of this machine.
fn shared_port_socket(domain: Domain, any: IpAddr) -> std::io::Result<Socket> {
    family_socket(domain, SocketAddr::new(any, PORT), true)
}

/// A UDP socket of `domain` alone (an IPv6 one takes no IPv4: each family has its own group)
/// bound to `addr`, its port `shared` with other sockets of this machine if asked.
fn family_socket(domain: Domain, addr: SocketAddr, shared: bool) -> std::io::Result<Socket> {
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if domain == Domain::IPV6 {
        socket.set_only_v6(true)?;
    }
    if shared {
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// `socket` ready for tokio, if it joined its group on at least one interface.
fn in_use(socket: Socket, joined: usize, family: &str) -> std::io::Result<UdpSocket> {
    if joined == 0 {
        return Err(std::io::Error::other(format!(
            "no {family} interface to listen for local queries on"
        )));
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// This machine's IPv4 addresses that a link may carry multicast on (loopback included, for
/// nodes of this machine).
fn v4_interfaces() -> Vec<Ipv4Addr> {
    let mut found: Vec<Ipv4Addr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| match i.ip() {
            IpAddr::V4(v4) if !v4.is_link_local() => Some(v4),
            _ => None,
        })
        .collect();
    found.dedup();
    found
}

/// The indexes of this machine's interfaces that have an IPv6 address (a link-local one is
/// enough: the group is link-local too).
fn v6_interfaces() -> Vec<u32> {
    let mut found: Vec<u32> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.ip().is_ipv6())
        .filter_map(|i| i.index)
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_proto::{Bitfield, Digest, FileMeta, Manifest};

    fn hold(store: &HeldFiles, name: &str) -> FileId {
        let manifest = Manifest {
            name: name.into(),
            hash: Digest([0; 32]),
            size: 1,
            chunk_size: 65536,
            chunk_count: 1,
            chunks: vec![Digest([1; 32])],
        };
        store
            .add(Arc::new(manifest), "/f".into(), Bitfield::full(1), FileMeta::default())
            .id
    }

    #[test]
    fn a_query_finds_the_files_held_now_and_not_those_let_go() {
        let store = HeldFiles::default();
        let mut tags = Tags::new(Access::Open);
        let first = hold(&store, "first");
        assert!(tags.holds(&store, &tag_of(&first, &Access::Open)));
        let second = hold(&store, "second");
        assert!(
            tags.holds(&store, &tag_of(&second, &Access::Open)),
            "held after the last look"
        );
        store.remove(&first);
        assert!(!tags.holds(&store, &tag_of(&first, &Access::Open)), "let go");
        assert!(!tags.holds(&store, &[7; 32]), "never held");
    }
}
