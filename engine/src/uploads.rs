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
//! A slot is held from a chunk's first byte until the peer has acknowledged its last, so a
//! slot carries about a chunk per round trip (two or more where loss makes a chunk wait for
//! a resend), and a distant peer would get less of a link than a near one from the same
//! slots: 16 slots of 1 MiB at 100 ms with 0.5% loss carry at most about 80 MB/s. So a peer's
//! *reach* ([`Asker::at`]: 1 up to 40 ms, 2 up to 80 ms, 3 beyond) multiplies the slots and the
//! waiting requests it may have, and divides what each of its slots costs against the caps
//! of its address, its network and the node ([`UNIT`]): a distant peer gets the same share
//! of the node's uploads as a near one, spread over more chunks in flight. At worst the node
//! holds `3 * limits.total` slots, all to distant peers.
//!
//! # Invariants
//! - Slots are counted in units of cost: a slot of a peer of reach `r` costs `UNIT / r`.
//!   At most `limits.total` slots' worth of units are held; each peer of reach `r` holds at
//!   most `r * limits.per_peer` slots, the peers of one IP address at most `limits.per_ip`
//!   slots' worth together, and those of one network at most `limits.per_network`.
//! - A peer has at most `r * limits.waiting_per_peer` requests waiting; beyond that it is
//!   refused.
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

/// A peer whose shortest round trip is at most this has reach 1: its plain slots cover the
/// round trip (16 MiB in flight per 40 ms is 400 MB/s).
pub const NEAR: Duration = Duration::from_millis(40);
/// The greatest reach: three times the slots, for paths of 80 ms and longer (48 MiB in flight
/// carries 1 Gbit/s across 120 ms with a resend in most chunks' round trip).
pub const MAX_REACH: usize = 3;
/// What a slot of a near peer costs against the caps; a slot of a peer of reach `r` costs
/// `UNIT / r` (divisible by every reach).
pub const UNIT: usize = 6;

/// Who asks for a slot: a peer, its address, and its reach (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asker {
    /// The peer that asks.
    pub peer: PeerId,
    /// The address it asks from.
    pub ip: IpAddr,
    reach: usize,
}

impl Asker {
    /// `peer` at `ip`, whose shortest round trip is `min_rtt`: reach 1 up to [`NEAR`], one
    /// more for each further [`NEAR`], at most [`MAX_REACH`].
    pub fn at(peer: PeerId, ip: IpAddr, min_rtt: Duration) -> Asker {
        let nears = min_rtt.as_nanos().div_ceil(NEAR.as_nanos());
        let reach = usize::try_from(nears).unwrap_or(MAX_REACH).clamp(1, MAX_REACH);
        Asker { peer, ip, reach }
    }

    /// `peer` at `ip`, near (reach 1).
    pub fn near(peer: PeerId, ip: IpAddr) -> Asker {
        Asker { peer, ip, reach: 1 }
    }

    /// How many times the plain slots it may hold: 1 to [`MAX_REACH`].
    pub fn reach(&self) -> usize {
        self.reach
    }

