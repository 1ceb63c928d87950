//! Availability between neighbours: telling the peers that fetch from this node what it holds
//! of a file, and learning from the peers it fetches from what they hold, as it changes (see
//! the protocol's "Availability between peers").
//!
//! A node that holds part of a file offers everything it holds and every chunk it verifies
//! next. A node that holds the whole file *super-seeds*: it offers each watcher only chunks
//! that none of its watchers holds and none is offered yet (those it has uploaded least
//! first, ties broken differently for each watcher), at most [`OFFER_WINDOW`] outstanding,
//! and more as the watcher gets them. Different watchers so fetch different chunks from the
//! seeder and the rest from each other: the seeder sends about one copy, and the swarm carries
//! the others. A watcher with nothing outstanding may take over chunks offered to another and
//! not sent yet (near the end, so that a slow watcher's share does not hold everyone up), and
//! one that has also gained nothing for [`STUCK`] is offered chunks others hold (it may not
//! reach them). A watcher that takes nothing for [`OFFER_EXPIRY`] (no chunk gained, none on
//! its way to it, whether it was offered some or none) is idle: its offers stop holding those
//! chunks back from the others, it is offered nothing that counts, and it counts as a watcher
//! again only once it gains a chunk, so that peers that only watch cost the seeder nothing.
//! An idle watcher stuck for [`STUCK`] is told of everything it lacks, counted against
//! nobody: one that was only slow takes something and is active again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{Connection, RecvStream, SendStream};
use swarm_proto::protocol::{self, Availability, PeerRequest, PeerResponse, ProtocolError, MAX_FRAME};
use swarm_proto::{transport, Bitfield, FileId, PeerId};

use crate::held::Held;

/// Chunks a seeder offers a watcher at a time, beyond those the watcher has, when many watch:
/// more than a fetcher of a busy swarm asks one peer for at once (two), so that its lanes to
/// the seeder stay busy, and few, so that chunks are not promised long before they are sent.
/// With fewer watchers each is offered more (up to four times this), and a watcher alone is
/// offered everything.
pub const OFFER_WINDOW: usize = 8;
/// Changes are sent at most this often, so that a fast download sends a few frames a second
/// rather than one per chunk; with many watchers, less often still (see [`batch_interval`]).
const BATCH: Duration = Duration::from_millis(200);
/// The longest a change waits to be sent.
const MAX_BATCH: Duration = Duration::from_secs(1);
/// A watcher of a seeder that gained nothing for this long, with nothing outstanding, is
/// offered chunks its fellow watchers hold too.
pub const STUCK: Duration = Duration::from_secs(2);
/// A watcher of a seeder that gained nothing for this long since its last offer, and to whom
/// none of its offered chunks is being sent, is idle.
pub const OFFER_EXPIRY: Duration = Duration::from_millis(500);

/// Watch streams one peer may hold open on a node: one per file it fetches, and a node
/// fetches 16 files at once by default.
pub const MAX_WATCHES_PER_PEER: usize = 256;
/// Watch streams the peers of one network ([`crate::uploads::network`]) may hold open on a
/// node together.
pub const MAX_WATCHES_PER_NETWORK: usize = 1024;

/// The watch streams open on a node, by peer and by network, within their caps.
#[derive(Debug, Default)]
pub struct Watches {
    open: std::sync::Mutex<(HashMap<PeerId, usize>, HashMap<IpAddr, usize>)>,
}

/// One open watch stream, counted until dropped.
#[derive(Debug)]
pub struct WatchPass {
    watches: Arc<Watches>,
    peer: PeerId,
    network: IpAddr,
}

impl Watches {
    /// Counts a new watch stream of `peer` at `ip`, if its caps allow; otherwise says which
    /// cap it met.
    pub fn admit(self: &Arc<Self>, peer: PeerId, ip: IpAddr) -> Result<WatchPass, &'static str> {
        let network = crate::uploads::network(ip);
        let mut open = self.open.lock().expect("watch counts lock poisoned");
        let (by_peer, by_network) = &mut *open;
        if by_peer.get(&peer).copied().unwrap_or(0) >= MAX_WATCHES_PER_PEER {
            return Err("this peer has as many files watched here as it may");
        }
        if by_network.get(&network).copied().unwrap_or(0) >= MAX_WATCHES_PER_NETWORK {
            return Err("peers of this network have as many files watched here as they may");
        }
        *by_peer.entry(peer).or_default() += 1;
        *by_network.entry(network).or_default() += 1;
        Ok(WatchPass {
            watches: self.clone(),
            peer,
            network,
        })
    }
}

