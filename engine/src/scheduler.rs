//! Which chunk to ask which peer for next. Synchronous and free of I/O: the fetch driver calls
//! it under a short lock and does the networking.
//!
//! # Invariants
//! - `queue` holds exactly the chunks that are neither verified nor requested from anyone,
//!   keyed by (availability, a random tie-breaker): its first entries are the rarest.
//! - `availability[c]` counts the known, unbanned peers that hold chunk `c`.
//! - `in_flight[c]` counts outstanding requests for `c`; a chunk is requested from at most one
//!   peer until every chunk some peer holds is requested (endgame), then from at most
//!   [`MAX_DUPLICATES`] peers. (Duplicating sooner, whenever one peer has nothing left to
//!   offer, made a seeder that offers a few chunks at a time resend what others were already
//!   sending.)
//! - A banned peer is never offered work again for this download and no longer counts towards
//!   availability.
//! - `urgent` holds only chunks not yet verified: chunks someone is reading now (a player
//!   streaming the file, [`Scheduler::hurry`]). They go before the rarest, lowest index first.

use std::collections::{BTreeSet, HashMap, HashSet};

use rand::seq::SliceRandom;

use swarm_proto::bitfield::Bitfield;
use swarm_proto::ids::PeerId;

/// Most peers asked for the same chunk at once during the endgame.
pub const MAX_DUPLICATES: u8 = 2;
/// Consecutive failures (timeouts, errors) after which a peer is dropped for this download.
pub const MAX_STRIKES: u32 = 5;

#[derive(Debug)]
struct PeerSlot {
    chunks: Bitfield,
    requested: HashSet<u32>,
    banned: bool,
    strikes: u32,
}

/// What became of a peer after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep using it.
    Keep,
    /// It failed too often in a row and was dropped.
    Dropped,
}

/// Rarest-first chunk selection with endgame for one download.
#[derive(Debug)]
pub struct Scheduler {
    have: Bitfield,
    availability: Vec<u32>,
    in_flight: Vec<u8>,
    tiebreak: Vec<u32>,
    queue: BTreeSet<(u32, u32, u32)>,
    peers: HashMap<PeerId, PeerSlot>,
    urgent: BTreeSet<u32>,
}

/// Most chunks marked urgent at once: a reader asks for the few chunks ahead of it, and a
/// long list would turn rarest-first into in-order for everyone.
pub const MAX_URGENT: usize = 64;

impl Scheduler {
    /// A scheduler for a file of `have.len()` chunks of which `have` are already verified.
    pub fn new(have: Bitfield) -> Scheduler {
        Scheduler::with_rng(have, &mut rand::rng())
    }

    /// [`Scheduler::new`], its tie-breaks drawn from `rng` (a simulation's are reproducible).
    pub fn with_rng(have: Bitfield, rng: &mut impl rand::Rng) -> Scheduler {
        let count = have.len();
        let mut tiebreak: Vec<u32> = (0..count).collect();
        tiebreak.shuffle(rng);
        let queue = (0..count)
            .filter(|&c| !have.get(c))
            .map(|c| (0, tiebreak[c as usize], c))
            .collect();
        Scheduler {
            have,
            availability: vec![0; count as usize],
            in_flight: vec![0; count as usize],
            tiebreak,
            queue,
            peers: HashMap::new(),
            urgent: BTreeSet::new(),
        }
    }

    /// Marks the missing chunks of `chunks` as wanted now: they are requested before any
    /// other, lowest index first. Earlier marks are dropped beyond [`MAX_URGENT`], highest
    /// first.
    pub fn hurry(&mut self, chunks: std::ops::Range<u32>) {
        let end = chunks.end.min(self.have.len());
        self.urgent.extend((chunks.start..end).filter(|&c| !self.have.get(c)));
        while self.urgent.len() > MAX_URGENT {
            self.urgent.pop_last();
        }
    }

