//! What a node offers each peer that watches a file it holds.
//!
//! A node that holds part of a file offers everything it holds and every chunk it verifies
//! next. A node that holds the whole file *super-seeds*: it offers each watcher only chunks
//! that none of its watchers holds and none is offered yet (those it has uploaded least
//! first, ties broken differently for each watcher), at most [`OFFER_WINDOW`] outstanding,
//! and more as the watcher gets them. Different watchers so fetch different chunks from the
//! seeder and the rest from each other: the seeder sends about one copy, and the swarm carries
//! the others. When many watch, the chunks nobody holds or is offered are shared out among
//! them, so that the last of a crowd finds some too. A watcher alone (no other watch open,
//! idle or not) is offered everything once it has taken a chunk (at first a window of four
//! times as many: the others of a crowd arrive a moment later, and whatever is offered to one
//! cannot be taken back; and a fellow idle for a moment would find everything gone). A
//! watcher with nothing outstanding may take over chunks offered to another and not sent yet
//! (near the end, so that a slow watcher's share does not hold everyone up), and one that has
//! also gained nothing for [`STUCK`] is offered chunks others hold (it may not reach them).
//!
//! A watcher is *on trial* until it takes a chunk: what it is offered is counted apart, as
//! offered on trial, so that a crowd's first windows differ (each watcher would later ask the
//! seeder for every chunk it was shown) while watches that never fetch hold back nothing that
//! lasts. A watcher that takes nothing for [`OFFER_EXPIRY`] (no chunk gained, none of its
//! window on its way, whether it was offered some or none) is idle: its offers stop holding
//! those chunks back from the others, it is offered nothing that counts, and it counts as a
//! watcher again only once it gains a chunk, so that peers that only watch cost the seeder
//! nothing. An idle watcher stuck for [`STUCK`] is offered a window of what it lacks, counted
//! against nobody: one that was only slow takes something and is active again.
//!
//! What was shown cannot be taken back, so a seeder also decides per request
//! ([`leave_to_others`]): a chunk it has sent and a watcher holds is refused to a watcher that
//! gains chunks elsewhere, which can get it from them; a watcher that gains nothing elsewhere
//! for [`STUCK`] is served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_proto::{Bitfield, PeerId};

use crate::held::Held;

/// Chunks a seeder offers a watcher at a time, beyond those the watcher has, when many watch:
/// more than a fetcher of a busy swarm asks one peer for at once (two), so that its lanes to
/// the seeder stay busy, and few, so that chunks are not promised long before they are sent.
/// With fewer watchers each is offered more (up to four times this), and a watcher alone is
/// offered everything.
pub const OFFER_WINDOW: usize = 8;
/// A watcher of a seeder that gained nothing for this long, with nothing outstanding, is
/// offered chunks its fellow watchers hold too.
pub const STUCK: Duration = Duration::from_secs(2);
/// A watcher of a seeder that gained nothing for this long since its last offer, and to whom
/// none of its offered chunks is being sent, is idle.
pub const OFFER_EXPIRY: Duration = Duration::from_millis(500);

/// Changes are sent at most this often, so that a fast download sends a few frames a second
/// rather than one per chunk; with many watchers, less often still (see [`batch_interval`]).
pub const BATCH: Duration = Duration::from_millis(200);
/// The longest a change waits to be sent.
pub const MAX_BATCH: Duration = Duration::from_secs(1);

/// How long changes gather before they are sent to each watcher: every node tells each of
/// its watchers, so a swarm of N neighbours sends N*N frames per interval; 200 ms for ten
/// watchers, up to a second for fifty (40 peers at 200 ms sent more availability packets than
/// chunk data on slow links).
pub fn batch_interval(watchers: u32) -> Duration {
    (BATCH / 10 * watchers).clamp(BATCH, MAX_BATCH)
}

