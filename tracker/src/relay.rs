//! The relay: where two peers cannot reach each other (both behind NATs that give every
//! destination a new port), the tracker forwards their QUIC datagrams. Each session is a UDP
//! socket of its own with two sides; each side proves itself once with its pass's token (see
//! [`swarm_proto::traversal`]), from the address the relay then forwards to. What passes is
//! QUIC, encrypted end to end: the relay reads none of it, and cannot pose as either peer.
//!
//! Written here rather than taken from a crate: TURN servers relay for a TURN client, and a
//! QUIC endpoint is not one; what is needed is one loop that forwards datagrams.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use swarm_proto::protocol::{ErrorCode, Refusal};
use swarm_proto::traversal::{bind_token, RelayPass};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// A session that forwards nothing for this long ends (peers' connections send keepalives far
/// more often than this).
pub const RELAY_IDLE: Duration = Duration::from_secs(30);
/// Most relay sessions at once.
pub const MAX_SESSIONS: usize = 1000;
/// Most relay sessions at once for askers at one IP address (node ids cost nothing to make).
pub const MAX_SESSIONS_PER_ASKER: usize = 32;
/// Datagrams kept from one side while the other has not bound yet.
const EARLY_DATAGRAMS: usize = 16;

/// Relays, as many sessions as [`MAX_SESSIONS`], within one shared rate.
pub struct Relay {
    /// Bytes per second across all sessions.
    rate: Option<DefaultDirectRateLimiter>,
    /// Where session sockets bind (the tracker's listening address, port 0).
    bind: IpAddr,
    sessions: Arc<AtomicUsize>,
    /// Sessions open per asker's IP address.
    per_asker: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
    relayed: Arc<AtomicU64>,
    closing: CancellationToken,
}

impl Relay {
    /// A relay of at most `bytes_per_second` in all (`None`: no cap), its sessions bound on
    /// `bind`, all ended when `closing` fires.
    pub fn new(bytes_per_second: Option<NonZeroU32>, bind: IpAddr, closing: CancellationToken) -> Relay {
        Relay {
            rate: bytes_per_second.map(|rate| DefaultDirectRateLimiter::direct(Quota::per_second(rate))),
            bind,
            sessions: Arc::default(),
            per_asker: Default::default(),
            relayed: Arc::default(),
            closing,
        }
    }

    /// Bytes forwarded so far.
    pub fn relayed(&self) -> u64 {
        self.relayed.load(Ordering::Relaxed)
    }

    /// Opens a session for a side at `asker` that reached the tracker at `first_ip` and one
    /// that reached it at `second_ip` (the tracker's own addresses, as each side dialled
    /// them): one pass for each.
    pub fn open(
        self: &Arc<Self>,
        asker: IpAddr,
        first_ip: IpAddr,
        second_ip: IpAddr,
    ) -> Result<(RelayPass, RelayPass), Refusal> {
        {
            let mut per_asker = self.per_asker.lock().expect("relay lock poisoned");
            let mine = per_asker.entry(asker).or_default();
            if *mine >= MAX_SESSIONS_PER_ASKER {
                return Err(Refusal::new(
                    ErrorCode::Limit,
                    format!("this address has {MAX_SESSIONS_PER_ASKER} relay sessions open already"),
                ));
            }
            if self.sessions.fetch_add(1, Ordering::Relaxed) >= MAX_SESSIONS {
                self.sessions.fetch_sub(1, Ordering::Relaxed);
                return Err(Refusal::new(
                    ErrorCode::Busy,
                    format!("this tracker relays {MAX_SESSIONS} sessions already; try again later"),
                ));
            }
            *mine += 1;
        }
        let opened = swarm_proto::transport::bind_udp(SocketAddr::new(self.bind, 0))
            .and_then(|socket| socket.set_nonblocking(true).map(|()| socket))
            .and_then(UdpSocket::from_std);
        let socket = match opened {
            Ok(socket) => socket,
            Err(e) => {
                self.close(asker);
                return Err(Refusal::new(
                    ErrorCode::Internal,
                    format!("cannot open a relay socket: {e}"),
                ));
            }
        };
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let tokens: [[u8; 16]; 2] = [rand::random(), rand::random()];
        let passes = (
            RelayPass {
                addr: SocketAddr::new(first_ip, port),
                token: tokens[0],
            },
            RelayPass {
                addr: SocketAddr::new(second_ip, port),
                token: tokens[1],
            },
        );
        let relay = self.clone();
        tokio::spawn(async move {
            let forwarded = relay.forward(socket, tokens).await;
            relay.close(asker);
            debug!(port, forwarded, "relay session ended");
        });
        Ok(passes)
    }

