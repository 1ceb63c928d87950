//! wan-relay: a UDP relay that puts a wide-area path between two endpoints on one machine.
//! Each direction gets half the round-trip time as delay, optional jitter and random loss, and
//! a rate cap with a drop-tail buffer ([`link`]); [`relay`] moves the datagrams, batched as
//! quinn batches them (GRO in, GSO out), so that the relay is not what limits a test.
//!
//! This kernel has no netem, and a userspace NFQUEUE hook tops out far below loopback speed
//! (34-95 MB/s): hence a relay of our own, used by `just wan` and by tests through the library.

pub mod link;
pub mod relay;

pub use link::{Link, Shape, Tally};
pub use relay::Socket;