/// What an [`Offer`] reads and counts of the file it offers: the chunks held, how they have
/// spread among the watchers, and the time. The node's copy of a file (`Held`) is one; the
/// simulator (`swarm-sim`) gives its own, with its own clock.
pub trait Supply: std::fmt::Debug {
    /// Now, by the clock the offers are timed with.
    fn now(&self) -> Instant;
    /// The chunks held.
    fn chunks(&self) -> Bitfield;
    /// How many peers watch the file now.
    fn watchers(&self) -> u32;
    /// One more watcher (`true`), or one fewer; returns how many there are now.
    fn count_watcher(&self, more: bool) -> u32;
    /// How many watches are open, idle ones too.
    fn watches(&self) -> u32;
    /// One more watch is open (`true`), or one fewer.
    fn count_watch(&self, more: bool);
    /// How many watchers hold chunk `index`.
    fn copies_of(&self, index: u32) -> u32;
    /// One more watcher holds chunk `index` (`true`), or one fewer.
    fn count_copy(&self, index: u32, more: bool);
    /// To how many watchers that lack chunk `index` it is offered.
    fn offers_of(&self, index: u32) -> u32;
    /// Chunk `index` is offered to one more watcher that lacks it (`true`), or one fewer.
    fn count_offer(&self, index: u32, more: bool);
    /// To how many watchers on trial (that have taken nothing yet) chunk `index` is offered.
    fn trial_offers_of(&self, index: u32) -> u32;
    /// Chunk `index` is offered to one more watcher on trial (`true`), or one fewer.
    fn count_trial_offer(&self, index: u32, more: bool);
    /// How often chunk `index` was uploaded or is being uploaded now.
    fn uploads_of(&self, index: u32) -> u32;
    /// How many uploads of chunk `index` are under way now.
    fn sending_now(&self, index: u32) -> u32;
    /// Tells the watchers that offers were taken back from an idle one.
    fn free_offers(&self);
    /// `watcher` gained a chunk it was not offered here: it reaches other holders.
    fn note_gained_elsewhere(&self, watcher: PeerId);
    /// When `watcher` last gained a chunk it was not offered here.
    fn gained_elsewhere(&self, watcher: &PeerId) -> Option<Instant>;
    /// `watcher` no longer watches the file.
    fn forget_watcher(&self, watcher: &PeerId);
}

impl Supply for Held {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn chunks(&self) -> Bitfield {
        Held::chunks(self)
    }
    fn watchers(&self) -> u32 {
        Held::watchers(self)
    }
    fn count_watcher(&self, more: bool) -> u32 {
        Held::count_watcher(self, more)
    }
    fn watches(&self) -> u32 {
        Held::watches(self)
    }
    fn count_watch(&self, more: bool) {
        Held::count_watch(self, more)
    }
    fn copies_of(&self, index: u32) -> u32 {
        Held::copies_of(self, index)
    }
    fn count_copy(&self, index: u32, more: bool) {
        Held::count_copy(self, index, more)
    }
    fn offers_of(&self, index: u32) -> u32 {
        Held::offers_of(self, index)
    }
    fn count_offer(&self, index: u32, more: bool) {
        Held::count_offer(self, index, more)
    }
    fn trial_offers_of(&self, index: u32) -> u32 {
        Held::trial_offers_of(self, index)
    }
    fn count_trial_offer(&self, index: u32, more: bool) {
        Held::count_trial_offer(self, index, more)
    }
    fn uploads_of(&self, index: u32) -> u32 {
        Held::uploads_of(self, index)
    }
    fn sending_now(&self, index: u32) -> u32 {
        Held::sending_now(self, index)
    }
    fn free_offers(&self) {
        Held::free_offers(self)
    }
    fn note_gained_elsewhere(&self, watcher: PeerId) {
        Held::note_gained_elsewhere(self, watcher)
    }
    fn gained_elsewhere(&self, watcher: &PeerId) -> Option<Instant> {
        Held::gained_elsewhere(self, watcher)
    }
    fn forget_watcher(&self, watcher: &PeerId) {
        Held::forget_watcher(self, watcher)
    }
}

