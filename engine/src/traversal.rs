//! Crossing NATs, from a node's side (the messages are in [`swarm_proto::traversal`]). A node
//! behind a NAT waits at its tracker for introductions and punches a hole towards whoever asks
//! ([`answer_introductions`]); a node that cannot reach a holder directly asks the tracker to
//! introduce them, and later for a relay ([`reach`]). QUIC's handshake proves the holder's id
//! on every path, so a wrong turn costs time, never trust.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use quinn::Connection;
use swarm_proto::dial::{self, DialError};
use swarm_proto::traversal::{bind_datagram, Introduction, DIALS_AFTER_INTRODUCTION, PUNCH};
use swarm_proto::{PeerId, Transport};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::session::Session;
use crate::tracker_client::TrackerClient;

/// How long direct dialling has alone before the tracker is asked for an introduction: longer
/// than a handshake takes on all but the slowest links.
pub const INTRODUCE_AFTER: Duration = Duration::from_millis(600);
/// How long from the start before a relay is asked for too.
pub const RELAY_AFTER: Duration = Duration::from_secs(3);
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
    /// Through the tracker's relay.
    Relayed,
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
    fn suggest(&self, peer: PeerId, path: Path) {
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

/// A holder reached.
#[derive(Debug)]
pub struct Reached {
    /// The connection; its id proved.
    pub connection: Connection,
    /// The address that answered (the relay's, for a relayed path).
    pub addr: SocketAddr,
    /// How.
    pub path: Path,
}

/// Every way to a holder failed.
#[derive(Debug)]
pub struct Unreached {
    /// Why each of its addresses failed.
    pub direct: DialError,
    /// Why an introduction (and the punched dial after it) failed, if one was tried.
    pub punched: Option<String>,
    /// Why the relay failed, if it was tried.
    pub relayed: Option<String>,
}

impl fmt::Display for Unreached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.direct)?;
        if let Some(why) = &self.punched {
            write!(f, "; through its NAT: {why}")?;
        }
        if let Some(why) = &self.relayed {
            write!(f, "; through a relay: {why}")?;
        }
        Ok(())
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
    let started = tokio::time::Instant::now();
    for at in PUNCH_AT_MS {
        tokio::time::sleep_until(started + Duration::from_millis(at)).await;
        let _ = transport.send_datagram(introduction.addr, &PUNCH);
        if let Some(pass) = &introduction.relay {
            let _ = transport.send_datagram(pass.addr, &bind_datagram(&pass.token));
        }
    }
}

/// Dials holder `peer`: at `addrs` at once; through its NAT after [`INTRODUCE_AFTER`] without
/// an answer (the tracker of `session` introduces the two); through a relay after
/// [`RELAY_AFTER`]. The first handshake that proves the holder's id wins.
pub async fn reach(
    transport: &Transport,
    session: Option<&Session>,
    peer: PeerId,
    addrs: &[SocketAddr],
) -> Result<Reached, Unreached> {
    let mut ways: JoinSet<Way> = JoinSet::new();
    let mut guard = None;
    {
        let (transport, addrs) = (transport.clone(), addrs.to_vec());
        ways.spawn(async move {
            match dial::connect_first(&transport, &addrs, peer).await {
                Ok(dialled) => {
                    if !dialled.failed.is_empty() {
                        debug!("reached at {} after: {}", dialled.addr, DialError(dialled.failed));
                    }
                    Way::Reached(Reached {
                        connection: dialled.connection,
                        addr: dialled.addr,
                        path: Path::Direct,
                    })
                }
                Err(e) => Way::DirectFailed(e),
            }
        });
    }
    if let Some(session) = session {
        // A holder reached through its NAT or a relay lately is likely to be so again.
        let (introduce_after, relay_after) = match session.paths().get(&peer) {
            Some(Path::Punched) => (Duration::ZERO, RELAY_AFTER),
            Some(Path::Relayed) => (INTRODUCE_AFTER, Duration::ZERO),
            Some(Path::Direct) | None => (INTRODUCE_AFTER, RELAY_AFTER),
        };
        guard = Some(Unfinished {
            session: session.clone(),
            peer,
            started: std::time::Instant::now(),
            introduce_after,
            armed: true,
        });
        let (dialler, asker) = (transport.clone(), session.clone());
        ways.spawn(async move {
            tokio::time::sleep(introduce_after).await;
            Way::or_failed(Path::Punched, punched(&dialler, &asker, peer).await)
        });
        let (transport, session) = (transport.clone(), session.clone());
        ways.spawn(async move {
            tokio::time::sleep(relay_after).await;
            Way::or_failed(Path::Relayed, relayed(&transport, &session, peer).await)
        });
    }
    let mut unreached = Unreached {
        direct: DialError(Vec::new()),
        punched: None,
        relayed: None,
    };
    while let Some(done) = ways.join_next().await {
        // A way that panicked is one way fewer.
        let Ok(way) = done else { continue };
        match way {
            Way::Reached(reached) => {
                if let Some(unfinished) = &mut guard {
                    unfinished.armed = false;
                    let news = unfinished.session.paths().taken(peer, reached.path);
                    // Said once per holder, not for every file of a folder.
                    if news && reached.path != Path::Direct {
                        info!(peer = %peer.short(), via = %reached.addr, "holder reached {}", match reached.path {
                            Path::Relayed => "through the tracker's relay (no direct path through the NATs between us)",
                            _ => "through its NAT (the tracker introduced us)",
                        });
                    }
                }
                return Ok(reached);
            }
            // Reached, but of another version or swarm: no other path will say otherwise.
            Way::DirectFailed(e) if e.is_final() => {
                unreached.direct = e;
                return Err(unreached);
            }
            Way::DirectFailed(e) => {
                debug!(peer = %peer.short(), "not reached directly: {e}");
                unreached.direct = e;
            }
            Way::Failed(path, why) => {
                debug!(peer = %peer.short(), "not reached ({path}): {why}");
                match path {
                    Path::Relayed => unreached.relayed = Some(why),
                    _ => unreached.punched = Some(why),
                }
            }
        }
    }
    // Every way ended: nothing learnt about which is likely next time.
    if let Some(unfinished) = &mut guard {
        unfinished.armed = false;
    }
    Err(unreached)
}