    /// What one of its slots costs against the caps of its address, network and the node.
    fn cost(&self) -> usize {
        UNIT / self.reach
    }
}

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
    /// Slots held.
    held: usize,
    /// Units of cost held ([`UNIT`]), in all, by address and by network.
    units: usize,
    by_ip: HashMap<IpAddr, usize>,
    by_network: HashMap<IpAddr, usize>,
    /// Slots held by each peer.
    by_peer: HashMap<PeerId, usize>,
    /// Each waiting peer (as it last asked) and its waiters, oldest first.
    waiting: HashMap<PeerId, (Asker, VecDeque<W>)>,
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
            units: 0,
            by_peer: HashMap::new(),
            by_ip: HashMap::new(),
            by_network: HashMap::new(),
            waiting: HashMap::new(),
            turn: VecDeque::new(),
            lines: HashMap::new(),
        }
    }

    /// May `asker` take a slot now?
    fn may_take(&self, asker: &Asker) -> bool {
        let fits = |held: usize, cap: usize| held + asker.cost() <= cap * UNIT;
        fits(self.units, self.limits.total)
            && self.by_peer.get(&asker.peer).copied().unwrap_or(0) < asker.reach * self.limits.per_peer
            && fits(self.by_ip.get(&asker.ip).copied().unwrap_or(0), self.limits.per_ip)
            && fits(
                self.by_network.get(&network(asker.ip)).copied().unwrap_or(0),
                self.limits.per_network,
            )
    }

    fn take(&mut self, asker: &Asker) {
        let cost = asker.cost();
        self.held += 1;
        self.units += cost;
        *self.by_peer.entry(asker.peer).or_default() += 1;
        *self.by_ip.entry(asker.ip).or_default() += cost;
        *self.by_network.entry(network(asker.ip)).or_default() += cost;
    }

    /// A request of `asker` for a slot, with `waiter` to wake if it has to wait.
    pub fn ask(&mut self, asker: Asker, waiter: W) -> Admission<W> {
        // Nobody may jump the line: with others waiting, a free slot is theirs to take first
        // (release hands it over), so a new request only takes one when no one waits for it.
        // Nor may a peer's new request pass its own older ones.
        let nobody_eligible_waits = self.waiting.values().all(|(a, _)| !self.may_take(a));
        if self.may_take(&asker) && nobody_eligible_waits && !self.waiting.contains_key(&asker.peer) {
            self.take(&asker);
            return Admission::Granted;
        }
        // A waiting peer waits as it was when its line began (address and reach).
        let (waiting_as, line) = self
            .waiting
            .entry(asker.peer)
            .or_insert_with(|| (asker, VecDeque::new()));
        if line.len() >= waiting_as.reach * self.limits.waiting_per_peer {
            return Admission::Refused(waiter);
        }
        if line.is_empty() {
            let (peer, ip) = (asker.peer, asker.ip);
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

    /// `asker` frees a slot it was given (as it was when given it). Returns the waiters whose
    /// turn it is, in turn, with who each is for (the slots are already theirs: they release
    /// them in turn): several when the slot freed cost more than theirs do.
    pub fn release(&mut self, asker: &Asker) -> Vec<(Asker, W)> {
        let cost = asker.cost();
        self.held -= 1;
        self.units -= cost;
        decrement(&mut self.by_peer, &asker.peer, 1);
        decrement(&mut self.by_ip, &asker.ip, cost);
        decrement(&mut self.by_network, &network(asker.ip), cost);
        std::iter::from_fn(|| self.hand_over()).collect()
    }

    /// Gives a free slot to the first waiting peer that may take one, in the first network in
    /// turn that has one.
    fn hand_over(&mut self) -> Option<(Asker, W)> {
        let (at, net, position) = self.turn.iter().enumerate().find_map(|(at, net)| {
            let position = self.lines[net].iter().position(|p| self.may_take(&self.waiting[p].0))?;
            Some((at, *net, position))
        })?;
        let peers = self.lines.get_mut(&net).expect("networks in turn have a line");
        let peer = peers.remove(position).expect("the position is in range");
        let (asker, line) = self.waiting.get_mut(&peer).expect("peers in line are waiting");
        let asker = *asker;
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
        self.take(&asker);
        Some((asker, waiter))
    }

    /// Removes every waiter of `peer` that `gone` says has given up (a request that timed out
    /// or was cancelled).
    pub fn forget_waiters(&mut self, peer: &PeerId, mut gone: impl FnMut(&W) -> bool) {
        let Some((asker, line)) = self.waiting.get_mut(peer) else {
            return;
        };
        line.retain(|w| !gone(w));
        if line.is_empty() {
            let net = network(asker.ip);
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
        assert!(self.units <= self.limits.total * UNIT);
        assert!(self.held <= self.limits.total * MAX_REACH);
        assert_eq!(self.by_peer.values().sum::<usize>(), self.held);
        assert!(self
            .by_peer
            .values()
            .all(|&n| n > 0 && n <= MAX_REACH * self.limits.per_peer));
        assert_eq!(self.by_ip.values().sum::<usize>(), self.units);
        assert!(self.by_ip.values().all(|&n| n > 0 && n <= self.limits.per_ip * UNIT));
        assert_eq!(self.by_network.values().sum::<usize>(), self.units);
        assert!(self
            .by_network
            .values()
            .all(|&n| n > 0 && n <= self.limits.per_network * UNIT));
        assert_eq!(self.turn.len(), self.lines.len());
        assert_eq!(
            self.lines.values().map(VecDeque::len).sum::<usize>(),
            self.waiting.len()
        );
        for net in &self.turn {
            for peer in &self.lines[net] {
                let (asker, line) = &self.waiting[peer];
                assert_eq!(network(asker.ip), *net);
                assert!(!line.is_empty() && line.len() <= MAX_REACH * self.limits.waiting_per_peer);
                assert!(
                    !self.may_take(asker),
                    "a waiter that may take a free slot was left waiting"
                );
            }
        }
    }
}

/// `by` fewer under `key`; a count that reaches zero is removed.
pub(crate) fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K, by: usize) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(by);
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

    fn near(peer: PeerId, ip: IpAddr) -> Asker {
        Asker::near(peer, ip)
    }

    fn far(peer: PeerId, ip: IpAddr) -> Asker {
        Asker::at(peer, ip, Duration::from_millis(100))
    }

    #[test]
    fn reach_grows_with_the_round_trip_up_to_three() {
        let reach = |ms| Asker::at(peer(1), ip(1), Duration::from_millis(ms)).reach();
        assert_eq!([reach(0), reach(1), reach(40)], [1, 1, 1]);
        assert_eq!([reach(41), reach(80), reach(81), reach(120)], [2, 2, 3, 3]);
        assert_eq!(reach(60_000), MAX_REACH);
    }

    #[test]
    fn a_distant_peer_holds_more_slots_that_cost_less() {
        let mut slots = UploadSlots::new(SMALL);
        let (distant, nearby) = (far(peer(1), ip(1)), near(peer(2), ip(2)));
        // Reach 3: three times its 2 slots, and 6 requests waiting instead of 2.
        for _ in 0..6 {
            assert_eq!(slots.ask(distant, 'd'), Admission::Granted);
        }
        for _ in 0..6 {
            assert_eq!(slots.ask(distant, 'd'), Admission::Queued);
        }
        assert_eq!(slots.ask(distant, 'd'), Admission::Refused('d'));
        // Its 6 slots cost what 2 of a near peer's do: a near peer still gets its 2.
        assert_eq!(slots.ask(nearby, 'n'), Admission::Granted);
        assert_eq!(slots.ask(nearby, 'n'), Admission::Granted);
        assert_eq!(slots.held(), 8);
        slots.check_invariants();
        // The node is full (4 near slots' worth): a near release frees room for three far
        // slots' cost, but the distant peer is at its own cap.
        assert_eq!(slots.release(&nearby), vec![]);
        assert_eq!(slots.release(&distant), vec![(distant, 'd')]);
        slots.check_invariants();
    }

    #[test]
    fn a_near_peers_slot_freed_goes_to_three_distant_waiters() {
        let mut slots = UploadSlots::new(Limits { total: 2, ..SMALL });
        let nearby = near(peer(1), ip(1));
        let (b, c) = (far(peer(2), ip(2)), far(peer(3), ip(3)));
        assert_eq!(slots.ask(nearby, 'a'), Admission::Granted);
        assert_eq!(slots.ask(nearby, 'a'), Admission::Granted);
        for (who, w) in [(b, 'b'), (c, 'c'), (b, 'b'), (c, 'c')] {
            assert_eq!(slots.ask(who, w), Admission::Queued);
        }
        // Six units free: three slots of cost 2, in turn.
        assert_eq!(slots.release(&nearby), vec![(b, 'b'), (c, 'c'), (b, 'b')]);
        assert_eq!(slots.held(), 4);
        slots.check_invariants();
    }

    #[test]
    fn a_distant_peer_counts_against_its_address_as_one_near_peer() {
        // Two distant ids on one address: together no more than the address's 3 slots' worth.
        let mut slots = UploadSlots::new(Limits { total: 8, ..SMALL });
        let (one, two) = (far(peer(1), ip(1)), far(peer(2), ip(1)));
        for _ in 0..6 {
            assert_eq!(slots.ask(one, ()), Admission::Granted);
        }
        for _ in 0..3 {
            assert_eq!(slots.ask(two, ()), Admission::Granted);
        }
        assert_eq!(
            slots.ask(two, ()),
            Admission::Queued,
            "address 1 holds 9 x 2 = 3 x 6 units"
        );
        slots.check_invariants();
    }

    #[test]
    fn a_greedy_peer_cannot_take_every_freed_slot() {
        let mut slots = UploadSlots::new(SMALL);
        let (greedy, polite) = (peer(1), peer(2));
        // The greedy peer holds its 2 and a second address's peer the other 2.
        for _ in 0..2 {
            assert_eq!(slots.ask(near(greedy, ip(1)), 'g'), Admission::Granted);
            assert_eq!(slots.ask(near(peer(3), ip(3)), 'x'), Admission::Granted);
        }
        // Both wait; the greedy peer asked first and asks more, but turns alternate.
        assert_eq!(slots.ask(near(greedy, ip(1)), 'g'), Admission::Queued);
        assert_eq!(slots.ask(near(polite, ip(2)), 'p'), Admission::Queued);
        assert_eq!(slots.ask(near(greedy, ip(1)), 'g'), Admission::Queued);
        assert_eq!(
            slots.ask(near(greedy, ip(1)), 'g'),
            Admission::Refused('g'),
            "its line is full"
        );
        // peer 3 finishes twice: the greedy peer is at its cap, so the polite one is served.
        assert_eq!(slots.release(&near(peer(3), ip(3))), vec![(near(polite, ip(2)), 'p')]);
        assert_eq!(
            slots.release(&near(peer(3), ip(3))),
            vec![],
            "the greedy peer is at its cap"
        );
        assert_eq!(slots.release(&near(greedy, ip(1))), vec![(near(greedy, ip(1)), 'g')]);
        slots.check_invariants();
    }

    #[test]
    fn new_requests_do_not_jump_the_line() {
        let mut slots = UploadSlots::new(Limits { total: 1, ..SMALL });
        assert_eq!(slots.ask(near(peer(1), ip(1)), 1), Admission::Granted);
        assert_eq!(slots.ask(near(peer(2), ip(2)), 2), Admission::Queued);
        // The slot frees and is handed to peer 2 at once: a third peer asking right then
        // finds nothing free.
        assert_eq!(slots.release(&near(peer(1), ip(1))), vec![(near(peer(2), ip(2)), 2)]);
        assert_eq!(slots.ask(near(peer(3), ip(3)), 3), Admission::Queued);
        slots.check_invariants();
    }

    #[test]
    fn the_peers_of_one_address_share_its_cap() {
        let mut slots = UploadSlots::new(SMALL);
        assert_eq!(slots.ask(near(peer(1), ip(1)), ()), Admission::Granted);
        assert_eq!(slots.ask(near(peer(1), ip(1)), ()), Admission::Granted);
        assert_eq!(slots.ask(near(peer(2), ip(1)), ()), Admission::Granted);
        assert_eq!(
            slots.ask(near(peer(2), ip(1)), ()),
            Admission::Queued,
            "address 1 holds 3"
        );
        assert_eq!(slots.ask(near(peer(3), ip(2)), ()), Admission::Granted);
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
        assert_eq!(slots.ask(near(peer(99), ip(99)), 0), Admission::Granted);
        // Ten peers on ten addresses of one network wait, then one peer of another network.
        for n in 0..10 {
            assert_eq!(slots.ask(near(peer(n), crowd(n)), n), Admission::Queued);
        }
        assert_eq!(
            slots.ask(near(peer(50), IpAddr::from([10, 0, 2, 1])), 50),
            Admission::Queued
        );
        // The crowd's network got there first; the lone peer's network is next, not 11th.
        let first = slots.release(&near(peer(99), ip(99))).remove(0);
        assert_eq!(first.0.peer, peer(0));
        let second = slots.release(&first.0).remove(0);
        assert_eq!(second.0.peer, peer(50));
        let third = slots.release(&second.0).remove(0);
        assert_eq!(third.0.peer, peer(1), "then the crowd's next peer");
        slots.check_invariants();
        assert_eq!(network(IpAddr::from([192, 168, 7, 9])), IpAddr::from([192, 168, 7, 0]));
        let v6: IpAddr = "2001:db8:1:2:3::4".parse().unwrap();
        assert_eq!(network(v6), "2001:db8:1::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn waiters_that_gave_up_are_forgotten() {
        let mut slots = UploadSlots::new(Limits { total: 1, ..SMALL });
        assert_eq!(slots.ask(near(peer(1), ip(1)), 1), Admission::Granted);
        assert_eq!(slots.ask(near(peer(2), ip(2)), 2), Admission::Queued);
        slots.forget_waiters(&peer(2), |w| *w == 2);
        assert_eq!(slots.waiting(), 0);
        assert_eq!(slots.release(&near(peer(1), ip(1))), vec![]);
        assert_eq!(slots.held(), 0);
        slots.check_invariants();
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Peer, and its round trip in milliseconds.
        Ask(u8, u64),
        Release(usize),
        GiveUp(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, 0u64..150).prop_map(|(p, ms)| Op::Ask(p, ms)),
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
            let mut holding: Vec<Asker> = Vec::new();
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Ask(p, ms) => {
                        next += 1;
                        let asker = Asker::at(peer(p), address_of(&peer(p)), Duration::from_millis(ms));
                        if slots.ask(asker, next) == Admission::Granted {
                            holding.push(asker);
                        }
                    }
                    Op::Release(i) if !holding.is_empty() => {
                        let asker = holding.swap_remove(i % holding.len());
                        for (got, _) in slots.release(&asker) {
                            prop_assert_eq!(got.ip, address_of(&got.peer));
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
