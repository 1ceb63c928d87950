//! The simulated swarm: hosts, links, the tracker's state, and the events that move them. The
//! handlers do what the engine's tasks do around the decisions (requests, answers, watches,
//! batches of availability, chunk reports, relocation, pacing); the decisions themselves are
//! the engine's and the tracker's own code.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use swarm_proto::{hashing, Bitfield, Digest, FileId, Manifest, PeerId};
use swarm_tracker::{Budgets, TrackerState};

use crate::clock::{span, Queue, Time};
use crate::host::{Host, Transfer};
use crate::links::{Link, Links};
use crate::supply::{HostSupply, SimClock};

mod neighbours;
mod requests;
mod watching;

/// A fetcher gives up on a chunk that stops arriving after the engine's stall timeout, and so
/// finds out that its holder is gone.
const STALL: Duration = swarm_engine::fetch::policy::STALL_TIMEOUT;
/// A dial to a host that is gone fails after this long (a handshake's patience is the peers'
/// idle timeout, which the transport keeps to itself).
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Something that happens at a time.
#[derive(Debug)]
pub enum Event {
    /// A seeder registers and announces the file.
    Seed(usize),
    /// A fetcher registers, joins the file's swarm and starts.
    Start(usize),
    /// `watcher`'s watch request reaches `holder` (after the handshake).
    Dial {
        /// The host that watches.
        watcher: usize,
        /// The host watched.
        holder: usize,
    },
    /// `holder`'s offer reaches `watcher` (`first`: the answer to the watch).
    Offered {
        /// The host told.
        watcher: usize,
        /// The host offering.
        holder: usize,
        /// The chunks offered.
        chunks: Vec<u32>,
        /// The answer to the watch: all that is offered now.
        first: bool,
    },
    /// `watcher`'s gains reach `holder`.
    Gained {
        /// The host told.
        holder: usize,
        /// The host that gained them.
        watcher: usize,
        /// The chunks it gained.
        chunks: Vec<u32>,
    },
    /// A request for a chunk reaches its holder.
    Request(Transfer),
    /// The answer to a request reaches its fetcher.
    Answer(Transfer, Answer),
    /// The transfer at the head of the pair `src`→`dst` may have ended.
    PairDue {
        /// The sender.
        src: usize,
        /// The receiver.
        dst: usize,
    },
    /// A request waited for an upload slot as long as it may.
    QueueGiveUp {
        /// Where it waits.
        holder: usize,
        /// Which request.
        token: u64,
    },
    /// The fetcher asks its neighbours for more.
    Fill(usize),
    /// The fetcher sizes its requests in flight to its rate.
    Pace(usize),
    /// The fetcher asks the tracker for more neighbours.
    Relocate(usize),
    /// The holder tells its watchers what it offers now.
    TellOffers(usize),
    /// The watcher tells the holders it watches what it gained.
    TellGains(usize),
    /// A seeder looks for idle and stuck watchers.
    Tick(usize),
    /// The host reports its new chunks to the tracker.
    Report(usize),
    /// The host dies (SIGKILL).
    Kill(usize),
    /// `watcher` no longer watches `holder` (it finished, let go, or died).
    Unwatch {
        /// The host watched.
        holder: usize,
        /// The host that watched it.
        watcher: usize,
    },
    /// `watcher` finds that `holder` is gone.
    Gone {
        /// The host that finds out.
        watcher: usize,
        /// The host gone.
        holder: usize,
    },
}

/// What a fetcher hears back about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The chunk arrived whole.
    Delivered,
    /// The holder is busy: ask again later, or another.
    Busy,
    /// The holder does not hold it.
    NotHeld,
    /// Nothing came: the holder is gone.
    Stalled,
}

/// What a run counts besides completion times.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Availability frames sent between neighbours (offers and gains).
    pub availability_frames: u64,
    /// Requests to the tracker (register, announce or join, locate, chunk reports).
    pub tracker_requests: u64,
    /// Chunk requests answered busy.
    pub busy: u64,
    /// Events run.
    pub events: u64,
}

/// The swarm and its clock.
pub struct World {
    /// What happens next.
    pub queue: Queue<Event>,
    /// The hosts, seeders first.
    pub hosts: Vec<Host>,
    /// Their links, and the chunks crossing them.
    pub links: Links<Transfer>,
    /// The tracker's state, the tracker's own code.
    pub tracker: TrackerState,
    /// The file's manifest, and its id.
    pub manifest: Manifest,
    /// The file's id.
    pub file: FileId,
    /// What the run counts.
    pub counts: Counts,
    /// Hosts `0..seeders` hold the whole file from the start.
    pub seeders: usize,
    clock: SimClock,
    rng: SmallRng,
    by_peer: HashMap<PeerId, usize>,
    /// Requests sent and not yet answered or cancelled.
    live: HashSet<Transfer>,
    next_token: u64,
    /// Delay from each host to the tracker and back.
    tracker_rtt: Vec<Time>,
}