    /// Counts a session of `asker` closed.
    fn close(&self, asker: IpAddr) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
        let mut per_asker = self.per_asker.lock().expect("relay lock poisoned");
        if let Some(mine) = per_asker.get_mut(&asker) {
            *mine -= 1;
            if *mine == 0 {
                per_asker.remove(&asker);
            }
        }
    }

    /// Forwards between the two sides of one session until it idles out; returns the bytes
    /// forwarded.
    async fn forward(&self, socket: UdpSocket, tokens: [[u8; 16]; 2]) -> u64 {
        let mut sides: [Option<SocketAddr>; 2] = [None, None];
        let mut early: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut buffer = vec![0u8; 65_536];
        let mut forwarded = 0u64;
        loop {
            let (len, from) = tokio::select! {
                _ = self.closing.cancelled() => return forwarded,
                received = tokio::time::timeout(RELAY_IDLE, socket.recv_from(&mut buffer)) => match received {
                    Ok(Ok(received)) => received,
                    Ok(Err(e)) => {
                        // An ICMP error for an earlier send (a side that went away): not fatal.
                        debug!("relay socket: {e}");
                        continue;
                    }
                    Err(_) => return forwarded,
                },
            };
            let datagram = &buffer[..len];
            if let Some(token) = bind_token(datagram) {
                if let Some(side) = tokens.iter().position(|t| *t == token) {
                    if sides[side] != Some(from) {
                        debug!(side, %from, "relay side bound");
                    }
                    let was_ready = sides.iter().all(Option::is_some);
                    sides[side] = Some(from);
                    if sides.iter().all(Option::is_some) {
                        if !was_ready {
                            info!(a = %sides[0].expect("bound"), b = %sides[1].expect("bound"), "relaying");
                        }
                        for (from_side, datagram) in early.drain(..) {
                            forwarded += self.pass(&socket, sides[1 - from_side], &datagram).await;
                        }
                    }
                }
                continue;
            }
            // Datagrams from anyone but the two bound sides are dropped.
            let Some(side) = sides.iter().position(|s| *s == Some(from)) else {
                continue;
            };
            match sides[1 - side] {
                Some(_) => forwarded += self.pass(&socket, sides[1 - side], datagram).await,
                None if early.len() < EARLY_DATAGRAMS => early.push((side, datagram.to_vec())),
                None => {}
            }
        }
    }

    /// Sends `datagram` on to `to` within the rate; returns the bytes sent.
    async fn pass(&self, socket: &UdpSocket, to: Option<SocketAddr>, datagram: &[u8]) -> u64 {
        let Some(to) = to else { return 0 };
        if let (Some(rate), Some(len)) = (&self.rate, NonZeroU32::new(datagram.len() as u32)) {
            // Over the rate, the datagram is dropped: QUIC takes it for congestion and slows.
            if !matches!(rate.check_n(len), Ok(Ok(()))) {
                return 0;
            }
        }
        match socket.send_to(datagram, to).await {
            Ok(sent) => {
                self.relayed.fetch_add(sent as u64, Ordering::Relaxed);
                metrics::counter!(crate::telemetry::RELAYED_BYTES).increment(sent as u64);
                sent as u64
            }
            Err(e) => {
                debug!(%to, "relay send: {e}");
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_proto::traversal::bind_datagram;

    async fn side() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    async fn receive(socket: &UdpSocket) -> Vec<u8> {
        let mut buffer = [0u8; 64];
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer))
            .await
            .expect("a datagram within 5 s")
            .unwrap();
        buffer[..len].to_vec()
    }

    #[tokio::test]
    async fn datagrams_pass_between_the_two_bound_sides_only() {
        let relay = Arc::new(Relay::new(None, "127.0.0.1".parse().unwrap(), CancellationToken::new()));
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let (a_pass, b_pass) = relay.open(loopback, loopback, loopback).unwrap();
        let (a, b, stranger) = (side().await, side().await, side().await);
        a.send_to(&bind_datagram(&a_pass.token), a_pass.addr).await.unwrap();
        // Sent before the other side bound: kept, and passed on once it does.
        a.send_to(b"early", a_pass.addr).await.unwrap();
        stranger.send_to(b"from a stranger", a_pass.addr).await.unwrap();
        stranger.send_to(&bind_datagram(&[0; 16]), a_pass.addr).await.unwrap();
        b.send_to(&bind_datagram(&b_pass.token), b_pass.addr).await.unwrap();
        assert_eq!(receive(&b).await, b"early");
        b.send_to(b"to a", b_pass.addr).await.unwrap();
        assert_eq!(receive(&a).await, b"to a");
        a.send_to(b"to b", a_pass.addr).await.unwrap();
        assert_eq!(receive(&b).await, b"to b");
        assert_eq!(relay.relayed(), 13);
        // The stranger's datagrams went nowhere: b got exactly what a sent.
        let mut buffer = [0u8; 64];
        assert!(
            tokio::time::timeout(Duration::from_millis(100), b.recv_from(&mut buffer))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn sessions_beyond_the_most_per_address_and_in_all_are_refused() {
        let relay = Arc::new(Relay::new(None, "127.0.0.1".parse().unwrap(), CancellationToken::new()));
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_SESSIONS_PER_ASKER {
            relay.open(loopback, loopback, loopback).unwrap();
        }
        let refused = relay.open(loopback, loopback, loopback).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Limit, "one address has its most");
        relay.sessions.store(MAX_SESSIONS, Ordering::Relaxed);
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let refused = relay.open(other, loopback, loopback).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Busy, "the relay has its most");
    }
}
