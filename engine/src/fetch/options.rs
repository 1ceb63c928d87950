//! How to fetch, and what a fetch did.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarm_proto::protocol::Holder;
use swarm_proto::ticket::Ticket;
use swarm_proto::{FileId, FileMeta, Manifest, PeerId};

use crate::db::FileStamp;
use crate::progress::Progress;
use crate::tracker_client::Located;

/// Which holders a fetch may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sources {
    /// Every live holder.
    #[default]
    All,
    /// Only the one peer that matches.
    Only(PeerFilter),
}

/// One peer, named by address or by (a prefix of) its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerFilter {
    /// The peer at this address.
    Addr(SocketAddr),
    /// The peer whose hex id starts with these digits (8 or more).
    IdPrefix(String),
}

impl std::str::FromStr for PeerFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = text.parse() {
            return Ok(PeerFilter::Addr(addr));
        }
        if swarm_proto::ids::is_id_prefix(text) {
            return Ok(PeerFilter::IdPrefix(text.to_ascii_lowercase()));
        }
        Err(format!(
            "`{text}` is neither HOST:PORT nor a peer id (8 to 64 hex digits)"
        ))
    }
}

impl std::fmt::Display for PeerFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerFilter::Addr(addr) => write!(f, "{addr}"),
            PeerFilter::IdPrefix(prefix) => f.write_str(prefix),
        }
    }
}

impl Sources {
    /// May `holder` be used?
    pub fn admits(&self, holder: &Holder) -> bool {
        match self {
            Sources::All => true,
            Sources::Only(PeerFilter::Addr(addr)) => holder.addr == *addr,
            Sources::Only(PeerFilter::IdPrefix(prefix)) => holder.peer.to_string().starts_with(prefix),
        }
    }
}

/// What may happen to a file already at the output's name with other content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Replace {
    /// Keep it: the fetch fails with [`crate::Error::Exists`].
    #[default]
    Never,
    /// Replace it (a link there is replaced itself, never followed).
    Always,
    /// Replace it only if it is still this version when the download finishes (how `swarm
    /// sync` updates a file nobody edited).
    IfUnchanged(FileStamp),
}

/// How chunks reach the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DiskIo {
    /// Direct I/O where the file system takes it, each chunk read back from the device.
    #[default]
    Direct,
    /// Through the page cache: for disks where the kernel's reordering of writes helps more
    /// than skipping the cache (spinning disks).
    Buffered,
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The file is written under this directory, at its manifest name.
    pub out_dir: PathBuf,
    /// Which holders to use.
    pub sources: Sources,
    /// What to do with a different file already at the name.
    pub replace: Replace,
    /// Give up after this long without finishing.
    pub timeout: Option<Duration>,
    /// Reserve the file's whole size on disk before fetching.
    pub preallocate: bool,
    /// How chunks are written.
    pub disk_io: DiskIo,
    /// Counters for a progress display.
    pub progress: Arc<Progress>,
    /// What displays call the download until its manifest arrives (the catalogue's name for
    /// it, say); its id otherwise.
    pub label: Option<String>,
    /// Save as this relative path inside `out_dir` instead of the manifest's name (checked
    /// the same way).
    pub save_as: Option<String>,
    /// The tracker's answer to a locate of this file made already (with many others, in one
    /// batch), with the manifest; the fetch then does not locate it again to begin. The
    /// manifest is checked against the id all the same.
    pub located: Option<Located>,
    /// Holders known beforehand (those a ticket names): asked for the manifest and dialled
    /// beside those the tracker names, and instead of them when no tracker answers.
    pub holders: Vec<Holder>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            out_dir: PathBuf::from("."),
            sources: Sources::All,
            replace: Replace::Never,
            timeout: None,
            preallocate: false,
            disk_io: DiskIo::Direct,
            progress: Arc::default(),
            label: None,
            save_as: None,
            located: None,
            holders: Vec::new(),
        }
    }
}

/// What a finished fetch did.
#[derive(Debug, Clone)]
pub struct FetchReport {
    /// The file's id.
    pub id: FileId,
    /// Its manifest.
    pub manifest: Arc<Manifest>,
    /// Where it was written.
    pub path: PathBuf,
    /// The file was already there, complete.
    pub already_complete: bool,
    /// What was announced with the file (its modification time was restored from it).
    pub meta: FileMeta,
    /// Chunks that were already verified on disk from an earlier run.
    pub resumed_chunks: u32,
    /// Bytes of verified chunks received, per peer.
    pub received: HashMap<PeerId, u64>,
    /// Peers banned for sending bad data.
    pub banned: Vec<PeerId>,
    /// Wall time.
    pub elapsed: Duration,
}

impl FetchReport {
    /// Total bytes received in verified chunks.
    pub fn bytes_received(&self) -> u64 {
        self.received.values().sum()
    }
}

/// The holders a ticket names, as a fetch dials them ([`FetchOptions::holders`]).
pub fn holders_of(ticket: &Ticket) -> Vec<Holder> {
    let holders = ticket.holders.iter().filter_map(|holder| {
        let (first, others) = holder.addrs.split_first()?;
        Some(Holder {
            peer: holder.id,
            addr: *first,
            other_addrs: others.to_vec(),
            complete: true,
        })
    });
    holders.collect()
}
