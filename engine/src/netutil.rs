//! Small network helpers for front ends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The address other machines should use to reach a socket bound to `bound`: the bound IP if
/// it is specific, otherwise this machine's IPv4 address on its default route, else its first
/// non-loopback IPv4 address (loopback if it has none). The default route first: the first
/// interface listed may be a container bridge (`docker0`) no other machine reaches.
pub fn reachable_addr(bound: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let first_listed = || {
        if_addrs::get_if_addrs().ok().and_then(|ifs| {
            ifs.into_iter()
                .find(|i| !i.is_loopback() && i.ip().is_ipv4())
                .map(|i| i.ip())
        })
    };
    let ip = default_route_ip()
        .or_else(first_listed)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, bound.port())
}

/// The local IPv4 address the kernel would send from towards the rest of the world, if this
/// machine has a default route: a UDP socket "connected" to an outside address (TEST-NET-1)
/// picks its source by the routing table and sends nothing.
fn default_route_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// The address a process on this machine should use for a socket bound to `bound`: loopback
/// of the same family if the bind address is unspecified, the bound address otherwise.
pub fn loopback_for(bound: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let ip = if bound.is_ipv4() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
    };
    SocketAddr::new(ip, bound.port())
}
