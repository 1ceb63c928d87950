//! Who uploads next: the node's upload slots shared fairly among the peers asking for chunks.
//! Synchronous and free of I/O; the chunk server drives it.
//!
//! A greedy peer that asks again the moment a slot frees, or a slow one that never reads what
//! it asked for, must not starve the others. So a request either takes a free slot, waits in
//! its peer's line, or is refused `Busy` when that line is full; and a freed slot goes to the
//! next peer *in turn* that may take one, not to whoever asks first.
//!
//! Turns are taken first among *networks*, then among the peers of each: identities cost
//! nothing to make, and addresses little, so a thousand ids on four addresses of one network
//! get one network's share, not a thousand peers' ([`network`]: an IPv4 /24, the smallest
//! block routed to one site, and an IPv6 /48, a site's usual allocation, since one host may
//! hold a whole /64). The price: peers behind one NAT or in one office share one turn.
//!
//! # Invariants
//! - At most `limits.total` slots are held; each peer holds at most `limits.per_peer`, the
//!   peers of one IP address at most `limits.per_ip` together, and those of one network at
//!   most `limits.per_network`.
//! - A peer has at most `limits.waiting_per_peer` requests waiting; beyond that it is refused.
//! - `turn` lists exactly the networks with waiting peers, each once, and each network's
//!   line lists exactly its peers with waiting requests, each once. A freed slot goes to the
//!   first peer under its caps in the first network (in turn) that has one; the peer moves
//!   to the back of its network's line and the network to the back of `turn`: networks take
//!   turns, then peers within each, and within a peer, requests are served oldest first.
//! - A request waits only while no slot it may take is free.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use swarm_proto::PeerId;

/// Longest wait in line for an upload slot; then `Busy`. Well under a fetcher's patience for
/// an answer (10 s).
pub const QUEUE_WAIT: Duration = Duration::from_secs(3);
/// A request beyond its peer's line waits this long before its `Busy`: a peer that asks again
/// the moment it is refused gets nothing faster, and costs the server a sleeping task, not a
/// spinning core.
pub const REFUSAL_DELAY: Duration = Duration::from_secs(1);

/// The caps on upload slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Slots in all: each holds one chunk in memory while it is sent.
    pub total: usize,
    /// Slots one peer may hold.
    pub per_peer: usize,
    /// Slots the peers of one IP address may hold together (ids cost nothing to make).
    pub per_ip: usize,
    /// Slots the peers of one network ([`network`]) may hold together (addresses cost little).
    pub per_network: usize,
    /// Requests one peer may have waiting for a slot.
    pub waiting_per_peer: usize,
}

impl Limits {
    /// The chunk server's caps: 32 slots (32 MiB of 1 MiB chunks), half of them for one peer
    /// or one address (so one machine can never hold them all, and 16 MiB in flight still
    /// fills a fast link from one seeder), three quarters for one network (so that one
    /// network's many addresses cannot hold them all either, while one address does not
    /// crowd out its network's other machines), and as many waiting per peer as it may hold.
    pub const SERVER: Limits = Limits {
        total: 32,
        per_peer: 16,
        per_ip: 16,
        per_network: 24,
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
    by_network: HashMap<IpAddr, usize>,
    waiting: HashMap<PeerId, (IpAddr, VecDeque<W>)>,
    /// Networks with waiting peers, in turn.
    turn: VecDeque<IpAddr>,
    /// Each network's peers with waiting requests, in turn.
    lines: HashMap<IpAddr, VecDeque<PeerId>>,
}

/// The network an address is counted in for turns: its IPv4 /24 or IPv6 /48.
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
            }
        },
    }
}

impl<W> UploadSlots<W> {
    /// No slot held, nobody waiting.
    pub fn new(limits: Limits) -> UploadSlots<W> {
        UploadSlots {
            limits,
            held: 0,
            by_peer: HashMap::new(),
            by_ip: HashMap::new(),
            by_network: HashMap::new(),
            waiting: HashMap::new(),
            turn: VecDeque::new(),
            lines: HashMap::new(),
        }
    }

    /// May `peer` at `ip` take a slot now?
    fn may_take(&self, peer: &PeerId, ip: &IpAddr) -> bool {
        self.held < self.limits.total
            && self.by_peer.get(peer).copied().unwrap_or(0) < self.limits.per_peer
            && self.by_ip.get(ip).copied().unwrap_or(0) < self.limits.per_ip
            && self.by_network.get(&network(*ip)).copied().unwrap_or(0) < self.limits.per_network
    }

    fn take(&mut self, peer: PeerId, ip: IpAddr) {
        self.held += 1;
        *self.by_peer.entry(peer).or_default() += 1;
        *self.by_ip.entry(ip).or_default() += 1;
        *self.by_network.entry(network(ip)).or_default() += 1;
    }

