//! Links and what crosses them. Each host has an uplink and a downlink (bytes a second) and a
//! one-way delay to the network's core. A chunk on its way from one host to another is a
//! transfer. The transfers from one host to another go one after the other, oldest first (a
//! seeder gives its streams priorities in request order, so QUIC does not interleave them);
//! the host pairs sending at once share each uplink and each downlink evenly, and a pair
//! moves at the lesser of its two shares. Loss, congestion control and queueing delay are
//! left out: the model is of who sends what to whom, and how fast the links let it.

use std::collections::{HashMap, VecDeque};

use crate::clock::Time;

/// One host's links.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Bytes a second it can send.
    pub up: f64,
    /// Bytes a second it can receive.
    pub down: f64,
    /// One-way delay to the network's core.
    pub delay: Time,
}

/// A pair whose head transfer may have ended by `at`: look again then ([`Links::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The sender.
    pub src: usize,
    /// The receiver.
    pub dst: usize,
    /// When to look.
    pub at: Time,
}

/// The transfers from one host to another.
struct Pair<T> {
    queue: VecDeque<(T, u64)>,
    /// Bytes of the head transfer left to send.
    left: f64,
    rate: f64,
    since: Time,
    /// When the head transfer ends at the present rate.
    due: Time,
    /// The earliest look queued and not yet taken.
    looked_for: Option<Time>,
}

/// Every host's links and the transfers under way.
pub struct Links<T> {
    links: Vec<Link>,
    pairs: HashMap<(usize, usize), Pair<T>>,
    /// For each host, the hosts it is sending to now.
    sending_to: Vec<Vec<usize>>,
    /// For each host, the hosts it is receiving from now.
    receiving_from: Vec<Vec<usize>>,
    /// Bytes each host has sent, whole transfers or not.
    pub sent: Vec<f64>,
}

impl<T> Links<T> {
    /// Hosts with `links`, sending nothing yet.
    pub fn new(links: Vec<Link>) -> Links<T> {
        let n = links.len();
        Links {
            links,
            pairs: HashMap::new(),
            sending_to: vec![Vec::new(); n],
            receiving_from: vec![Vec::new(); n],
            sent: vec![0.0; n],
        }
    }

    /// Host `host`'s links.
    pub fn link(&self, host: usize) -> Link {
        self.links[host]
    }

    /// The one-way delay from `a` to `b`.
    pub fn delay(&self, a: usize, b: usize) -> Time {
        self.links[a].delay + self.links[b].delay
    }

    /// Queues `bytes` from `src` to `dst`, tagged `tag`.
    pub fn send(&mut self, now: Time, src: usize, dst: usize, bytes: u64, tag: T) -> Vec<Due> {
        let pair = self.pairs.entry((src, dst)).or_insert_with(|| Pair {
            queue: VecDeque::new(),
            left: 0.0,
            rate: 0.0,
            since: now,
            due: now,
            looked_for: None,
        });
        pair.queue.push_back((tag, bytes));
        if pair.queue.len() > 1 {
            return Vec::new();
        }
        pair.left = bytes as f64;
        pair.since = now;
        self.sending_to[src].push(dst);
        self.receiving_from[dst].push(src);
        self.reshape(now, src, dst)
    }

    /// Looks at the pair `src`→`dst` at `now`: the transfer that ended, if one did, and
    /// when to look again.
    pub fn check(&mut self, now: Time, src: usize, dst: usize) -> (Option<T>, Vec<Due>) {
        let Some(pair) = self.pairs.get_mut(&(src, dst)) else {
            return (None, Vec::new());
        };
        if pair.looked_for == Some(now) {
            pair.looked_for = None;
        }
        self.sent[src] += advance(pair, now);
        if pair.left > 0.5 && now < pair.due {
            let due = pair.due;
            let mut dues = Vec::new();
            if pair.looked_for.is_none_or(|t| t > due) {
                pair.looked_for = Some(due);
                dues.push(Due { src, dst, at: due });
            }
            return (None, dues);
        }
        let (tag, _) = pair.queue.pop_front().expect("an active pair has a head");
        (Some(tag), self.next_or_stop(now, src, dst))
    }

    /// Drops the transfers from `src` to `dst` that `drop` picks (the head one too, half sent).
    pub fn cancel(&mut self, now: Time, src: usize, dst: usize, drop: impl Fn(&T) -> bool) -> (Vec<T>, Vec<Due>) {
        let Some(pair) = self.pairs.get_mut(&(src, dst)) else {
            return (Vec::new(), Vec::new());
        };
        self.sent[src] += advance(pair, now);
        let head_goes = pair.queue.front().is_some_and(|(t, _)| drop(t));
        let mut dropped = Vec::new();
        let mut kept = VecDeque::new();
        for (i, (tag, bytes)) in std::mem::take(&mut pair.queue).into_iter().enumerate() {
            if i > 0 && drop(&tag) {
                dropped.push(tag);
            } else {
                kept.push_back((tag, bytes));
            }
        }
        pair.queue = kept;
        if !head_goes {
            return (dropped, Vec::new());
        }
        let (head, _) = pair.queue.pop_front().expect("checked above");
        dropped.push(head);
        (dropped, self.next_or_stop(now, src, dst))
    }

