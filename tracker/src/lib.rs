//! # swarm-tracker
//!
//! The tracker keeps the catalogue of manifests (never content) and which live peers hold
//! which chunks, and answers register, announce, chunk-register, keepalive, leave, list,
//! search, resolve and locate requests over the swarm protocol.
//!
//! - [`state`]: the synchronous catalogue and peer table, with its invariants;
//!   [`file_record`]: one file, its holders and the figures kept up to date for listings.
//! - [`budget`]: what the tracker agrees to keep, charged to the address that asked.
//! - [`audit`]: spot checks of what peers claim to hold.
//! - [`service`]: the QUIC service that drives it, and expiry.
//! - [`store`]: the manifests on disk (a file each) and the holders last saved (sled), for a
//!   tracker on its own.
//! - [`telemetry`]: the tracker's metrics.
//! - [`vantage`]: holder addresses as the asker can reach them.
//! - [`introductions`], [`relay`]: bringing together peers behind NATs (hole punching), and
//!   forwarding between those that still cannot reach each other.
//! - [`change`]: every change to the state as a value; [`shared_log`]: several trackers
//!   sharing one state through a log of those changes in Redis.
#![warn(missing_docs)]

pub mod audit;
pub mod budget;
pub mod change;
mod error;
pub mod file_record;
pub mod introductions;
pub mod origin_leases;
pub mod relay;
pub mod relay_server;
pub mod service;
pub mod shared_log;
pub mod shares;
pub mod state;
mod state_dir;
pub mod store;
pub mod telemetry;
pub mod vantage;

pub use audit::Audits;
pub use budget::Budgets;
pub use error::TrackerError;
pub use relay_server::{RelayConfig, RelayServer};
pub use service::{RelayElsewhere, StoreConfig, Tracker, TrackerConfig, TrackerView};
pub use state::TrackerState;
