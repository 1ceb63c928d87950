//! A run's settings and what it shows: completion against the Kumar-Ross floor, as the
//! namespace scenarios (`testbed/swarm-scenario.sh`) print it, so that the two compare.

use std::time::{Duration, Instant};

use crate::clock::{seconds, span, Time};
use crate::links::Link;
use crate::world::{Counts, Event, World};

/// The share of a link's rate that carries chunk data: the rest is IP, UDP and QUIC
/// headers, the packet's authentication tag and acknowledgements (about 1,410 bytes of stream
/// data in a 1,500-byte packet).
pub const PAYLOAD_SHARE: f64 = 0.94;

/// What is simulated.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Hosts fetching the file; the last `kill` of them are killed midway.
    pub fetchers: usize,
    /// Of the fetchers, killed at 40% of the soonest any survivor could finish.
    pub kill: usize,
    /// Hosts holding the whole file from the start.
    pub seeders: usize,
    /// The file's size and its chunks' size, in bytes.
    pub size: u64,
    /// The chunks' size, in bytes.
    pub chunk: u32,
    /// Each seeder's link, in bits a second each way.
    pub seed_rate: f64,
    /// The fetchers' links, in bits a second each way, given out in turn.
    pub rates: Vec<f64>,
    /// Each host's one-way delay to the network's core.
    pub delay: Duration,
    /// The fetchers start evenly over this long (zero: all at once, a flash crowd).
    pub ramp: Duration,
    /// Where every random draw comes from.
    pub seed: u64,
}

impl Scenario {
    /// The namespace scenario `ten-peers.sh`: 8 fetchers of 256 MiB in 1 MiB chunks, every
    /// link at 100 Mbit/s, 2 killed.
    pub fn ten_peers() -> Scenario {
        Scenario {
            fetchers: 8,
            kill: 2,
            seeders: 1,
            size: 256 << 20,
            chunk: 1 << 20,
            seed_rate: 100e6,
            rates: vec![100e6],
            delay: Duration::from_micros(500),
            ramp: Duration::ZERO,
            seed: 1,
        }
    }

    /// The namespace scenario `forty-peers.sh`: 39 fetchers of 16 MiB in 64 KiB chunks at
    /// 5, 10 and 20 Mbit/s, the seeder at 10 Mbit/s, 3 killed.
    pub fn forty_peers() -> Scenario {
        Scenario {
            fetchers: 39,
            kill: 3,
            size: 16 << 20,
            chunk: 64 << 10,
            seed_rate: 10e6,
            rates: vec![5e6, 10e6, 20e6],
            ..Scenario::ten_peers()
        }
    }

    /// `just netns-big`: 99 fetchers of 16 MiB in 64 KiB chunks at 2, 4 and 8 Mbit/s, the
    /// seeder at 10 Mbit/s, 5 killed.
    pub fn hundred_peers() -> Scenario {
        Scenario {
            fetchers: 99,
            kill: 5,
            rates: vec![2e6, 4e6, 8e6],
            ..Scenario::forty_peers()
        }
    }

    /// Fetcher `k`'s link rate (0-based among the fetchers), in bits a second.
    pub fn rate_of(&self, k: usize) -> f64 {
        self.rates[k % self.rates.len()]
    }

    fn survivors(&self) -> usize {
        self.fetchers - self.kill
    }

    /// Kumar and Ross's bound on the time any swarm needs to give the surviving fetchers the
    /// file, with `own` in place of the slowest download link if given (a fetcher's own floor).
    pub fn floor(&self, own: Option<f64>) -> f64 {
        let bits = self.size as f64 * 8.0;
        let seeding = self.seed_rate * self.seeders as f64;
        let rates: Vec<f64> = (0..self.survivors()).map(|k| self.rate_of(k)).collect();
        let slowest = own.unwrap_or_else(|| rates.iter().copied().fold(f64::INFINITY, f64::min));
        let total = seeding + rates.iter().sum::<f64>();
        (bits / seeding)
            .max(bits / slowest)
            .max(rates.len() as f64 * bits / total)
    }