    /// Every transfer to or from `host` ends unfinished: they are returned.
    pub fn cut(&mut self, now: Time, host: usize) -> (Vec<T>, Vec<Due>) {
        let mut lost = Vec::new();
        let mut dues = Vec::new();
        let ends: Vec<(usize, usize)> = self.sending_to[host]
            .iter()
            .map(|&d| (host, d))
            .chain(self.receiving_from[host].iter().map(|&s| (s, host)))
            .collect();
        for (src, dst) in ends {
            let (dropped, more) = self.cancel(now, src, dst, |_| true);
            lost.extend(dropped);
            dues.extend(more);
        }
        (lost, dues)
    }

    /// Starts the pair's next transfer, or takes it off the links if there is none.
    fn next_or_stop(&mut self, now: Time, src: usize, dst: usize) -> Vec<Due> {
        let pair = self.pairs.get_mut(&(src, dst)).expect("the pair is active");
        if let Some(&(_, bytes)) = pair.queue.front() {
            pair.left = bytes as f64;
            pair.since = now;
            return self.reshape(now, src, dst);
        }
        self.pairs.remove(&(src, dst));
        remove(&mut self.sending_to[src], dst);
        remove(&mut self.receiving_from[dst], src);
        self.reshape(now, src, dst)
    }

    /// Every pair sharing `src`'s uplink or `dst`'s downlink moves at its new share.
    fn reshape(&mut self, now: Time, src: usize, dst: usize) -> Vec<Due> {
        let affected: Vec<(usize, usize)> = self.sending_to[src]
            .iter()
            .map(|&d| (src, d))
            .chain(self.receiving_from[dst].iter().map(|&s| (s, dst)))
            .collect();
        let mut dues = Vec::new();
        for (s, d) in affected {
            let rate = (self.links[s].up / self.sending_to[s].len() as f64)
                .min(self.links[d].down / self.receiving_from[d].len() as f64);
            let Some(pair) = self.pairs.get_mut(&(s, d)) else {
                continue;
            };
            self.sent[s] += advance(pair, now);
            pair.rate = rate;
            pair.due = now + (pair.left.max(0.0) / rate * 1e9).ceil() as Time;
            if pair.looked_for.is_none_or(|t| t > pair.due) {
                pair.looked_for = Some(pair.due);
                dues.push(Due {
                    src: s,
                    dst: d,
                    at: pair.due,
                });
            }
        }
        dues
    }
}

/// Moves the pair's head transfer on to `now` at its rate; returns the bytes it moved.
fn advance<T>(pair: &mut Pair<T>, now: Time) -> f64 {
    let elapsed = now.saturating_sub(pair.since) as f64 / 1e9;
    let moved = (pair.rate * elapsed).min(pair.left.max(0.0));
    pair.left -= pair.rate * elapsed;
    pair.since = now;
    moved
}

fn remove(list: &mut Vec<usize>, host: usize) {
    if let Some(i) = list.iter().position(|&h| h == host) {
        list.swap_remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Time = 1_000_000_000;

    fn links() -> Links<&'static str> {
        let link = Link {
            up: 1000.0,
            down: 1000.0,
            delay: 0,
        };
        Links::new(vec![link; 3])
    }

    /// Runs the looks until none is left; returns what ended, and when.
    fn run(links: &mut Links<&'static str>, mut dues: Vec<Due>) -> Vec<(&'static str, Time)> {
        let mut ended = Vec::new();
        while let Some(i) = (0..dues.len()).min_by_key(|&i| dues[i].at) {
            let due = dues.swap_remove(i);
            let (done, more) = links.check(due.at, due.src, due.dst);
            ended.extend(done.map(|t| (t, due.at)));
            dues.extend(more);
        }
        ended
    }

    #[test]
    fn one_pair_sends_at_the_full_rate_and_in_order() {
        let mut links = links();
        let mut dues = links.send(0, 0, 1, 1000, "a");
        dues.extend(links.send(0, 0, 1, 500, "b"));
        assert_eq!(run(&mut links, dues), [("a", SECOND), ("b", SECOND * 3 / 2)]);
        assert_eq!(links.sent[0].round(), 1500.0);
    }

    #[test]
    fn two_pairs_share_an_uplink_and_the_survivor_speeds_up() {
        let mut links = links();
        let mut dues = links.send(0, 0, 1, 1000, "to 1");
        dues.extend(links.send(0, 0, 2, 500, "to 2"));
        // 500 B/s each: "to 2" ends at 1 s; "to 1" has 500 B left and goes at 1000 B/s.
        assert_eq!(run(&mut links, dues), [("to 2", SECOND), ("to 1", SECOND * 3 / 2)]);
    }

    #[test]
    fn a_cut_host_loses_its_transfers() {
        let mut links = links();
        links.send(0, 0, 1, 1000, "a");
        links.send(0, 2, 1, 1000, "b");
        let (lost, dues) = links.cut(SECOND / 2, 0);
        assert_eq!(lost, ["a"]);
        // "b" had 250 B sent at half the downlink; the rest goes at the full rate.
        assert_eq!(run(&mut links, dues), [("b", SECOND / 2 + SECOND * 3 / 4)]);
    }
}
