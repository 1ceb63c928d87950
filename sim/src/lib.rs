//! A deterministic simulation of a swarm of thousands of hosts, for what no test machine can
//! run for real.
//!
//! The decisions are the product's own code, unchanged: the fetcher's chunk choice and
//! endgame ([`swarm_engine::scheduler`]), its requests in flight and lanes per peer
//! ([`swarm_engine::fetch::budget`]), its neighbour policy ([`swarm_engine::fetch::policy`]),
//! what a holder offers each watcher, super-seeding included ([`swarm_engine::offer`]), the
//! upload slots ([`swarm_engine::uploads`]), and the tracker's state, whose locate picks
//! each fetcher's neighbours ([`swarm_tracker::TrackerState`]). Around them, [`world`] does
//! what the engine's tasks do (requests and answers, watches, batches of availability, chunk
//! reports, relocation, pacing) over [`links`], a flow model of each host's uplink and
//! downlink, on a simulated clock ([`clock`]). Every random draw comes from one seed: a run
//! is the same every time.
//!
//! Left out, and so not shown by it: packet loss, congestion control, queueing delay in the
//! links, CPU, disks, NATs, QUIC's handshake costs beyond its round trips, and the bytes of
//! frames other than chunks.

pub mod clock;
pub mod host;
pub mod links;
pub mod scenario;
pub mod supply;
pub mod world;