/// Whether a super-seeder should refuse `watcher` chunk `index` and leave it to the peers
/// that hold it: it does once it has sent the chunk and a watcher of its holds it, while
/// `watcher` gains chunks it was not offered here (so reaches other holders), as it did
/// within [`STUCK`]. A crowd's watchers are shown the same chunk now and then (an idle
/// watcher's window goes to the others; a watcher that waits is shown what another was),
/// and each would then ask the seeder for it: at a hundred simulated hosts a third of the
/// seeder's uploads were such repeats. A watcher that gained nothing elsewhere for
/// [`STUCK`] (it may reach nobody else) is served.
pub fn leave_to_others<S: Supply>(held: &S, watcher: &PeerId, index: u32) -> bool {
    held.copies_of(index) > 0
        && held.uploads_of(index) > 0
        && held.watchers() >= 2
        && held
            .gained_elsewhere(watcher)
            .is_some_and(|at| held.now().saturating_duration_since(at) < STUCK)
        && held.chunks().is_complete()
}

/// What a node offers one watcher.
#[derive(Debug)]
pub struct Offer<S: Supply> {
    /// The file offered.
    held: Arc<S>,
    /// The peer that watches.
    watcher: PeerId,
    /// Chunks offered so far (and not since lost).
    shown: Bitfield,
    /// Offered chunks it lacks whose offer counts against offering them to others.
    counted: Bitfield,
    /// Chunks offered while on trial (before it took any) that it lacks: they are not shown
    /// to others while it is active, so that a crowd's first windows differ, and count as
    /// offered once it takes a chunk.
    on_trial: Bitfield,
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

impl<S: Supply> Offer<S> {
    /// The offer to `watcher`, holding `theirs` of `held`, and the chunks to tell it of now.
    pub fn new(held: Arc<S>, watcher: PeerId, theirs: Bitfield, salt: u64) -> (Offer<S>, Bitfield) {
        let super_seed = held.chunks().is_complete();
        held.count_watcher(true);
        held.count_watch(true);
        if super_seed {
            theirs.iter().for_each(|c| held.count_copy(c, true));
        }
        let now = held.now();
        let mut offer = Offer {
            shown: Bitfield::new(theirs.len()),
            counted: Bitfield::new(theirs.len()),
            on_trial: Bitfield::new(theirs.len()),
            super_seed,
            theirs,
            salt,
            held,
            watcher,
            last_gain: now,
            last_offer: now,
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

    /// The holder super-seeds: it holds the whole file, and offers a window of it at a time.
    pub fn super_seeds(&self) -> bool {
        self.super_seed
    }

    /// The watcher counts among the file's watchers (it is not idle).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The watcher now holds `chunks` too.
    pub fn they_gained(&mut self, chunks: &[u32]) {
        let mut elsewhere = false;
        for &c in chunks {
            if c < self.theirs.len() && self.theirs.set(c) && self.super_seed {
                elsewhere |= !self.shown.get(c);
                self.last_gain = self.held.now();
                if !self.active {
                    self.active = true;
                    self.held.count_watcher(true);
                }
                self.held.count_copy(c, true);
                self.uncount(c);
                self.untry(c);
                if !self.proven {
                    self.proven = true;
                    let outstanding: Vec<u32> = self.shown.minus(&self.theirs).collect();
                    outstanding.into_iter().for_each(|c| {
                        self.untry(c);
                        self.count(c);
                    });
                }
            }
        }
        if elsewhere {
            self.held.note_gained_elsewhere(self.watcher);
        }
    }

    /// Chunks to offer now that were not offered before: everything newly held, or for a
    /// seeder, enough of the chunks held, offered and sent least to keep a window offered
    /// that the watcher lacks.
    pub fn more(&mut self) -> Vec<u32> {
        let held = &self.held;
        let ours = held.chunks();
        let watchers = held.watchers() as usize;
        let alone = held.watches() < 2;
        let new: Vec<u32> = if !self.super_seed || (alone && self.active && self.proven) {
            // Not what the watcher holds already: it would never ask for those.
            ours.minus(&self.shown).filter(|&c| !self.theirs.get(c)).collect()
        } else if !self.active {
            // Idle: its offers hold nothing back from the others. Once stuck, it is offered a
            // window of what it lacks, counted against nobody, so that a watcher that was
            // only slow can still take something and so become active again (not everything:
            // near the end a stuck fetcher would ask the seeder for chunks its peers hold).
            if self.since(self.last_gain) < STUCK {
                return Vec::new();
            }
            let outstanding = self.shown.minus(&self.theirs).count();
            let lacked: Vec<u32> = ours.minus(&self.shown).filter(|&c| !self.theirs.get(c)).collect();
            self.least_spread(lacked, OFFER_WINDOW.saturating_sub(outstanding).max(1))
        } else {
            let outstanding = self.shown.minus(&self.theirs).count();
            if !self.proven && outstanding > 0 {
                // On trial, nothing more until it takes what it was shown: a watch that never
                // fetches would otherwise be offered more as others go idle, and stay active.
                return Vec::new();
            }
            let window = (4 * OFFER_WINDOW / watchers.max(1)).max(OFFER_WINDOW);
            let room = window.saturating_sub(outstanding);
            if room == 0 {
                return Vec::new();
            }
            let lacked: Vec<u32> = ours.minus(&self.shown).filter(|&c| !self.theirs.get(c)).collect();
            let tier =
                |fits: &dyn Fn(u32) -> bool| -> Vec<u32> { lacked.iter().copied().filter(|&c| fits(c)).collect() };
            let mut candidates = tier(&|c| self.spread(c) == 0);
            // Those nobody holds or is offered are shared out among the watchers, so that
            // the last of a crowd finds some too; once none is left, one at a time is taken
            // over or offered though held (each may become a second copy).
            let fresh = (0..ours.len()).filter(|&c| self.spread(c) == 0).count();
            let room = room.min((fresh / watchers.max(1)).max(1));
            let mut which = "fresh";
            // Then those only shown to watchers on trial that did not ask for them: a watch
            // that never fetches holds nothing back for long.
            let unasked = |c: u32| held.copies_of(c) == 0 && held.offers_of(c) == 0 && held.sending_now(c) == 0;
            if candidates.is_empty() && outstanding == 0 && lacked.iter().any(|&c| unasked(c)) {
                candidates = tier(&unasked);
                which = "unasked";
            } else if candidates.is_empty() && outstanding == 0 {
                candidates = tier(&|c| held.copies_of(c) == 0 && held.uploads_of(c) == 0);
                which = "unsent";
                if candidates.is_empty() && self.since(self.last_gain) >= STUCK {
                    candidates = lacked;
                    which = "stuck";
                }
            }
            if !candidates.is_empty() {
                tracing::debug!(which, n = candidates.len().min(room), "offer");
            }

            let candidates = self.least_spread(candidates, room);
            if self.proven {
                candidates.iter().for_each(|&c| self.count(c));
            } else {
                candidates.iter().for_each(|&c| self.try_out(c));
            }
            if !candidates.is_empty() {
                self.last_offer = self.held.now();
            }
            candidates
        };
        new.iter().for_each(|&c| {
            self.shown.set(c);
        });
        new
    }

    /// How many watchers hold chunk `index` or are offered it, on trial or not.
    fn spread(&self, index: u32) -> u32 {
        let held = &self.held;
        held.copies_of(index) + held.offers_of(index) + held.trial_offers_of(index)
    }

    /// The `room` of `candidates` held, offered and sent least, in order (ties broken
    /// differently for each watcher).
    fn least_spread(&self, mut candidates: Vec<u32>, room: usize) -> Vec<u32> {
        let key = |c: &u32| {
            (
                self.spread(*c),
                self.held.uploads_of(*c),
                mix(u64::from(*c) ^ self.salt),
            )
        };
        if candidates.len() > room {
            candidates.select_nth_unstable_by_key(room, key);
            candidates.truncate(room);
        }
        candidates.sort_unstable();
        candidates
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
            self.untry(c);
        }
        lost
    }

    /// How long ago `then` was.
    fn since(&self, then: Instant) -> Duration {
        self.held.now().saturating_duration_since(then)
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

    /// Chunk `index` is offered to this watcher while it is on trial.
    fn try_out(&mut self, index: u32) {
        if self.on_trial.set(index) {
            self.held.count_trial_offer(index, true);
        }
    }

    /// Chunk `index` is no longer offered to this watcher on trial.
    fn untry(&mut self, index: u32) {
        if self.on_trial.get(index) {
            self.on_trial.unset(index);
            self.held.count_trial_offer(index, false);
        }
    }

    /// If the watcher took nothing for [`OFFER_EXPIRY`] since it was last offered more (or
    /// since it began to watch, offered nothing), it is idle: its offers stop counting
    /// against the others, and it stops counting as a watcher, so that freed offers do not
    /// pass from one idle watcher to the next. An upload started of a chunk offered to it
    /// alone, counted or on trial, counts as taking (a link shared by many may take seconds
    /// to deliver one chunk; before its first, a crowd's watchers all went idle at once,
    /// which left each of them alone and offered the whole file). Not a chunk offered to
    /// another too: watches that never fetch stayed active while the chunks they were shown
    /// went to the peer that took them over.
    pub fn expire_if_idle(&mut self) {
        let quiet = self.since(self.last_gain) >= OFFER_EXPIRY && self.since(self.last_offer) >= OFFER_EXPIRY;
        if !self.super_seed || !self.active || !quiet {
            return;
        }
        let held = &self.held;
        let alone = |c: u32| held.offers_of(c) + held.trial_offers_of(c) == 1;
        if self
            .counted
            .iter()
            .chain(self.on_trial.iter())
            .any(|c| alone(c) && held.sending_now(c) > 0)
        {
            return;
        }
        let counted: Vec<u32> = self.counted.iter().collect();
        counted.into_iter().for_each(|c| self.uncount(c));
        let tried: Vec<u32> = self.on_trial.iter().collect();
        tried.into_iter().for_each(|c| self.untry(c));
        self.active = false;
        self.held.count_watcher(false);
        self.held.free_offers();
    }
}

impl<S: Supply> Drop for Offer<S> {
    /// The watcher is gone: what it was offered and did not get is offered to nobody now,
    /// and what it held is held by one fewer.
    fn drop(&mut self) {
        self.held.count_watch(false);
        self.held.forget_watcher(&self.watcher);
        if self.active {
            self.held.count_watcher(false);
        }
        self.on_trial.iter().for_each(|c| self.held.count_trial_offer(c, false));
        if self.super_seed {
            self.counted.iter().for_each(|c| self.held.count_offer(c, false));
            self.theirs.iter().for_each(|c| self.held.count_copy(c, false));
        }
    }
}

/// A cheap, well-spread hash for tie-breaks.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::held::HeldFiles;
    use swarm_proto::{Digest, FileMeta, Manifest};

    /// A watcher's id, made from `n`.
    fn watcher(n: u64) -> PeerId {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.to_le_bytes());
        PeerId(id)
    }

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
        let (mut offer, first) = Offer::new(held.clone(), watcher(1), Bitfield::new(100), 1);
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
        let (mut offer, first) = Offer::new(held.clone(), watcher(1), Bitfield::new(10), 1);
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
        let (_offer, _) = Offer::new(held.clone(), watcher(1), Bitfield::new(10), 1);
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

