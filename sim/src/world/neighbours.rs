//! A fetcher's neighbours: joining the swarm, asking the tracker for more, letting useless
//! ones go, and pacing the requests in flight to the rate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use swarm_engine::fetch::budget::{Budget, Rate};
use swarm_engine::fetch::policy::{self, NEIGHBOURS, PACE_EVERY};
use swarm_engine::scheduler::Scheduler;
use swarm_proto::{Bitfield, FileMeta};

use super::{Event, World};
use crate::clock::span;
use crate::host::{Fetching, Neighbour, Transfer};

impl World {
    pub(super) fn seed(&mut self, h: usize) {
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

    pub(super) fn start(&mut self, h: usize) {
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

    pub(super) fn relocate(&mut self, h: usize) {
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
        let fresh: Vec<(usize, bool)> = located
            .map(|l| l.holders)
            .unwrap_or_default()
            .iter()
            .filter_map(|holder| Some((*self.by_peer.get(&holder.peer)?, holder.complete)))
            .filter(|&(n, _)| {
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
            .filter(|(n, neighbour)| policy::may_let_go(fetch.scheduler.useful(&self.hosts[**n].peer), neighbour.seed))
            .map(|(n, _)| *n)
            .take(over)
            .collect();
        for n in useless {
            self.drop_neighbour(h, n, false);
        }
        for (n, seed) in fresh {
            self.add_neighbour(h, n, 3, seed);
        }
        let fetch = self.hosts[h].fetch.as_ref().expect("checked above");
        let after = policy::relocate_after(fetch.scheduler.unavailable(), fetch.neighbours.len());
        self.queue.after(span(after), Event::Relocate(h));
    }

    /// `h` starts watching `n`: its watch request arrives after `legs` one-way delays (three
    /// for a new connection: a handshake's round trip, then the request).
    pub(super) fn add_neighbour(&mut self, h: usize, n: usize, legs: u64, seed: bool) {
        let Some(fetch) = self.hosts[h].fetch.as_mut() else {
            return;
        };
        if fetch.neighbours.len() >= usize::from(NEIGHBOURS) || fetch.neighbours.contains_key(&n) {
            return;
        }
        let neighbour = Neighbour {
            seed,
            ..Neighbour::default()
        };
        fetch.neighbours.insert(n, neighbour);
        let delay = self.links.delay(h, n);
        self.queue.after(legs * delay, Event::Dial { watcher: h, holder: n });
    }

    /// `h` stops fetching from `n`: what it asked of `n` goes back in the queue.
    pub(super) fn drop_neighbour(&mut self, h: usize, n: usize, gone: bool) {
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
        self.let_go(h, n, neighbour);
        self.queue.after(0, Event::Fill(h));
    }

    /// `h` takes back what it asked of `n` and ends its watch there.
    pub(super) fn let_go(&mut self, h: usize, n: usize, neighbour: Neighbour) {
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

    pub(super) fn pace(&mut self, h: usize) {
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
}