/// How long a hole punched has to let a handshake through before the holder is taken to need
/// a relay (a round trip or two, when it works at all).
const PUNCH_PATIENCE: Duration = Duration::from_secs(1);

/// A [`reach`] under way. Dropped unfinished (its caller gave up: a manifest came from
/// elsewhere, a download moved on), it records how far it got without an answer, so that the
/// next connection to the holder starts there: a folder's files, each asked and fetched over
/// connections of their own, do not each wait the same timeouts again.
struct Unfinished {
    session: Session,
    peer: PeerId,
    started: std::time::Instant,
    introduce_after: Duration,
    /// Cleared once the reach ended by itself.
    armed: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let elapsed = self.started.elapsed();
        let learnt = if elapsed >= self.introduce_after + PUNCH_PATIENCE {
            Path::Relayed
        } else if elapsed >= INTRODUCE_AFTER {
            Path::Punched
        } else {
            return;
        };
        self.session.paths().suggest(self.peer, learnt);
    }
}

/// How one way to a holder ended.
enum Way {
    Reached(Reached),
    DirectFailed(DialError),
    Failed(Path, String),
}

impl Way {
    fn or_failed(path: Path, outcome: Result<Reached, String>) -> Way {
        match outcome {
            Ok(reached) => Way::Reached(reached),
            Err(why) => Way::Failed(path, why),
        }
    }
}

/// Asks the tracker to introduce this node to `peer`, then dials it where the tracker sees it,
/// a few times as its punches come.
async fn punched(transport: &Transport, session: &Session, peer: PeerId) -> Result<Reached, String> {
    let (addr, _) = session.introduce(peer, false).await.map_err(|e| e.to_string())?;
    // Our side of the hole: the holder's punches, and its handshake answers, come from there.
    let _ = transport.send_datagram(addr, &PUNCH);
    let connection = dial::connect_repeatedly(transport, addr, peer, &DIALS_AFTER_INTRODUCTION)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Reached {
        connection,
        addr,
        path: Path::Punched,
    })
}

/// Asks the tracker for a relay session with `peer`, binds to it and dials the holder through
/// it.
async fn relayed(transport: &Transport, session: &Session, peer: PeerId) -> Result<Reached, String> {
    let (_, pass) = session.introduce(peer, true).await.map_err(|e| e.to_string())?;
    let pass = pass.ok_or("the tracker does not relay (swarm tracker --relay-rate 0)")?;
    let bind = bind_datagram(&pass.token);
    // Bound before the handshake's first packet leaves: the relay drops what comes from a side
    // it does not know yet. Sent again a few times after, in case it was lost.
    let _ = transport.send_datagram(pass.addr, &bind);
    {
        let transport = transport.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            for at in PUNCH_AT_MS {
                tokio::time::sleep_until(started + Duration::from_millis(at)).await;
                let _ = transport.send_datagram(pass.addr, &bind);
            }
        });
    }
    let (connection, _) = transport
        .connect(pass.addr, Some(peer))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Reached {
        connection,
        addr: pass.addr,
        path: Path::Relayed,
    })
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
