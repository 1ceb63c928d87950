//! Origin leases: which peer reads a thing (a registry blob, a URL) from its origin now, so
//! that many peers that want it at once cause one origin read. The others wait for the reader
//! to announce it, and read it themselves only if its lease lapses (the reader died or went
//! silent) or is given up (the read failed).
//!
//! Leases live in this tracker's memory only: trackers sharing one Redis each keep their own,
//! so peers on two of them may both read (the origin is then read once per tracker, at most).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use swarm_proto::protocol::{ErrorCode, Refusal, TrackerResponse, MAX_LEASE_KEY, ORIGIN_LEASE};
use swarm_proto::PeerId;

/// Most leases held at once; beyond it, lapsed ones are dropped, and if none has lapsed a new
/// one is refused as busy.
const MAX_LEASES: usize = 100_000;

/// The leases held now.
#[derive(Default)]
pub struct OriginLeases {
    held: Mutex<HashMap<String, Lease>>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    holder: PeerId,
    until: Instant,
}

impl OriginLeases {
    /// `peer` asks for (or gives up) the lease on `key`, at `now`.
    pub fn ask(&self, peer: PeerId, key: String, release: bool, now: Instant) -> TrackerResponse {
        if key.len() > MAX_LEASE_KEY {
            let message = format!("a lease's key is at most {MAX_LEASE_KEY} bytes, not {}", key.len());
            return Refusal::new(ErrorCode::Limit, message).into();
        }
        let mut held = self.held.lock().expect("origin leases lock poisoned");
        let current = held.get(&key).copied().filter(|lease| lease.until > now);
        let lease = match current {
            Some(lease) if lease.holder != peer => lease,
            Some(_) if release => {
                held.remove(&key);
                return answer(
                    Lease {
                        holder: peer,
                        until: now,
                    },
                    now,
                );
            }
            None if release => {
                return answer(
                    Lease {
                        holder: peer,
                        until: now,
                    },
                    now,
                )
            }
            _ => {
                if held.len() >= MAX_LEASES && !held.contains_key(&key) {
                    held.retain(|_, lease| lease.until > now);
                    if held.len() >= MAX_LEASES {
                        let message = format!("{MAX_LEASES} origin leases are held; try again later");
                        return Refusal::new(ErrorCode::Busy, message).into();
                    }
                }
                let lease = Lease {
                    holder: peer,
                    until: now + ORIGIN_LEASE,
                };
                held.insert(key, lease);
                lease
            }
        };
        answer(lease, now)
    }
}

fn answer(lease: Lease, now: Instant) -> TrackerResponse {
    let left = lease
        .until
        .saturating_duration_since(now)
        .min(Duration::from_secs(3600));
    TrackerResponse::OriginLease {
        holder: lease.holder,
        ms_left: left.as_millis() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(answer: TrackerResponse) -> (PeerId, u32) {
        match answer {
            TrackerResponse::OriginLease { holder, ms_left } => (holder, ms_left),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_peer_holds_a_lease_until_it_lapses_or_is_given_up() {
        let leases = OriginLeases::default();
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        let t0 = Instant::now();
        let key = || "sha256:abc".to_string();
        assert_eq!(holder(leases.ask(a, key(), false, t0)).0, a);
        let (who, left) = holder(leases.ask(b, key(), false, t0 + Duration::from_secs(5)));
        assert_eq!((who, left), (a, 15_000), "b waits for a");
        // a extends it; b may not release a's lease.
        assert_eq!(
            holder(leases.ask(a, key(), false, t0 + Duration::from_secs(10))).1,
            20_000
        );
        assert_eq!(holder(leases.ask(b, key(), true, t0 + Duration::from_secs(11))).0, a);
        // Lapsed: b gets it.
        assert_eq!(holder(leases.ask(b, key(), false, t0 + Duration::from_secs(31))).0, b);
        // Given up: a gets it at once.
        assert_eq!(holder(leases.ask(b, key(), true, t0 + Duration::from_secs(32))).1, 0);
        assert_eq!(holder(leases.ask(a, key(), false, t0 + Duration::from_secs(32))).0, a);
        assert!(matches!(
            leases.ask(a, "x".repeat(MAX_LEASE_KEY + 1), false, t0),
            TrackerResponse::Error {
                code: ErrorCode::Limit,
                ..
            }
        ));
    }
}
