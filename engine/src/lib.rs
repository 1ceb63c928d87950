//! # swarm-engine
//!
//! The library behind `swarm`: everything a peer does, above the wire ([`swarm_proto`]).
//!
//! - [`node`]: a running peer, the owner of the parts below; [`launch`]: starting one with a
//!   remote or an embedded tracker, and a whole local swarm for demos, tests and benches.
//! - [`session`]: the node's session with its tracker; [`tracker_client`],
//!   [`known_trackers`]: talking to a tracker, and trackers met before; [`lan_discovery`]:
//!   holders on the local network, found with no tracker; [`traversal`]: reaching holders
//!   behind NATs (introductions, hole punching, relays); [`nat`]: this node behind a NAT
//!   (waiting for introductions, paths remembered); [`port_mapping`]: a port on the router.
//! - [`store`], [`server`], [`uploads`]: the files a node holds, the chunk server that hands
//!   them out, and the fair share of its upload slots.
//! - [`scheduler`], [`fetch`], [`chunk_io`], [`out_dir`]: which chunk from which peer next,
//!   the download driver, how chunks reach the disk, and the output directory (no links
//!   followed).
//! - [`watch`]: what neighbours tell each other they hold (and seeders' super-seeding).
//! - [`downloads`]: the downloads in flight; [`folder`]: shared folders; [`collection`]: a
//!   folder shared and fetched as one id; [`sync`]: keeping a
//!   folder in step with every other node that syncs one.
//! - [`state`]: persistent node state (sled); [`status`]: what a node holds, for people.
#![warn(missing_docs)]

pub mod chunk_io;
pub mod collection;
pub mod doctor;
pub mod downloads;
mod error;
pub mod fetch;
pub mod folder;
#[cfg(feature = "http")]
pub mod http;
pub mod known_trackers;
pub mod lan_discovery;
pub mod launch;
pub mod nat;
pub mod netutil;
pub mod node;
pub mod out_dir;
pub mod port_mapping;
pub mod progress;
pub mod ratelimit;
pub mod scheduler;
pub mod server;
pub mod session;
pub mod state;
pub mod status;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tracker_client;
pub mod traversal;
pub mod trust;
pub mod upload_log;
pub mod uploads;
pub mod versions;
pub mod watch;

pub use error::{human, Error, ErrorKind, Result};
pub use fetch::{DiskIo, FetchOptions, FetchReport, PeerFilter, Replace, Sources};
pub use folder::{Origin, SeededFile};
pub use node::{Node, NodeConfig};
pub use progress::Progress;
pub use swarm_proto::protocol::CatalogueEntry;
pub use swarm_proto::{Bitfield, Digest, FileId, FileMeta, Identity, Manifest, PeerId, DEFAULT_CHUNK_SIZE};
pub use tracker_client::{TrackerAddr, TrackerClient, Trackers};
