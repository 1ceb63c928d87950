//! Spot checks: the tracker asks a peer for one chunk it claims to hold and checks it against
//! the manifest, so that a peer claiming content it does not have is dropped from that file's
//! holders instead of being handed out to fetchers.
//!
//! A claim is checked when it is announced (the answer waits for the check, which costs one
//! chunk on a round trip), and claims are checked again at random later. Checks are cheap on
//! purpose, so that a tracker never becomes a downloader: one chunk per check, at most
//! [`Audits::bytes_per_second`] of chunks in all (a claim announced beyond that is listed at
//! once and checked later), a few at a time. A holder behind a NAT that waits for
//! introductions is told to let the check in (see [`crate::introductions`]); one the tracker
//! still cannot reach (or too busy) is not held to have lied.
//!
//! A check dials with a one-time key of its own, so that a holder cannot tell it from a
//! fetcher and serve checks alone. Once it ended, the holder may ask which of the peers it
//! served were checks ([`Auditor::which_were_checks`]), and show them as such: a key is never
//! used twice, so knowing it afterwards helps no holder pass the next check.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarm_proto::dial;
use swarm_proto::protocol::{ErrorCode, PeerRequest, PeerResponse};
use swarm_proto::transport::{self, Profile, Transport};
use swarm_proto::traversal::DIALS_AFTER_INTRODUCTION;
use swarm_proto::{FileId, Identity, Manifest, PeerId};
use tokio::sync::Semaphore;

use crate::introductions::Introducer;

/// How the tracker checks claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audits {
    /// Check claims at all.
    pub enabled: bool,
    /// One claim, picked at random, is checked again this often.
    pub every: Duration,
    /// Bytes of chunks fetched for checks, per second, at most.
    pub bytes_per_second: u64,
    /// Checks per second, at most (a peer announcing thousands of small files is checked on
    /// a sample of them, not on each).
    pub checks_per_second: u32,
}

impl Default for Audits {
    /// On, a random re-check every 10 s, at most 20 checks and 4 MiB of chunks a second.
    fn default() -> Self {
        Audits {
            enabled: true,
            every: Duration::from_secs(10),
            bytes_per_second: 4 << 20,
            checks_per_second: 20,
        }
    }
}

/// Checks at once, at most: each holds one chunk in memory.
const AT_ONCE: usize = 4;
/// Longest a check of a holder behind a NAT waits for the hole it was told to punch.
const PUNCHED_WITHIN: Duration = Duration::from_millis(1500);
/// Longest a check may take, connection included.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// One claim to check: `peer` at `addr` holds `chunk` of `file`.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The claimant.
    pub peer: PeerId,
    /// Where it serves.
    pub addr: SocketAddr,
    /// The file.
    pub file: FileId,
    /// Its manifest.
    pub manifest: Arc<Manifest>,
    /// The chunk to ask for.
    pub chunk: u32,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The peer sent the chunk, and it matches.
    Held,
    /// The peer does not have it (it said so, or sent other bytes).
    Lied(String),
    /// No answer either way: unreachable, busy or too slow.
    Unknown(String),
}

/// Runs checks within the budget.
pub struct Auditor {
    /// The tracker's endpoint: checks dial from its address, but not from it.
    transport: Transport,
    /// The endpoint checks dial from, bound at the first check.
    checker: Mutex<Option<Transport>>,
    config: Audits,
    at_once: Semaphore,
    /// Bytes and checks the budget still allows, and when it was last topped up.
    allowance: Mutex<Allowance>,
    /// Tells holders behind NATs that a check comes.
    introducer: Arc<Introducer>,
    /// The keys of the checks that ended lately, for holders that ask.
    ended: Mutex<EndedChecks>,
}

/// How long a holder may ask about a check after it ended: time for a node to see the
/// upload end (it waits a second or two) and ask.
const ENDED_KEPT: Duration = Duration::from_secs(300);
/// Most checks of one holder remembered (at most [`Audits::checks_per_second`] are made in
/// all, so a holder rarely has more than a few within [`ENDED_KEPT`]).
const ENDED_PER_HOLDER: usize = 32;

/// The keys of the checks that ended in the last [`ENDED_KEPT`], by the holder checked.
#[derive(Default)]
struct EndedChecks {
    by_holder: HashMap<PeerId, VecDeque<(PeerId, Instant)>>,
    /// When entries older than [`ENDED_KEPT`] were last dropped.
    swept: Option<Instant>,
}

