//! A congestion controller chosen by where the peer is: one for peers on the local network,
//! another for peers across the internet.
//!
//! On a local network (a LAN, a data centre, loopback) a lost packet means a full queue:
//! CUBIC reads it so and shares a link evenly between flows. BBR version 1 does not, and among
//! the many flows of a swarm its shares stayed uneven for a whole download (ten hosts at
//! 100 Mbit/s: one fetcher got two thirds of what the others got from the same senders, start
//! to end). Across the internet random loss is common and CUBIC halves its window for each
//! loss (0.5 MB/s through 0.5% loss at 50 ms), so there BBR stays.
//!
//! The peer's address says which: loopback, private (RFC 1918), link-local and unique-local
//! addresses are local. The round trip cannot say it: on a busy LAN a handshake waits in full
//! queues for tens of milliseconds, and connections that judged by it ran both controllers
//! side by side on the same links, which was worse than either (a hundred hosts: the seeder
//! sent 1.95 and 2.37 copies, against 1.81-2.08 with BBR alone). A private network that
//! reaches across the internet (a VPN) gets CUBIC too; `SWARM_CONGESTION=bbr-bound` keeps BBR.
//! Shared address space (100.64.0.0/10) is not local: overlay networks use it across the
//! internet.

use std::any::Any;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Controller, ControllerFactory};
use quinn_proto::RttEstimator;

use crate::large_datagrams;

/// Whether `ip` is on a local network: loopback, private, link-local or unique-local.
pub fn is_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The initial window of a connection with a local `peer`: ten of the largest datagrams its
/// route carries (RFC 9002's ten, of the datagrams in use), never under 14,720 bytes. Loopback
/// carries 64 KiB datagrams and a LAN may carry 9,000-byte ones, and each path MTU probe of
/// that size counts in flight as it goes: against CUBIC's default of 12,000 bytes, one probe
/// blocked everything else until answered, a connection's closing frame included (a refused
/// node heard "reset by peer" instead of why it was refused).
pub fn near_initial_window(peer: SocketAddr) -> u64 {
    let datagram =
        large_datagrams::route_payload(peer).map_or(0, |route| route.min(large_datagrams::max_udp_payload()));
    (10 * u64::from(datagram)).max(MIN_INITIAL_WINDOW)
}

/// RFC 9002's initial window for paths of 1,472-byte datagrams.
const MIN_INITIAL_WINDOW: u64 = 14_720;

/// Builds [`ByPath`] controllers for one peer: by the near factory if it is local, by the
/// far one otherwise (and where the peer is not known).
pub struct ByPathConfig {
    chosen: Arc<dyn ControllerFactory + Send + Sync + 'static>,
    near: bool,
}

impl ByPathConfig {
    /// Controllers for a connection with `peer`: built by `near` if it is local, else by `far`.
    pub fn new(
        peer: Option<SocketAddr>,
        near: Arc<dyn ControllerFactory + Send + Sync + 'static>,
        far: Arc<dyn ControllerFactory + Send + Sync + 'static>,
    ) -> ByPathConfig {
        let is_near = peer.is_some_and(|peer| is_local(peer.ip()));
        ByPathConfig {
            chosen: if is_near { near } else { far },
            near: is_near,
        }
    }
}

impl ControllerFactory for ByPathConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(ByPath {
            inner: self.chosen.clone().build(now, current_mtu),
            near: self.near,
            min_rtt: None,
        })
    }
}

/// The controller chosen for a peer, and the shortest round trip its path has shown.
pub struct ByPath {
    inner: Box<dyn Controller>,
    near: bool,
    /// The shortest round trip seen so far, once a packet was acknowledged.
    min_rtt: Option<Duration>,
}

impl ByPath {
    /// The shortest round trip of the path so far, once a packet was acknowledged.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// Whether the peer is local (the controller is the near one).
    pub fn is_near(&self) -> bool {
        self.near
    }
}

impl Controller for ByPath {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool, rtt: &RttEstimator) {
        self.min_rtt = Some(rtt.min());
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(&mut self, now: Instant, in_flight: u64, app_limited: bool, largest_acked: Option<u64>) {
        self.inner.on_end_acks(now, in_flight, app_limited, largest_acked);
    }

    fn on_congestion_event(&mut self, now: Instant, sent: Instant, persistent: bool, lost_bytes: u64) {
        self.inner.on_congestion_event(now, sent, persistent, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.inner.window()
    }

    fn metrics(&self) -> quinn_proto::congestion::ControllerMetrics {
        self.inner.metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(ByPath {
            inner: self.inner.clone_box(),
            near: self.near,
            min_rtt: self.min_rtt,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_networks_are_loopback_private_link_local_and_unique_local() {
        let local = [
            "127.0.0.1",
            "10.88.0.3",
            "172.16.5.4",
            "192.168.1.20",
            "169.254.10.1",
            "::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:192.168.1.20",
        ];
        for ip in local {
            assert!(is_local(ip.parse().unwrap()), "{ip} is local");
        }
        let internet = [
            "8.8.8.8",
            "100.64.1.1",
            "198.18.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ];
        for ip in internet {
            assert!(!is_local(ip.parse().unwrap()), "{ip} is across the internet");
        }
    }

    /// A controller that tells which it is by its window.
    #[derive(Clone)]
    struct Marked(u64);

    impl Controller for Marked {
        fn on_congestion_event(&mut self, _: Instant, _: Instant, _: bool, _: u64) {}
        fn on_mtu_update(&mut self, _: u16) {}
        fn window(&self) -> u64 {
            self.0
        }
        fn clone_box(&self) -> Box<dyn Controller> {
            Box::new(self.clone())
        }
        fn initial_window(&self) -> u64 {
            self.0
        }
        fn into_any(self: Box<Self>) -> Box<dyn Any> {
            self
        }
    }

    impl ControllerFactory for Marked {
        fn build(self: Arc<Self>, _: Instant, _: u16) -> Box<dyn Controller> {
            Box::new((*self).clone())
        }
    }

    fn window_for(peer: Option<&str>) -> u64 {
        let peer = peer.map(|p| p.parse().unwrap());
        let config = ByPathConfig::new(peer, Arc::new(Marked(1)), Arc::new(Marked(2)));
        Arc::new(config).build(Instant::now(), 1200).window()
    }

    #[test]
    fn a_local_peer_starts_with_ten_of_its_routes_datagrams_in_flight() {
        let loopback = near_initial_window("127.0.0.1:7000".parse().unwrap());
        let largest = u64::from(large_datagrams::max_udp_payload());
        assert!(
            loopback >= 10 * 16_000 && loopback <= 10 * largest,
            "loopback carries datagrams of tens of kilobytes: {loopback}"
        );
        assert!(near_initial_window("192.0.2.1:7000".parse().unwrap()) >= MIN_INITIAL_WINDOW);
    }

    #[test]
    fn a_local_peer_gets_the_near_controller_and_any_other_the_far_one() {
        assert_eq!(window_for(Some("192.168.1.20:7000")), 1);
        assert_eq!(window_for(Some("[::1]:7000")), 1);
        assert_eq!(window_for(Some("203.0.113.9:7000")), 2);
        assert_eq!(window_for(None), 2, "a peer not known: the far controller");
    }
}
