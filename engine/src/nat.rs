//! Where this node stands among NATs (the messages are in [`swarm_proto::traversal`]): how
//! connections to holders run ([`Path`], and a holder reached on one: [`Reached`]) and how
//! each was last reached ([`Paths`]); whether
//! this node is behind a NAT, and if so, waiting at its tracker for introductions and punching
//! towards whoever asks ([`answer_introductions`]), noting where each will come from
//! ([`WaysIn`]). Reaching a holder, which needs the session, is [`crate::traversal`].

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use swarm_proto::traversal::{bind_datagram, Introduction, PUNCH};
use swarm_proto::{PeerId, Transport};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::tracker_client::TrackerClient;

/// When punch (or relay bind) datagrams leave, from the introduction on: one may be lost, and
/// the other side's first handshake packet may be on its way a moment later.
const PUNCH_AT_MS: [u64; 4] = [0, 50, 200, 600];

/// How a connection to a holder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// To an address it was dialled at.
    Direct,
    /// Through NATs, after the tracker introduced the two and the holder punched a hole.
    Punched,
    /// Through a relay (the tracker's, or `swarm relay`).
    Relayed,
}

/// A holder reached: a connection whose holder's id the handshake proved.
#[derive(Debug)]
pub struct Reached {
    /// The connection.
    pub connection: quinn::Connection,
    /// The address that answered (the relay's, for a relayed path).
    pub addr: SocketAddr,
    /// How.
    pub path: Path,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Path::Direct => "direct",
            Path::Punched => "punched",
            Path::Relayed => "relayed",
        })
    }
}

/// How holders were last reached, for a while: the next connection to one that took a relay
/// asks for the relay at once, and one to a holder reached through its NAT asks for the
/// introduction at once (a folder's files are fetched one after another, each with its own
/// connections).
#[derive(Default)]
pub struct Paths(std::sync::Mutex<std::collections::HashMap<PeerId, Remembered>>);

/// A path, when, and whether a connection took it (or a reach given up only suggests it).
#[derive(Debug, Clone, Copy)]
struct Remembered {
    path: Path,
    at: std::time::Instant,
    taken: bool,
}

/// How long a path taken is remembered.
const PATH_REMEMBERED: Duration = Duration::from_secs(600);

impl Paths {
    /// How `peer` was last reached (or likely will be), if lately.
    pub fn get(&self, peer: &PeerId) -> Option<Path> {
        self.lookup(peer).map(|r| r.path)
    }

    fn lookup(&self, peer: &PeerId) -> Option<Remembered> {
        let paths = self.0.lock().expect("paths lock poisoned");
        paths.get(peer).filter(|r| r.at.elapsed() < PATH_REMEMBERED).copied()
    }

    fn record(&self, peer: PeerId, path: Path, taken: bool) {
        let mut paths = self.0.lock().expect("paths lock poisoned");
        paths.retain(|_, r| r.at.elapsed() < PATH_REMEMBERED);
        let at = std::time::Instant::now();
        paths.insert(peer, Remembered { path, at, taken });
    }

    /// Records that a connection to `peer` took `path`; returns whether that is news (the
    /// last connection took another, or none was made lately).
    pub fn taken(&self, peer: PeerId, path: Path) -> bool {
        let news = !self.lookup(&peer).is_some_and(|r| r.taken && r.path == path);
        self.record(peer, path, true);
        news
    }

    /// Records that `peer` likely needs `path`: a reach given up got that far without an
    /// answer. A path taken is not overruled, unless it was direct or the suggestion is a relay.
    pub(crate) fn suggest(&self, peer: PeerId, path: Path) {
        let known = self.lookup(&peer);
        if known.is_none_or(|r| !r.taken || r.path == Path::Direct || path == Path::Relayed) {
            self.record(peer, path, false);
        }
    }
}

