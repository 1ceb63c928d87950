//! Who uploads next: the node's upload slots shared fairly among the peers asking for chunks.
//! Synchronous and free of I/O; the chunk server drives it.
//!
//! A greedy peer that asks again the moment a slot frees, or a slow one that never reads what
//! it asked for, must not starve the others. So a request either takes a free slot, waits in
//! its peer's line, or is refused `Busy` when that line is full; and a freed slot goes to the
//! next peer *in turn* that may take one, not to whoever asks first.
//!
//! # Invariants
//! - At most `limits.total` slots are held; each peer holds at most `limits.per_peer`, and the
//!   peers of one IP address at most `limits.per_ip` together.
//! - A peer has at most `limits.waiting_per_peer` requests waiting; beyond that it is refused.
//! - `turn` lists exactly the peers with waiting requests, each once. A freed slot goes to the
//!   first peer in `turn` that is under its caps, which then moves to the back: peers take
//!   turns, and within a peer, requests are served oldest first.
//! - A request waits only while no slot it may take is free.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use swarm_proto::PeerId;

/// The caps on upload slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Slots in all: each holds one chunk in memory while it is sent.
    pub total: usize,
    /// Slots one peer may hold.
    pub per_peer: usize,
    /// Slots the peers of one IP address may hold together (ids cost nothing to make).
    pub per_ip: usize,
    /// Requests one peer may have waiting for a slot.
    pub waiting_per_peer: usize,
}

impl Limits {
    /// The chunk server's caps: 32 slots (32 MiB of 1 MiB chunks), half of them for one peer
    /// or one address (so one machine can never hold them all, and 16 MiB in flight still
    /// fills a fast link from one seeder), and as many waiting per peer as it may hold.
    pub const SERVER: Limits = Limits {
        total: 32,
        per_peer: 16,
        per_ip: 16,
        waiting_per_peer: 16,
    };
}

/// What became of a request for a slot.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<W> {
    /// A slot is the requester's now.
    Granted,
    /// The request waits in line; the waiter `W` is handed back by [`UploadSlots::release`]
    /// when it is its turn.
    Queued,
    /// Its line is full: the peer already has as many requests waiting as it may.
    Refused(W),
}

/// The slots and the lines of waiting requests. `W` is whatever wakes a waiter.
#[derive(Debug)]
pub struct UploadSlots<W> {
    limits: Limits,
    held: usize,
    by_peer: HashMap<PeerId, usize>,
    by_ip: HashMap<IpAddr, usize>,
    waiting: HashMap<PeerId, (IpAddr, VecDeque<W>)>,
    turn: VecDeque<PeerId>,
}

impl<W> UploadSlots<W> {
    /// No slot held, nobody waiting.
    pub fn new(limits: Limits) -> UploadSlots<W> {
        UploadSlots {
            limits,
            held: 0,
            by_peer: HashMap::new(),
            by_ip: HashMap::new(),
            waiting: HashMap::new(),
            turn: VecDeque::new(),
        }
    }

    /// May `peer` at `ip` take a slot now?
    fn may_take(&self, peer: &PeerId, ip: &IpAddr) -> bool {
        self.held < self.limits.total
            && self.by_peer.get(peer).copied().unwrap_or(0) < self.limits.per_peer
            && self.by_ip.get(ip).copied().unwrap_or(0) < self.limits.per_ip
    }

    fn take(&mut self, peer: PeerId, ip: IpAddr) {
        self.held += 1;
        *self.by_peer.entry(peer).or_default() += 1;
        *self.by_ip.entry(ip).or_default() += 1;
    }