    /// The chunks marked urgent and still missing.
    pub fn urgent(&self) -> impl Iterator<Item = u32> + '_ {
        self.urgent.iter().copied()
    }

    fn key(&self, chunk: u32) -> (u32, u32, u32) {
        (self.availability[chunk as usize], self.tiebreak[chunk as usize], chunk)
    }

    fn queued(&self, chunk: u32) -> bool {
        !self.have.get(chunk) && self.in_flight[chunk as usize] == 0
    }

    fn change_availability(&mut self, chunk: u32, up: bool) {
        let queued = self.queued(chunk);
        if queued {
            self.queue.remove(&self.key(chunk));
        }
        let slot = &mut self.availability[chunk as usize];
        *slot = if up { *slot + 1 } else { slot.saturating_sub(1) };
        if queued {
            self.queue.insert(self.key(chunk));
        }
    }

    /// Adds a peer, or adds chunks to a known one. Banned peers are ignored. Returns true if
    /// the peer is new.
    pub fn add_peer(&mut self, peer: PeerId, chunks: &Bitfield) -> bool {
        if chunks.len() != self.have.len() {
            return false;
        }
        let is_new = !self.peers.contains_key(&peer);
        let slot = self.peers.entry(peer).or_insert_with(|| PeerSlot {
            chunks: Bitfield::new(chunks.len()),
            requested: HashSet::new(),
            banned: false,
            strikes: 0,
        });
        if slot.banned {
            return false;
        }
        let added: Vec<u32> = chunks.iter().filter(|&c| !slot.chunks.get(c)).collect();
        added.iter().for_each(|&c| {
            slot.chunks.set(c);
        });
        for c in added {
            self.change_availability(c, true);
        }
        is_new
    }

    /// `peer` (known and not banned) now holds `chunks` too; indices out of range are ignored.
    pub fn gained(&mut self, peer: &PeerId, chunks: &[u32]) {
        let mut more = Bitfield::new(self.have.len());
        for &c in chunks {
            if c < self.have.len() {
                more.set(c);
            }
        }
        if self.is_active(peer) {
            self.add_peer(*peer, &more);
        }
    }

    /// Does `peer` hold a chunk still missing here?
    pub fn useful(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| !p.banned && p.chunks.minus(&self.have).next().is_some())
    }

    /// Is `peer` known and not banned?
    pub fn is_active(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| !p.banned)
    }

    /// Does `peer` (active) hold `chunk`, and is the chunk waiting to be requested? Then the
    /// peer has work.
    pub fn could_give(&self, peer: &PeerId, chunk: u32) -> bool {
        chunk < self.have.len()
            && self.queued(chunk)
            && self.peers.get(peer).is_some_and(|p| !p.banned && p.chunks.get(chunk))
    }

    /// Is `peer` banned from this download?
    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.banned)
    }

    /// The next chunk to request from `peer`, marked as requested; `None` if it has nothing
    /// useful right now.
    pub fn next(&mut self, peer: &PeerId) -> Option<u32> {
        let slot = self.peers.get(peer).filter(|p| !p.banned)?;
        let urgent = self
            .urgent
            .iter()
            .copied()
            .find(|&c| self.queued(c) && slot.chunks.get(c));
        // The rarest queued chunk the peer holds: found by walking the queue from its rarest
        // end, or, for a peer that holds few chunks of a long queue, by looking at those
        // chunks alone (walking 10,000 queued chunks for a peer with none of them, on every
        // request of every lane, was most of a 40-peer swarm's CPU).
        let rarest = if (slot.chunks.count() as usize).saturating_mul(8) < self.queue.len() {
            slot.chunks
                .iter()
                .filter(|&c| self.queued(c))
                .map(|c| self.key(c))
                .min()
                .map(|(_, _, c)| c)
        } else {
            self.queue
                .iter()
                .find(|&&(_, _, c)| slot.chunks.get(c))
                .map(|&(_, _, c)| c)
        };
        let pick = urgent
            .or(rarest)
            .or_else(|| self.in_endgame().then(|| self.endgame_pick(slot)).flatten())?;
        if self.in_flight[pick as usize] == 0 {
            self.queue.remove(&self.key(pick));
        }
        self.in_flight[pick as usize] += 1;
        self.peers.get_mut(peer).expect("checked above").requested.insert(pick);
        Some(pick)
    }

    /// Is every chunk that some peer holds requested already? (The queue is ordered by
    /// availability: its last entry is the most available.) Then idle peers may be asked for
    /// chunks requested from others.
    pub fn in_endgame(&self) -> bool {
        self.queue.last().is_none_or(|&(availability, _, _)| availability == 0)
    }

    /// Endgame: a chunk already requested from someone else, with the fewest requests.
    fn endgame_pick(&self, slot: &PeerSlot) -> Option<u32> {
        self.peers
            .values()
            .flat_map(|p| p.requested.iter().copied())
            .filter(|&c| {
                slot.chunks.get(c)
                    && !slot.requested.contains(&c)
                    && !self.have.get(c)
                    && self.in_flight[c as usize] < MAX_DUPLICATES
            })
            .min_by_key(|&c| (self.in_flight[c as usize], c))
    }

    fn release(&mut self, peer: &PeerId, chunk: u32) {
        let Some(slot) = self.peers.get_mut(peer) else { return };
        if !slot.requested.remove(&chunk) {
            return;
        }
        self.in_flight[chunk as usize] -= 1;
        if self.queued(chunk) {
            self.queue.insert(self.key(chunk));
        }
    }

    /// Records that `peer` delivered a verified `chunk`. Returns the other peers that still
    /// have it requested (their requests can be cancelled), or `None` if the chunk was
    /// already verified (a duplicate).
    pub fn completed(&mut self, peer: &PeerId, chunk: u32) -> Option<Vec<PeerId>> {
        self.release(peer, chunk);
        if let Some(slot) = self.peers.get_mut(peer) {
            slot.strikes = 0;
        }
        if !self.have.set(chunk) {
            return None;
        }
        self.urgent.remove(&chunk);
        self.queue.remove(&self.key(chunk));
        let others: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.requested.contains(&chunk))
            .map(|(id, _)| *id)
            .collect();
        for other in &others {
            self.release(other, chunk);
        }
        Some(others)
    }

    /// Records that a request was cancelled (not the peer's fault).
    pub fn cancelled(&mut self, peer: &PeerId, chunk: u32) {
        self.release(peer, chunk);
    }

    /// Records that `peer` failed to deliver `chunk` (error, timeout, busy).
    pub fn failed(&mut self, peer: &PeerId, chunk: u32) -> Verdict {
        self.release(peer, chunk);
        let Some(slot) = self.peers.get_mut(peer) else {
            return Verdict::Dropped;
        };
        slot.strikes += 1;
        if slot.strikes >= MAX_STRIKES {
            self.remove_peer(peer);
            return Verdict::Dropped;
        }
        Verdict::Keep
    }

    /// Records that `peer` says it does not hold `chunk` after all.
    pub fn lacks(&mut self, peer: &PeerId, chunk: u32) {
        self.release(peer, chunk);
        if let Some(slot) = self.peers.get_mut(peer) {
            if slot.chunks.get(chunk) {
                slot.chunks.unset(chunk);
                self.change_availability(chunk, false);
            }
        }
    }

    /// Forgets a peer (gone or unreachable); its requests go back to the queue. It may be
    /// added again later.
    pub fn remove_peer(&mut self, peer: &PeerId) {
        let Some(slot) = self.peers.get(peer) else { return };
        let requested: Vec<u32> = slot.requested.iter().copied().collect();
        let chunks: Vec<u32> = if slot.banned {
            Vec::new()
        } else {
            slot.chunks.iter().collect()
        };
        for c in requested {
            self.release(peer, c);
        }
        for c in chunks {
            self.change_availability(c, false);
        }
        self.peers.remove(peer);
    }

    /// Bans `peer` for this download (it sent bad data): its requests are re-queued and it is
    /// never offered work again.
    pub fn ban(&mut self, peer: &PeerId) {
        self.remove_peer(peer);
        self.peers.insert(
            *peer,
            PeerSlot {
                chunks: Bitfield::new(self.have.len()),
                requested: HashSet::new(),
                banned: true,
                strikes: 0,
            },
        );
    }

    /// Verified chunks.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when every chunk is verified.
    pub fn is_complete(&self) -> bool {
        self.have.is_complete()
    }

    /// Missing chunks that no active peer holds.
    pub fn unavailable(&self) -> u32 {
        (0..self.have.len())
            .filter(|&c| !self.have.get(c) && self.availability[c as usize] == 0)
            .count() as u32
    }

    /// Active (not banned) peers.
    #[cfg(test)]
    pub fn active_peers(&self) -> usize {
        self.peers.values().filter(|p| !p.banned).count()
    }

    /// Checks every invariant in the module doc; for tests.
    #[cfg(test)]
    pub fn check_invariants(&self) {
        assert!(
            self.urgent.iter().all(|&c| !self.have.get(c)),
            "an urgent chunk is held"
        );
        assert!(self.urgent.len() <= MAX_URGENT);
        for c in 0..self.have.len() {
            let requested = self.peers.values().filter(|p| p.requested.contains(&c)).count();
            assert_eq!(requested, self.in_flight[c as usize] as usize, "in_flight of {c}");
            assert!(self.in_flight[c as usize] <= MAX_DUPLICATES);
            let holders = self.peers.values().filter(|p| !p.banned && p.chunks.get(c)).count();
            assert_eq!(holders as u32, self.availability[c as usize], "availability of {c}");
            assert_eq!(
                self.queue.contains(&self.key(c)),
                self.queued(c),
                "queue membership of {c}"
            );
        }
        assert_eq!(
            self.queue.len(),
            (0..self.have.len()).filter(|&c| self.queued(c)).count()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    fn bits(len: u32, set: &[u32]) -> Bitfield {
        let mut b = Bitfield::new(len);
        set.iter().for_each(|&c| {
            b.set(c);
        });
        b
    }

    #[test]
    fn picks_rarest_first() {
        let mut s = Scheduler::new(Bitfield::new(4));
        s.add_peer(peer(1), &Bitfield::full(4));
        s.add_peer(peer(2), &bits(4, &[0, 1, 2]));
        s.add_peer(peer(3), &bits(4, &[0, 1]));
        // Chunk 3 is held by one peer only, chunk 2 by two.
        assert_eq!(s.next(&peer(1)), Some(3));
        assert_eq!(s.next(&peer(1)), Some(2));
        s.check_invariants();
    }

    #[test]
    fn urgent_chunks_go_first_and_are_forgotten_once_verified() {
        let mut s = Scheduler::new(bits(8, &[5]));
        s.add_peer(peer(1), &Bitfield::full(8));
        s.add_peer(peer(2), &bits(8, &[0, 1, 2, 3]));
        s.hurry(4..7);
        assert_eq!(s.urgent().collect::<Vec<_>>(), vec![4, 6], "chunk 5 is held already");
        let other = s.next(&peer(2)).unwrap();
        assert!(other < 4, "peer 2 holds no urgent chunk: one of its own ({other})");
        assert_eq!(s.next(&peer(1)), Some(4));
        assert_eq!(s.next(&peer(1)), Some(6));
        s.completed(&peer(1), 4);
        s.completed(&peer(1), 6);
        assert_eq!(s.urgent().count(), 0);
        s.hurry(0..1000);
        let missing: Vec<u32> = (0..8).filter(|&c| !s.have().get(c)).collect();
        assert_eq!(s.urgent().collect::<Vec<_>>(), missing, "clipped to the file");
        s.check_invariants();
    }

    #[test]
    fn endgame_duplicates_then_cancels() {
        let mut s = Scheduler::new(Bitfield::new(1));
        s.add_peer(peer(1), &Bitfield::full(1));
        s.add_peer(peer(2), &Bitfield::full(1));
        s.add_peer(peer(3), &Bitfield::full(1));
        assert_eq!(s.next(&peer(1)), Some(0));
        assert_eq!(s.next(&peer(2)), Some(0), "endgame duplicate");
        assert_eq!(s.next(&peer(3)), None, "at most two copies");
        assert_eq!(s.next(&peer(1)), None, "never twice from one peer");
        assert_eq!(s.completed(&peer(2), 0), Some(vec![peer(1)]));
        assert!(s.is_complete());
        assert_eq!(s.completed(&peer(1), 0), None);
        s.check_invariants();
    }

    #[test]
    fn no_duplicates_while_another_chunk_waits_for_its_request() {
        let mut s = Scheduler::new(Bitfield::new(2));
        s.add_peer(peer(1), &bits(2, &[0]));
        s.add_peer(peer(2), &bits(2, &[0]));
        s.add_peer(peer(3), &bits(2, &[1]));
        assert_eq!(s.next(&peer(2)), Some(0));
        assert_eq!(s.next(&peer(1)), None, "chunk 1 waits for peer 3: no endgame yet");
        assert_eq!(s.next(&peer(3)), Some(1));
        assert_eq!(s.next(&peer(1)), Some(0), "everything is requested: endgame duplicate");
        s.check_invariants();
    }

    #[test]
    fn ban_requeues_and_excludes() {
        let mut s = Scheduler::new(Bitfield::new(2));
        s.add_peer(peer(1), &Bitfield::full(2));
        s.add_peer(peer(2), &Bitfield::full(2));
        let c = s.next(&peer(1)).unwrap();
        s.ban(&peer(1));
        assert!(!s.add_peer(peer(1), &Bitfield::full(2)));
        assert_eq!(s.next(&peer(1)), None);
        s.check_invariants();
        let mut got = vec![s.next(&peer(2)).unwrap(), s.next(&peer(2)).unwrap()];
        got.sort();
        assert_eq!(got, vec![0, 1]);
        assert!(got.contains(&c));
    }

    #[test]
    fn unavailable_counts_chunks_nobody_holds() {
        let mut s = Scheduler::new(Bitfield::new(3));
        s.add_peer(peer(1), &bits(3, &[0]));
        assert_eq!(s.unavailable(), 2);
        s.remove_peer(&peer(1));
        assert_eq!(s.unavailable(), 3);
        s.check_invariants();
    }

    #[test]
    fn strikes_drop_a_peer() {
        let mut s = Scheduler::new(Bitfield::new(1));
        s.add_peer(peer(1), &Bitfield::full(1));
        for _ in 1..MAX_STRIKES {
            let c = s.next(&peer(1)).unwrap();
            assert_eq!(s.failed(&peer(1), c), Verdict::Keep);
        }
        let c = s.next(&peer(1)).unwrap();
        assert_eq!(s.failed(&peer(1), c), Verdict::Dropped);
        assert_eq!(s.active_peers(), 0);
        s.check_invariants();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u8, Vec<bool>),
        Next(u8),
        Complete(u8),
        Fail(u8),
        Lacks(u8),
        Remove(u8),
        Ban(u8),
        Hurry(u32, u32),
    }

    const CHUNKS: u32 = 40;

    fn op() -> impl Strategy<Value = Op> {
        let p = 0u8..4;
        prop_oneof![
            (p.clone(), proptest::collection::vec(any::<bool>(), CHUNKS as usize)).prop_map(|(p, b)| Op::Add(p, b)),
            // A peer holding few chunks (their own way through `next`).
            (
                p.clone(),
                proptest::collection::vec(proptest::bool::weighted(0.05), CHUNKS as usize)
            )
                .prop_map(|(p, b)| Op::Add(p, b)),
            p.clone().prop_map(Op::Next),
            p.clone().prop_map(Op::Next),
            p.clone().prop_map(Op::Complete),
            p.clone().prop_map(Op::Fail),
            p.clone().prop_map(Op::Lacks),
            p.clone().prop_map(Op::Remove),
            p.prop_map(Op::Ban),
            (0..CHUNKS, 0u32..8).prop_map(|(start, len)| Op::Hurry(start, len)),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_under_any_sequence(ops in proptest::collection::vec(op(), 1..80)) {
            let mut s = Scheduler::new(Bitfield::new(CHUNKS));
            let mut outstanding: Vec<(u8, u32)> = Vec::new();
            for op in ops {
                match op {
                    Op::Add(p, set) => {
                        let b = bits(CHUNKS, &set.iter().enumerate().filter(|(_, &x)| x).map(|(i, _)| i as u32).collect::<Vec<_>>());
                        s.add_peer(peer(p), &b);
                    }
                    Op::Next(p) => {
                        // The lowest urgent chunk the peer holds, else the rarest queued one,
                        // however `next` finds it.
                        let rarest = s.peers.get(&peer(p)).filter(|slot| !slot.banned).and_then(|slot| {
                            let urgent = s.urgent().find(|&c| s.queued(c) && slot.chunks.get(c));
                            urgent.or_else(|| s.queue.iter().find(|&&(_, _, c)| slot.chunks.get(c)).map(|&(_, _, c)| c))
                        });
                        let picked = s.next(&peer(p));
                        if rarest.is_some() {
                            prop_assert_eq!(picked, rarest);
                        }
                        if let Some(c) = picked {
                            prop_assert!(!s.have().get(c));
                            outstanding.push((p, c));
                        }
                    }
                    Op::Complete(p) | Op::Fail(p) | Op::Lacks(p) => {
                        if let Some(i) = outstanding.iter().position(|&(q, _)| q == p) {
                            let (_, c) = outstanding.remove(i);
                            match op {
                                Op::Complete(_) => { s.completed(&peer(p), c); }
                                Op::Fail(_) => { s.failed(&peer(p), c); }
                                _ => s.lacks(&peer(p), c),
                            }
                        }
                    }
                    Op::Remove(p) => s.remove_peer(&peer(p)),
                    Op::Ban(p) => s.ban(&peer(p)),
                    Op::Hurry(start, len) => s.hurry(start..start + len),
                }
                s.check_invariants();
            }
        }
    }
}
