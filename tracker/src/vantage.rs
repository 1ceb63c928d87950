//! Holder addresses as the asker can reach them.
//!
//! A peer registers the address the tracker sees it connect from (or the one it advertises)
//! and its own interfaces' addresses beside it. Each asker gets those it can likely reach,
//! likeliest first:
//!
//! - A node on the tracker's own machine registers over loopback (the node beside an embedded
//!   tracker always does), so the tracker records `127.0.0.1:PORT` for it. For an asker on
//!   another machine that address becomes the IP the asker dialled to reach the tracker (the
//!   address of this machine on the asker's path), with the holder's port.
//! - Loopback, link-local and unspecified addresses are never given to another machine.
//! - The rest are ranked by how close each is to the asker's own address: same family first;
//!   an asker behind the same NAT as the holder (both seen from one public address) gets the
//!   holder's private addresses first; otherwise an address of the asker's kind (private or
//!   public) sharing the longest prefix with it.
//!
//! Askers on this machine get addresses as recorded.

use std::cmp::Reverse;
use std::net::{IpAddr, SocketAddr};

use swarm_proto::protocol::{Holder, TrackerResponse, MAX_PEER_ADDRS};
use swarm_proto::transport::is_link_local;

/// The addresses a peer listed when it registered that are worth handing out beside `addr`:
/// specific, not loopback (the tracker maps a loopback `addr` itself), not `addr`, no
/// duplicates, at most [`MAX_PEER_ADDRS`].
pub fn other_addrs(addr: SocketAddr, listed: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut kept: Vec<SocketAddr> = Vec::new();
    for candidate in listed {
        let ip = candidate.ip().to_canonical();
        let usable = candidate.port() != 0 && !ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast();
        if usable && candidate != addr && !kept.contains(&candidate) && kept.len() < MAX_PEER_ADDRS {
            kept.push(candidate);
        }
    }
    kept
}

/// Rewrites the holder addresses of `response` for an asker at `asker` that reached the
/// tracker at `dialled` (the local IP of its connection, if the platform tells it).
pub fn as_seen_by(response: &mut TrackerResponse, asker: SocketAddr, dialled: Option<IpAddr>) {
    let asker = asker.ip().to_canonical();
    if asker.is_loopback() {
        return;
    }
    let dialled = dialled
        .map(|ip| ip.to_canonical())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    match response {
        TrackerResponse::Located { holders, .. } => holders.iter_mut().for_each(|h| for_asker(h, asker, dialled)),
        TrackerResponse::Holdings(holdings) => holdings
            .iter_mut()
            .for_each(|h| h.addr = on_asker_path(h.addr, dialled)),
        TrackerResponse::Batch(answers) => answers
            .iter_mut()
            .for_each(|a| as_seen_by(a, SocketAddr::new(asker, 0), dialled)),
        _ => {}
    }
}

/// `holder`'s addresses for an asker at `asker` on another machine: reachable ones only,
/// likeliest first (left as they are if none is).
fn for_asker(holder: &mut Holder, asker: IpAddr, dialled: Option<IpAddr>) {
    let behind_same_nat = holder.addr.ip().to_canonical() == asker;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in holder.addrs() {
        let addr = on_asker_path(addr, dialled);
        if reachable_elsewhere(addr.ip().to_canonical()) && !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    // Stable: among equals, the order the tracker recorded (the address it saw first).
    addrs.sort_by_key(|addr| Reverse(closeness(asker, addr.ip().to_canonical(), behind_same_nat)));
    let mut addrs = addrs.into_iter();
    if let Some(best) = addrs.next() {
        holder.addr = best;
        holder.other_addrs = addrs.take(MAX_PEER_ADDRS).collect();
    }
}

/// A loopback `addr` of the tracker's own machine as the asker reaches that machine: at the
/// address it `dialled`, if of the same family.
fn on_asker_path(addr: SocketAddr, dialled: Option<IpAddr>) -> SocketAddr {
    match dialled {
        Some(dialled) if addr.ip().to_canonical().is_loopback() && addr.is_ipv4() == dialled.is_ipv4() => {
            SocketAddr::new(dialled, addr.port())
        }
        _ => addr,
    }
}

/// Whether `ip` can mean this host to another machine at all.
fn reachable_elsewhere(ip: IpAddr) -> bool {
    !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast() && !is_link_local(ip)
}

/// How likely an asker at `asker` reaches `ip`, as a value that sorts likelier higher.
fn closeness(asker: IpAddr, ip: IpAddr, behind_same_nat: bool) -> (bool, bool, u32) {
    let same_family = asker.is_ipv4() == ip.is_ipv4();
    let same_kind = private(asker) == private(ip);
    let prefix = if same_kind { common_prefix(asker, ip) } else { 0 };
    (same_family, behind_same_nat && private(ip), prefix)
}

/// Leading bits `a` and `b` share (0 across families).
fn common_prefix(a: IpAddr, b: IpAddr) -> u32 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) ^ u32::from(b)).leading_zeros(),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a) ^ u128::from(b)).leading_zeros(),
        _ => 0,
    }
}

