//! The simulated swarm: hosts, links, the tracker's state, and the events that move them. The
//! handlers do what the engine's tasks do around the decisions (requests, answers, watches,
//! batches of availability, chunk reports, relocation, pacing); the decisions themselves are
//! the engine's and the tracker's own code.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use swarm_engine::fetch::budget::{Budget, Rate};
use swarm_engine::fetch::policy::{self, NEIGHBOURS, PACE_EVERY};
use swarm_engine::offer::{batch_interval, Offer, Supply, BATCH, OFFER_EXPIRY, STUCK};
use swarm_engine::scheduler::Scheduler;
use swarm_engine::uploads::Admission;
use swarm_proto::{hashing, Bitfield, Digest, FileId, FileMeta, Manifest, PeerId};
use swarm_tracker::{Budgets, TrackerState};

use crate::clock::{span, Queue, Time};
use crate::host::{Fetching, Host, Neighbour, Transfer};
use crate::links::{Due, Link, Links};
use crate::supply::{HostSupply, SimClock};

/// A fetcher gives up on a chunk that stops arriving after this long (the engine's stall
/// timeout), and so finds out that its holder is gone.
const STALL: Duration = Duration::from_secs(10);
/// A dial to a host that is gone fails after this long.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A request waits this long for an upload slot (the engine's `QUEUE_WAIT`).
const QUEUE_WAIT: Duration = Duration::from_secs(3);
/// A refusal for want of slots is said after this long (the engine's `REFUSAL_DELAY`).
const REFUSAL_DELAY: Duration = Duration::from_secs(1);

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

    // Joining.

    fn seed(&mut self, h: usize) {
        let now = self.clock.instant();
        let host = &self.hosts[h];
        let addr = SocketAddr::new(host.ip, 7000);
        let _ = self.tracker.register(host.peer, addr, Vec::new(), host.ip, now);
        let chunks = Bitfield::full(self.manifest.chunk_count);
        let _ = self
            .tracker
            .announce(host.peer, self.manifest.clone(), chunks, FileMeta::default(), now);
        self.counts.tracker_requests += 2;
    }

    fn start(&mut self, h: usize) {
        let now = self.clock.instant();
        let host = &mut self.hosts[h];
        host.started = self.queue.now();
        let addr = SocketAddr::new(host.ip, 7000);
        let _ = self.tracker.register(host.peer, addr, Vec::new(), host.ip, now);
        let have = Bitfield::new(self.manifest.chunk_count);
        let _ = self
            .tracker
            .join(host.peer, self.file, have.clone(), FileMeta::default(), now);
        self.counts.tracker_requests += 2;
        host.fetch = Some(Fetching {
            scheduler: Scheduler::with_rng(have, &mut self.rng),
            budget: Budget::new(u64::from(self.manifest.chunk_size)),
            rate: Rate::new(0),
            done: 0,
            neighbours: Default::default(),
            turn: 0,
            unreachable: HashMap::new(),
        });
        // Register and join, then locate: a round trip each.
        let rtt = self.tracker_rtt[h];
        self.queue.after(2 * rtt, Event::Relocate(h));
        self.queue.after(2 * rtt + span(PACE_EVERY), Event::Pace(h));
    }

    fn relocate(&mut self, h: usize) {
        let now = self.clock.instant();
        let peer = self.hosts[h].peer;
        let Some(fetch) = self.hosts[h].fetch.as_ref() else {
            return;
        };
        self.counts.tracker_requests += 1;
        let located = self
            .tracker
            .locate(&self.file, &peer, usize::from(NEIGHBOURS), now, &mut self.rng);
        let clock = self.queue.now();
        let fresh: Vec<usize> = located
            .map(|l| l.holders)
            .unwrap_or_default()
            .iter()
            .filter_map(|holder| self.by_peer.get(&holder.peer).copied())
            .filter(|&n| {
                n != h
                    && !fetch.neighbours.contains_key(&n)
                    && fetch
                        .unreachable
                        .get(&n)
                        .is_none_or(|&at| clock.saturating_sub(at) >= span(policy::UNREACHABLE_PAUSE))
            })
            .collect();
        // Room is made by letting go of neighbours with nothing missing here.
        let over = policy::room_to_make(fetch.neighbours.len(), fresh.len());
        let useless: Vec<usize> = fetch
            .neighbours
            .iter()
            .filter(|(n, _)| !fetch.scheduler.useful(&self.hosts[**n].peer))
            .map(|(n, _)| *n)
            .take(over)
            .collect();
        for n in useless {
            self.drop_neighbour(h, n, false);
        }
        for n in fresh {
            self.add_neighbour(h, n, 3);
        }
        let fetch = self.hosts[h].fetch.as_ref().expect("checked above");
        let after = policy::relocate_after(fetch.scheduler.unavailable(), fetch.neighbours.len());
        self.queue.after(span(after), Event::Relocate(h));
    }

    /// `h` starts watching `n`: its watch request arrives after `legs` one-way delays (three
    /// for a new connection: a handshake's round trip, then the request).
    fn add_neighbour(&mut self, h: usize, n: usize, legs: u64) {
        let Some(fetch) = self.hosts[h].fetch.as_mut() else {
            return;
        };
        if fetch.neighbours.len() >= usize::from(NEIGHBOURS) || fetch.neighbours.contains_key(&n) {
            return;
        }
        fetch.neighbours.insert(n, Neighbour::default());
        let delay = self.links.delay(h, n);
        self.queue.after(legs * delay, Event::Dial { watcher: h, holder: n });
    }

    /// `h` stops fetching from `n`: what it asked of `n` goes back in the queue.
    fn drop_neighbour(&mut self, h: usize, n: usize, gone: bool) {
        let peer = self.hosts[n].peer;
        let Some(fetch) = self.hosts[h].fetch.as_mut() else {
            return;
        };
        let Some(neighbour) = fetch.neighbours.remove(&n) else {
            return;
        };
        fetch.scheduler.remove_peer(&peer);
        if gone {
            fetch.unreachable.insert(n, self.queue.now());
        }
        for chunk in neighbour.asked {
            self.cancel(Transfer {
                holder: n,
                fetcher: h,
                chunk,
            });
        }
        let delay = self.links.delay(h, n);
        self.queue.after(delay, Event::Unwatch { holder: n, watcher: h });
        self.queue.after(0, Event::Fill(h));
    }

    // Watching.

    fn dial(&mut self, watcher: usize, holder: usize) {
        let delay = self.links.delay(watcher, holder);
        if !self.hosts[holder].alive {
            let wait = span(DIAL_TIMEOUT).saturating_sub(3 * delay);
            self.queue.after(wait, Event::Gone { watcher, holder });
            return;
        }
        if !self.hosts[watcher].alive {
            return;
        }
        let theirs = self.hosts[watcher].supply.chunks();
        let salt = self.rng.random();
        let host = &mut self.hosts[holder];
        let (offer, first) = Offer::new(host.supply.clone(), theirs, salt);
        let super_seeds = offer.super_seeds();
        host.watchers.insert(watcher, offer);
        self.counts.availability_frames += 1;
        self.queue.after(
            delay,
            Event::Offered {
                watcher,
                holder,
                chunks: first.iter().collect(),
                first: true,
            },
        );
        if super_seeds && !self.hosts[holder].ticking {
            self.hosts[holder].ticking = true;
            self.queue.after(span(OFFER_EXPIRY / 2), Event::Tick(holder));
        }
        // A peer that fetches from a fetcher is a source for it too (the engine's
        // `offer_source`): the watch back opens on the same connection.
        if self.hosts[holder].fetch.is_some() {
            self.add_neighbour(holder, watcher, 1);
        }
    }

    fn offered(&mut self, watcher: usize, holder: usize, chunks: Vec<u32>, first: bool) {
        let peer = self.hosts[holder].peer;
        let count = self.manifest.chunk_count;
        let Some(fetch) = self.hosts[watcher].fetch.as_mut() else {
            return;
        };
        let Some(neighbour) = fetch.neighbours.get_mut(&holder) else {
            return;
        };
        if first {
            neighbour.offered = true;
            let mut offered = Bitfield::new(count);
            chunks.iter().for_each(|&c| {
                offered.set(c);
            });
            fetch.scheduler.add_peer(peer, &offered);
        } else if neighbour.offered {
            fetch.scheduler.gained(&peer, &chunks);
        }
        self.fill(watcher);
    }

    fn gained(&mut self, holder: usize, watcher: usize, chunks: &[u32]) {
        let host = &mut self.hosts[holder];
        if !host.alive {
            return;
        }
        let Some(offer) = host.watchers.get_mut(&watcher) else {
            return;
        };
        offer.they_gained(chunks);
        // A seeder tops the watcher's window up at once.
        let more = offer.more();
        if !more.is_empty() {
            self.counts.availability_frames += 1;
            let delay = self.links.delay(holder, watcher);
            self.queue.after(
                delay,
                Event::Offered {
                    watcher,
                    holder,
                    chunks: more,
                    first: false,
                },
            );
        }
    }

    /// Queues the batch that tells `h`'s watchers what it offers now.
    fn offers_changed(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        host.offers_pending = true;
        if !host.offers_queued {
            host.offers_queued = true;
            let at = host.next_offers.max(self.queue.now());
            self.queue.at(at, Event::TellOffers(h));
        }
    }

    fn tell_offers(&mut self, h: usize) {
        let now = self.queue.now();
        let host = &mut self.hosts[h];
        host.offers_queued = false;
        if !host.alive || !host.offers_pending {
            return;
        }
        host.offers_pending = false;
        host.next_offers = now + span(batch_interval(host.supply.watchers()));
        let mut told = Vec::new();
        for (&watcher, offer) in host.watchers.iter_mut() {
            let more = offer.more();
            if !more.is_empty() {
                told.push((watcher, more));
            }
        }
        for (watcher, chunks) in told {
            self.counts.availability_frames += 1;
            let delay = self.links.delay(h, watcher);
            self.queue.after(
                delay,
                Event::Offered {
                    watcher,
                    holder: h,
                    chunks,
                    first: false,
                },
            );
        }
    }

    fn tell_gains(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        host.gains_queued = false;
        if !host.alive {
            return;
        }
        let now = host.supply.chunks();
        let gained: Vec<u32> = now.minus(&host.told).collect();
        host.told = now;
        if gained.is_empty() {
            return;
        }
        let watched: Vec<usize> = host
            .fetch
            .as_ref()
            .map(|f| {
                f.neighbours
                    .iter()
                    .filter(|(_, n)| n.offered)
                    .map(|(h, _)| *h)
                    .collect()
            })
            .unwrap_or_default();
        for holder in watched {
            self.counts.availability_frames += 1;
            let delay = self.links.delay(h, holder);
            self.queue.after(
                delay,
                Event::Gained {
                    holder,
                    watcher: h,
                    chunks: gained.clone(),
                },
            );
        }
    }

    fn tick(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        if !host.alive || host.watchers.is_empty() {
            host.ticking = false;
            return;
        }
        host.ticks += 1;
        for offer in host.watchers.values_mut() {
            if offer.super_seeds() && offer.is_active() {
                offer.expire_if_idle();
            }
        }
        let stuck_look = host
            .ticks
            .is_multiple_of((STUCK.as_millis() / (OFFER_EXPIRY / 2).as_millis()) as u64);
        let freed = host.supply.freed.replace(false);
        self.queue.after(span(OFFER_EXPIRY / 2), Event::Tick(h));
        if stuck_look || freed {
            self.offers_changed(h);
        }
    }

    // Requests.

    fn fill(&mut self, h: usize) {
        let now = self.queue.now();
        let order: Vec<usize> = match &self.hosts[h].fetch {
            Some(fetch) if self.hosts[h].alive => fetch.neighbours.keys().copied().collect(),
            _ => return,
        };
        if order.is_empty() {
            return;
        }
        let peers: Vec<PeerId> = order.iter().map(|&n| self.hosts[n].peer).collect();
        let fetch = self.hosts[h].fetch.as_mut().expect("checked above");
        let lanes = fetch.budget.lanes_per_peer(fetch.neighbours.len());
        let size = fetch.budget.size();
        fetch.turn = (fetch.turn + 1) % order.len();
        let mut in_flight = fetch.in_flight();
        let mut sent = Vec::new();
        let mut progress = true;
        while progress && in_flight < size {
            progress = false;
            for k in 0..order.len() {
                let i = (fetch.turn + k) % order.len();
                let n = order[i];
                let neighbour = &fetch.neighbours[&n];
                if in_flight >= size
                    || !neighbour.offered
                    || neighbour.backoff_until > now
                    || neighbour.asked.len() >= lanes
                {
                    continue;
                }
                let Some(chunk) = fetch.scheduler.next(&peers[i]) else {
                    continue;
                };
                fetch.neighbours.get_mut(&n).expect("listed").asked.insert(chunk);
                in_flight += 1;
                progress = true;
                sent.push(Transfer {
                    holder: n,
                    fetcher: h,
                    chunk,
                });
            }
        }
        for t in sent {
            self.live.insert(t);
            let delay = self.links.delay(h, t.holder);
            self.queue.after(delay, Event::Request(t));
        }
    }

    fn request(&mut self, t: Transfer) {
        if !self.live.contains(&t) {
            return;
        }
        let delay = self.links.delay(t.holder, t.fetcher);
        if !self.hosts[t.holder].alive {
            self.queue
                .after(span(STALL).saturating_sub(delay), Event::Answer(t, Answer::Stalled));
            return;
        }
        let fetcher_peer = self.hosts[t.fetcher].peer;
        let fetcher_ip = self.hosts[t.fetcher].ip;
        let host = &mut self.hosts[t.holder];
        if !host.supply.has(t.chunk) {
            self.queue.after(delay, Event::Answer(t, Answer::NotHeld));
            return;
        }
        if !host.supply.start_sending(t.chunk) {
            self.counts.busy += 1;
            self.queue.after(delay, Event::Answer(t, Answer::Busy));
            return;
        }
        self.next_token += 1;
        let token = self.next_token;
        match host.slots.ask(fetcher_peer, fetcher_ip, token) {
            Admission::Granted => self.upload(t),
            Admission::Queued => {
                host.waiting.insert(token, t);
                self.queue.after(
                    span(QUEUE_WAIT),
                    Event::QueueGiveUp {
                        holder: t.holder,
                        token,
                    },
                );
            }
            Admission::Refused(_) => {
                host.supply.stop_sending(t.chunk);
                self.counts.busy += 1;
                self.queue
                    .after(span(REFUSAL_DELAY) + delay, Event::Answer(t, Answer::Busy));
            }
        }
    }

    /// Starts sending `t` (its upload slot taken).
    fn upload(&mut self, t: Transfer) {
        self.hosts[t.holder].supply.count_upload(t.chunk, true);
        let bytes = u64::from(self.manifest.chunk_len(t.chunk));
        let dues = self.links.send(self.queue.now(), t.holder, t.fetcher, bytes, t);
        self.queue_dues(dues);
    }

    fn queue_dues(&mut self, dues: Vec<Due>) {
        for due in dues {
            self.queue.at(
                due.at,
                Event::PairDue {
                    src: due.src,
                    dst: due.dst,
                },
            );
        }
    }

    /// `t` left its holder whole.
    fn sent(&mut self, t: Transfer) {
        self.end_upload(t, true);
        let delay = self.links.delay(t.holder, t.fetcher);
        self.queue.after(delay, Event::Answer(t, Answer::Delivered));
    }

    /// An upload of `t` ended (`whole`, or not): its slot goes to the next in line.
    fn end_upload(&mut self, t: Transfer, whole: bool) {
        let fetcher = (self.hosts[t.fetcher].peer, self.hosts[t.fetcher].ip);
        let host = &mut self.hosts[t.holder];
        host.supply.stop_sending(t.chunk);
        if !whole {
            host.supply.count_upload(t.chunk, false);
        }
        if let Some((_, _, token)) = host.slots.release(fetcher.0, fetcher.1) {
            if let Some(next) = host.waiting.remove(&token) {
                self.upload(next);
            }
        }
    }

    fn give_up(&mut self, holder: usize, token: u64) {
        let host = &mut self.hosts[holder];
        let Some(t) = host.waiting.remove(&token) else { return };
        let peer = self.hosts[t.fetcher].peer;
        let host = &mut self.hosts[holder];
        host.slots.forget_waiters(&peer, |w| *w == token);
        host.supply.stop_sending(t.chunk);
        self.counts.busy += 1;
        let delay = self.links.delay(holder, t.fetcher);
        self.queue
            .after(span(REFUSAL_DELAY) + delay, Event::Answer(t, Answer::Busy));
    }

    /// Takes back request `t`, wherever it is.
    fn cancel(&mut self, t: Transfer) {
        if !self.live.remove(&t) {
            return;
        }
        let holder = &mut self.hosts[t.holder];
        if let Some(token) = holder.waiting.iter().find(|(_, w)| **w == t).map(|(k, _)| *k) {
            holder.waiting.remove(&token);
            let peer = self.hosts[t.fetcher].peer;
            let holder = &mut self.hosts[t.holder];
            holder.slots.forget_waiters(&peer, |w| *w == token);
            holder.supply.stop_sending(t.chunk);
            return;
        }
        let (dropped, dues) = self.links.cancel(self.queue.now(), t.holder, t.fetcher, |w| *w == t);
        self.queue_dues(dues);
        if !dropped.is_empty() {
            self.end_upload(t, false);
        }
    }

    fn answer(&mut self, t: Transfer, answer: Answer) {
        if !self.live.remove(&t) {
            return;
        }
        let holder_peer = self.hosts[t.holder].peer;
        let chunk_len = u64::from(self.manifest.chunk_len(t.chunk));
        let host = &mut self.hosts[t.fetcher];
        if !host.alive {
            return;
        }
        let Some(fetch) = host.fetch.as_mut() else { return };
        let Some(neighbour) = fetch.neighbours.get_mut(&t.holder) else {
            return;
        };
        neighbour.asked.remove(&t.chunk);
        match answer {
            Answer::Delivered => {
                fetch.budget.answered();
                let Some(others) = fetch.scheduler.completed(&holder_peer, t.chunk) else {
                    self.fill(t.fetcher);
                    return;
                };
                fetch.done += chunk_len;
                let mut others: Vec<usize> = others.iter().filter_map(|p| self.by_peer.get(p).copied()).collect();
                others.sort_unstable();
                for o in &others {
                    if let Some(n) = fetch.neighbours.get_mut(o) {
                        n.asked.remove(&t.chunk);
                    }
                }
                host.supply.mark(t.chunk);
                host.unreported.push(t.chunk);
                let complete = fetch.scheduler.is_complete();
                for o in others {
                    self.cancel(Transfer {
                        holder: o,
                        fetcher: t.fetcher,
                        chunk: t.chunk,
                    });
                }
                self.chunk_verified(t.fetcher);
                if complete {
                    self.finish(t.fetcher);
                } else {
                    self.fill(t.fetcher);
                }
            }
            Answer::Busy => {
                fetch.scheduler.cancelled(&holder_peer, t.chunk);
                let backoff = span(Duration::from_millis(100 + self.rng.random_range(0..200)));
                neighbour.backoff_until = self.queue.now() + backoff;
                self.queue.after(backoff, Event::Fill(t.fetcher));
                self.fill(t.fetcher);
            }
            Answer::NotHeld => {
                fetch.scheduler.lacks(&holder_peer, t.chunk);
                self.fill(t.fetcher);
            }
            Answer::Stalled => self.drop_neighbour(t.fetcher, t.holder, true),
        }
    }

    /// `h` verified a chunk: its watchers, the holders it watches and the tracker hear of it.
    fn chunk_verified(&mut self, h: usize) {
        self.offers_changed(h);
        let host = &mut self.hosts[h];
        if !host.gains_queued {
            host.gains_queued = true;
            self.queue.after(span(BATCH), Event::TellGains(h));
        }
        if !host.report_queued {
            host.report_queued = true;
            let every = Duration::from_secs(u64::from(self.tracker.report_secs()));
            self.queue.after(span(every), Event::Report(h));
        }
    }

    fn report(&mut self, h: usize) {
        let now = self.clock.instant();
        let host = &mut self.hosts[h];
        host.report_queued = false;
        if !host.alive || host.unreported.is_empty() {
            return;
        }
        let chunks = std::mem::take(&mut host.unreported);
        let _ = self.tracker.have(host.peer, self.file, &chunks, now);
        self.counts.tracker_requests += 1;
    }

    /// `h` has the whole file: it stops watching and keeps serving (`fetch --seed`).
    fn finish(&mut self, h: usize) {
        let now = self.queue.now();
        let host = &mut self.hosts[h];
        host.finished = Some(now);
        let Some(fetch) = host.fetch.take() else { return };
        for (n, neighbour) in fetch.neighbours {
            for chunk in neighbour.asked {
                self.cancel(Transfer {
                    holder: n,
                    fetcher: h,
                    chunk,
                });
            }
            let delay = self.links.delay(h, n);
            self.queue.after(delay, Event::Unwatch { holder: n, watcher: h });
        }
        self.queue.after(0, Event::Report(h));
        self.queue.after(span(BATCH), Event::TellGains(h));
    }

    fn pace(&mut self, h: usize) {
        let Some(fetch) = self.hosts[h].fetch.as_mut() else {
            return;
        };
        let longest = fetch
            .neighbours
            .keys()
            .map(|&n| 2 * self.links.delay(h, n))
            .max()
            .unwrap_or(0);
        let rate = fetch.rate.sample(fetch.done);
        fetch.budget.follow(rate, Duration::from_nanos(longest));
        self.queue.after(span(PACE_EVERY), Event::Pace(h));
        self.fill(h);
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
        let waiting: Vec<Transfer> = self.hosts[h].waiting.drain().map(|(_, t)| t).collect();
        for t in waiting {
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