impl EndedChecks {
    fn record(&mut self, holder: PeerId, key: PeerId, now: Instant) {
        if self
            .swept
            .is_none_or(|at| now.saturating_duration_since(at) >= ENDED_KEPT)
        {
            self.by_holder.retain(|_, keys| {
                keys.retain(|(_, at)| now.saturating_duration_since(*at) < ENDED_KEPT);
                !keys.is_empty()
            });
            self.swept = Some(now);
        }
        let keys = self.by_holder.entry(holder).or_default();
        if keys.len() == ENDED_PER_HOLDER {
            keys.pop_front();
        }
        keys.push_back((key, now));
    }

    fn was_check(&self, holder: PeerId, key: PeerId, now: Instant) -> bool {
        self.by_holder.get(&holder).is_some_and(|keys| {
            keys.iter()
                .any(|(k, at)| *k == key && now.saturating_duration_since(*at) < ENDED_KEPT)
        })
    }
}

struct Allowance {
    bytes: f64,
    checks: f64,
    since: Instant,
}

impl Auditor {
    /// Checks from the address of `transport` (the tracker's endpoint), within `config`;
    /// holders behind NATs are told through `introducer` to let a check in.
    pub fn new(transport: Transport, config: Audits, introducer: Arc<Introducer>) -> Auditor {
        Auditor {
            introducer,
            transport,
            checker: Mutex::new(None),
            config,
            at_once: Semaphore::new(AT_ONCE),
            ended: Mutex::default(),
            allowance: Mutex::new(Allowance {
                bytes: config.bytes_per_second as f64,
                checks: f64::from(config.checks_per_second),
                since: Instant::now(),
            }),
        }
    }