/// An address of a private network: RFC 1918, carrier-grade NAT (100.64.0.0/10), IPv6
/// unique local (fc00::/7).
fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64),
        IpAddr::V6(v6) => v6.segments()[0] & 0xfe00 == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_proto::protocol::Holder;
    use swarm_proto::PeerId;

    fn located(addrs: &[&str]) -> TrackerResponse {
        TrackerResponse::Located {
            manifest: None,
            meta: Default::default(),
            holders: addrs
                .iter()
                .map(|a| Holder {
                    peer: PeerId([1; 32]),
                    addr: a.parse().unwrap(),
                    other_addrs: vec![],
                    complete: true,
                })
                .collect(),
            live: 1,
            retired: false,
        }
    }

    fn addrs(response: &TrackerResponse) -> Vec<String> {
        match response {
            TrackerResponse::Located { holders, .. } => holders.iter().map(|h| h.addr.to_string()).collect(),
            TrackerResponse::Batch(answers) => answers.iter().flat_map(addrs).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn a_holder_on_the_trackers_machine_is_given_out_at_the_address_the_asker_dialled() {
        let mut answer = TrackerResponse::Batch(vec![located(&["127.0.0.1:4000", "10.0.0.9:5000"])]);
        as_seen_by(
            &mut answer,
            "10.0.0.2:6000".parse().unwrap(),
            Some("10.0.0.1".parse().unwrap()),
        );
        assert_eq!(addrs(&answer), ["10.0.0.1:4000", "10.0.0.9:5000"]);
    }

    #[test]
    fn askers_on_this_machine_and_other_families_get_addresses_as_recorded() {
        let mut answer = located(&["127.0.0.1:4000", "[::1]:4001"]);
        as_seen_by(
            &mut answer,
            "127.0.0.1:6000".parse().unwrap(),
            Some("10.0.0.1".parse().unwrap()),
        );
        assert_eq!(addrs(&answer), ["127.0.0.1:4000", "[::1]:4001"]);
        as_seen_by(
            &mut answer,
            "10.0.0.2:6000".parse().unwrap(),
            Some("10.0.0.1".parse().unwrap()),
        );
        assert_eq!(addrs(&answer), ["10.0.0.1:4000", "[::1]:4001"]);
        let mut answer = located(&["127.0.0.1:4000"]);
        as_seen_by(&mut answer, "10.0.0.2:6000".parse().unwrap(), None);
        assert_eq!(addrs(&answer), ["127.0.0.1:4000"], "the dialled address unknown");
    }

    fn holder(addrs: &[&str]) -> Holder {
        let addrs: Vec<SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        Holder {
            peer: PeerId([1; 32]),
            addr: addrs[0],
            other_addrs: addrs[1..].to_vec(),
            complete: true,
        }
    }

    fn seen_by(mut holder: Holder, asker: &str, dialled: &str) -> Vec<String> {
        for_asker(&mut holder, asker.parse().unwrap(), Some(dialled.parse().unwrap()));
        holder.addrs().iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn an_asker_gets_the_holders_address_on_its_own_network_first_and_no_link_local_one() {
        let multi_homed = holder(&[
            "10.77.1.2:9",
            "10.77.2.2:9",
            "172.17.0.1:9",
            "169.254.3.3:9",
            "[fe80::1]:9",
            "[2001:db8::5]:9",
        ]);
        assert_eq!(
            seen_by(multi_homed.clone(), "10.77.2.3", "10.77.2.1"),
            ["10.77.2.2:9", "10.77.1.2:9", "172.17.0.1:9", "[2001:db8::5]:9"]
        );
        assert_eq!(
            seen_by(multi_homed, "10.77.1.7", "10.77.1.1"),
            ["10.77.1.2:9", "10.77.2.2:9", "172.17.0.1:9", "[2001:db8::5]:9"]
        );
    }

    #[test]
    fn an_asker_behind_the_holders_nat_gets_its_private_address_first_others_its_public_one() {
        let behind_nat = holder(&["203.0.113.7:9", "192.168.1.5:9"]);
        assert_eq!(
            seen_by(behind_nat.clone(), "203.0.113.7", "198.51.100.1"),
            ["192.168.1.5:9", "203.0.113.7:9"]
        );
        assert_eq!(
            seen_by(behind_nat, "198.51.100.20", "198.51.100.1"),
            ["203.0.113.7:9", "192.168.1.5:9"]
        );
    }

    #[test]
    fn a_holder_on_the_trackers_machine_is_reached_on_the_askers_path_once() {
        assert_eq!(
            seen_by(
                holder(&["127.0.0.1:9", "10.0.0.1:9", "172.17.0.1:9"]),
                "10.0.0.2",
                "10.0.0.1"
            ),
            ["10.0.0.1:9", "172.17.0.1:9"]
        );
    }

    #[test]
    fn only_specific_addresses_other_than_the_given_one_are_kept_and_at_most_eight() {
        let listed: Vec<SocketAddr> = [
            "10.0.0.1:9",
            "0.0.0.0:9",
            "127.0.0.1:9",
            "10.0.0.2:0",
            "224.0.0.1:9",
            "10.0.0.2:9",
            "10.0.0.2:9",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let kept = other_addrs("10.0.0.1:9".parse().unwrap(), listed);
        assert_eq!(kept, ["10.0.0.2:9".parse::<SocketAddr>().unwrap()]);
        let many: Vec<SocketAddr> = (1..=20).map(|i| SocketAddr::from(([10, 0, 1, i], 9))).collect();
        assert_eq!(other_addrs("10.0.0.1:9".parse().unwrap(), many).len(), MAX_PEER_ADDRS);
    }
}