impl Drop for WatchPass {
    fn drop(&mut self) {
        let mut open = self.watches.open.lock().expect("watch counts lock poisoned");
        let (by_peer, by_network) = &mut *open;
        crate::uploads::decrement(by_peer, &self.peer);
        crate::uploads::decrement(by_network, &self.network);
    }
}

/// What a node offers one watcher.
#[derive(Debug)]
pub struct Offer {
    /// The file offered.
    held: Arc<Held>,
    /// Chunks offered so far (and not since lost).
    shown: Bitfield,
    /// Offered chunks it lacks whose offer counts against offering them to others.
    counted: Bitfield,
    /// Chunks the watcher holds, as it said.
    theirs: Bitfield,
    /// Offer a window of the least-sent chunks instead of everything.
    super_seed: bool,
    /// Breaks ties between equally sent chunks differently for each watcher.
    salt: u64,
    /// When the watcher last gained a chunk.
    last_gain: Instant,
    /// When it was last offered more.
    last_offer: Instant,
    /// It counts among the file's watchers (it is not idle).
    active: bool,
    /// It has taken a chunk since it began to watch: only then do its offers hold chunks back
    /// from the others (a fresh watch costs nothing, however many are opened).
    proven: bool,
}

impl Offer {
    /// The offer to a watcher holding `theirs` of `held`, and the chunks to tell it of now.
    pub fn new(held: Arc<Held>, theirs: Bitfield, salt: u64) -> (Offer, Bitfield) {
        let super_seed = held.chunks().is_complete();
        held.count_watcher(true);
        if super_seed {
            theirs.iter().for_each(|c| held.count_copy(c, true));
        }
        let mut offer = Offer {
            shown: Bitfield::new(theirs.len()),
            counted: Bitfield::new(theirs.len()),
            super_seed,
            theirs,
            salt,
            held,
            last_gain: Instant::now(),
            last_offer: Instant::now(),
            active: true,
            proven: false,
        };
        let first = offer.more();
        let mut shown = Bitfield::new(offer.theirs.len());
        first.iter().for_each(|&c| {
            shown.set(c);
        });
        (offer, shown)
    }

    /// The watcher now holds `chunks` too.
    pub fn they_gained(&mut self, chunks: &[u32]) {
        for &c in chunks {
            if c < self.theirs.len() && self.theirs.set(c) && self.super_seed {
                self.last_gain = Instant::now();
                if !self.active {
                    self.active = true;
                    self.held.count_watcher(true);
                }
                self.held.count_copy(c, true);
                self.uncount(c);
                if !self.proven {
                    self.proven = true;
                    let outstanding: Vec<u32> = self.shown.minus(&self.theirs).collect();
                    outstanding.into_iter().for_each(|c| self.count(c));
                }
            }
        }
    }

    /// Chunks to offer now that were not offered before: everything newly held, or for a
    /// seeder, enough of the chunks sent and offered least to keep [`OFFER_WINDOW`] offered
    /// that the watcher lacks.
    pub fn more(&mut self) -> Vec<u32> {
        let held = &self.held;
        let ours = held.chunks();
        let watchers = held.watchers() as usize;
        let new: Vec<u32> = if !self.super_seed || watchers < 2 {
            // Not what the watcher holds already: it would never ask for those.
            ours.minus(&self.shown).filter(|&c| !self.theirs.get(c)).collect()
        } else if !self.active {
            // Idle: its offers hold nothing back from the others. Once stuck, it is told of
            // everything it lacks, counted against nobody, so that a watcher that was only
            // slow can still take something and so become active again.
            if self.last_gain.elapsed() < STUCK {
                return Vec::new();
            }
            ours.minus(&self.shown).filter(|&c| !self.theirs.get(c)).collect()
        } else {
            let outstanding = self.shown.minus(&self.theirs).count();
            let window = (4 * OFFER_WINDOW / watchers).max(OFFER_WINDOW);
            let room = window.saturating_sub(outstanding);
            if room == 0 {
                return Vec::new();
            }
            let lacked: Vec<u32> = ours.minus(&self.shown).filter(|&c| !self.theirs.get(c)).collect();
            let spread = |c: u32| held.copies_of(c) + held.offers_of(c);
            let tier =
                |fits: &dyn Fn(u32) -> bool| -> Vec<u32> { lacked.iter().copied().filter(|&c| fits(c)).collect() };
            let mut candidates = tier(&|c| spread(c) == 0);
            let mut which = "fresh";
            if candidates.is_empty() && outstanding == 0 {
                candidates = tier(&|c| held.copies_of(c) == 0 && held.uploads_of(c) == 0);
                which = "unsent";
                if candidates.is_empty() && self.last_gain.elapsed() >= STUCK {
                    candidates = lacked;
                    which = "stuck";
                }
            }
            if !candidates.is_empty() {
                tracing::debug!(which, n = candidates.len().min(room), "offer");
            }

            let key = |c: &u32| (spread(*c), held.uploads_of(*c), mix(u64::from(*c) ^ self.salt));
            if candidates.len() > room {
                candidates.select_nth_unstable_by_key(room, key);
                candidates.truncate(room);
            }
            candidates.sort_unstable();
            if self.proven {
                candidates.iter().for_each(|&c| self.count(c));
            }
            if !candidates.is_empty() {
                self.last_offer = Instant::now();
            }
            candidates
        };
        new.iter().for_each(|&c| {
            self.shown.set(c);
        });
        new
    }