    /// Is checking on?
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Takes a check of `bytes` from the budget if it has room (a second's worth at most is
    /// saved up).
    fn afford(&self, bytes: u64) -> bool {
        let mut allowance = self.allowance.lock().expect("audit budget lock poisoned");
        let (byte_rate, check_rate) = (
            self.config.bytes_per_second as f64,
            f64::from(self.config.checks_per_second),
        );
        let elapsed = allowance.since.elapsed().as_secs_f64();
        allowance.since = Instant::now();
        allowance.bytes = (allowance.bytes + elapsed * byte_rate).min(byte_rate.max(bytes as f64));
        allowance.checks = (allowance.checks + elapsed * check_rate).min(check_rate.max(1.0));
        if allowance.bytes < bytes as f64 || allowance.checks < 1.0 {
            return false;
        }
        allowance.bytes -= bytes as f64;
        allowance.checks -= 1.0;
        true
    }

    /// Checks `claim`, or returns `None` when the budget or the slots do not allow it now.
    pub async fn check(&self, claim: &Claim) -> Option<Verdict> {
        let _slot = self.at_once.try_acquire().ok()?;
        if !self.afford(u64::from(claim.manifest.chunk_len(claim.chunk))) {
            return None;
        }
        let verdict = match self.incognito() {
            Ok(transport) => {
                let verdict = tokio::time::timeout(CHECK_TIMEOUT, self.fetch_through(&transport, claim)).await;
                self.ended.lock().expect("ended checks lock poisoned").record(
                    claim.peer,
                    transport.id(),
                    Instant::now(),
                );
                verdict.unwrap_or_else(|_| Verdict::Unknown(format!("no chunk within {CHECK_TIMEOUT:?}")))
            }
            Err(e) => Verdict::Unknown(e),
        };
        crate::telemetry::audit(match verdict {
            Verdict::Held => "held",
            Verdict::Lied(_) => "lied",
            Verdict::Unknown(_) => "unknown",
        });
        Some(verdict)
    }

    /// The endpoint for one check: a fresh key, dialling from a port of the tracker's address
    /// kept for checks alone, so that the check looks like any fetcher's first request. A peer
    /// that knows the tracker's id or port cannot tell it apart; one that answers its address
    /// differently still can (see docs/usage.md). One socket serves every check: an endpoint
    /// each cost megabytes of buffers while it closed.
    fn incognito(&self) -> Result<Transport, String> {
        let identity = Arc::new(Identity::generate().map_err(|e| format!("cannot make a key for a check: {e}"))?);
        let mut checker = self.checker.lock().expect("audit endpoint lock poisoned");
        if checker.is_none() {
            let addr = SocketAddr::new(self.transport.local_addr().ip(), 0);
            let access = self.transport.access().clone();
            let bound = Transport::bind_as(identity.clone(), addr, access, Profile::Peer)
                .map_err(|e| format!("cannot bind a socket for checks: {e}"))?;
            *checker = Some(bound);
        }
        Ok(checker.as_ref().expect("bound above").with_identity(identity))
    }

    /// Those of `peers` that were the keys of checks of `holder` that have ended.
    pub fn which_were_checks(&self, holder: PeerId, peers: &[PeerId]) -> Vec<PeerId> {
        let ended = self.ended.lock().expect("ended checks lock poisoned");
        peers
            .iter()
            .copied()
            .filter(|peer| ended.was_check(holder, *peer, Instant::now()))
            .collect()
    }

    async fn fetch_through(&self, transport: &Transport, claim: &Claim) -> Verdict {
        // A holder behind a NAT lets the check in once told to punch towards it.
        let introduced = self
            .introducer
            .introduce_checker(claim.peer, transport.id(), transport.local_addr().port());
        let connected = if introduced {
            // A hole opens within a round trip or two, or not at all (a symmetric NAT): an
            // announcement's answer does not wait the whole check's time for it.
            let punched = dial::connect_repeatedly(transport, claim.addr, claim.peer, &DIALS_AFTER_INTRODUCTION);
            match tokio::time::timeout(PUNCHED_WITHIN, punched).await {
                Ok(connected) => connected,
                Err(_) => return Verdict::Unknown(format!("behind a NAT, no way in within {PUNCHED_WITHIN:?}")),
            }
        } else {
            transport.connect(claim.addr, Some(claim.peer)).await.map(|(c, _)| c)
        };
        let connection = match connected {
            Ok(connection) => connection,
            Err(e) => return Verdict::Unknown(format!("cannot reach it: {e}")),
        };
        let request = PeerRequest::GetChunk {
            file: claim.file,
            index: claim.chunk,
        };
        let expected = claim.manifest.chunk_len(claim.chunk);
        let verdict = match transport::exchange::<_, PeerResponse>(&connection, &request, 1024).await {
            Err(e) => Verdict::Unknown(e.to_string()),
            Ok((PeerResponse::Chunk { len }, _)) if len != expected => Verdict::Lied(format!(
                "announced {len} bytes for chunk {}, which has {expected}",
                claim.chunk
            )),
            Ok((PeerResponse::Chunk { .. }, mut recv)) => match recv.read_to_end(expected as usize).await {
                Ok(data) if claim.manifest.chunk_matches(claim.chunk, &data) => Verdict::Held,
                Ok(_) => Verdict::Lied(format!("sent other bytes for chunk {}", claim.chunk)),
                Err(e) => Verdict::Unknown(e.to_string()),
            },
            Ok((
                PeerResponse::Error {
                    code: ErrorCode::NotHeld | ErrorCode::NotFound,
                    message,
                },
                _,
            )) => Verdict::Lied(format!("says it lacks chunk {}: {message}", claim.chunk)),
            Ok((other, _)) => Verdict::Unknown(format!("answered {other:?}")),
        };
        connection.close(swarm_proto::protocol::CloseCode::Done.code(), b"checked");
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_learns_of_its_own_ended_checks_only_and_for_a_while() {
        let mut ended = EndedChecks::default();
        let (holder, other, key, stranger) = (PeerId([1; 32]), PeerId([2; 32]), PeerId([3; 32]), PeerId([4; 32]));
        let start = Instant::now();
        ended.record(holder, key, start);
        assert!(ended.was_check(holder, key, start));
        assert!(!ended.was_check(holder, stranger, start), "a fetcher is not a check");
        assert!(
            !ended.was_check(other, key, start),
            "another holder's check is not told"
        );
        assert!(!ended.was_check(holder, key, start + ENDED_KEPT), "forgotten in time");
        for i in 0..ENDED_PER_HOLDER {
            ended.record(holder, PeerId([10 + i as u8; 32]), start);
        }
        assert!(
            !ended.was_check(holder, key, start),
            "at most {ENDED_PER_HOLDER} a holder"
        );
        ended.record(other, key, start + ENDED_KEPT);
        assert!(!ended.by_holder.contains_key(&holder), "old entries are swept");
    }
}