/// The addresses this node was told peers would come from (introductions): a connection from
/// one of them came through a hole punched for it, or through a relay session it bound to.
/// For status: how each peer served reached this node.
#[derive(Default)]
pub struct WaysIn(std::sync::Mutex<std::collections::HashMap<SocketAddr, (Path, std::time::Instant)>>);

impl WaysIn {
    /// How a peer at `addr` came in: [`Path::Direct`] unless it was introduced lately.
    pub fn path_of(&self, addr: SocketAddr) -> Path {
        let ways = self.0.lock().expect("ways lock poisoned");
        ways.get(&addr)
            .filter(|(_, at)| at.elapsed() < PATH_REMEMBERED)
            .map_or(Path::Direct, |(path, _)| *path)
    }

    fn note(&self, introduction: &Introduction) {
        let mut ways = self.0.lock().expect("ways lock poisoned");
        ways.retain(|_, (_, at)| at.elapsed() < PATH_REMEMBERED);
        let now = std::time::Instant::now();
        ways.insert(introduction.addr, (Path::Punched, now));
        if let Some(pass) = &introduction.relay {
            ways.insert(pass.addr, (Path::Relayed, now));
        }
    }
}

/// Is a node that the tracker sees at `seen` behind a NAT, given its own addresses `own`?
/// Yes if the tracker sees it at an address that is none of its own (and not loopback: a
/// tracker on the same machine).
pub fn behind_nat(seen: SocketAddr, own: &[SocketAddr]) -> bool {
    !seen.ip().is_loopback() && !own.iter().any(|addr| addr.ip() == seen.ip())
}

/// Waits at the tracker for introductions until `stop`, punching towards each peer that asks
/// (and binding to its relay session, if one was opened); notes in `ways_in` where each
/// will come from.
pub async fn answer_introductions(
    client: std::sync::Arc<TrackerClient>,
    ways_in: std::sync::Arc<WaysIn>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let waited = tokio::select! {
            _ = stop.cancelled() => return,
            waited = client.await_introductions() => waited,
        };
        match waited {
            Ok(introductions) => {
                failures = 0;
                for introduction in introductions {
                    ways_in.note(&introduction);
                    debug!(peer = %introduction.peer.short(), addr = %introduction.addr, relay = introduction.relay.is_some(), "introduced");
                    tokio::spawn(punch(client.transport().clone(), introduction));
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    debug!("cannot wait for introductions (peers behind NATs may not reach this one): {e}");
                }
                let pause = Duration::from_secs(u64::from(failures.min(12)) * 5);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Sends the datagrams that open this node's NAT to the peer introduced (and bind it to the
/// relay session, if any).
async fn punch(transport: Transport, introduction: Introduction) {
    let mut datagrams = vec![(introduction.addr, PUNCH.to_vec())];
    if let Some(pass) = &introduction.relay {
        datagrams.push((pass.addr, bind_datagram(&pass.token).to_vec()));
    }
    send_a_few_times(transport, datagrams).await;
}

/// Sends each datagram to its address a few times, at [`PUNCH_AT_MS`] from now: one may be
/// lost, and what it is meant to open may be needed a moment later.
pub(crate) async fn send_a_few_times(transport: Transport, datagrams: Vec<(SocketAddr, Vec<u8>)>) {
    let started = tokio::time::Instant::now();
    for at in PUNCH_AT_MS {
        tokio::time::sleep_until(started + Duration::from_millis(at)).await;
        for (to, datagram) in &datagrams {
            let _ = transport.send_datagram(*to, datagram);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_seen_at_an_address_of_its_own_is_not_behind_a_nat() {
        let own: Vec<SocketAddr> = vec!["10.1.0.2:7000".parse().unwrap()];
        assert!(!behind_nat("10.1.0.2:7000".parse().unwrap(), &own));
        assert!(behind_nat("198.51.100.1:7000".parse().unwrap(), &own));
        assert!(!behind_nat("127.0.0.1:7000".parse().unwrap(), &own));
    }
}
