//! A bound on what a congestion controller keeps in flight when the path drops much of it.
//!
//! quinn's BBR is BBR version 1: it sends at the bandwidth it measured and does not slow down
//! for loss, which is what carries a fetch across a long path with random loss. Where many
//! flows share a link with a shallow queue (a home uplink, a 2 Mbit/s link fed by eight peers at
//! once), each flow's estimate runs ahead of its share, and BBRv1 keeps sending into a queue
//! that drops a fifth of it (measured on the hundred-host namespace scenario). BBR version 2
//! answers that with a bound on what is in flight, set when a round trip loses more than 2% of
//! its packets; this module adds that bound around any controller:
//!
//! - a round trip (at least the smoothed RTT) is lossy if it lost more than
//!   [`LOSS_THRESHOLD`] of the bytes it settled, and at least two packets;
//! - [`LOSSY_ROUNDS`] lossy round trips in a row set the bound to [`BACK_OFF`] of the most the
//!   last one had in flight (never under two packets, QUIC's smallest window), and while the
//!   bound holds, each lossy round trip lowers it so again. One lossy round is what BBR's own
//!   probing costs against a drop-tail queue of one bandwidth-delay product (its probe
//!   overfills it, and it drains the next round): a first version that bounded on one lossy
//!   round, from what the round sent (about one bandwidth-delay product, however much more is
//!   in flight), took a 1 Gbit/s, 100 ms path from 76% to 69% of its cap;
//! - each round trip without such loss raises the bound by one packet, then two, four and so
//!   on, and once the bound is above the controller's own window it is dropped.
//!
//! Random loss under 2% (a long lossy path) never sets it, so BBR keeps its speed there.
//!
//! Written here rather than taken from a crate: quinn 0.11 ships BBR version 1 only, and the
//! one BBRv3 crate on crates.io (`bbr` 0.1) is new and not made for quinn's `Controller`
//! trait; a wrapper keeps quinn's own BBR and adds only the bound.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Controller, ControllerFactory};
use quinn_proto::RttEstimator;

/// Loss in one round trip above this share of the bytes it settled sets the bound (BBRv2's).
pub const LOSS_THRESHOLD: f64 = 0.02;
/// The bound is this share of what the lossy round had in flight (BBRv2's multiplicative
/// decrease).
pub const BACK_OFF: f64 = 0.7;
/// Lossy round trips in a row that set the bound.
pub const LOSSY_ROUNDS: u32 = 3;
/// Fewest packets lost in a round trip for it to count as lossy: one lost packet of a handful
/// is not a signal.
const MIN_LOST_PACKETS: u64 = 2;
/// The bound never goes under this many packets (RFC 9002's minimum window).
const MIN_WINDOW_PACKETS: u64 = 2;

/// Builds [`LossBound`] controllers around the controllers `inner` builds.
pub struct LossBoundConfig {
    inner: Arc<dyn ControllerFactory + Send + Sync + 'static>,
}

impl LossBoundConfig {
    /// Bounds what the controllers of `inner` keep in flight.
    pub fn new(inner: Arc<dyn ControllerFactory + Send + Sync + 'static>) -> LossBoundConfig {
        LossBoundConfig { inner }
    }
}

impl ControllerFactory for LossBoundConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(LossBound::new(
            self.inner.clone().build(now, current_mtu),
            now,
            current_mtu,
        ))
    }
}

/// A controller whose window is its inner controller's, under a bound set by heavy loss.
pub struct LossBound {
    inner: Box<dyn Controller>,
    bound: Bound,
    /// The shortest round trip seen so far, once a packet was acknowledged.
    min_rtt: Option<Duration>,
}

impl LossBound {
    /// `inner`, with no bound yet.
    pub fn new(inner: Box<dyn Controller>, now: Instant, mtu: u16) -> LossBound {
        LossBound {
            inner,
            bound: Bound::new(now, mtu),
            min_rtt: None,
        }
    }

    /// The shortest round trip of the path so far (queueing left out, as far as one packet
    /// ever crossed without it), once a packet was acknowledged.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// The bound on bytes in flight, while one holds.
    pub fn bound(&self) -> Option<u64> {
        (self.bound.limit != u64::MAX).then_some(self.bound.limit)
    }

    /// How many times a lossy round trip set or lowered the bound so far.
    pub fn times_set(&self) -> u64 {
        self.bound.times_set
    }
}

