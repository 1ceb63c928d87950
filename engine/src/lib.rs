//! # swarm-engine
//!
//! The library behind `swarm`: a peer node that serves verified chunks over QUIC and fetches
//! from many holders at once, above the wire crate [`swarm_proto`] (ids, manifests, tickets,
//! messages). A fetch trusts only the file id: the manifest is checked against it, every chunk
//! against the manifest before it is written, the whole file before it is renamed into place.
//!
//! ```
//! use std::time::Duration;
//! use swarm_engine::launch::{Caps, LocalSwarm};
//! use swarm_engine::{FetchOptions, Progress, DEFAULT_CHUNK_SIZE};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let work = tempfile::tempdir()?;
//! let folder = work.path().join("shared");
//! std::fs::create_dir(&folder)?;
//! std::fs::write(folder.join("hello.txt"), "hello, swarm")?;
//!
//! // A tracker and two nodes on loopback, their state under `work`.
//! let mut swarm = LocalSwarm::start(work.path(), Duration::from_secs(180)).await?;
//! let seeder = swarm.node("seeder", Caps::default()).await?;
//! let seeded = seeder.seed_dir(&folder, DEFAULT_CHUNK_SIZE, &Progress::default()).await?;
//!
//! let fetcher = swarm.node("fetcher", Caps::default()).await?;
//! let options = FetchOptions {
//!     out_dir: work.path().join("fetched"),
//!     ..FetchOptions::default()
//! };
//! let report = fetcher.fetch(seeded[0].id, options).await?;
//! assert_eq!(std::fs::read_to_string(&report.path)?, "hello, swarm");
//! swarm.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! `engine/examples/` has two programs beside this: `seed` shares a folder and prints a
//! ticket, `fetch_ticket` fetches by one (as `swarm seed` and `swarm fetch` do).
//!
//! ## Modules
//! - A node: [`Node`] and [`NodeConfig`]; [`launch`]: starting one with a remote or an embedded
//!   tracker, and a whole [`launch::LocalSwarm`] on loopback for demos, tests and benches.
//! - Moving files: [`fetch`] (the download driver's options and report), [`collection`] (a
//!   folder shared and fetched as one id), [`sync`] (a folder kept in step with a share),
//!   [`downloads`] and [`progress`] (downloads in flight, for people).
//! - Trackers: [`tracker_client`] (talking to one, failing over among several),
//!   [`known_trackers`] (trackers met before).
//! - What a node holds: [`status`] (for `swarm status`), [`view`] (the same as JSON, for
//!   `--json` and the HTTP API), [`db`] (what it keeps in sled between runs), [`trust`] (when a
//!   seeder's file on disk is trusted without hashing it again).
//! - Around it: [`doctor`] (why a fetch cannot reach a holder), [`netutil`] (this machine's
//!   addresses), [`telemetry`] (metrics), `http` (web view, JSON API, streaming; the `http`
//!   feature).
//!
//! Inside, not exported: the chunk server and its fair upload slots, the files it holds (in memory),
//! the chunk scheduler (rarest first), chunk I/O, the tracker session, NAT traversal (hole
//! punching, relays, port mapping), local discovery, folder scans and kept versions.
//!
//! ## Features
//! All on by default: `http` (axum: the web view and API), `metrics` (the Prometheus exporter),
//! `shared-store` (an embedded tracker may share a Redis). `--no-default-features` leaves a
//! node that seeds, fetches and syncs.
#![warn(missing_docs)]
#![warn(unnameable_types)]

mod chunk_io;
pub mod collection;
pub mod db;
pub mod doctor;
pub mod downloads;
mod error;
pub mod fetch;
mod folder;
mod held;
#[cfg(feature = "http")]
pub mod http;
pub mod known_trackers;
mod lan_discovery;
pub mod launch;
mod nat;
pub mod netutil;
mod node;
pub mod offer;
#[cfg(feature = "origins")]
pub mod origin;
mod out_dir;
mod port_mapping;
pub mod progress;
mod ratelimit;
#[cfg(feature = "registry")]
pub mod registry;
pub mod scheduler;
mod server;
mod session;
mod small_files;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod tracker_client;
mod traversal;
pub mod trust;
mod upload_log;
pub mod uploads;
mod versions;
pub mod view;
mod warm;
mod watch;

pub use error::{human, Error, ErrorKind, Result};
pub use fetch::{DiskIo, FetchOptions, FetchReport, PeerFilter, Replace, Sources};
pub use folder::{DirScan, Origin, SeededFile, Skipped};
pub use node::{Node, NodeConfig};
pub use progress::Progress;
pub use swarm_proto::protocol::CatalogueEntry;
pub use swarm_proto::{Bitfield, Digest, FileId, FileMeta, Identity, Manifest, PeerId, DEFAULT_CHUNK_SIZE};
pub use tracker_client::{TrackerAddr, TrackerClient, Trackers};
