//! Holder addresses as the asker can reach them.
//!
//! A node on the tracker's own machine registers over loopback (the node beside an embedded
//! tracker always does), so the tracker records `127.0.0.1:PORT` for it. Handed to another
//! machine, that address reaches nothing there. So for an asker that is not on this machine,
//! a loopback holder address is given the IP the asker dialled to reach the tracker (the
//! address of this machine on the asker's path), with the holder's port: the holder runs on
//! this machine and, by default, listens on all of its addresses. Askers on this machine get
//! addresses as recorded.

use std::net::{IpAddr, SocketAddr};

use swarm_proto::protocol::TrackerResponse;

/// Rewrites the holder addresses of `response` for an asker at `asker` that reached the
/// tracker at `dialled` (the local IP of its connection, if the platform tells it).
pub fn as_seen_by(response: &mut TrackerResponse, asker: SocketAddr, dialled: Option<IpAddr>) {
    let Some(dialled) = dialled
        .map(unmapped)
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    else {
        return;
    };
    if unmapped(asker.ip()).is_loopback() {
        return;
    }
    let reachable = |addr: &mut SocketAddr| {
        let ip = unmapped(addr.ip());
        if ip.is_loopback() && ip.is_ipv4() == dialled.is_ipv4() {
            addr.set_ip(dialled);
        }
    };
    match response {
        TrackerResponse::Located { holders, .. } => holders.iter_mut().for_each(|h| reachable(&mut h.addr)),
        TrackerResponse::Holdings(holdings) => holdings.iter_mut().for_each(|h| reachable(&mut h.addr)),
        TrackerResponse::Batch(answers) => answers.iter_mut().for_each(|a| as_seen_by(a, asker, Some(dialled))),
        _ => {}
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
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
}
