//! Availability between neighbours: telling the peers that fetch from this node what it holds
//! of a file, and learning from the peers it fetches from what they hold, as it changes (see
//! the protocol's "Availability between peers").
//!
//! A node that holds part of a file offers everything it holds and every chunk it verifies
//! next. A node that holds the whole file *super-seeds*: it offers each watcher only
//! [`OFFER_WINDOW`] chunks the watcher lacks, those it has uploaded least (ties broken
//! differently for each watcher), and offers more as the watcher gets them. Different watchers
//! so fetch different chunks from the seeder and the rest from each other: the seeder sends
//! about one copy, and the swarm carries the others.

use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use swarm_proto::protocol::{self, Availability, PeerRequest, PeerResponse, ProtocolError, MAX_FRAME};
use swarm_proto::{transport, Bitfield, FileId};

use crate::store::Held;

/// Chunks a seeder offers a watcher at a time, beyond those the watcher has: more than a
/// fetcher asks one peer for at once, so that offering less never leaves a lane idle.
pub const OFFER_WINDOW: usize = 32;
/// Changes are sent at most this often, so that a fast download sends a few frames a second
/// rather than one per chunk.
const BATCH: Duration = Duration::from_millis(200);

/// What a node offers one watcher.
#[derive(Debug)]
pub struct Offer {
    /// Chunks offered so far (and not since lost).
    shown: Bitfield,
    /// Chunks the watcher holds, as it said.
    theirs: Bitfield,
    /// Offer a window of the least-sent chunks instead of everything.
    super_seed: bool,
    /// Breaks ties between equally sent chunks differently for each watcher.
    salt: u64,
}

impl Offer {
    /// The offer to a watcher holding `theirs` of `held`, and the chunks to tell it of now.
    pub fn new(held: &Held, theirs: Bitfield, salt: u64) -> (Offer, Bitfield) {
        let mut offer = Offer {
            shown: Bitfield::new(theirs.len()),
            super_seed: held.chunks().is_complete(),
            theirs,
            salt,
        };
        let first = offer.more(held);
        let mut shown = Bitfield::new(offer.theirs.len());
        first.iter().for_each(|&c| {
            shown.set(c);
        });
        (offer, shown)
    }

    /// The watcher now holds `chunks` too.
    pub fn they_gained(&mut self, chunks: &[u32]) {
        for &c in chunks {
            if c < self.theirs.len() {
                self.theirs.set(c);
            }
        }
    }

    /// Chunks to offer now that were not offered before: everything newly held, or for a
    /// seeder, enough least-sent chunks to keep [`OFFER_WINDOW`] offered that the watcher lacks.
    pub fn more(&mut self, held: &Held) -> Vec<u32> {
        let ours = held.chunks();
        let new: Vec<u32> = if !self.super_seed {
            ours.minus(&self.shown).collect()
        } else {
            let outstanding = self.shown.minus(&self.theirs).count();
            let room = OFFER_WINDOW.saturating_sub(outstanding);
            if room == 0 {
                return Vec::new();
            }
            let mut candidates: Vec<u32> = ours.minus(&self.shown).filter(|&c| !self.theirs.get(c)).collect();
            let key = |c: &u32| (held.uploads_of(*c), mix(u64::from(*c) ^ self.salt));
            if candidates.len() > room {
                candidates.select_nth_unstable_by_key(room, key);
                candidates.truncate(room);
            }
            candidates.sort_unstable();
            candidates
        };
        new.iter().for_each(|&c| {
            self.shown.set(c);
        });
        new
    }

    /// Chunks offered before that are no longer held (the file changed on disk).
    pub fn lost(&mut self, held: &Held) -> Vec<u32> {
        let lost: Vec<u32> = self.shown.minus(&held.chunks()).collect();
        lost.iter().for_each(|&c| self.shown.unset(c));
        lost
    }
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
    let (mut offer, first) = Offer::new(&held, theirs, rand::random());
    transport::send_frame(&mut send, &PeerResponse::Have(first)).await?;
    let mut batch = tokio::time::interval(BATCH);
    batch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = true;
    loop {
        tokio::select! {
            update = protocol::read_frame::<Availability, _>(&mut recv, MAX_FRAME) => match update? {
                Availability::Gained(chunks) => {
                    offer.they_gained(&chunks);
                    pending = true;
                }
                Availability::Lost(_) => {}
            },
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                pending = true;
            }
            _ = batch.tick(), if pending => {
                pending = false;
                let lost = offer.lost(&held);
                if !lost.is_empty() {
                    transport::send_frame(&mut send, &Availability::Lost(lost)).await?;
                }
                let gained = offer.more(&held);
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
    use crate::store::Store;
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
        Store::default().add(Arc::new(manifest), "/f".into(), chunks, FileMeta::default())
    }

    #[test]
    fn a_partial_holder_offers_everything_it_has_and_then_what_it_gains() {
        let mut mine = Bitfield::new(100);
        mine.set(3);
        mine.set(7);
        let held = held(mine);
        let (mut offer, first) = Offer::new(&held, Bitfield::new(100), 1);
        assert_eq!(first.iter().collect::<Vec<_>>(), vec![3, 7]);
        assert!(offer.more(&held).is_empty());
        held.mark(50);
        assert_eq!(offer.more(&held), vec![50]);
        held.unmark(&[3]);
        assert_eq!(offer.lost(&held), vec![3]);
    }

    #[test]
    fn a_seeder_offers_a_window_of_the_least_sent_chunks() {
        let held = held(Bitfield::full(200));
        for c in 0..100 {
            held.count_upload(c);
        }
        let (mut offer, first) = Offer::new(&held, Bitfield::new(200), 7);
        assert_eq!(first.count() as usize, OFFER_WINDOW);
        assert!(first.iter().all(|c| c >= 100), "the never-sent chunks come first");
        assert!(offer.more(&held).is_empty(), "the window is full");
        // The watcher gets 10 of them: 10 more are offered.
        let got: Vec<u32> = first.iter().take(10).collect();
        offer.they_gained(&got);
        let more = offer.more(&held);
        assert_eq!(more.len(), 10);
        assert!(more.iter().all(|c| !first.get(*c)));
        // Another watcher is offered other chunks first.
        let (_, other) = Offer::new(&held, Bitfield::new(200), 8);
        assert_ne!(other, first);
    }

    #[test]
    fn a_seeder_offers_everything_the_watcher_lacks_when_that_is_little() {
        let held = held(Bitfield::full(40));
        let mut theirs = Bitfield::full(40);
        for c in [1, 2, 3] {
            theirs.unset(c);
        }
        let (_, first) = Offer::new(&held, theirs, 0);
        assert_eq!(first.iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
