//! Watches: what each holder offers its watchers, and what each watcher tells the holders
//! it gained, in batches, as the engine's watch streams do.

use rand::Rng;
use swarm_engine::offer::{batch_interval, Offer, Supply, OFFER_EXPIRY, STUCK};
use swarm_proto::Bitfield;

use super::{Event, World, DIAL_TIMEOUT};
use crate::clock::span;

impl World {
    pub(super) fn dial(&mut self, watcher: usize, holder: usize) {
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
        let peer = self.hosts[watcher].peer;
        let host = &mut self.hosts[holder];
        let (offer, first) = Offer::new(host.supply.clone(), peer, theirs, salt);
        let super_seeds = offer.super_seeds();
        host.watchers.insert(watcher, offer);
        self.send_offer(holder, watcher, first.iter().collect(), true);
        if super_seeds && !self.hosts[holder].ticking {
            self.hosts[holder].ticking = true;
            self.queue.after(span(OFFER_EXPIRY / 2), Event::Tick(holder));
        }
        // A peer that fetches from a fetcher is a source for it too (the engine's
        // `offer_source`): the watch back opens on the same connection.
        if self.hosts[holder].fetch.is_some() {
            self.add_neighbour(holder, watcher, 1, false);
        }
    }

    pub(super) fn offered(&mut self, watcher: usize, holder: usize, chunks: Vec<u32>, first: bool) {
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

    pub(super) fn gained(&mut self, holder: usize, watcher: usize, chunks: &[u32]) {
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
            self.send_offer(holder, watcher, more, false);
        }
    }

    /// One availability frame (an offer or a gain) from host `from`, arriving at `to` one
    /// link delay later: counted, as the engine's Have traffic is.
    fn send_availability(&mut self, from: usize, to: usize, frame: Event) {
        self.counts.availability_frames += 1;
        let delay = self.links.delay(from, to);
        self.queue.after(delay, frame);
    }

    /// `holder` tells `watcher` it offers `chunks` (`first`: its answer to the watch).
    fn send_offer(&mut self, holder: usize, watcher: usize, chunks: Vec<u32>, first: bool) {
        let offer = Event::Offered {
            watcher,
            holder,
            chunks,
            first,
        };
        self.send_availability(holder, watcher, offer);
    }

    /// Queues the batch that tells `h`'s watchers what it offers now.
    pub(super) fn offers_changed(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        host.offers_pending = true;
        if !host.offers_queued {
            host.offers_queued = true;
            let at = host.next_offers.max(self.queue.now());
            self.queue.at(at, Event::TellOffers(h));
        }
    }

    pub(super) fn tell_offers(&mut self, h: usize) {
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
            self.send_offer(h, watcher, chunks, false);
        }
    }

    pub(super) fn tell_gains(&mut self, h: usize) {
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
            let gain = Event::Gained {
                holder,
                watcher: h,
                chunks: gained.clone(),
            };
            self.send_availability(h, holder, gain);
        }
    }

    pub(super) fn tick(&mut self, h: usize) {
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
}