    /// Runs the scenario to its end (every survivor done) or to a limit far past the floor.
    pub fn run(&self) -> Outcome {
        let wall = Instant::now();
        let link = |bits: f64| Link {
            up: bits / 8.0 * PAYLOAD_SHARE,
            down: bits / 8.0 * PAYLOAD_SHARE,
            delay: span(self.delay),
        };
        let links: Vec<Link> = (0..self.seeders)
            .map(|_| link(self.seed_rate))
            .chain((0..self.fetchers).map(|k| link(self.rate_of(k))))
            .collect();
        let mut world = World::new(links, self.seeders, self.size, self.chunk, self.seed);
        for s in 0..self.seeders {
            world.queue.at(0, Event::Seed(s));
        }
        let fetchers = self.seeders..self.seeders + self.fetchers;
        // Started a millisecond after the seeders, as the scripts start them once it is up.
        let start = span(Duration::from_millis(1));
        for (k, h) in fetchers.clone().enumerate() {
            let at = start + (span(self.ramp) as u128 * k as u128 / self.fetchers as u128) as Time;
            world.queue.at(at, Event::Start(h));
        }
        // Killed at 40% of the soonest any survivor could finish.
        let first_floor = (0..self.survivors())
            .map(|k| self.floor(Some(self.rate_of(k))))
            .fold(f64::INFINITY, f64::min);
        let kill_at = start + span(Duration::from_secs_f64(first_floor * 0.4));
        for h in fetchers.clone().skip(self.survivors()) {
            world.queue.at(kill_at, Event::Kill(h));
        }
        let floor = self.floor(None);
        let limit = span(Duration::from_secs_f64(floor * 20.0 + 60.0)) + span(self.ramp);
        let step = span(Duration::from_secs(1));
        let mut until = step;
        while until < limit && !world.all_finished(fetchers.clone()) {
            world.run(until);
            until += step;
        }
        let survivors = fetchers.clone().take(self.survivors());
        let mut multiples = Vec::new();
        let mut unfinished = 0;
        let mut from_seeders = 0;
        for h in survivors {
            let host = &world.hosts[h];
            from_seeders += host.from_seeders;
            match host.finished {
                Some(done) => multiples.push(seconds(done - host.started) / floor),
                None => unfinished += 1,
            }
        }
        multiples.sort_by(f64::total_cmp);
        let seeded: f64 = (0..self.seeders).map(|s| world.links.sent[s]).sum();
        Outcome {
            floor,
            multiples,
            unfinished,
            seeder_copies: seeded / PAYLOAD_SHARE / self.size as f64,
            survivors_from_seeders: from_seeders as f64 / self.size as f64,
            simulated: seconds(world.queue.now()),
            counts: world.counts.clone(),
            wall: wall.elapsed(),
        }
    }
}

/// What a run showed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The Kumar-Ross floor over the survivors, in seconds.
    pub floor: f64,
    /// Each survivor's completion time over the floor, sorted.
    pub multiples: Vec<f64>,
    /// Survivors that had not finished by the limit.
    pub unfinished: usize,
    /// What the seeders sent on their links, in copies of the file: headers, transfers cut
    /// short and killed fetchers' share included (as the namespace scenarios count it).
    pub seeder_copies: f64,
    /// What the surviving fetchers verified from the seeders, in copies of the file.
    pub survivors_from_seeders: f64,
    /// Simulated seconds.
    pub simulated: f64,
    /// What else the run counted.
    pub counts: Counts,
    /// How long the simulation took to run.
    pub wall: Duration,
}

impl Outcome {
    /// The `p`th percentile (0-100) of the completion multiples, by nearest rank.
    pub fn percentile(&self, p: f64) -> f64 {
        let n = self.multiples.len();
        if n == 0 {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        self.multiples[rank.min(n) - 1]
    }

    /// Requests to the tracker per simulated second.
    pub fn tracker_rate(&self) -> f64 {
        self.counts.tracker_requests as f64 / self.simulated.max(1e-9)
    }
}