impl Controller for LossBound {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool, rtt: &RttEstimator) {
        self.bound.acked(bytes, rtt.get());
        self.min_rtt = Some(rtt.min());
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(&mut self, now: Instant, in_flight: u64, app_limited: bool, largest_acked: Option<u64>) {
        self.inner.on_end_acks(now, in_flight, app_limited, largest_acked);
        self.bound.end_acks(now, in_flight, self.inner.window());
    }

    fn on_congestion_event(&mut self, now: Instant, sent: Instant, persistent: bool, lost_bytes: u64) {
        self.bound.lost(lost_bytes);
        self.inner.on_congestion_event(now, sent, persistent, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.bound.mtu = u64::from(new_mtu);
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.inner.window().min(self.bound.limit)
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(LossBound {
            inner: self.inner.clone_box(),
            bound: self.bound,
            min_rtt: self.min_rtt,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The bound and the round trip that sets it, apart from any controller.
#[derive(Clone, Copy)]
struct Bound {
    /// Bytes in flight allowed; `u64::MAX` while no bound holds.
    limit: u64,
    /// What the limit grows by after the next round trip without heavy loss.
    growth: u64,
    mtu: u64,
    smoothed_rtt: Duration,
    round: Round,
    /// Lossy round trips in a row so far.
    lossy_rounds: u32,
    /// Times the limit was set or lowered.
    times_set: u64,
}

/// What one round trip has seen so far.
#[derive(Clone, Copy)]
struct Round {
    started: Instant,
    /// The most in flight after a batch of acknowledgements.
    most_in_flight: u64,
    acked: u64,
    lost: u64,
}

impl Round {
    fn new(started: Instant) -> Round {
        Round {
            started,
            most_in_flight: 0,
            acked: 0,
            lost: 0,
        }
    }

    /// Whether this round lost enough to set the bound.
    fn lossy(&self, mtu: u64) -> bool {
        let settled = self.acked + self.lost;
        self.lost >= MIN_LOST_PACKETS * mtu && self.lost as f64 > LOSS_THRESHOLD * settled as f64
    }
}

impl Bound {
    fn new(now: Instant, mtu: u16) -> Bound {
        Bound {
            limit: u64::MAX,
            growth: u64::from(mtu),
            mtu: u64::from(mtu),
            smoothed_rtt: Duration::from_millis(100),
            round: Round::new(now),
            lossy_rounds: 0,
            times_set: 0,
        }
    }

    fn acked(&mut self, bytes: u64, smoothed_rtt: Duration) {
        self.round.acked += bytes;
        self.smoothed_rtt = smoothed_rtt;
    }

    fn lost(&mut self, bytes: u64) {
        self.round.lost += bytes;
    }

    /// A batch of acknowledgements was taken at `now`, leaving `in_flight`, while the inner
    /// controller allows `window`. Ends the round trip under way if it has lasted one, setting
    /// or raising the limit by what it saw.
    fn end_acks(&mut self, now: Instant, in_flight: u64, window: u64) {
        self.round.most_in_flight = self.round.most_in_flight.max(in_flight);
        if now.saturating_duration_since(self.round.started) < self.smoothed_rtt {
            return;
        }
        self.lossy_rounds = if self.round.lossy(self.mtu) {
            self.lossy_rounds + 1
        } else {
            0
        };
        if self.lossy_rounds >= LOSSY_ROUNDS || (self.lossy_rounds > 0 && self.limit != u64::MAX) {
            // What the round had in flight (not what it sent: a round trip sends about one
            // bandwidth-delay product however much more is in flight); never more than allowed.
            let had = self.round.most_in_flight.min(window).min(self.limit);
            self.limit = ((had as f64 * BACK_OFF) as u64).max(MIN_WINDOW_PACKETS * self.mtu);
            self.times_set += 1;
            tracing::debug!(
                limit = self.limit,
                lost = self.round.lost,
                acked = self.round.acked,
                "loss bound set"
            );
            self.growth = self.mtu;
        } else if self.lossy_rounds == 0 && self.limit != u64::MAX {
            self.limit = self.limit.saturating_add(self.growth);
            self.growth = self.growth.saturating_mul(2);
            if self.limit >= window {
                self.limit = u64::MAX;
                self.growth = self.mtu;
            }
        }
        self.round = Round::new(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTU: u16 = 1200;
    const PACKET: u64 = MTU as u64;
    const RTT: Duration = Duration::from_millis(50);

    /// Plays one round trip of `packets` in flight, `lost` of them lost, the rest
    /// acknowledged, under an inner window of `window`; returns the limit after it.
    fn round(bound: &mut Bound, at: &mut Instant, packets: u64, lost: u64, window: u64) -> u64 {
        bound.end_acks(*at + RTT / 2, packets * PACKET, window);
        bound.acked((packets - lost) * PACKET, RTT);
        bound.lost(lost * PACKET);
        *at += RTT;
        bound.end_acks(*at, 0, window);
        bound.limit
    }

    #[test]
    fn heavy_loss_bounds_what_is_in_flight_and_lossless_rounds_lift_it() {
        let mut at = Instant::now();
        let mut bound = Bound::new(at, MTU);
        let window = 100 * PACKET;
        assert_eq!(
            round(&mut bound, &mut at, 100, 0, window),
            u64::MAX,
            "no loss, no bound"
        );
        // A quarter lost, as on the hundred-host scenario's links: after three such round
        // trips, 70% of the 100 in flight.
        assert_eq!(round(&mut bound, &mut at, 100, 25, window), u64::MAX);
        assert_eq!(round(&mut bound, &mut at, 100, 25, window), u64::MAX);
        assert_eq!(round(&mut bound, &mut at, 100, 25, window), 70 * PACKET);
        // It grows back by 1, 2, 4, 8 and 16 packets, and is dropped once above the window.
        let limits: Vec<u64> = (0..4)
            .map(|_| round(&mut bound, &mut at, 70, 0, window) / PACKET)
            .collect();
        assert_eq!(limits, [71, 73, 77, 85]);
        assert_eq!(
            round(&mut bound, &mut at, 85, 0, window),
            u64::MAX,
            "101 packets: above the window"
        );
    }

    #[test]
    fn one_or_two_lossy_round_trips_between_clean_ones_never_set_it() {
        let mut at = Instant::now();
        let mut bound = Bound::new(at, MTU);
        for _ in 0..10 {
            // BBR's probe overfilling a queue: a lossy round, the drain round, then clean ones.
            assert_eq!(round(&mut bound, &mut at, 100, 10, 100 * PACKET), u64::MAX);
            assert_eq!(round(&mut bound, &mut at, 100, 5, 100 * PACKET), u64::MAX);
            assert_eq!(round(&mut bound, &mut at, 100, 0, 100 * PACKET), u64::MAX);
        }
    }

    #[test]
    fn random_loss_under_two_percent_never_sets_it() {
        let mut at = Instant::now();
        let mut bound = Bound::new(at, MTU);
        for _ in 0..100 {
            assert_eq!(round(&mut bound, &mut at, 1000, 5, 1000 * PACKET), u64::MAX);
        }
        // One packet lost of a handful is not a signal either.
        assert_eq!(round(&mut bound, &mut at, 10, 1, 1000 * PACKET), u64::MAX);
    }

    #[test]
    fn the_bound_backs_off_again_on_each_lossy_round_but_never_under_two_packets() {
        let mut at = Instant::now();
        let mut bound = Bound::new(at, MTU);
        let window = 100 * PACKET;
        for _ in 0..LOSSY_ROUNDS {
            round(&mut bound, &mut at, 100, 30, window);
        }
        let mut limit = bound.limit;
        assert_eq!(limit, 70 * PACKET);
        for _ in 0..20 {
            let next = round(&mut bound, &mut at, 100, 30, window);
            assert!(next < limit || next == 2 * PACKET, "{next} after {limit}");
            limit = next;
        }
        assert_eq!(limit, 2 * PACKET);
    }

    #[test]
    fn a_round_lasts_a_round_trip() {
        let mut at = Instant::now();
        let mut bound = Bound::new(at, MTU);
        for _ in 0..2 {
            round(&mut bound, &mut at, 100, 50, 100 * PACKET);
        }
        bound.acked(10 * PACKET, RTT);
        bound.lost(10 * PACKET);
        bound.end_acks(at + RTT / 2, 20 * PACKET, 100 * PACKET);
        assert_eq!(bound.limit, u64::MAX, "half a round trip in: not judged yet");
        at += RTT;
        bound.end_acks(at, 0, 100 * PACKET);
        assert_eq!(bound.limit, 14 * PACKET, "70% of the most in flight in the round");
    }
}