    /// A request of `peer` at `ip` for a slot, with `waiter` to wake if it has to wait.
    pub fn ask(&mut self, peer: PeerId, ip: IpAddr, waiter: W) -> Admission<W> {
        // Nobody may jump the line: with others waiting, a free slot is theirs to take first
        // (release hands it over), so a new request only takes one when no one waits for it.
        let nobody_eligible_waits = self.turn.iter().all(|p| {
            let ip = &self.waiting[p].0;
            !self.may_take(p, ip)
        });
        if self.may_take(&peer, &ip) && nobody_eligible_waits {
            self.take(peer, ip);
            return Admission::Granted;
        }
        let (_, line) = self.waiting.entry(peer).or_insert_with(|| (ip, VecDeque::new()));
        if line.len() >= self.limits.waiting_per_peer {
            return Admission::Refused(waiter);
        }
        if line.is_empty() {
            self.turn.push_back(peer);
        }
        line.push_back(waiter);
        Admission::Queued
    }

    /// `peer` at `ip` frees a slot. Returns the waiter whose turn it is (the slot is already
    /// theirs: they release it in turn), with its peer and address, if any.
    pub fn release(&mut self, peer: PeerId, ip: IpAddr) -> Option<(PeerId, IpAddr, W)> {
        self.held -= 1;
        decrement(&mut self.by_peer, &peer);
        decrement(&mut self.by_ip, &ip);
        self.hand_over()
    }

    /// Gives a free slot to the first waiting peer in turn that may take one.
    fn hand_over(&mut self) -> Option<(PeerId, IpAddr, W)> {
        let position = self.turn.iter().position(|p| {
            let ip = &self.waiting[p].0;
            self.may_take(p, ip)
        })?;
        let peer = self.turn.remove(position).expect("the position is in range");
        let (ip, line) = self.waiting.get_mut(&peer).expect("peers in turn are waiting");
        let ip = *ip;
        let waiter = line.pop_front().expect("peers in turn have a waiter");
        if line.is_empty() {
            self.waiting.remove(&peer);
        } else {
            self.turn.push_back(peer);
        }
        self.take(peer, ip);
        Some((peer, ip, waiter))
    }

    /// Removes every waiter of `peer` that `gone` says has given up (a request that timed out
    /// or was cancelled).
    pub fn forget_waiters(&mut self, peer: &PeerId, mut gone: impl FnMut(&W) -> bool) {
        let Some((_, line)) = self.waiting.get_mut(peer) else {
            return;
        };
        line.retain(|w| !gone(w));
        if line.is_empty() {
            self.waiting.remove(peer);
            self.turn.retain(|p| p != peer);
        }
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.values().map(|(_, line)| line.len()).sum()
    }

    /// Checks the invariants in the module doc; for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        assert!(self.held <= self.limits.total);
        assert_eq!(self.by_peer.values().sum::<usize>(), self.held);
        assert_eq!(self.by_ip.values().sum::<usize>(), self.held);
        assert!(self.by_peer.values().all(|&n| n > 0 && n <= self.limits.per_peer));
        assert!(self.by_ip.values().all(|&n| n > 0 && n <= self.limits.per_ip));
        assert_eq!(self.turn.len(), self.waiting.len());
        for peer in &self.turn {
            let (ip, line) = &self.waiting[peer];
            assert!(!line.is_empty() && line.len() <= self.limits.waiting_per_peer);
            assert!(
                !self.may_take(peer, ip),
                "a waiter that may take a free slot was left waiting"
            );
        }
    }
}

fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SMALL: Limits = Limits {
        total: 4,
        per_peer: 2,
        per_ip: 3,
        waiting_per_peer: 2,
    };

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_greedy_peer_cannot_take_every_freed_slot() {
        let mut slots = UploadSlots::new(SMALL);
        let (greedy, polite) = (peer(1), peer(2));
        // The greedy peer holds its 2 and a second address's peer the other 2.
        for _ in 0..2 {
            assert_eq!(slots.ask(greedy, ip(1), 'g'), Admission::Granted);
            assert_eq!(slots.ask(peer(3), ip(3), 'x'), Admission::Granted);
        }
        // Both wait; the greedy peer asked first and asks more, but turns alternate.
        assert_eq!(slots.ask(greedy, ip(1), 'g'), Admission::Queued);
        assert_eq!(slots.ask(polite, ip(2), 'p'), Admission::Queued);
        assert_eq!(slots.ask(greedy, ip(1), 'g'), Admission::Queued);
        assert_eq!(
            slots.ask(greedy, ip(1), 'g'),
            Admission::Refused('g'),
            "its line is full"
        );
        // peer 3 finishes twice: the greedy peer is at its cap, so the polite one is served.
        assert_eq!(slots.release(peer(3), ip(3)), Some((polite, ip(2), 'p')));
        assert_eq!(slots.release(peer(3), ip(3)), None, "the greedy peer is at its cap");
        assert_eq!(slots.release(greedy, ip(1)), Some((greedy, ip(1), 'g')));
        slots.check_invariants();
    }

    #[test]
    fn new_requests_do_not_jump_the_line() {
        let mut slots = UploadSlots::new(Limits { total: 1, ..SMALL });
        assert_eq!(slots.ask(peer(1), ip(1), 1), Admission::Granted);
        assert_eq!(slots.ask(peer(2), ip(2), 2), Admission::Queued);
        // The slot frees and is handed to peer 2 at once: a third peer asking right then
        // finds nothing free.
        assert_eq!(slots.release(peer(1), ip(1)), Some((peer(2), ip(2), 2)));
        assert_eq!(slots.ask(peer(3), ip(3), 3), Admission::Queued);
        slots.check_invariants();
    }

    #[test]
    fn the_peers_of_one_address_share_its_cap() {
        let mut slots = UploadSlots::new(SMALL);
        assert_eq!(slots.ask(peer(1), ip(1), ()), Admission::Granted);
        assert_eq!(slots.ask(peer(1), ip(1), ()), Admission::Granted);
        assert_eq!(slots.ask(peer(2), ip(1), ()), Admission::Granted);
        assert_eq!(slots.ask(peer(2), ip(1), ()), Admission::Queued, "address 1 holds 3");
        assert_eq!(slots.ask(peer(3), ip(2), ()), Admission::Granted);
        slots.check_invariants();
    }

    #[test]
    fn waiters_that_gave_up_are_forgotten() {
        let mut slots = UploadSlots::new(Limits { total: 1, ..SMALL });
        assert_eq!(slots.ask(peer(1), ip(1), 1), Admission::Granted);
        assert_eq!(slots.ask(peer(2), ip(2), 2), Admission::Queued);
        slots.forget_waiters(&peer(2), |w| *w == 2);
        assert_eq!(slots.waiting(), 0);
        assert_eq!(slots.release(peer(1), ip(1)), None);
        assert_eq!(slots.held(), 0);
        slots.check_invariants();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Ask(u8),
        Release(usize),
        GiveUp(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6).prop_map(Op::Ask),
            (0usize..16).prop_map(Op::Release),
            (0u8..6).prop_map(Op::GiveUp),
        ]
    }

    /// Peer `n` always asks from address `n % 3`, so two peers share some addresses.
    fn address_of(peer: &PeerId) -> IpAddr {
        ip(peer.0[0] % 3)
    }

    proptest! {
        /// Random asks, releases and give-ups: the invariants hold after every step (among
        /// them, that nobody is left waiting for a slot they could take), and every slot a
        /// release hands over is counted.
        #[test]
        fn invariants_hold_under_any_sequence(ops in proptest::collection::vec(op(), 1..300)) {
            let mut slots = UploadSlots::new(SMALL);
            let mut holding: Vec<PeerId> = Vec::new();
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Ask(p) => {
                        next += 1;
                        if slots.ask(peer(p), address_of(&peer(p)), next) == Admission::Granted {
                            holding.push(peer(p));
                        }
                    }
                    Op::Release(i) if !holding.is_empty() => {
                        let p = holding.swap_remove(i % holding.len());
                        if let Some((got, address, _)) = slots.release(p, address_of(&p)) {
                            prop_assert_eq!(address, address_of(&got));
                            holding.push(got);
                        }
                    }
                    Op::Release(_) => {}
                    Op::GiveUp(p) => slots.forget_waiters(&peer(p), |w| w % 2 == 0),
                }
                slots.check_invariants();
                prop_assert_eq!(slots.held(), holding.len());
            }
        }
    }
}