    #[test]
    fn a_seeder_leaves_a_chunk_it_sent_to_the_watcher_that_holds_it() {
        let held = busy_seeder(16);
        let (mut a, a_first) = Offer::new(held.clone(), watcher(1), Bitfield::new(16), 1);
        let (mut b, _) = Offer::new(held.clone(), watcher(2), Bitfield::new(16), 2);
        let c = a_first.iter().next().expect("a window is offered");
        held.count_upload(c, true);
        a.they_gained(&[c]);
        assert!(
            !leave_to_others(&*held, &watcher(2), c),
            "B gained nothing elsewhere: it may reach nobody else"
        );
        let shown_to_b = b.shown.clone();
        let elsewhere = (0..16).find(|&d| d != c && !shown_to_b.get(d)).unwrap();
        b.they_gained(&[elsewhere]);
        assert!(leave_to_others(&*held, &watcher(2), c), "B gains elsewhere; A holds c");
        let unsent = (0..16).find(|&d| d != c && held.uploads_of(d) == 0).unwrap();
        assert!(
            !leave_to_others(&*held, &watcher(2), unsent),
            "a chunk never sent is sent"
        );
        drop(b);
        assert_eq!(held.gained_elsewhere(&watcher(2)), None, "a watch ended is forgotten");

        let mut part = Bitfield::new(16);
        part.set(c);
        let partial = self::held(part);
        partial.count_watcher(true);
        partial.count_watcher(true);
        partial.count_copy(c, true);
        partial.count_upload(c, true);
        partial.note_gained_elsewhere(watcher(4));
        assert!(
            !leave_to_others(&*partial, &watcher(4), c),
            "a partial holder does not super-seed"
        );
    }

