//! # swarm-tracker
//!
//! The tracker keeps the catalogue of manifests (never content) and which live peers hold
//! which chunks, and answers register, announce, chunk-register, keepalive, leave, list,
//! search, resolve and locate requests over the swarm protocol.
//!
//! - [`state`]: the synchronous catalogue and peer table, with its invariants.
//! - [`service`]: the QUIC service that drives it, persistence and expiry.
#![warn(missing_docs)]

pub mod service;
pub mod state;

pub use service::{Tracker, TrackerConfig};
pub use state::TrackerState;
