//! A simulated host's copy of the file, as the engine's offer policy sees it
//! ([`swarm_engine::offer::Supply`]): what it holds, how the chunks have spread among its
//! watchers, and the simulated clock.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use swarm_engine::offer::Supply;
use swarm_proto::{Bitfield, PeerId};

use crate::clock::Time;

/// The simulated clock as the engine reads it: an [`Instant`] that moves with the events.
#[derive(Debug, Clone)]
pub struct SimClock {
    base: Instant,
    now: Rc<Cell<Time>>,
}

impl SimClock {
    /// A clock at the start of the run.
    pub fn new() -> SimClock {
        SimClock {
            base: Instant::now(),
            now: Rc::new(Cell::new(0)),
        }
    }

    /// Moves the clock to `now`.
    pub fn set(&self, now: Time) {
        self.now.set(now);
    }

    /// The simulated time as an [`Instant`].
    pub fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now.get())
    }
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock::new()
    }
}

/// One host's copy of the file and its counters.
#[derive(Debug)]
pub struct HostSupply {
    clock: SimClock,
    chunks: RefCell<Bitfield>,
    watchers: Cell<u32>,
    watches: Cell<u32>,
    copies: RefCell<Vec<u32>>,
    offered: RefCell<Vec<u32>>,
    on_trial: RefCell<Vec<u32>>,
    uploads: RefCell<Vec<u32>>,
    sending: RefCell<Vec<u32>>,
    /// Offers were taken back from an idle watcher since this was last cleared.
    pub freed: Cell<bool>,
    gained_elsewhere: RefCell<HashMap<PeerId, Instant>>,
}

impl HostSupply {
    /// A copy holding `chunks`, read by `clock`.
    pub fn new(clock: SimClock, chunks: Bitfield) -> HostSupply {
        let n = chunks.len() as usize;
        HostSupply {
            clock,
            chunks: RefCell::new(chunks),
            watchers: Cell::new(0),
            watches: Cell::new(0),
            copies: RefCell::new(vec![0; n]),
            offered: RefCell::new(vec![0; n]),
            on_trial: RefCell::new(vec![0; n]),
            uploads: RefCell::new(vec![0; n]),
            sending: RefCell::new(vec![0; n]),
            freed: Cell::new(false),
            gained_elsewhere: RefCell::default(),
        }
    }

    /// Chunk `index` is verified here.
    pub fn mark(&self, index: u32) -> bool {
        self.chunks.borrow_mut().set(index)
    }

    /// Is chunk `index` held?
    pub fn has(&self, index: u32) -> bool {
        self.chunks.borrow().get(index)
    }

    /// Is every chunk held?
    pub fn is_complete(&self) -> bool {
        self.chunks.borrow().is_complete()
    }

    /// Starts sending chunk `index`, unless this host super-seeds (holds it all, with two
    /// watchers or more) and sends it to another already: the engine's
    /// `Held::start_sending`.
    pub fn start_sending(&self, index: u32) -> bool {
        let exclusive = self.watchers.get() >= 2 && self.is_complete();
        let mut sending = self.sending.borrow_mut();
        if exclusive && sending[index as usize] > 0 {
            return false;
        }
        sending[index as usize] += 1;
        true
    }

    /// A send of chunk `index` ended, whole or not.
    pub fn stop_sending(&self, index: u32) {
        let mut sending = self.sending.borrow_mut();
        sending[index as usize] = sending[index as usize].saturating_sub(1);
    }

    /// Counts an upload of chunk `index` as it starts (`true`), or takes back one that failed.
    pub fn count_upload(&self, index: u32, more: bool) {
        step(&self.uploads, index, more);
    }
}

fn step(counters: &RefCell<Vec<u32>>, index: u32, more: bool) {
    let mut counters = counters.borrow_mut();
    let c = &mut counters[index as usize];
    *c = if more { *c + 1 } else { c.saturating_sub(1) };
}

impl Supply for HostSupply {
    fn now(&self) -> Instant {
        self.clock.instant()
    }
    fn chunks(&self) -> Bitfield {
        self.chunks.borrow().clone()
    }
    fn watchers(&self) -> u32 {
        self.watchers.get()
    }
    fn count_watcher(&self, more: bool) -> u32 {
        let n = if more {
            self.watchers.get() + 1
        } else {
            self.watchers.get().saturating_sub(1)
        };
        self.watchers.set(n);
        n
    }
    fn watches(&self) -> u32 {
        self.watches.get()
    }
    fn count_watch(&self, more: bool) {
        let n = self.watches.get();
        self.watches.set(if more { n + 1 } else { n.saturating_sub(1) });
    }
    fn copies_of(&self, index: u32) -> u32 {
        self.copies.borrow()[index as usize]
    }
    fn count_copy(&self, index: u32, more: bool) {
        step(&self.copies, index, more);
    }
    fn offers_of(&self, index: u32) -> u32 {
        self.offered.borrow()[index as usize]
    }
    fn count_offer(&self, index: u32, more: bool) {
        step(&self.offered, index, more);
    }
    fn trial_offers_of(&self, index: u32) -> u32 {
        self.on_trial.borrow()[index as usize]
    }
    fn count_trial_offer(&self, index: u32, more: bool) {
        step(&self.on_trial, index, more);
    }
    fn uploads_of(&self, index: u32) -> u32 {
        self.uploads.borrow()[index as usize]
    }
    fn sending_now(&self, index: u32) -> u32 {
        self.sending.borrow()[index as usize]
    }
    fn free_offers(&self) {
        self.freed.set(true);
    }
    fn note_gained_elsewhere(&self, watcher: PeerId) {
        self.gained_elsewhere.borrow_mut().insert(watcher, self.clock.instant());
    }
    fn gained_elsewhere(&self, watcher: &PeerId) -> Option<Instant> {
        self.gained_elsewhere.borrow().get(watcher).copied()
    }
    fn forget_watcher(&self, watcher: &PeerId) {
        self.gained_elsewhere.borrow_mut().remove(watcher);
    }
}
