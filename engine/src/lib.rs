//! # swarm-engine
//!
//! The library behind `swarm`: everything but argument parsing.
//!
//! - [`manifest`], [`hashing`], [`name`], [`meta`]: what a file is, chunk by chunk, the rules for
//!   names, and the timestamps that travel with it.
//! - [`protocol`]: the wire protocol (its module doc is the specification).
//! - [`identity`], [`transport`]: node keys, and QUIC with mutual TLS that proves node ids.
//! - [`store`], [`server`]: the files a node holds and the chunk server that hands them out.
//! - [`scheduler`], [`fetch`], [`chunk_io`]: which chunk from which peer next, the download
//!   driver, and how chunks reach the disk.
//! - [`tracker_client`]: talking to a tracker.
//! - [`state`], [`known_trackers`]: persistent node state (sled) and trackers met before.
//! - [`node`]: a running peer, tying the rest together; [`status`]: what it holds, for people.
//! - [`sync`]: keeping a folder in step with every other node that syncs one.
#![warn(missing_docs)]

pub mod bitfield;
pub mod chunk_io;
mod error;
pub mod fetch;
pub mod hashing;
pub mod identity;
pub mod ids;
pub mod known_trackers;
pub mod manifest;
pub mod meta;
pub mod name;
pub mod netutil;
pub mod node;
pub mod out_dir;
pub mod progress;
pub mod protocol;
pub mod ratelimit;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod status;
pub mod store;
pub mod sync;
pub mod tracker_client;
pub mod transport;

pub use bitfield::Bitfield;
pub use error::{human, Error, ErrorKind, Result};
pub use fetch::{FetchOptions, FetchReport};
pub use identity::Identity;
pub use ids::{Digest, FileId, PeerId};
pub use manifest::{Manifest, DEFAULT_CHUNK_SIZE};
pub use meta::FileMeta;
pub use node::{Node, NodeConfig, SeededFile};
pub use progress::Progress;
pub use protocol::CatalogueEntry;
pub use tracker_client::{TrackerAddr, TrackerClient};
pub use transport::Transport;