    /// A seeder of `chunks` with another watcher already (super-seeding needs two).
    fn busy_seeder(chunks: u32) -> Arc<Held> {
        let held = held(Bitfield::full(chunks));
        held.count_watcher(true);
        held.count_watch(true);
        held
    }

    #[test]
    fn a_lone_watcher_is_offered_everything_once_it_takes_a_chunk() {
        let held = held(Bitfield::full(100));
        let (mut offer, first) = Offer::new(held, watcher(1), Bitfield::new(100), 1);
        assert_eq!(
            first.count() as usize,
            4 * OFFER_WINDOW,
            "at first a window: others may be a moment behind"
        );
        offer.they_gained(&[first.iter().next().unwrap()]);
        assert_eq!(offer.more().len(), 100 - 4 * OFFER_WINDOW, "then the rest");
    }

    /// Makes `offer` look as if it took nothing for [`OFFER_EXPIRY`] since its last offer.
    fn quiet_since_expiry(offer: &mut Offer<Held>) {
        offer.last_gain -= OFFER_EXPIRY;
        offer.last_offer -= OFFER_EXPIRY;
    }

    #[test]
    fn a_watcher_whose_first_chunk_is_on_its_way_is_not_idle() {
        let held = busy_seeder(100);
        let (mut offer, first) = Offer::new(held.clone(), watcher(1), Bitfield::new(100), 1);
        let sending = held.start_sending(first.iter().next().unwrap()).unwrap();
        quiet_since_expiry(&mut offer);
        offer.expire_if_idle();
        assert!(
            offer.is_active(),
            "a chunk of its window is being sent (a slow link, many watchers)"
        );
        drop(sending);
        offer.expire_if_idle();
        assert!(!offer.is_active());
    }

