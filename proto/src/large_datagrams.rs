//! Datagrams as large as the path carries.
//!
//! quinn sends at most 1,452 bytes of UDP payload unless told otherwise, whatever the path:
//! the size of an Ethernet frame on the internet. Loopback carries 64 KiB and a data centre's
//! jumbo frames 9,000 bytes, and each packet costs its sender and receiver about the same
//! work whatever its size (a syscall share, a header, an AEAD call, an acknowledgement), so
//! there bigger packets move the same bytes for less CPU. Endpoints here accept datagrams up
//! to [`MAX_UDP_PAYLOAD`], and each connection's path MTU discovery climbs towards what the
//! route to its peer carries as far as this host knows ([`route_payload`]: the MTU of the
//! interface it leaves by, or a smaller one the kernel learned): probes larger than the path
//! carries further on are lost and the search settles on what arrives. The search starts
//! from QUIC's 1,200 bytes and halves its range with every probe, so searching up to 64 KiB on
//! a 1,500-byte path sent the first seconds of a transfer in small packets and cost 9% of the
//! speed: the route's own MTU keeps the search short. A peer that accepts less (an older
//! build: 1,472) caps it. `SWARM_MAX_DATAGRAM=1452` (any size from 1,200 to 65,507) sets
//! another ceiling, for a path whose probes mislead the search.
//!
//! One thing quinn 0.11 does not do is keep a batch of segments (GSO) under the 64 KiB a
//! single send may carry: ten segments of 9,000 bytes would be refused by the kernel, and
//! quinn takes that refusal for a lost MTU probe and drops the batch silently. So the
//! endpoint's socket is wrapped ([`WholeSends`]) to send such a batch in parts that fit.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Endpoint, MtuDiscoveryConfig, Runtime, TokioRuntime, UdpPoller};

/// The largest UDP payload accepted and sought by path MTU discovery: an IPv4 datagram's
/// most (65,535 bytes less its 20-byte IP and 8-byte UDP headers), reached on loopback.
pub const MAX_UDP_PAYLOAD: u16 = 65_507;

/// The smallest UDP payload QUIC allows (RFC 9000, 14): the least `SWARM_MAX_DATAGRAM` may say.
const MIN_UDP_PAYLOAD: u16 = 1_200;

/// Names the environment variable that sets another ceiling than [`MAX_UDP_PAYLOAD`].
pub const MAX_DATAGRAM_ENV: &str = "SWARM_MAX_DATAGRAM";

/// Most bytes one send may carry, however many segments it holds: the payload of the largest
/// IPv4 datagram (IPv6 allows 20 more; one limit for both keeps it simple).
const MAX_SEND: usize = MAX_UDP_PAYLOAD as usize;

/// The largest UDP payload sought and accepted: [`MAX_UDP_PAYLOAD`], or what
/// `SWARM_MAX_DATAGRAM` says (read once).
pub fn max_udp_payload() -> u16 {
    static CHOSEN: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let Ok(value) = std::env::var(MAX_DATAGRAM_ENV) else {
            return MAX_UDP_PAYLOAD;
        };
        match value.trim().parse::<u16>() {
            Ok(n) if (MIN_UDP_PAYLOAD..=MAX_UDP_PAYLOAD).contains(&n) => n,
            _ => {
                tracing::warn!(
                    "{MAX_DATAGRAM_ENV}={value:?} is not a size from {MIN_UDP_PAYLOAD} to {MAX_UDP_PAYLOAD} bytes; using {MAX_UDP_PAYLOAD}"
                );
                MAX_UDP_PAYLOAD
            }
        }
    })
}

/// The endpoint settings: datagrams up to [`max_udp_payload`] are accepted.
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(max_udp_payload())
        .expect("the ceiling is within QUIC's range");
    config
}

/// Path MTU discovery towards `peer`: up to what the route to it carries ([`route_payload`])
/// and at most [`max_udp_payload`]; where the route cannot be told, up to quinn's 1,452.
pub fn mtu_discovery(peer: SocketAddr) -> MtuDiscoveryConfig {
    let mut config = MtuDiscoveryConfig::default();
    if let Some(route) = route_payload(peer) {
        config.upper_bound(route.min(max_udp_payload()));
    }
    config
}

/// The largest UDP payload the route to `peer` carries as far as this host knows: the MTU of
/// the interface it leaves by (or a smaller path MTU the kernel learned), less the IP and UDP
/// headers. `None` where the system does not say (Linux does).
pub fn route_payload(peer: SocketAddr) -> Option<u16> {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    // A socket connected to the peer (nothing is sent) asks the kernel which route it takes.
    let probe = std::net::UdpSocket::bind(match peer {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    })
    .ok()?;
    probe.connect(peer).ok()?;
    let (mtu, headers) = interface_mtu(&probe, peer)?;
    u16::try_from(mtu.saturating_sub(headers).min(u32::from(MAX_UDP_PAYLOAD))).ok()
}

