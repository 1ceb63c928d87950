//! Small network helpers for front ends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The address other machines should use to reach a socket bound to `bound`: the bound IP if
/// it is specific, otherwise this machine's first non-loopback IPv4 address (loopback if it
/// has none).
pub fn reachable_addr(bound: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let ip = if_addrs::get_if_addrs()
        .ok()
        .and_then(|ifs| {
            ifs.into_iter()
                .find(|i| !i.is_loopback() && i.ip().is_ipv4())
                .map(|i| i.ip())
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, bound.port())
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
