//! The engine end to end on real loopback sockets, through its public API: each module is one
//! area (its own doc says what it drives). One test binary for them all, so that it is linked
//! once and the slow tests of one area run beside those of another.

mod common;

mod audits;
mod catalogue;
mod collections;
mod durability;
mod failover;
mod fairness;
mod faults;
mod large;
mod planted_links;
mod server;
mod super_seeding;
mod swarm;