/// The MTU of the route `socket` is connected by, and the IP and UDP headers' bytes.
#[cfg(target_os = "linux")]
fn interface_mtu(socket: &std::net::UdpSocket, peer: SocketAddr) -> Option<(u32, u32)> {
    use rustix::net::sockopt;
    match peer {
        SocketAddr::V4(_) => sockopt::ip_mtu(socket).ok().map(|mtu| (mtu, 20 + 8)),
        SocketAddr::V6(_) => sockopt::ipv6_mtu(socket).ok().map(|mtu| (mtu, 40 + 8)),
    }
}

#[cfg(not(target_os = "linux"))]
fn interface_mtu(_socket: &std::net::UdpSocket, _peer: SocketAddr) -> Option<(u32, u32)> {
    None
}

/// A QUIC endpoint on `socket` that sends and takes datagrams as large as the path carries
/// ([`endpoint_config`]; each connection's settings should search with [`mtu_discovery`]).
pub fn endpoint(server: Option<quinn::ServerConfig>, socket: std::net::UdpSocket) -> io::Result<Endpoint> {
    let runtime = Arc::new(TokioRuntime);
    let socket = WholeSends::new(runtime.wrap_udp_socket(socket)?);
    Endpoint::new_with_abstract_socket(endpoint_config(), server, socket, runtime)
}

/// A UDP socket that splits a batch of segments too large for one send into sends that fit.
#[derive(Debug)]
pub struct WholeSends {
    inner: Arc<dyn AsyncUdpSocket>,
}

impl WholeSends {
    /// `inner`, with batches split where they exceed one send.
    pub fn new(inner: Arc<dyn AsyncUdpSocket>) -> Arc<WholeSends> {
        Arc::new(WholeSends { inner })
    }
}

/// The parts of `transmit` that each fit in one send of at most `limit` bytes: whole segments
/// each, as many as fit.
fn parts<'a>(transmit: &Transmit<'a>, limit: usize) -> Vec<Transmit<'a>> {
    let segment = match transmit.segment_size {
        Some(segment) if transmit.contents.len() > limit && segment <= limit => segment,
        _ => {
            return vec![Transmit {
                contents: transmit.contents,
                ..*transmit
            }];
        }
    };
    let per_send = limit / segment * segment;
    transmit
        .contents
        .chunks(per_send)
        .map(|contents| Transmit {
            contents,
            segment_size: (contents.len() > segment).then_some(segment),
            ..*transmit
        })
        .collect()
}

impl AsyncUdpSocket for WholeSends {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    /// Sends `transmit`, in parts if it exceeds one send. A part the socket cannot take once
    /// an earlier one went is left unsent, as a network would drop it (QUIC resends it);
    /// saying `WouldBlock` then would have the earlier parts sent twice.
    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if transmit.contents.len() <= MAX_SEND {
            return self.inner.try_send(transmit);
        }
        for (n, part) in parts(transmit, MAX_SEND).iter().enumerate() {
            match self.inner.try_send(part) {
                Ok(()) => {}
                Err(e) if n == 0 => return Err(e),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(contents: &[u8], segment_size: Option<usize>) -> Transmit<'_> {
        Transmit {
            destination: "127.0.0.1:1".parse().unwrap(),
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_route_to_loopback_carries_64_kib_datagrams() {
        let payload = route_payload("127.0.0.1:9".parse().unwrap());
        assert_eq!(payload, Some(MAX_UDP_PAYLOAD), "loopback's MTU is 65,536");
        let mapped = route_payload("[::ffff:127.0.0.1]:9".parse().unwrap());
        assert_eq!(mapped, payload, "a mapped address takes the IPv4 route");
    }

    #[test]
    fn a_batch_that_fits_is_sent_whole() {
        let data = vec![0u8; 10 * 1452];
        let parts = parts(&transmit(&data, Some(1452)), MAX_SEND);
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (parts[0].contents.len(), parts[0].segment_size),
            (data.len(), Some(1452))
        );
    }

    #[test]
    fn a_batch_too_large_for_one_send_goes_in_whole_segments() {
        // Ten jumbo segments, the last one short.
        let data = vec![0u8; 9 * 8972 + 100];
        let parts = parts(&transmit(&data, Some(8972)), MAX_SEND);
        let sizes: Vec<(usize, Option<usize>)> = parts.iter().map(|p| (p.contents.len(), p.segment_size)).collect();
        assert_eq!(sizes, vec![(7 * 8972, Some(8972)), (2 * 8972 + 100, Some(8972))]);
        assert!(parts.iter().all(|p| p.contents.len() <= MAX_SEND));
    }

    #[test]
    fn a_lone_segment_left_over_is_sent_as_a_plain_datagram() {
        let data = vec![0u8; 8 * 8972];
        let parts = parts(&transmit(&data, Some(8972)), MAX_SEND);
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[1].contents.len(), parts[1].segment_size), (8972, None));
    }
}