    #[test]
    fn watchers_idle_together_are_not_each_offered_everything() {
        let held = busy_seeder(100);
        let offers: Vec<_> = (0..3)
            .map(|n| Offer::new(held.clone(), watcher(n), Bitfield::new(100), n))
            .collect();
        let taken = offers[0].1.iter().next().unwrap();
        let mut offers: Vec<_> = offers.into_iter().map(|(offer, _)| offer).collect();
        offers[0].they_gained(&[taken]);
        for offer in &mut offers {
            quiet_since_expiry(offer);
            offer.expire_if_idle();
        }
        assert_eq!(held.watchers(), 1, "the phantom alone");
        assert!(
            offers[0].more().is_empty(),
            "idle, not yet stuck: nothing, though no watcher is active"
        );
    }

    #[test]
    fn a_seeder_offers_a_window_of_the_least_sent_chunks() {
        let held = busy_seeder(200);
        for c in 0..100 {
            held.count_upload(c, true);
        }
        let (mut offer, first) = Offer::new(held.clone(), watcher(7), Bitfield::new(200), 7);
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
        let (other_offer, other) = Offer::new(held.clone(), watcher(8), Bitfield::new(200), 8);
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
    fn a_crowd_on_trial_is_offered_different_chunks_and_each_some() {
        let held = busy_seeder(64);
        let crowd: Vec<_> = (0..16)
            .map(|n| Offer::new(held.clone(), watcher(n), Bitfield::new(64), n))
            .collect();
        let mut shown = Bitfield::new(64);
        for (_, first) in &crowd {
            assert!(first.count() >= 1, "the last of the crowd is offered some too");
            assert!(first.iter().all(|c| shown.set(c)), "no chunk is offered to two of them");
        }
        assert!(
            (0..64).all(|c| held.offers_of(c) == 0),
            "on trial, nothing counts as offered"
        );
        drop(crowd);
        assert!((0..64).all(|c| held.trial_offers_of(c) == 0));
    }

    #[test]
    fn a_watcher_on_trial_counts_its_offers_once_it_takes_one() {
        let held = busy_seeder(64);
        let (mut offer, first) = Offer::new(held.clone(), watcher(3), Bitfield::new(64), 3);
        let window: Vec<u32> = first.iter().collect();
        offer.they_gained(&window[..1]);
        assert!(window[1..]
            .iter()
            .all(|&c| held.offers_of(c) == 1 && held.trial_offers_of(c) == 0));
        quiet_since_expiry(&mut offer);
        offer.expire_if_idle();
        assert!(
            (0..64).all(|c| held.offers_of(c) == 0 && held.trial_offers_of(c) == 0),
            "idle: nothing held back"
        );
    }

    #[test]
    fn a_watcher_whose_fellows_are_idle_for_a_moment_is_not_offered_everything() {
        let held = held(Bitfield::full(100));
        let (mut offer, first) = Offer::new(held.clone(), watcher(1), Bitfield::new(100), 1);
        let (mut fellow, _) = Offer::new(held.clone(), watcher(2), Bitfield::new(100), 2);
        quiet_since_expiry(&mut fellow);
        fellow.expire_if_idle();
        assert_eq!(held.watchers(), 1, "the fellow is idle");
        offer.they_gained(&[first.iter().next().unwrap()]);
        let more = offer.more();
        assert!(
            more.len() <= 4 * OFFER_WINDOW,
            "a window, not the rest of the file: {}",
            more.len()
        );
        drop(fellow);
        assert!(offer.more().len() > 4 * OFFER_WINDOW, "alone now: everything");
    }

    #[test]
    fn a_watcher_on_trial_is_offered_nothing_more_until_it_takes_a_chunk() {
        let held = busy_seeder(64);
        let (mut offer, first) = Offer::new(held.clone(), watcher(1), Bitfield::new(64), 1);
        assert!(first.count() >= 1);
        let (mut other, _) = Offer::new(held.clone(), watcher(2), Bitfield::new(64), 2);
        quiet_since_expiry(&mut other);
        other.expire_if_idle();
        assert!(
            offer.more().is_empty(),
            "another went idle, but this one took nothing yet"
        );
        offer.they_gained(&[first.iter().next().unwrap()]);
        assert!(!offer.more().is_empty());
    }

    #[test]
    fn chunks_shown_on_trial_and_not_asked_for_go_to_a_newcomer() {
        let held = busy_seeder(16);
        (0..16).for_each(|c| held.count_upload(c, true)); // a fetcher before, gone now
        let watches: Vec<_> = (0..16)
            .map(|n| Offer::new(held.clone(), watcher(n), Bitfield::new(16), n))
            .collect();
        assert!(
            (0..16).all(|c| held.trial_offers_of(c) >= 1),
            "all shown to watches on trial"
        );
        let (_, newcomer) = Offer::new(held.clone(), watcher(100), Bitfield::new(16), 100);
        assert!(newcomer.count() >= 1, "watches that never ask hold nothing back");
        let asked = newcomer.iter().next().unwrap();
        let (_, next) = {
            let _sending = held.start_sending(asked);
            Offer::new(held.clone(), watcher(101), Bitfield::new(16), 101)
        };
        assert!(!next.get(asked), "not a chunk on its way to someone");
        drop(watches);
    }

    #[test]
    fn a_stuck_idle_watcher_is_offered_a_window_not_everything() {
        let held = busy_seeder(100);
        let (mut offer, _) = Offer::new(held.clone(), watcher(1), Bitfield::new(100), 1);
        quiet_since_expiry(&mut offer);
        offer.expire_if_idle();
        assert!(!offer.is_active());
        offer.last_gain -= STUCK;
        let more = offer.more();
        assert!(!more.is_empty() && more.len() <= OFFER_WINDOW, "offered {}", more.len());
    }

    #[test]
    fn fresh_watches_hold_nothing_back_however_many() {
        let held = busy_seeder(16);
        let fresh: Vec<_> = (0..100)
            .map(|n| Offer::new(held.clone(), watcher(n), Bitfield::new(16), n))
            .collect();
        assert!((0..16).all(|c| held.offers_of(c) == 0));
        let (_, honest) = Offer::new(held.clone(), watcher(1000), Bitfield::new(16), 1000);
        assert!(honest.count() >= 1, "a newcomer is still offered chunks");
        drop(fresh);
    }

    /// A seeder of 40 chunks; one watcher holds 0..36 (the last of them taken since it began
    /// to watch) and is offered 36..40.
    fn one_watcher_nearly_done(sent_already: bool) -> (Arc<Held>, Offer<Held>) {
        let held = held(Bitfield::full(40));
        if sent_already {
            (36..40).for_each(|c| held.count_upload(c, true));
        }
        let mut most = Bitfield::new(40);
        (0..35).for_each(|c| {
            most.set(c);
        });
        let (mut first, offered) = Offer::new(held.clone(), watcher(1), most, 1);
        assert_eq!(offered.iter().collect::<Vec<_>>(), vec![35, 36, 37, 38, 39]);
        first.they_gained(&[35]);
        (held, first)
    }

    #[test]
    fn a_seeder_does_not_offer_what_another_watcher_holds_unless_the_watcher_is_stuck() {
        let (held, _first) = one_watcher_nearly_done(true);
        let (mut second, offered) = Offer::new(held, watcher(2), Bitfield::new(40), 2);
        assert_eq!(
            offered.count(),
            0,
            "0..36 are held by the first watcher, 36..40 offered to it"
        );
        second.last_gain = Instant::now() - STUCK;
        assert_eq!(
            second.more().len(),
            1,
            "stuck: it is offered what others hold, one at a time"
        );
    }

    #[test]
    fn an_idle_watcher_takes_over_chunks_offered_to_another_and_not_sent_yet() {
        let (held, _first) = one_watcher_nearly_done(false);
        let (_, offered) = Offer::new(held, watcher(2), Bitfield::new(40), 2);
        let offered: Vec<u32> = offered.iter().collect();
        assert!(
            offered.len() == 1 && (36..40).contains(&offered[0]),
            "one at a time: {offered:?}"
        );
    }

    #[test]
    fn the_last_chunks_nobody_holds_are_shared_out_among_the_watchers() {
        let held = busy_seeder(40);
        let mut theirs = Bitfield::full(40);
        for c in [1, 2, 3] {
            theirs.unset(c);
        }
        let (_one, first) = Offer::new(held.clone(), watcher(0), theirs, 0);
        let first: Vec<u32> = first.iter().collect();
        assert_eq!(first.len(), 1, "three chunks among (then) two watchers: {first:?}");
        assert!([1, 2, 3].contains(&first[0]));
        let (_two, second) = Offer::new(held, watcher(1), Bitfield::new(40), 1);
        let second: Vec<u32> = second.iter().collect();
        assert_eq!(second.len(), 1, "{second:?}");
        assert!(
            [1, 2, 3].contains(&second[0]) && second != first,
            "another of the three"
        );
    }
}