    /// The watcher no longer holds `chunks` (its file changed on disk).
    pub fn they_lost(&mut self, chunks: &[u32]) {
        for &c in chunks {
            if c < self.theirs.len() && self.theirs.get(c) {
                self.theirs.unset(c);
                if self.super_seed {
                    self.held.count_copy(c, false);
                    if self.shown.get(c) && self.counted.set(c) {
                        self.held.count_offer(c, true);
                    }
                }
            }
        }
    }

    /// Chunks offered before that are no longer held (the file changed on disk).
    pub fn lost(&mut self) -> Vec<u32> {
        let lost: Vec<u32> = self.shown.minus(&self.held.chunks()).collect();
        for &c in &lost {
            self.shown.unset(c);
            self.uncount(c);
        }
        lost
    }

    /// Chunk `index` counts as offered to this watcher.
    fn count(&mut self, index: u32) {
        if self.counted.set(index) {
            self.held.count_offer(index, true);
        }
    }

    /// Chunk `index` no longer counts as offered to this watcher.
    fn uncount(&mut self, index: u32) {
        if self.counted.get(index) {
            self.counted.unset(index);
            self.held.count_offer(index, false);
        }
    }

    /// If the watcher took nothing for [`OFFER_EXPIRY`] since it was last offered more (or
    /// since it began to watch, offered nothing), it is idle: its offers stop counting
    /// against the others, and it stops counting as a watcher, so that freed offers do not
    /// pass from one idle watcher to the next. An upload started of a chunk offered to it
    /// alone counts as taking (a slow link may take seconds to deliver one chunk).
    pub fn expire_if_idle(&mut self) {
        let quiet = self.last_gain.elapsed() >= OFFER_EXPIRY && self.last_offer.elapsed() >= OFFER_EXPIRY;
        if !self.super_seed || !self.active || !quiet {
            return;
        }
        if self.counted.iter().any(|c| self.held.sending_now(c) > 0) {
            return;
        }
        let counted: Vec<u32> = self.counted.iter().collect();
        counted.into_iter().for_each(|c| self.uncount(c));
        self.active = false;
        self.held.count_watcher(false);
        self.held.free_offers();
    }
}

impl Drop for Offer {
    /// The watcher is gone: what it was offered and did not get is offered to nobody now,
    /// and what it held is held by one fewer.
    fn drop(&mut self) {
        if self.active {
            self.held.count_watcher(false);
        }
        if self.super_seed {
            self.counted.iter().for_each(|c| self.held.count_offer(c, false));
            self.theirs.iter().for_each(|c| self.held.count_copy(c, false));
        }
    }
}

/// How long changes gather before they are sent to each watcher: every node tells each of
/// its watchers, so a swarm of N neighbours sends N*N frames per interval; 200 ms for ten
/// watchers, up to a second for fifty (40 peers at 200 ms sent more availability packets than
/// chunk data on slow links).
fn batch_interval(watchers: u32) -> Duration {
    (BATCH / 10 * watchers).clamp(BATCH, MAX_BATCH)
}

