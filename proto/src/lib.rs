//! # swarm-proto
//!
//! The bottom of swarm, shared by the tracker and the peers: what a file is and how nodes
//! talk. Nothing here keeps state or touches the disk beyond reading a file to hash it and a
//! node's key files.
//!
//! - [`ids`], [`name`]: identifiers (hex, strict) and the one check for file names.
//! - [`hashing`], [`manifest`], [`meta`], [`bitfield`]: chunk hashes, manifests and their ids
//!   (a hand-written canonical encoding), the timestamps that travel with a file, chunk sets.
//! - [`protocol`]: the wire protocol; its module doc is the specification.
//! - [`codec`]: the one place bincode is used.
//! - [`identity`], [`transport`]: node keys, and QUIC with mutual TLS that proves node ids.
//! - [`dial`]: reaching a node that has several addresses (happy eyeballs).
//! - [`lan`]: finding holders on the local network (multicast queries and answers).
//! - [`traversal`]: crossing NATs (introductions, hole punching, relay passes).
//! - [`congestion`]: which congestion controller peer connections use; [`by_path`]: one
//!   chosen by the path's round trip; [`loss_bound`]: a bound on what one keeps in flight
//!   while the path drops much of it.
//! - [`access`]: open and private swarms (a shared secret, proved per connection).
//! - [`dir_lock`]: one process per state directory.
//! - [`collection`]: a folder as one content-addressed value.
//! - [`ticket`]: one string that names a file and the trackers that know it.
//! - [`share`], [`share_key`]: a synced folder's listing, and the key that signs its changes.
#![warn(missing_docs)]

pub mod access;
pub mod bitfield;
pub mod by_path;
pub mod codec;
pub mod collection;
pub mod congestion;
pub mod dial;
pub mod dir_lock;
pub mod hashing;
pub mod identity;
pub mod ids;
pub mod lan;
pub mod large_datagrams;
pub mod loss_bound;
pub mod manifest;
pub mod meta;
pub mod name;
pub mod protocol;
pub mod share;
pub mod share_key;
pub mod ticket;
pub mod transport;
pub mod traversal;

pub use bitfield::Bitfield;
pub use identity::Identity;
pub use ids::{Digest, FileId, PeerId, ShareId};
pub use manifest::{Manifest, DEFAULT_CHUNK_SIZE};
pub use meta::FileMeta;
pub use transport::{ConnectError, Transport};
