//! Introductions: the tracker as the go-between of two peers that cannot reach each other
//! directly (see [`swarm_proto::traversal`]). A peer behind a NAT waits here for introductions
//! (a long poll); a fetcher that cannot reach it asks to be introduced, and the waiting peer is
//! told at once where the fetcher is, and, if asked, given a pass into a relay session.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarm_proto::protocol::{ErrorCode, Refusal, TrackerResponse, INTRODUCTION_WAIT};
use swarm_proto::traversal::{Introduction, RelayPass};
use swarm_proto::PeerId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::relay::Relay;
use crate::relay_server::RemoteRelay;

/// A peer counts as waiting for this long after its last wait began or ended (the moment
/// between one answer and its next wait, with room for a slow link).
const STILL_WAITING: Duration = Duration::from_secs(INTRODUCTION_WAIT.as_secs() + 15);
/// Most introductions kept for one peer between two of its waits.
const MAX_WAITING: usize = 64;

/// Who waits for introductions, and what each has been told since its last answer.
pub struct Introducer {
    mailboxes: Mutex<HashMap<PeerId, Mailbox>>,
    relay: Option<RelaySource>,
    closing: CancellationToken,
}

/// Where relay sessions come from: this tracker itself, or a relay of its own on another host
/// (`swarm relay`, `swarm tracker --relay`).
pub enum RelaySource {
    /// The tracker relays.
    Here(Arc<Relay>),
    /// A relay elsewhere opens the sessions.
    Elsewhere(Arc<RemoteRelay>),
}

impl RelaySource {
    /// A session for a side at `asker` that reached this tracker at `asker_tracker_ip` and
    /// one that reached it at `holder_tracker_ip`; `None` where the tracker's own relay cannot
    /// tell where the passes should point.
    async fn open(
        &self,
        asker: IpAddr,
        asker_tracker_ip: Option<IpAddr>,
        holder_tracker_ip: Option<IpAddr>,
    ) -> Result<Option<(RelayPass, RelayPass)>, Refusal> {
        match (self, asker_tracker_ip, holder_tracker_ip) {
            (RelaySource::Here(relay), Some(first), Some(second)) => relay.open(asker, first, second).map(Some),
            (RelaySource::Here(_), ..) => Ok(None),
            (RelaySource::Elsewhere(remote), ..) => remote.open(asker).await.map(Some),
        }
    }
}

struct Mailbox {
    introductions: Vec<Introduction>,
    wake: Arc<Notify>,
    /// When it last began or ended a wait.
    seen: Instant,
    /// The tracker's address as this peer dialled it (where its relay passes point).
    tracker_ip: Option<IpAddr>,
}

impl Introducer {
    /// An introducer that opens relay sessions from `relay` (none: it does not relay); waits
    /// end when `closing` fires.
    pub fn new(relay: Option<RelaySource>, closing: CancellationToken) -> Introducer {
        Introducer {
            mailboxes: Mutex::default(),
            relay,
            closing,
        }
    }