/// A cheap, well-spread hash for tie-breaks.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Serves a watch: answers what is offered of `held` to a watcher holding `theirs`, then
/// tells it of every change, and follows what it says it gains, until either side ends.
pub async fn serve(
    held: Arc<Held>,
    theirs: Bitfield,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), ProtocolError> {
    let mut changes = held.subscribe();
    let mut freed = held.offers_freed();
    let (mut offer, first) = Offer::new(held.clone(), theirs, rand::random());
    transport::send_frame(&mut send, &PeerResponse::Have(first)).await?;
    let mut next_batch = tokio::time::Instant::now();
    // A seeder looks again now and then, for watchers that are stuck, and for idle ones.
    let mut stuck = tokio::time::interval(STUCK);
    let mut idle = tokio::time::interval(OFFER_EXPIRY / 2);
    let mut pending = true;
    loop {
        tokio::select! {
            _ = stuck.tick(), if offer.super_seed => pending = true,
            _ = freed.changed(), if offer.super_seed => pending = true,
            _ = idle.tick(), if offer.super_seed && offer.active => offer.expire_if_idle(),
            update = protocol::read_frame::<Availability, _>(&mut recv, MAX_FRAME) => match update? {
                Availability::Gained(chunks) => {
                    offer.they_gained(&chunks);
                    // A seeder tops the watcher's window up at once: its lanes wait on it.
                    let more = offer.more();
                    if !more.is_empty() {
                        transport::send_frame(&mut send, &Availability::Gained(more)).await?;
                    }
                }
                Availability::Lost(chunks) => {
                    offer.they_lost(&chunks);
                    pending = true;
                }
            },
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                pending = true;
            }
            _ = tokio::time::sleep_until(next_batch), if pending => {
                pending = false;
                next_batch = tokio::time::Instant::now() + batch_interval(held.watchers());
                let lost = offer.lost();
                if !lost.is_empty() {
                    transport::send_frame(&mut send, &Availability::Lost(lost)).await?;
                }
                let gained = offer.more();
                if !gained.is_empty() {
                    transport::send_frame(&mut send, &Availability::Gained(gained)).await?;
                }
            }
        }
    }
}

/// A watch on a neighbour: the stream on which it tells what it offers.
pub struct Watching {
    send: SendStream,
    recv: RecvStream,
    told: Bitfield,
}

/// Opens a watch on `connection` for `file`, telling what `ours` holds; returns the watch and
/// what the neighbour offers now.
pub async fn open(connection: &Connection, file: FileId, ours: &Held) -> Result<(Watching, Bitfield), ProtocolError> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(std::io::Error::from)?;
    let told = ours.chunks();
    let request = PeerRequest::Watch {
        file,
        have: told.clone(),
    };
    transport::send_frame(&mut send, &request).await?;
    match protocol::read_frame::<PeerResponse, _>(&mut recv, MAX_FRAME).await? {
        PeerResponse::Have(offered) if offered.len() == told.len() && offered.is_well_formed() => {
            Ok((Watching { send, recv, told }, offered))
        }
        PeerResponse::Error { code, message } => Err(ProtocolError::Closed(format!("{code:?}: {message}"))),
        other => Err(ProtocolError::Closed(format!("answered {other:?} to a watch"))),
    }
}

