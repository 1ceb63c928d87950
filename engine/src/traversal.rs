//! Reaching a holder across NATs (the messages are in [`swarm_proto::traversal`]): a node that
//! cannot reach a holder directly asks the tracker to introduce them, and later for a relay
//! ([`reach`]); the holder's side, and the paths remembered, are [`crate::nat`]. QUIC's
//! handshake proves the holder's id on every path, so a wrong turn costs time, never trust.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use swarm_proto::dial::{self, DialError};
use swarm_proto::traversal::{bind_datagram, DIALS_AFTER_INTRODUCTION, PUNCH};
use swarm_proto::{PeerId, Transport};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::nat::{Path, Reached};
use crate::session::Session;

/// How long direct dialling has alone before the tracker is asked for an introduction: longer
/// than a handshake takes on all but the slowest links.
pub const INTRODUCE_AFTER: Duration = Duration::from_millis(600);
/// How long from the start before a relay is asked for too.
pub const RELAY_AFTER: Duration = Duration::from_secs(3);

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

/// Dials holder `peer`: at `addrs` at once; through its NAT after [`INTRODUCE_AFTER`] without
/// an answer (the tracker of `session` introduces the two); through a relay after
/// [`RELAY_AFTER`]. The first handshake that proves the holder's id wins. A connection kept
/// for it ([`crate::warm`]) is taken instead, if it is still open.
pub async fn reach(
    transport: &Transport,
    session: &Session,
    peer: PeerId,
    addrs: &[SocketAddr],
) -> Result<Reached, Unreached> {
    if let Some(kept) = session.warm().take(&peer) {
        return Ok(kept);
    }
    // A holder reached through its NAT or a relay lately is likely to be so again.
    let (introduce_after, relay_after) = match session.paths().get(&peer) {
        Some(Path::Punched) => (Duration::ZERO, RELAY_AFTER),
        Some(Path::Relayed) => (INTRODUCE_AFTER, Duration::ZERO),
        Some(Path::Direct) | None => (INTRODUCE_AFTER, RELAY_AFTER),
    };
    let mut unfinished = Unfinished {
        session: session.clone(),
        peer,
        started: std::time::Instant::now(),
        introduce_after,
        armed: true,
    };
    let mut ways = start_ways(transport, session, peer, addrs, (introduce_after, relay_after));
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
                unfinished.armed = false;
                // Said once per holder, not for every file of a folder.
                if session.paths().taken(peer, reached.path) {
                    say_path(peer, &reached);
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
    unfinished.armed = false;
    Err(unreached)
}

/// The three ways to `peer`, each started after its wait: straight at `addrs` at once,
/// through its NAT after `introduce_after`, through a relay after `relay_after`.
fn start_ways(
    transport: &Transport,
    session: &Session,
    peer: PeerId,
    addrs: &[SocketAddr],
    (introduce_after, relay_after): (Duration, Duration),
) -> JoinSet<Way> {
    let mut ways: JoinSet<Way> = JoinSet::new();
    let (dialler, asker) = (transport.clone(), session.clone());
    let direct = addrs.to_vec();
    ways.spawn(async move {
        match directly(&dialler, &direct, peer).await {
            Ok(reached) => Way::Reached(reached),
            Err(e) => Way::DirectFailed(e),
        }
    });
    let dialler = transport.clone();
    ways.spawn(async move {
        tokio::time::sleep(introduce_after).await;
        Way::or_failed(Path::Punched, punched(&dialler, &asker, peer).await)
    });
    let (dialler, asker) = (transport.clone(), session.clone());
    ways.spawn(async move {
        tokio::time::sleep(relay_after).await;
        Way::or_failed(Path::Relayed, relayed(&dialler, &asker, peer).await)
    });
    ways
}

/// Says how a holder was reached, the first time it is reached that way: a relay is slower
/// (capped by its operator), which a person may act on: a warning; a punched path is as fast
/// as a direct one: a log line.
fn say_path(peer: PeerId, reached: &Reached) {
    match reached.path {
        Path::Relayed => warn!(
            peer = %peer.short(), via = %reached.addr,
            "holder reached through a relay only (no direct path through the NATs \
             between us): as fast as the relay's rate allows; a port forwarded on either \
             router (or UPnP switched on) gives a direct path"
        ),
        Path::Punched => info!(
            peer = %peer.short(), via = %reached.addr,
            "holder reached through its NAT (the tracker introduced us)"
        ),
        Path::Direct => {}
    }
}

/// How long [`reach_without_relay`] tries: a direct dial, or an introduction and the punched
/// dials after it.
pub const WITHOUT_RELAY_PATIENCE: Duration = Duration::from_secs(3);

/// Tries for a path to `peer` that does not go through a relay (directly at `addrs`, or
/// through its NAT after [`INTRODUCE_AFTER`]) for at most [`WITHOUT_RELAY_PATIENCE`]. A
/// download that reached a holder through a relay asks this now and then, to move over when a
/// direct path opens (a port forwarded, a firewall opened, a NAT restarted in a kinder mode).
pub async fn reach_without_relay(
    transport: &Transport,
    session: &Session,
    peer: PeerId,
    addrs: &[SocketAddr],
) -> Option<Reached> {
    let direct = async { directly(transport, addrs, peer).await.ok() };
    let through_nat = async {
        tokio::time::sleep(INTRODUCE_AFTER).await;
        punched(transport, session, peer).await.ok()
    };
    let first = async {
        tokio::pin!(direct, through_nat);
        let (mut direct_done, mut punch_done) = (false, false);
        loop {
            tokio::select! {
                reached = &mut direct, if !direct_done => match reached {
                    Some(reached) => return Some(reached),
                    None => direct_done = true,
                },
                reached = &mut through_nat, if !punch_done => match reached {
                    Some(reached) => return Some(reached),
                    None => punch_done = true,
                },
                else => return None,
            }
        }
    };
    let reached = tokio::time::timeout(WITHOUT_RELAY_PATIENCE, first)
        .await
        .ok()
        .flatten()?;
    session.paths().taken(peer, reached.path);
    Some(reached)
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

/// Dials `peer` at `addrs` (a quarter second apart; the first that proves its id wins).
async fn directly(transport: &Transport, addrs: &[SocketAddr], peer: PeerId) -> Result<Reached, DialError> {
    let dialled = dial::connect_first(transport, addrs, peer).await?;
    if !dialled.failed.is_empty() {
        debug!("reached at {} after: {}", dialled.addr, DialError(dialled.failed));
    }
    Ok(Reached {
        connection: dialled.connection,
        addr: dialled.addr,
        path: Path::Direct,
    })
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
    tokio::spawn(crate::nat::send_a_few_times(
        transport.clone(),
        vec![(pass.addr, bind.to_vec())],
    ));
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
