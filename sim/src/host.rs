//! One simulated host: its copy of the file, the offers it makes to its watchers, its upload
//! slots and, while it fetches, its download: the engine's own [`Scheduler`], [`Budget`] and
//! [`Rate`], and its neighbours.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use swarm_engine::fetch::budget::{Budget, Rate};
use swarm_engine::offer::Offer;
use swarm_engine::scheduler::Scheduler;
use swarm_engine::uploads::{Limits, UploadSlots};
use swarm_proto::PeerId;

use crate::clock::Time;
use crate::supply::HostSupply;

/// A chunk on its way from a holder to a fetcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transfer {
    /// The host sending it.
    pub holder: usize,
    /// The host that asked for it.
    pub fetcher: usize,
    /// Which chunk.
    pub chunk: u32,
}

/// A host and what it does.
pub struct Host {
    /// Its id, as the tracker and the scheduler know it.
    pub peer: PeerId,
    /// Its address (upload slots are shared out by address and network).
    pub ip: IpAddr,
    /// Not killed.
    pub alive: bool,
    /// Its copy of the file.
    pub supply: Arc<HostSupply>,
    /// The hosts watching this one, and what it offers each.
    pub watchers: BTreeMap<usize, Offer<HostSupply>>,
    /// Its upload slots; a waiter is a request's token.
    pub slots: UploadSlots<u64>,
    /// Requests waiting for an upload slot, by their token.
    pub waiting: HashMap<u64, Transfer>,
    /// Its download, while it fetches.
    pub fetch: Option<Fetching>,
    /// When it started fetching.
    pub started: Time,
    /// When it had the whole file.
    pub finished: Option<Time>,
    /// Bytes of chunks it verified that came from a seeder.
    pub from_seeders: u64,
    /// Something to tell the watchers at the next batch.
    pub offers_pending: bool,
    /// When the watchers may be told next.
    pub next_offers: Time,
    /// A batch to the watchers is queued.
    pub offers_queued: bool,
    /// Its gains are to be told to the holders it watches, and that is queued.
    pub gains_queued: bool,
    /// What the holders it watches were told it holds.
    pub told: swarm_proto::Bitfield,
    /// Chunks verified and not yet reported to the tracker.
    pub unreported: Vec<u32>,
    /// A report to the tracker is queued.
    pub report_queued: bool,
    /// Its seeder's look at idle and stuck watchers is queued.
    pub ticking: bool,
    /// Looks taken so far (every few, it looks for stuck watchers too).
    pub ticks: u64,
}

impl Host {
    /// A live host holding what `supply` holds, fetching nothing yet.
    pub fn new(peer: PeerId, ip: IpAddr, supply: Arc<HostSupply>) -> Host {
        let told = supply_chunks(&supply);
        Host {
            peer,
            ip,
            alive: true,
            supply,
            watchers: BTreeMap::new(),
            slots: UploadSlots::new(Limits::SERVER),
            waiting: HashMap::new(),
            fetch: None,
            started: 0,
            finished: None,
            from_seeders: 0,
            offers_pending: false,
            next_offers: 0,
            offers_queued: false,
            gains_queued: false,
            told,
            unreported: Vec::new(),
            report_queued: false,
            ticking: false,
            ticks: 0,
        }
    }
}

fn supply_chunks(supply: &HostSupply) -> swarm_proto::Bitfield {
    swarm_engine::offer::Supply::chunks(supply)
}

/// A download under way.
pub struct Fetching {
    /// The engine's chunk choice.
    pub scheduler: Scheduler,
    /// The engine's requests-in-flight budget.
    pub budget: Budget,
    /// The download rate, as the engine measures it.
    pub rate: Rate,
    /// Bytes verified so far.
    pub done: u64,
    /// The hosts it fetches from.
    pub neighbours: BTreeMap<usize, Neighbour>,
    /// Where the next round of requests starts, so that no neighbour is always first.
    pub turn: usize,
    /// Hosts that could not be reached, and when.
    pub unreachable: HashMap<usize, Time>,
}

impl Fetching {
    /// Requests in flight to all neighbours.
    pub fn in_flight(&self) -> usize {
        self.neighbours.values().map(|n| n.asked.len()).sum()
    }
}

/// A host this one fetches from.
#[derive(Default)]
pub struct Neighbour {
    /// Its first offer arrived: the scheduler knows it.
    pub offered: bool,
    /// Chunks asked of it and not answered.
    pub asked: BTreeSet<u32>,
    /// Not asked again before this (it said it was busy).
    pub backoff_until: Time,
    /// The tracker said it holds the whole file when it was located.
    pub seed: bool,
}