impl Watching {
    /// Passes every change the neighbour tells of to `changed`, and tells it of every chunk
    /// `ours` gains, until the neighbour ends the watch or fails.
    pub async fn follow(mut self, ours: Arc<Held>, mut changed: impl FnMut(Availability)) -> Result<(), ProtocolError> {
        let mut changes = ours.subscribe();
        let mut batch = tokio::time::interval(BATCH);
        batch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = false;
        loop {
            tokio::select! {
                update = protocol::read_frame::<Availability, _>(&mut self.recv, MAX_FRAME) => changed(update?),
                result = changes.changed() => {
                    if result.is_err() {
                        return Ok(());
                    }
                    pending = true;
                }
                _ = batch.tick(), if pending => {
                    pending = false;
                    let now = ours.chunks();
                    let gained: Vec<u32> = now.minus(&self.told).collect();
                    if !gained.is_empty() {
                        transport::send_frame(&mut self.send, &Availability::Gained(gained)).await?;
                    }
                    self.told = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::held::HeldFiles;
    use swarm_proto::{Digest, FileMeta, Manifest};

    fn held(chunks: Bitfield) -> Arc<Held> {
        let n = chunks.len();
        let manifest = Manifest {
            name: "f".into(),
            hash: Digest([0; 32]),
            size: u64::from(n) * 65536,
            chunk_size: 65536,
            chunk_count: n,
            chunks: vec![Digest([1; 32]); n as usize],
        };
        HeldFiles::default().add(Arc::new(manifest), "/f".into(), chunks, FileMeta::default())
    }

    #[test]
    fn a_partial_holder_offers_everything_it_has_and_then_what_it_gains() {
        let mut mine = Bitfield::new(100);
        mine.set(3);
        mine.set(7);
        let held = held(mine);
        let (mut offer, first) = Offer::new(held.clone(), Bitfield::new(100), 1);
        assert_eq!(first.iter().collect::<Vec<_>>(), vec![3, 7]);
        assert!(offer.more().is_empty());
        held.mark(50);
        assert_eq!(offer.more(), vec![50]);
        held.unmark(&[3]);
        assert_eq!(offer.lost(), vec![3]);
    }

    #[test]
    fn a_watcher_that_loses_a_chunk_no_longer_counts_as_a_copy() {
        let held = busy_seeder(10);
        let (mut offer, first) = Offer::new(held.clone(), Bitfield::new(10), 1);
        let mut window = first.iter();
        let (c, d) = (window.next().unwrap(), window.next().expect("a window is offered"));
        assert_eq!(
            (held.copies_of(c), held.offers_of(c)),
            (0, 0),
            "a fresh watch holds nothing back"
        );
        offer.they_gained(&[c]);
        assert_eq!((held.copies_of(c), held.offers_of(c)), (1, 0));
        assert_eq!(
            held.offers_of(d),
            1,
            "once it takes a chunk, the rest of its window counts"
        );
        offer.they_lost(&[c]);
        assert_eq!(
            (held.copies_of(c), held.offers_of(c)),
            (0, 1),
            "offered again, held by none"
        );
        drop(offer);
        assert_eq!((held.copies_of(c), held.offers_of(c)), (0, 0));
    }

    #[test]
    fn a_super_seeder_sends_one_chunk_to_one_peer_at_a_time() {
        let held = busy_seeder(10);
        let (_offer, _) = Offer::new(held.clone(), Bitfield::new(10), 1);
        let first = held.start_sending(3).expect("nobody is sent chunk 3 yet");
        assert!(held.start_sending(3).is_none(), "a second copy at once is refused");
        assert!(held.start_sending(4).is_some(), "other chunks are not");
        drop(first);
        assert!(held.start_sending(3).is_some(), "once sent, it may be sent again");

        let mut part = Bitfield::new(10);
        part.set(3);
        let partial = self::held(part);
        partial.count_watcher(true);
        partial.count_watcher(true);
        let _one = partial.start_sending(3).unwrap();
        assert!(
            partial.start_sending(3).is_some(),
            "a partial holder does not super-seed"
        );
    }

    /// A seeder of `chunks` with another watcher already (super-seeding needs two).
    fn busy_seeder(chunks: u32) -> Arc<Held> {
        let held = held(Bitfield::full(chunks));
        held.count_watcher(true);
        held
    }

    #[test]
    fn a_lone_watcher_is_offered_everything() {
        let held = held(Bitfield::full(100));
        let (_, first) = Offer::new(held, Bitfield::new(100), 1);
        assert!(first.is_complete());
    }

    #[test]
    fn a_seeder_offers_a_window_of_the_least_sent_chunks() {
        let held = busy_seeder(200);
        for c in 0..100 {
            held.count_upload(c, true);
        }
        let (mut offer, first) = Offer::new(held.clone(), Bitfield::new(200), 7);
        // Two watchers (the phantom and this one): each is offered twice the window.
        assert_eq!(first.count() as usize, 2 * OFFER_WINDOW);
        assert!(first.iter().all(|c| c >= 100), "the never-sent chunks come first");
        assert!(offer.more().is_empty(), "the window is full");
        // The watcher gets 4 of them: 4 more are offered.
        let got: Vec<u32> = first.iter().take(4).collect();
        offer.they_gained(&got);
        let more = offer.more();
        assert_eq!(more.len(), 4);
        assert!(more.iter().all(|c| !first.get(*c)));
        // Another watcher is offered other chunks: none offered to the first and still lacked.
        let (other_offer, other) = Offer::new(held.clone(), Bitfield::new(200), 8);
        let outstanding: Vec<u32> = first.iter().skip(4).chain(more.iter().copied()).collect();
        assert!(outstanding.iter().all(|c| !other.get(*c)), "windows do not overlap");
        // When a watcher goes, what it was offered is free again, and what it held is held by
        // one fewer.
        drop(offer);
        drop(other_offer);
        assert!((0..200).all(|c| held.offers_of(c) == 0 && held.copies_of(c) == 0));
        assert_eq!(held.watchers(), 1, "the phantom is left");
    }

    #[test]
    fn watch_streams_are_capped_per_peer_and_per_network() {
        let watches = Arc::new(Watches::default());
        let ip = |last: u8| IpAddr::from([10, 0, 0, last]);
        let one = PeerId([1; 32]);
        let mut passes: Vec<_> = (0..MAX_WATCHES_PER_PEER)
            .map(|_| watches.admit(one, ip(1)).unwrap())
            .collect();
        assert!(watches.admit(one, ip(1)).unwrap_err().contains("this peer"));
        for n in 2..=(MAX_WATCHES_PER_NETWORK / MAX_WATCHES_PER_PEER) as u8 {
            for _ in 0..MAX_WATCHES_PER_PEER {
                passes.push(watches.admit(PeerId([n; 32]), ip(n)).unwrap());
            }
        }
        let refused = watches.admit(PeerId([99; 32]), ip(99)).unwrap_err();
        assert!(refused.contains("network"), "{refused}");
        assert!(
            watches.admit(PeerId([99; 32]), IpAddr::from([10, 0, 1, 1])).is_ok(),
            "another network"
        );
        passes.pop();
        assert!(
            watches.admit(PeerId([99; 32]), ip(99)).is_ok(),
            "a watch ended frees its place"
        );
    }

    #[test]
    fn fresh_watches_hold_nothing_back_however_many() {
        let held = busy_seeder(16);
        let fresh: Vec<_> = (0..100)
            .map(|n| Offer::new(held.clone(), Bitfield::new(16), n))
            .collect();
        assert!((0..16).all(|c| held.offers_of(c) == 0));
        let (_, honest) = Offer::new(held.clone(), Bitfield::new(16), 1000);
        assert!(honest.count() >= 1, "a newcomer is still offered chunks");
        drop(fresh);
    }

    /// A seeder of 40 chunks; one watcher holds 0..36 (the last of them taken since it began
    /// to watch) and is offered 36..40.
    fn one_watcher_nearly_done(sent_already: bool) -> (Arc<Held>, Offer) {
        let held = busy_seeder(40);
        if sent_already {
            (36..40).for_each(|c| held.count_upload(c, true));
        }
        let mut most = Bitfield::new(40);
        (0..35).for_each(|c| {
            most.set(c);
        });
        let (mut first, offered) = Offer::new(held.clone(), most, 1);
        assert_eq!(offered.iter().collect::<Vec<_>>(), vec![35, 36, 37, 38, 39]);
        first.they_gained(&[35]);
        (held, first)
    }

    #[test]
    fn a_seeder_does_not_offer_what_another_watcher_holds_unless_the_watcher_is_stuck() {
        let (held, _first) = one_watcher_nearly_done(true);
        let (mut second, offered) = Offer::new(held, Bitfield::new(40), 2);
        assert_eq!(
            offered.count(),
            0,
            "0..36 are held by the first watcher, 36..40 offered to it"
        );
        second.last_gain = Instant::now() - STUCK;
        assert!(
            second.more().len() >= OFFER_WINDOW,
            "stuck: it is offered what others hold"
        );
    }

    #[test]
    fn an_idle_watcher_takes_over_chunks_offered_to_another_and_not_sent_yet() {
        let (held, _first) = one_watcher_nearly_done(false);
        let (_, offered) = Offer::new(held, Bitfield::new(40), 2);
        assert_eq!(offered.iter().collect::<Vec<_>>(), vec![36, 37, 38, 39]);
    }

    #[test]
    fn a_seeder_offers_everything_the_watcher_lacks_when_that_is_little() {
        let held = busy_seeder(40);
        let mut theirs = Bitfield::full(40);
        for c in [1, 2, 3] {
            theirs.unset(c);
        }
        let (_, first) = Offer::new(held, theirs, 0);
        assert_eq!(first.iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
