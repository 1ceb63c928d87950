//! Small network helpers for front ends.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use swarm_proto::protocol::MAX_PEER_ADDRS;
use swarm_proto::transport::is_link_local;

/// The address other machines should use to reach a socket bound to `bound`: the bound IP if
/// it is specific, otherwise the first of [`own_addrs`] (an address on the default route if
/// there is one: the first interface listed may be a container bridge, `docker0`, that no
/// other machine reaches), loopback if this machine has no other address.
pub fn reachable_addr(bound: SocketAddr) -> SocketAddr {
    own_addrs(bound).first().copied().unwrap_or_else(|| {
        let loopback = match bound {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) if !bound.ip().is_unspecified() => bound.ip(),
            // `[::]` takes IPv4 too, and every machine has 127.0.0.1.
            SocketAddr::V6(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        SocketAddr::new(loopback, bound.port())
    })
}

/// The local addresses the kernel would send from towards the rest of the world, IPv4 first,
/// for each family this machine has a default route of (towards an outside address of each:
/// TEST-NET-1 and the IPv6 documentation prefix).
fn default_route_ips() -> impl Iterator<Item = IpAddr> {
    [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    ]
    .into_iter()
    .filter_map(source_ip_towards)
}

/// The local address the kernel would send from towards `ip`, unless that is loopback: a UDP
/// socket "connected" there picks its source by the routing table and sends nothing.
pub fn source_ip_towards(ip: IpAddr) -> Option<IpAddr> {
    let any = match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = std::net::UdpSocket::bind((any, 0)).ok()?;
    socket.connect((ip, 9)).ok()?;
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

/// The addresses other machines may reach a socket bound to `bound` at: the bound address if
/// it is specific, otherwise every address of this machine's interfaces of the bound family
/// (both families for `[::]`, which takes IPv4 too), with the bound port; those on a default
/// route first, then IPv4 before IPv6; no loopback or link-local address; at most
/// [`MAX_PEER_ADDRS`].
pub fn own_addrs(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let takes = |ip: &IpAddr| bound.is_ipv6() || ip.is_ipv4();
    let mut ips: Vec<IpAddr> = default_route_ips().filter(takes).collect();
    let mut interfaces: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .iter()
        .map(|i| i.ip())
        .collect();
    interfaces.sort_by_key(IpAddr::is_ipv6);
    for ip in interfaces {
        if takes(&ip) && !ip.is_loopback() && !is_link_local(ip) && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips.into_iter()
        .take(MAX_PEER_ADDRS)
        .map(|ip| SocketAddr::new(ip, bound.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_bind_is_its_own_address_and_an_unspecified_one_lists_this_machines() {
        let bound: SocketAddr = "10.1.2.3:7000".parse().unwrap();
        assert_eq!(own_addrs(bound), [bound]);
        let all = own_addrs("0.0.0.0:7000".parse().unwrap());
        assert!(all.len() <= MAX_PEER_ADDRS);
        for addr in &all {
            assert_eq!(addr.port(), 7000);
            assert!(
                addr.is_ipv4() && !addr.ip().is_loopback() && !is_link_local(addr.ip()),
                "{addr}"
            );
        }
        let interfaces = if_addrs::get_if_addrs().unwrap();
        let has_v4 = interfaces
            .iter()
            .any(|i| i.ip().is_ipv4() && !i.is_loopback() && !is_link_local(i.ip()));
        assert_eq!(!all.is_empty(), has_v4, "every usable interface address is listed");
    }
}