impl World {
    /// A swarm of hosts with `links`, the first `seeders` of them holding a file of `size`
    /// bytes in chunks of `chunk` bytes; everything random is drawn from `seed`.
    pub fn new(links: Vec<Link>, seeders: usize, size: u64, chunk: u32, seed: u64) -> World {
        let clock = SimClock::new();
        let chunk_count = size.div_ceil(u64::from(chunk)) as u32;
        // Made-up chunk hashes, and the file hash they combine into: the tracker checks it.
        let chunks: Vec<Digest> = (0..chunk_count)
            .map(|c| Digest(*blake3::hash(&c.to_le_bytes()).as_bytes()))
            .collect();
        let manifest = Manifest {
            name: "big.bin".into(),
            hash: hashing::global_from_chunks(size, chunk, &chunks).expect("as many hashes as chunks"),
            size,
            chunk_size: chunk,
            chunk_count,
            chunks,
        };
        let file = manifest.id();
        let mut by_peer = HashMap::new();
        let hosts = (0..links.len())
            .map(|i| {
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                let peer = PeerId(id);
                by_peer.insert(peer, i);
                let have = if i < seeders {
                    Bitfield::full(chunk_count)
                } else {
                    Bitfield::new(chunk_count)
                };
                // The engine's offers hold their supply in an Arc; the simulation runs on
                // one thread, so the supply's counters are plain cells.
                #[allow(clippy::arc_with_non_send_sync)]
                let supply = Arc::new(HostSupply::new(clock.clone(), have));
                Host::new(peer, address(i), supply)
            })
            .collect();
        let tracker_rtt = links.iter().map(|l| 2 * l.delay).collect();
        World {
            queue: Queue::default(),
            hosts,
            links: Links::new(links),
            tracker: TrackerState::new(
                Duration::from_secs(180),
                Budgets {
                    total: u64::MAX,
                    ..Budgets::default()
                },
            ),
            manifest,
            file,
            counts: Counts::default(),
            seeders,
            clock,
            rng: SmallRng::seed_from_u64(seed),
            by_peer,
            live: HashSet::new(),
            next_token: 0,
            tracker_rtt,
        }
    }

    /// Runs events until none is left or `until`.
    pub fn run(&mut self, until: Time) {
        while self.queue.next_at().is_some_and(|at| at <= until) {
            let event = self.queue.pop().expect("peeked");
            self.clock.set(self.queue.now());
            self.counts.events += 1;
            self.handle(event);
        }
    }

    /// Every fetcher that was not killed has finished.
    pub fn all_finished(&self, fetchers: std::ops::Range<usize>) -> bool {
        fetchers
            .clone()
            .all(|i| !self.hosts[i].alive || self.hosts[i].finished.is_some())
    }

    fn now(&self) -> Time {
        self.queue.now()
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Seed(h) => self.seed(h),
            Event::Start(h) => self.start(h),
            Event::Dial { watcher, holder } => self.dial(watcher, holder),
            Event::Offered {
                watcher,
                holder,
                chunks,
                first,
            } => self.offered(watcher, holder, chunks, first),
            Event::Gained {
                holder,
                watcher,
                chunks,
            } => self.gained(holder, watcher, &chunks),
            Event::Request(t) => self.request(t),
            Event::Answer(t, answer) => self.answer(t, answer),
            Event::PairDue { src, dst } => {
                let (ended, dues) = self.links.check(self.now(), src, dst);
                self.queue_dues(dues);
                if let Some(t) = ended {
                    self.sent(t);
                }
            }
            Event::QueueGiveUp { holder, token } => self.give_up(holder, token),
            Event::Fill(h) => self.fill(h),
            Event::Pace(h) => self.pace(h),
            Event::Relocate(h) => self.relocate(h),
            Event::TellOffers(h) => self.tell_offers(h),
            Event::TellGains(h) => self.tell_gains(h),
            Event::Tick(h) => self.tick(h),
            Event::Report(h) => self.report(h),
            Event::Kill(h) => self.kill(h),
            Event::Unwatch { holder, watcher } => {
                self.hosts[holder].watchers.remove(&watcher);
            }
            Event::Gone { watcher, holder } => self.drop_neighbour(watcher, holder, true),
        }
    }

    // Churn.

    fn kill(&mut self, h: usize) {
        self.hosts[h].alive = false;
        let (lost, dues) = self.links.cut(self.queue.now(), h);
        self.queue_dues(dues);
        for t in lost {
            if t.holder == h {
                // Its fetcher waits for the rest until it gives up.
                let delay = self.links.delay(t.holder, t.fetcher);
                self.queue
                    .after(span(STALL).saturating_sub(delay), Event::Answer(t, Answer::Stalled));
            } else {
                self.live.remove(&t);
                self.end_upload(t, false);
            }
        }
        let mut waiting: Vec<(u64, Transfer)> = self.hosts[h].waiting.drain().collect();
        waiting.sort_unstable_by_key(|(token, _)| *token);
        for (_, t) in waiting {
            self.queue.after(span(STALL), Event::Answer(t, Answer::Stalled));
        }
        // Those it watched and those watching it notice when the connections time out.
        let watchers: BTreeSet<usize> = self.hosts[h].watchers.keys().copied().collect();
        for watcher in watchers {
            self.queue.after(span(STALL), Event::Gone { watcher, holder: h });
        }
        self.hosts[h].watchers.clear();
        if let Some(fetch) = self.hosts[h].fetch.take() {
            for n in fetch.neighbours.keys() {
                self.queue.after(span(STALL), Event::Unwatch { holder: *n, watcher: h });
            }
        }
    }
}

/// Host `i`'s address: 250 hosts to a /24 network, as the namespaces place them.
pub fn address(i: usize) -> IpAddr {
    let (net, host) = (i / 250, i % 250);
    IpAddr::from([10, (net / 256) as u8, (net % 256) as u8, host as u8 + 1])
}
