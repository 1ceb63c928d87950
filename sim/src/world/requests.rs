//! Chunk requests: a fetcher's lanes, the holder's upload slots, the transfer, and the
//! answers (delivered, busy, not held, stalled).

use std::time::Duration;

use rand::Rng;
use swarm_engine::offer::{leave_to_others, BATCH};
use swarm_engine::uploads::{Admission, Asker, QUEUE_WAIT, REFUSAL_DELAY};
use swarm_proto::PeerId;

use super::{Answer, Event, World, STALL};
use crate::clock::span;
use crate::host::Transfer;
use crate::links::Due;

impl World {
    pub(super) fn fill(&mut self, h: usize) {
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

    pub(super) fn request(&mut self, t: Transfer) {
        if !self.hosts[t.fetcher].alive {
            self.live.remove(&t);
        }
        if !self.live.contains(&t) {
            return;
        }
        let delay = self.links.delay(t.holder, t.fetcher);
        if !self.hosts[t.holder].alive {
            self.queue
                .after(span(STALL).saturating_sub(delay), Event::Answer(t, Answer::Stalled));
            return;
        }
        let round_trip = Duration::from_nanos(2 * delay);
        let asker = Asker::at(self.hosts[t.fetcher].peer, self.hosts[t.fetcher].ip, round_trip);
        let host = &mut self.hosts[t.holder];
        if !host.supply.has(t.chunk) {
            self.queue.after(delay, Event::Answer(t, Answer::NotHeld));
            return;
        }
        let fetcher = self.hosts[t.fetcher].peer;
        let host = &mut self.hosts[t.holder];
        if leave_to_others(host.supply.as_ref(), &fetcher, t.chunk) || !host.supply.start_sending(t.chunk) {
            self.counts.busy += 1;
            self.queue.after(delay, Event::Answer(t, Answer::Busy));
            return;
        }
        self.next_token += 1;
        let token = self.next_token;
        match host.slots.ask(asker, token) {
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
    pub(super) fn upload(&mut self, t: Transfer) {
        self.hosts[t.holder].supply.count_upload(t.chunk, true);
        let bytes = u64::from(self.manifest.chunk_len(t.chunk));
        let dues = self.links.send(self.queue.now(), t.holder, t.fetcher, bytes, t);
        self.queue_dues(dues);
    }

    pub(super) fn queue_dues(&mut self, dues: Vec<Due>) {
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
    pub(super) fn sent(&mut self, t: Transfer) {
        self.end_upload(t, true);
        let delay = self.links.delay(t.holder, t.fetcher);
        self.queue.after(delay, Event::Answer(t, Answer::Delivered));
    }

    /// An upload of `t` ended (`whole`, or not): its slot goes to the next in line.
    pub(super) fn end_upload(&mut self, t: Transfer, whole: bool) {
        let round_trip = Duration::from_nanos(2 * self.links.delay(t.holder, t.fetcher));
        let asker = Asker::at(self.hosts[t.fetcher].peer, self.hosts[t.fetcher].ip, round_trip);
        let host = &mut self.hosts[t.holder];
        host.supply.stop_sending(t.chunk);
        if !whole {
            host.supply.count_upload(t.chunk, false);
        }
        for (_, token) in host.slots.release(&asker) {
            let Some(next) = self.hosts[t.holder].waiting.remove(&token) else {
                continue;
            };
            if self.hosts[next.fetcher].alive {
                self.upload(next);
            } else {
                // Its connection is gone: the slot passes on at once.
                self.live.remove(&next);
                self.end_upload(next, false);
            }
        }
    }

    pub(super) fn give_up(&mut self, holder: usize, token: u64) {
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
    pub(super) fn cancel(&mut self, t: Transfer) {
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

    pub(super) fn answer(&mut self, t: Transfer, answer: Answer) {
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
                if t.holder < self.seeders {
                    host.from_seeders += chunk_len;
                }
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
    pub(super) fn chunk_verified(&mut self, h: usize) {
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

    pub(super) fn report(&mut self, h: usize) {
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
    pub(super) fn finish(&mut self, h: usize) {
        let now = self.queue.now();
        let host = &mut self.hosts[h];
        host.finished = Some(now);
        let Some(fetch) = host.fetch.take() else { return };
        for (n, neighbour) in fetch.neighbours {
            self.let_go(h, n, neighbour);
        }
        self.queue.after(0, Event::Report(h));
        self.queue.after(span(BATCH), Event::TellGains(h));
    }
}