    /// A request of `peer` at `ip` for a slot, with `waiter` to wake if it has to wait.
    pub fn ask(&mut self, peer: PeerId, ip: IpAddr, waiter: W) -> Admission<W> {
        // Nobody may jump the line: with others waiting, a free slot is theirs to take first
        // (release hands it over), so a new request only takes one when no one waits for it.
        let nobody_eligible_waits = self.waiting.iter().all(|(p, (ip, _))| !self.may_take(p, ip));
        if self.may_take(&peer, &ip) && nobody_eligible_waits {
            self.take(peer, ip);
            return Admission::Granted;
        }
        let (_, line) = self.waiting.entry(peer).or_insert_with(|| (ip, VecDeque::new()));
        if line.len() >= self.limits.waiting_per_peer {
            return Admission::Refused(waiter);
        }
        if line.is_empty() {
            let net = network(ip);
            let peers = self.lines.entry(net).or_default();
            if peers.is_empty() {
                self.turn.push_back(net);
            }
            peers.push_back(peer);
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
        decrement(&mut self.by_network, &network(ip));
        self.hand_over()
    }

    /// Gives a free slot to the first waiting peer that may take one, in the first network in
    /// turn that has one.
    fn hand_over(&mut self) -> Option<(PeerId, IpAddr, W)> {
        let (at, net, position) = self.turn.iter().enumerate().find_map(|(at, net)| {
            let position = self.lines[net]
                .iter()
                .position(|p| self.may_take(p, &self.waiting[p].0))?;
            Some((at, *net, position))
        })?;
        let peers = self.lines.get_mut(&net).expect("networks in turn have a line");
        let peer = peers.remove(position).expect("the position is in range");
        let (ip, line) = self.waiting.get_mut(&peer).expect("peers in line are waiting");
        let ip = *ip;
        let waiter = line.pop_front().expect("peers in line have a waiter");
        if line.is_empty() {
            self.waiting.remove(&peer);
        } else {
            peers.push_back(peer);
        }
        self.turn.remove(at);
        if peers.is_empty() {
            self.lines.remove(&net);
        } else {
            self.turn.push_back(net);
        }
        self.take(peer, ip);
        Some((peer, ip, waiter))
    }

    /// Removes every waiter of `peer` that `gone` says has given up (a request that timed out
    /// or was cancelled).
    pub fn forget_waiters(&mut self, peer: &PeerId, mut gone: impl FnMut(&W) -> bool) {
        let Some((ip, line)) = self.waiting.get_mut(peer) else {
            return;
        };
        line.retain(|w| !gone(w));
        if line.is_empty() {
            let net = network(*ip);
            self.waiting.remove(peer);
            let peers = self
                .lines
                .get_mut(&net)
                .expect("waiting peers are in their network's line");
            peers.retain(|p| p != peer);
            if peers.is_empty() {
                self.lines.remove(&net);
                self.turn.retain(|n| *n != net);
            }
        }
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Requests waiting now.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.values().map(|(_, line)| line.len()).sum()
    }

    /// Checks the invariants in the module doc; for tests.
    #[cfg(test)]
    pub fn check_invariants(&self) {
        assert!(self.held <= self.limits.total);
        assert_eq!(self.by_peer.values().sum::<usize>(), self.held);
        assert_eq!(self.by_ip.values().sum::<usize>(), self.held);
        assert!(self.by_peer.values().all(|&n| n > 0 && n <= self.limits.per_peer));
        assert!(self.by_ip.values().all(|&n| n > 0 && n <= self.limits.per_ip));
        assert_eq!(self.by_network.values().sum::<usize>(), self.held);
        assert!(self.by_network.values().all(|&n| n > 0 && n <= self.limits.per_network));
        assert_eq!(self.turn.len(), self.lines.len());
        assert_eq!(
            self.lines.values().map(VecDeque::len).sum::<usize>(),
            self.waiting.len()
        );
        for net in &self.turn {
            for peer in &self.lines[net] {
                let (ip, line) = &self.waiting[peer];
                assert_eq!(network(*ip), *net);
                assert!(!line.is_empty() && line.len() <= self.limits.waiting_per_peer);
                assert!(
                    !self.may_take(peer, ip),
                    "a waiter that may take a free slot was left waiting"
                );
            }
        }
    }
}

/// One fewer under `key`; a count that reaches zero is removed.
pub(crate) fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
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
        per_network: 4,
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
    fn networks_take_turns_before_their_peers() {
        let mut slots = UploadSlots::new(Limits {
            total: 1,
            per_peer: 1,
            per_ip: 1,
            per_network: 1,
            waiting_per_peer: 4,
        });
        let crowd = |n: u8| IpAddr::from([10, 0, 1, n]);
        assert_eq!(slots.ask(peer(99), ip(99), 0), Admission::Granted);
        // Ten peers on ten addresses of one network wait, then one peer of another network.
        for n in 0..10 {
            assert_eq!(slots.ask(peer(n), crowd(n), n), Admission::Queued);
        }
        assert_eq!(slots.ask(peer(50), IpAddr::from([10, 0, 2, 1]), 50), Admission::Queued);
        // The crowd's network got there first; the lone peer's network is next, not 11th.
        let first = slots.release(peer(99), ip(99)).unwrap();
        assert_eq!(first.0, peer(0));
        let second = slots.release(first.0, first.1).unwrap();
        assert_eq!(second.0, peer(50));
        let third = slots.release(second.0, second.1).unwrap();
        assert_eq!(third.0, peer(1), "then the crowd's next peer");
        slots.check_invariants();
        assert_eq!(network(IpAddr::from([192, 168, 7, 9])), IpAddr::from([192, 168, 7, 0]));
        let v6: IpAddr = "2001:db8:1:2:3::4".parse().unwrap();
        assert_eq!(network(v6), "2001:db8:1::".parse::<IpAddr>().unwrap());
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