    /// The relay, if this tracker relays itself.
    pub fn relay(&self) -> Option<&Arc<Relay>> {
        match &self.relay {
            Some(RelaySource::Here(relay)) => Some(relay),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Mailbox>> {
        self.mailboxes.lock().expect("mailboxes lock poisoned")
    }

    /// `peer` waits (it dialled the tracker at `tracker_ip`): answered with the introductions
    /// made for it, as soon as there is one, or empty after [`INTRODUCTION_WAIT`].
    pub async fn wait(&self, peer: PeerId, tracker_ip: Option<IpAddr>) -> TrackerResponse {
        let wake = {
            let mut mailboxes = self.lock();
            let mailbox = mailboxes.entry(peer).or_insert_with(|| Mailbox {
                introductions: Vec::new(),
                wake: Arc::new(Notify::new()),
                seen: Instant::now(),
                tracker_ip,
            });
            mailbox.seen = Instant::now();
            mailbox.tracker_ip = tracker_ip;
            if !mailbox.introductions.is_empty() {
                return TrackerResponse::Introductions(std::mem::take(&mut mailbox.introductions));
            }
            mailbox.wake.clone()
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(INTRODUCTION_WAIT) => {}
            _ = self.closing.cancelled() => {}
        }
        let mut mailboxes = self.lock();
        let introductions = match mailboxes.get_mut(&peer) {
            Some(mailbox) => {
                mailbox.seen = Instant::now();
                std::mem::take(&mut mailbox.introductions)
            }
            None => Vec::new(),
        };
        TrackerResponse::Introductions(introductions)
    }

    /// Does `peer` wait here for introductions (it is behind a NAT)?
    pub fn waits(&self, peer: &PeerId) -> bool {
        self.lock().get(peer).is_some_and(|m| m.seen.elapsed() < STILL_WAITING)
    }

    /// Tells `holder`, if it waits here, that a node `checker` at port `port` of the tracker's
    /// own address (as the holder dialled it) wants to reach it: the tracker's spot checks
    /// come from a port of their own, under a key of their own, like any fetcher's first
    /// request. Returns whether it was told.
    pub fn introduce_checker(&self, holder: PeerId, checker: PeerId, port: u16) -> bool {
        let mut mailboxes = self.lock();
        let Some(mailbox) = mailboxes.get_mut(&holder) else {
            return false;
        };
        let waiting = mailbox.seen.elapsed() < STILL_WAITING && mailbox.introductions.len() < MAX_WAITING;
        let Some(tracker_ip) = mailbox.tracker_ip.filter(|_| waiting) else {
            return false;
        };
        mailbox.introductions.push(Introduction {
            peer: checker,
            addr: SocketAddr::new(tracker_ip, port),
            relay: None,
        });
        mailbox.wake.notify_one();
        true
    }

    /// `asker` (seen at `asker_addr`, having dialled the tracker at `asker_tracker_ip`) asks
    /// to be introduced to `holder`, registered at `holder_addr`; with `relay`, through a
    /// relay session too.
    pub async fn introduce(
        &self,
        asker: PeerId,
        asker_addr: SocketAddr,
        asker_tracker_ip: Option<IpAddr>,
        holder: PeerId,
        holder_addr: SocketAddr,
        relay: bool,
    ) -> TrackerResponse {
        let holder_tracker_ip = match self.may_introduce(&holder) {
            Ok(ip) => ip,
            Err(refusal) => return refusal.into(),
        };
        let passes = match (&self.relay, relay) {
            (Some(source), true) => match source.open(asker_addr.ip(), asker_tracker_ip, holder_tracker_ip).await {
                Ok(passes) => passes,
                Err(refusal) => return refusal.into(),
            },
            _ => None,
        };
        let mut mailboxes = self.lock();
        let Some(mailbox) = mailboxes.get_mut(&holder) else {
            return Refusal::new(ErrorCode::NotFound, format!("peer {} stopped waiting", holder.short())).into();
        };
        mailbox.introductions.push(Introduction {
            peer: asker,
            addr: asker_addr,
            relay: passes.map(|(_, theirs)| theirs),
        });
        mailbox.wake.notify_one();
        TrackerResponse::Introduced {
            addr: holder_addr,
            relay: passes.map(|(mine, _)| mine),
        }
    }

    /// Whether `holder` waits here and has room for one more introduction: the address it
    /// reached this tracker at, if so.
    fn may_introduce(&self, holder: &PeerId) -> Result<Option<IpAddr>, Refusal> {
        let mut mailboxes = self.lock();
        let now = Instant::now();
        mailboxes.retain(|_, mailbox| now.duration_since(mailbox.seen) < STILL_WAITING);
        let Some(mailbox) = mailboxes.get(holder) else {
            return Err(Refusal::new(
                ErrorCode::NotFound,
                format!(
                    "peer {} is not waiting for introductions here (it is not behind a NAT, or talks to another tracker)",
                    holder.short()
                ),
            ));
        };
        if mailbox.introductions.len() >= MAX_WAITING {
            return Err(Refusal::new(
                ErrorCode::Busy,
                "that peer has many introductions waiting; try again shortly",
            ));
        }
        Ok(mailbox.tracker_ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// Peer 2 (seen at 198.51.100.2:9000) asks `introducer` to introduce it to peer 1
    /// (registered at 198.51.100.1:7000), with a relay if `relay`.
    async fn asks_for_peer_1(introducer: &Introducer, relay: bool) -> TrackerResponse {
        introducer
            .introduce(
                peer(2),
                addr("198.51.100.2:9000"),
                None,
                peer(1),
                addr("198.51.100.1:7000"),
                relay,
            )
            .await
    }

    #[tokio::test]
    async fn a_waiting_peer_is_told_at_once_and_the_asker_where_it_is() {
        let introducer = Arc::new(Introducer::new(None, CancellationToken::new()));
        let waiting = {
            let introducer = introducer.clone();
            tokio::spawn(async move { introducer.wait(peer(1), None).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let answer = asks_for_peer_1(&introducer, true).await;
        assert_eq!(
            answer,
            TrackerResponse::Introduced {
                addr: addr("198.51.100.1:7000"),
                relay: None
            }
        );
        let told = waiting.await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not held for the whole wait"
        );
        assert_eq!(
            told,
            TrackerResponse::Introductions(vec![Introduction {
                peer: peer(2),
                addr: addr("198.51.100.2:9000"),
                relay: None
            }])
        );
    }

    #[tokio::test]
    async fn a_peer_that_never_waited_cannot_be_introduced_to() {
        let introducer = Introducer::new(None, CancellationToken::new());
        let answer = asks_for_peer_1(&introducer, false).await;
        assert!(matches!(
            answer,
            TrackerResponse::Error {
                code: ErrorCode::NotFound,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn introductions_made_between_two_waits_are_kept_for_the_next() {
        let closing = CancellationToken::new();
        closing.cancel();
        // A wait that ended (the tracker closing ends it at once) leaves the peer waiting.
        let ended = Introducer::new(None, closing);
        assert_eq!(ended.wait(peer(1), None).await, TrackerResponse::Introductions(vec![]));
        let mailbox_kept = asks_for_peer_1(&ended, false).await;
        assert!(matches!(mailbox_kept, TrackerResponse::Introduced { .. }));
        assert!(matches!(ended.wait(peer(1), None).await, TrackerResponse::Introductions(list) if list.len() == 1));
    }

    #[tokio::test]
    async fn with_a_relay_each_side_gets_its_own_pass_to_one_session() {
        let relay = Arc::new(Relay::new(None, "127.0.0.1".parse().unwrap(), CancellationToken::new()));
        let introducer = Arc::new(Introducer::new(
            Some(RelaySource::Here(relay)),
            CancellationToken::new(),
        ));
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let waiting = {
            let introducer = introducer.clone();
            tokio::spawn(async move { introducer.wait(peer(1), Some(loopback)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let TrackerResponse::Introduced { relay: Some(mine), .. } = introducer
            .introduce(
                peer(2),
                addr("127.0.0.1:9000"),
                Some(loopback),
                peer(1),
                addr("127.0.0.1:7000"),
                true,
            )
            .await
        else {
            panic!("no relay pass");
        };
        let TrackerResponse::Introductions(told) = waiting.await.unwrap() else {
            panic!("not introductions");
        };
        let theirs = told[0].relay.expect("a pass for the holder");
        assert_eq!(mine.addr, theirs.addr);
        assert_ne!(mine.token, theirs.token);
    }
}
