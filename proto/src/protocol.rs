//! The swarm wire protocol, version 8. This module is the specification.
//!
//! # Transport
//! Every node (tracker or peer) has one QUIC endpoint. Connections negotiate the ALPN
//! [`ALPN`], which carries the protocol version (`swarm/8`): nodes of different versions fail
//! the handshake and say so ([`crate::ConnectError::VersionMismatch`]). TLS 1.3 runs with a
//! self-signed certificate on *both* sides: a node's id is the BLAKE3 hash of its public key,
//! so the handshake authenticates both ends, and everything a tracker records is filed under
//! the id that TLS proved.
//!
//! # Streams
//! Each request opens its own bidirectional stream, sends one request frame and finishes its
//! send side; the other end answers with one response frame and finishes. Trackers take
//! [`TrackerRequest`] and answer [`TrackerResponse`]; peers take [`PeerRequest`] and answer
//! [`PeerResponse`]. A [`PeerResponse::Chunk`] frame is followed on the same stream by exactly
//! `len` raw bytes of chunk data. Many streams run at once on a connection, which is how
//! requests are pipelined.
//!
//! # Availability between peers
//! A fetcher learns what its neighbours hold from the neighbours themselves, not from the
//! tracker (which hands out peers, not bitfields). On each connection to a neighbour it opens
//! one long-lived stream with [`PeerRequest::Watch`], carrying the chunks it holds, and keeps
//! its send side open; the neighbour answers [`PeerResponse::Have`] with the chunks it offers,
//! and from then on both sides send [`Availability`] frames as chunks are verified (or found
//! damaged on disk). A neighbour that is downloading the same file takes the watcher as a
//! source too. A complete seeder may offer only part of what it has at first (the chunks it
//! has sent least), revealing more as the watcher gets them: the swarm, not the seeder, then
//! carries the copies.
//!
//! # Shares
//! Sync nodes keep their folder's listing at the tracker as a share ([`crate::share`]):
//! [`TrackerRequest::ShareUpdate`] tells what changed in a folder, and
//! [`TrackerRequest::ShareChanges`] asks what changed since a share version, page by page.
//! A share is named by its public key, and every change carries the share key's signature
//! ([`crate::share_key`]): the tracker takes only changes signed by the share's key, and every
//! node checks each entry it is sent before acting on it.
//!
//! # Frames
//! ```text
//! +----------------+--------------------------------------+
//! | length: u32 BE | payload: bincode 2, standard config  |
//! +----------------+--------------------------------------+
//! ```
//! `length` counts the payload and may not exceed [`MAX_FRAME`] (or the smaller limit of the
//! receiving service); it is checked before anything is allocated, and memory grows only with
//! the bytes that arrive. Enums are encoded as a varint variant index followed by the fields in
//! order; the golden tests below pin every message kind byte for byte.
//!
//! # Errors and closing
//! A request that fails is answered with an `Error { code, message }` response: [`ErrorCode`]
//! for programs, the message for people. A frame that cannot be read is answered `Malformed`
//! and the connection is closed with [`CloseCode::ProtocolViolation`]. Every stream reset,
//! stream stop and connection close carries a [`CloseCode`].

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::bitfield::Bitfield;
use crate::codec;
use crate::ids::{FileId, PeerId, ShareId};
use crate::manifest::Manifest;
use crate::meta::FileMeta;
use crate::share::SharePage;
use crate::share_key::SignedChange;
use crate::traversal::{Introduction, RelayPass};

/// This build's protocol version, carried in the ALPN.
pub const PROTOCOL_VERSION: u16 = 8;
/// QUIC application protocol name: `swarm/` and the version.
pub const ALPN: &[u8] = b"swarm/8";
/// Largest frame: 16 MiB, room for a manifest of the maximum 262,144 chunks (8 MiB of hashes)
/// and a locate answer listing many holders.
pub const MAX_FRAME: u32 = codec::LIMIT as u32;
/// Most holders listed in one [`TrackerResponse::Located`] or [`TrackerResponse::Holdings`].
pub const MAX_HOLDERS: usize = 200;
/// Most addresses a peer registers beside the one the tracker sees
/// ([`TrackerRequest::Register`]), and most a [`Holder`] is handed out with.
pub const MAX_PEER_ADDRS: usize = 8;
/// Largest request frame a peer takes: a `Watch` with the bitfield of the largest manifest
/// (262,144 chunks: 32 KiB), with room to spare.
pub const MAX_PEER_REQUEST: u32 = 64 * 1024;
/// Most files asked for in one [`PeerRequest::GetSmallFiles`].
pub const MAX_SMALL_FILES: usize = 128;
/// Largest file sent in answer to [`PeerRequest::GetSmallFiles`]: 64 KiB, so that one answer
/// carries at most 8 MiB.
pub const MAX_SMALL_FILE: u64 = 64 * 1024;
/// Most entries in one page of the catalogue ([`TrackerResponse::Catalogue`]).
pub const MAX_CATALOGUE: usize = 10_000;
/// Most bytes of names in one page of the catalogue: a page ends early rather than outgrow a
/// frame.
pub const MAX_CATALOGUE_NAMES: usize = 8 * 1024 * 1024;

/// What a peer asks of a tracker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrackerRequest {
    /// Start (or restart) this peer's session, forgetting what it announced before. The
    /// tracker records the address it sees the peer connect from unless `advertise` is set,
    /// and `addrs` beside it.
    Register {
        /// Address other peers should use instead of the observed one.
        advertise: Option<SocketAddr>,
        /// The peer's own addresses (its interfaces', with its port; at most
        /// [`MAX_PEER_ADDRS`]): the tracker hands each asker those it can likely reach.
        addrs: Vec<SocketAddr>,
    },
    /// This peer holds (some chunks of) a file.
    Announce {
        /// The file.
        manifest: Manifest,
        /// The chunks held.
        chunks: Bitfield,
        /// The holder's modification time and the version this one replaced.
        meta: FileMeta,
    },
    /// Chunk-register: this peer has newly verified these chunks of a file.
    HaveChunks {
        /// The file.
        file: FileId,
        /// Chunk indices.
        chunks: Vec<u32>,
    },
    /// This peer no longer holds a file.
    Withdraw {
        /// The file.
        file: FileId,
    },
    /// This peer is still alive.
    Keepalive,
    /// This peer is going away; drop all its records.
    Leave,
    /// A page of the catalogue.
    List {
        /// Which page.
        page: PageRequest,
    },
    /// A page of the files whose name equals (`exact`) or contains `query`.
    Search {
        /// Name or part of a name.
        query: String,
        /// Match the whole name only.
        exact: bool,
        /// Which page.
        page: PageRequest,
    },
    /// Files whose id starts with these hex digits.
    Resolve {
        /// 8 to 64 lowercase hex digits.
        prefix: String,
    },
    /// A random sample of a file's live holders, and its manifest if asked for.
    Locate {
        /// The file.
        file: FileId,
        /// Send the manifest too (the first locate of a download; later ones need peers only).
        manifest: bool,
        /// How many holders to send at most (capped at [`MAX_HOLDERS`]).
        want: u16,
    },
    /// Who holds which chunks of a file: up to [`MAX_HOLDERS`] holders with their bitfields
    /// (for people: `swarm peers`).
    Holders {
        /// The file.
        file: FileId,
    },
    /// [`TrackerRequest::Announce`] of a file the tracker lists, by id: a fetcher that has just
    /// located a file need not send its manifest back (300 KB for a 10 GB file, from every one
    /// of thousands of fetchers). A tracker that does not list the file answers `NotFound`,
    /// and the peer announces it in full.
    Join {
        /// The file.
        file: FileId,
        /// The chunks held.
        chunks: Bitfield,
        /// The holder's modification time and the version this one replaced.
        meta: FileMeta,
    },
    /// Several of `Announce`, `Join`, `HaveChunks`, `Withdraw` and `Locate` in one request (at
    /// most [`MAX_BATCH`], of which at most [`MAX_BATCH_LOCATES`] locates), done in order and
    /// answered with a `Batch` of one response each: a node sharing 20,000 files registers
    /// them in 20 requests, not 20,000, and a node fetching them locates them in 80. A batched
    /// locate gives at most [`MAX_BATCH_WANT`] holders, and is refused for a file of more than
    /// [`MAX_BATCH_LOCATE_CHUNKS`] chunks (whose manifest is large): locate that one alone.
    Batch(Vec<TrackerRequest>),
    /// Changes a sync node saw in its folder, for the share's listing (at most [`MAX_BATCH`];
    /// see [`crate::share`]). An update with a change that is not signed by the share's key,
    /// or is stamped in the future, is refused whole. Changes that lose to the share's
    /// current entry, or name a file the tracker does not list under that name, are left out;
    /// the rest are taken in order.
    ShareUpdate {
        /// The share.
        share: ShareId,
        /// The changes, each signed by the share's key.
        changes: Vec<SignedChange>,
    },
    /// The entries of a share changed since version `since` (0: all of them).
    ShareChanges {
        /// The share.
        share: ShareId,
        /// The version last seen.
        since: u64,
    },
    /// Wait for peers that want to reach this one through its NAT: answered with
    /// `Introductions` as soon as one asks, or empty after [`INTRODUCTION_WAIT`]. A peer behind
    /// a NAT keeps one open (which also keeps its NAT's mapping to the tracker alive); see
    /// [`crate::traversal`].
    AwaitIntroductions,
    /// Introduce this peer to `peer`, a holder it cannot reach directly: the holder is told
    /// where this peer is (and punches a hole towards it), and this one where the holder is.
    /// With `relay`, the tracker also opens a relay session for the two, if it relays.
    Introduce {
        /// The holder.
        peer: PeerId,
        /// Open a relay session too.
        relay: bool,
    },
    /// From a tracker to a relay of its own (`swarm relay`): open a session for two peers, one
    /// of them asking from `asker` (sessions are counted per asking address). Answered with
    /// `RelayOpened`; a relay takes it only from the trackers it serves.
    OpenRelay {
        /// The IP address of the peer that asked its tracker for the relay.
        asker: std::net::IpAddr,
    },
    /// Which of these peers, that fetched a chunk from this one lately, were the tracker's own
    /// spot checks (at most [`MAX_CHECKS_ASKED`])? A check dials with a key of its own, so that
    /// a holder cannot tell it from a fetcher while it runs; once it has ended, the holder may
    /// know, and show it as what it was. Answered with `Checks`, naming only checks that ended.
    WhichWereChecks {
        /// The peers the asker served.
        peers: Vec<PeerId>,
    },
    /// Ask to be, for [`ORIGIN_LEASE`], the one peer that reads `key` (a blob's digest, or a
    /// URL) from its origin, so that many peers wanting the same thing at once cause one
    /// origin read: the others wait for it to appear in the catalogue. Asking again while
    /// holding the lease extends it; `release` gives it up (the read failed, or is done).
    /// Answered with `OriginLease`. `key` is at most [`MAX_LEASE_KEY`] bytes.
    LeaseOrigin {
        /// What is read.
        key: String,
        /// Give the lease up instead.
        release: bool,
    },
}

/// How long a [`TrackerRequest::LeaseOrigin`] lease lasts unless extended: its holder asks again
/// well within it while it reads.
pub const ORIGIN_LEASE: std::time::Duration = std::time::Duration::from_secs(20);

/// Longest key of a [`TrackerRequest::LeaseOrigin`], in bytes.
pub const MAX_LEASE_KEY: usize = 512;

/// Most peers asked about in one [`TrackerRequest::WhichWereChecks`].
pub const MAX_CHECKS_ASKED: usize = 64;

/// How long a tracker holds an [`TrackerRequest::AwaitIntroductions`] with nothing to say
/// before answering it empty: under the 30 seconds after which many NATs forget a UDP mapping.
pub const INTRODUCTION_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Most requests in one [`TrackerRequest::Batch`].
pub const MAX_BATCH: usize = 1000;
/// Most `Locate` requests in one [`TrackerRequest::Batch`].
pub const MAX_BATCH_LOCATES: usize = 256;
/// Most holders a `Locate` in a [`TrackerRequest::Batch`] is answered with.
pub const MAX_BATCH_WANT: u16 = 16;
/// Most chunks of a file located in a [`TrackerRequest::Batch`] (its manifest is then at most
/// about 33 KB, and a batch's answer at most about 9 MB).
pub const MAX_BATCH_LOCATE_CHUNKS: u32 = 1024;

/// What a tracker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrackerResponse {
    /// The request was done.
    Ok,
    /// Answer to `Register`.
    Registered {
        /// The address recorded for the peer.
        addr: SocketAddr,
        /// The peer's id as the tracker sees it.
        peer: PeerId,
        /// Seconds of silence after which the tracker drops the peer.
        timeout_secs: u64,
        /// Seconds between the peer's `HaveChunks` batches: longer when the tracker is busy.
        report_secs: u32,
    },
    /// Answer to `List` and `Search`.
    Catalogue(CataloguePage),
    /// Answer to `Resolve`: ids and names.
    Matches(Vec<(FileId, String)>),
    /// Answer to `Locate`.
    Located {
        /// The manifest, if asked for (the fetcher checks it against the id).
        manifest: Option<Manifest>,
        /// What the holders announced with it.
        meta: FileMeta,
        /// A random sample of live holders, the least handed out of late first.
        holders: Vec<Holder>,
        /// How many live peers hold some or all of it.
        live: u32,
        /// Nobody holds it because its last holder withdrew it (replaced or deleted it), not
        /// because holders went away for a while: waiting will not bring it back.
        retired: bool,
    },
    /// The request failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A sentence for people.
        message: String,
    },
    /// Answer to `Holders`.
    Holdings(Vec<Holding>),
    /// Answer to `Batch`: one response per request, in order.
    Batch(Vec<TrackerResponse>),
    /// Answer to `ShareChanges`.
    Share(SharePage),
    /// Answer to `AwaitIntroductions`: who asked to reach this peer since the last answer.
    Introductions(Vec<Introduction>),
    /// Answer to `Introduce`: the holder was told.
    Introduced {
        /// Where the tracker sees the holder: dial it there.
        addr: SocketAddr,
        /// This side's pass into the relay session opened for the two, if one was asked for
        /// and the tracker relays.
        relay: Option<RelayPass>,
    },
    /// Answer to `OpenRelay`: the session's UDP port on the relay, and each side's token (the
    /// asker's first).
    RelayOpened {
        /// The port, on the address the tracker reached the relay at.
        port: u16,
        /// The asker's token, then the holder's.
        tokens: [[u8; 16]; 2],
    },
    /// Answer to `WhichWereChecks`: those of the peers asked about that were this tracker's
    /// spot checks of the asker, and have ended.
    Checks(Vec<PeerId>),
    /// Answer to `LeaseOrigin`: who holds the lease now (the asker, if it was granted or
    /// extended), and for how many more milliseconds (0 after a release).
    OriginLease {
        /// The lease's holder.
        holder: PeerId,
        /// Milliseconds left.
        ms_left: u32,
    },
}

/// What one peer asks of another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Send one chunk.
    GetChunk {
        /// The file.
        file: FileId,
        /// Chunk index.
        index: u32,
    },
    /// What do you hold and fetch? Answered only on a connection made with the node's own
    /// key (by `swarm status` on the same machine).
    Status,
    /// Tell each other what you hold of a file, now and as it changes (see the module doc).
    /// The stream stays open both ways.
    Watch {
        /// The file.
        file: FileId,
        /// The chunks the watcher holds.
        have: Bitfield,
    },
    /// The chunk you sent did not match the manifest: check it on your disk. Answered with
    /// [`PeerResponse::Checked`].
    Rejected {
        /// The file.
        file: FileId,
        /// Chunk index.
        index: u32,
    },
    /// Send the file's manifest (the asker checks it against the id), so that a fetch needs a
    /// tracker only to find holders. Answered with [`PeerResponse::Manifest`].
    GetManifest {
        /// The file.
        file: FileId,
    },
    /// Send these small files whole (at most [`MAX_SMALL_FILES`], each of one chunk of at most
    /// [`MAX_SMALL_FILE`] bytes), so that a folder of many small files costs a request per
    /// batch instead of a connection per file. Answered for each file in the order asked: a
    /// [`PeerResponse::Manifest`] then a [`PeerResponse::Chunk`] and its bytes, or one
    /// [`PeerResponse::Error`] for a file not sent (not held here, too big, or busy). The
    /// asker checks every manifest against its id and every file against its manifest, as for
    /// any fetch. A peer of an older build answers `Malformed`: ask file by file then.
    GetSmallFiles {
        /// The files.
        files: Vec<FileId>,
    },
}

/// What a peer answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Answer to `GetChunk`: `len` bytes of data follow on the stream.
    Chunk {
        /// Number of bytes that follow.
        len: u32,
    },
    /// Answer to `Status`.
    Status(NodeStatus),
    /// Answer to `Watch`: the chunks offered now; [`Availability`] frames follow.
    Have(Bitfield),
    /// The request failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A sentence for people.
        message: String,
    },
    /// Answer to `Rejected`: whether the chunk on the server's disk still matches (if not,
    /// it is no longer served and the whole file is checked again).
    Checked {
        /// The chunk matched.
        intact: bool,
    },
    /// Answer to `GetManifest`.
    Manifest(Manifest),
}

/// Which page of the catalogue (sorted by name, then id) to send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Entries after this one (the last of the previous page); `None` for the first page.
    pub after: Option<CatalogueCursor>,
    /// Most entries wanted (the tracker sends at most [`MAX_CATALOGUE`]; 0 means that many).
    pub limit: u32,
}

/// A place in the catalogue's order: an entry's name and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CatalogueCursor {
    /// The entry's name.
    pub name: String,
    /// The entry's id.
    pub file: FileId,
}

/// One page of the catalogue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CataloguePage {
    /// The entries, sorted by name, then id.
    pub entries: Vec<CatalogueEntry>,
    /// How many entries match in all, on every page.
    pub total: u64,
    /// Are there entries after this page?
    pub more: bool,
}

impl CataloguePage {
    /// The page of `sorted` (all matching entries, sorted by name then id) that `request`
    /// asks for: at most [`MAX_CATALOGUE`] entries and [`MAX_CATALOGUE_NAMES`] bytes of names.
    pub fn of(sorted: Vec<CatalogueEntry>, request: &PageRequest) -> CataloguePage {
        let total = sorted.len() as u64;
        let limit = match request.limit as usize {
            0 => MAX_CATALOGUE,
            n => n.min(MAX_CATALOGUE),
        };
        let start = match &request.after {
            Some(after) => sorted.partition_point(|e| (e.name.as_str(), e.file) <= (after.name.as_str(), after.file)),
            None => 0,
        };
        let mut names = 0;
        let mut entries = Vec::new();
        for entry in sorted.into_iter().skip(start) {
            if entries.len() == limit || (!entries.is_empty() && names + entry.name.len() > MAX_CATALOGUE_NAMES) {
                return CataloguePage {
                    entries,
                    total,
                    more: true,
                };
            }
            names += entry.name.len();
            entries.push(entry);
        }
        CataloguePage {
            entries,
            total,
            more: false,
        }
    }

    /// Where the next page starts.
    pub fn next(&self) -> Option<PageRequest> {
        let last = self.entries.last().filter(|_| self.more)?;
        Some(PageRequest {
            after: Some(CatalogueCursor {
                name: last.name.clone(),
                file: last.file,
            }),
            limit: 0,
        })
    }
}

/// One entry of the tracker's catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    /// The file's id.
    pub file: FileId,
    /// Its name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunk_count: u32,
    /// Live peers holding at least one chunk (of an empty file: every live holder).
    pub holders: u32,
    /// How many distinct chunks live peers hold between them.
    pub available: u32,
    /// The newest modification time its holders announced, and the version it replaced.
    pub meta: FileMeta,
}

/// A live peer holding (or fetching) a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    /// Its id (the fetcher checks it during the TLS handshake).
    pub peer: PeerId,
    /// Where to reach it: the address the asker can most likely reach.
    pub addr: SocketAddr,
    /// Its other addresses, likeliest first (at most [`MAX_PEER_ADDRS`]): a fetcher dials
    /// them too, a moment after `addr`, and keeps the first that proves the peer's id.
    pub other_addrs: Vec<SocketAddr>,
    /// It holds every chunk.
    pub complete: bool,
}

impl Holder {
    /// Every address of the holder, `addr` first.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.addr)
            .chain(self.other_addrs.iter().copied())
            .collect()
    }
}

/// A live peer and the chunks of a file it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holding {
    /// Its id.
    pub peer: PeerId,
    /// Where to reach it.
    pub addr: SocketAddr,
    /// The chunks it holds.
    pub chunks: Bitfield,
}

/// A change in what a peer holds, sent on a `Watch` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Availability {
    /// These chunks are verified here now (or offered now, by a seeder revealing more).
    Gained(Vec<u32>),
    /// These chunks are no longer held (the file changed on disk).
    Lost(Vec<u32>),
}

/// How a node relates to one file, in its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileState {
    /// Being fetched now.
    Downloading,
    /// Fetched in part by an earlier run; `swarm fetch` again to continue.
    Paused,
    /// Complete and served.
    Seeding,
}

/// What a node holds, fetches and serves: the answer to `Status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its files: downloading, paused and seeding.
    pub files: Vec<FileStatus>,
    /// The peers it served lately, busiest first.
    pub uploads: Vec<UploadStatus>,
    /// What its folders' last scans could not share, and why.
    pub skipped: Vec<SkippedPath>,
}

/// A file or folder a node's scan could not share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPath {
    /// Where it is.
    pub path: PathBuf,
    /// Why, in a few words.
    pub why: String,
}

/// What one peer fetched of one file from a node lately.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadStatus {
    /// The peer.
    pub peer: PeerId,
    /// Its address.
    pub addr: SocketAddr,
    /// The file.
    pub file: FileId,
    /// The file's name.
    pub name: String,
    /// Bytes sent whole.
    pub bytes: u64,
    /// Chunks sent whole.
    pub chunks: u32,
    /// Bytes a second, from its first chunk to now.
    pub rate: u64,
    /// Milliseconds since its last chunk.
    pub idle_ms: u64,
    /// How it reached this node: `direct`, `punched` (through this node's NAT, introduced by
    /// the tracker) or `relayed`.
    pub path: String,
    /// It was the tracker's spot check (as the tracker said once the check had ended).
    pub spot_check: bool,
}

/// One file of a node's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStatus {
    /// The file's id.
    pub id: FileId,
    /// Its name.
    pub name: String,
    /// Where its bytes are (the partial file while downloading).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunk_count: u32,
    /// Chunks verified on disk.
    pub chunks_held: u32,
    /// Bytes in those chunks.
    pub bytes_held: u64,
    /// Downloading, paused or seeding.
    pub state: FileState,
    /// Bytes of it sent whole to other peers since the node began holding it.
    pub bytes_served: u64,
    /// Bytes of it read from an HTTP origin since the node started (`swarm seed --url`).
    pub bytes_from_origin: u64,
}

impl FileStatus {
    /// The status of the file of `manifest` at `path`, holding `chunks`.
    pub fn new(manifest: &Manifest, path: PathBuf, chunks: &Bitfield, state: FileState) -> FileStatus {
        FileStatus {
            id: manifest.id(),
            name: manifest.name.clone(),
            path,
            size: manifest.size,
            chunk_count: manifest.chunk_count,
            chunks_held: chunks.count(),
            bytes_held: manifest.bytes_in(chunks),
            state,
            bytes_served: 0,
            bytes_from_origin: 0,
        }
    }

    /// Percent of the file held.
    pub fn percent(&self) -> f64 {
        if self.size == 0 {
            100.0
        } else {
            self.bytes_held as f64 * 100.0 / self.size as f64
        }
    }
}

/// Error codes carried in `Error` responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame could not be decoded.
    Malformed,
    /// The request is not one this node answers.
    Unsupported,
    /// No such file.
    NotFound,
    /// This peer does not hold that chunk.
    NotHeld,
    /// Too many uploads at once: ask someone else.
    Busy,
    /// The request is well formed but refused (bad manifest, unsafe name, ...).
    Invalid,
    /// Send `Register` first.
    NotRegistered,
    /// Too many requests or records from this peer.
    Limit,
    /// The node failed internally.
    Internal,
}

/// Why a stream or a connection is closed: the code carried by every stream reset, stream stop
/// and connection close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum CloseCode {
    /// Work done; nothing wrong.
    Done = 0,
    /// The answer is no longer wanted (the losing copy of an endgame request, a fetch that
    /// ended).
    Cancelled = 1,
    /// The other side broke the protocol (a frame that could not be read).
    ProtocolViolation = 2,
    /// A newer connection from the same node replaced this one.
    Superseded = 3,
    /// The other side showed no usable certificate.
    NoCertificate = 4,
    /// The other side sent nothing for too long with requests outstanding.
    Silent = 5,
    /// The node is shutting down.
    ShuttingDown = 6,
    /// The other side is not of this node's swarm (see [`crate::access`]).
    Unauthorized = 7,
}

impl CloseCode {
    /// The code as QUIC carries it.
    pub fn code(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self as u32)
    }

    /// The close code a QUIC code stands for, if it is one of ours.
    pub fn from_code(code: quinn::VarInt) -> Option<CloseCode> {
        use CloseCode::*;
        [
            Done,
            Cancelled,
            ProtocolViolation,
            Superseded,
            NoCertificate,
            Silent,
            ShuttingDown,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

impl From<CloseCode> for quinn::VarInt {
    fn from(code: CloseCode) -> quinn::VarInt {
        code.code()
    }
}

/// A refusal: what an `Error` response carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: ErrorCode,
    /// The sentence.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl From<Refusal> for TrackerResponse {
    fn from(r: Refusal) -> Self {
        TrackerResponse::Error {
            code: r.code,
            message: r.message,
        }
    }
}

impl From<Refusal> for PeerResponse {
    fn from(r: Refusal) -> Self {
        PeerResponse::Error {
            code: r.code,
            message: r.message,
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The frame is over the limit for its kind (at most [`MAX_FRAME`]).
    #[error("frame of {len} bytes refused (limit {limit})")]
    FrameSize {
        /// The length announced.
        len: u32,
        /// The limit that applied.
        limit: u32,
    },
    /// The payload does not decode.
    #[error("malformed frame: {0}")]
    Malformed(#[from] codec::DecodeError),
    /// The stream ended early or failed.
    #[error("stream failed: {0}")]
    Io(#[from] std::io::Error),
    /// The other side closed the connection, saying why.
    #[error("the other side closed the connection: {0}")]
    Closed(String),
    /// The other side closed the connection because this node is not of its swarm (private
    /// and this node without its secret, or the other way round), saying why.
    #[error("not admitted: {0}")]
    NotAdmitted(String),
}

/// Encodes `message` as one frame.
pub fn encode_frame<T: Serialize>(message: &T) -> Vec<u8> {
    let mut frame = vec![0u8; 4];
    codec::encode_into(message, &mut frame);
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    frame
}

/// Reads one frame of at most `max` bytes (and never more than [`MAX_FRAME`]). Memory grows
/// with the bytes that actually arrive, not with the length announced.
pub async fn read_frame<T, R>(stream: &mut R, max: u32) -> Result<T, ProtocolError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let len = stream.read_u32().await?;
    let limit = max.min(MAX_FRAME);
    if !(1..=limit).contains(&len) {
        return Err(ProtocolError::FrameSize { len, limit });
    }
    let mut body = Vec::with_capacity((len as usize).min(64 * 1024));
    stream.take(u64::from(len)).read_to_end(&mut body).await?;
    if body.len() != len as usize {
        return Err(ProtocolError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("frame cut short: {} of {len} bytes", body.len()),
        )));
    }
    Ok(codec::decode(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Digest;
    use crate::share::{ShareChange, ShareEntry, ShareState};
    use crate::share_key::Signature;
    use proptest::prelude::*;

    const F: [u8; 32] = [0xab; 32];
    const P: [u8; 32] = [0xcd; 32];
    const S: [u8; 32] = [0xef; 32];

    fn addr() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 7070))
    }

    fn manifest() -> Manifest {
        Manifest {
            name: "a".into(),
            hash: Digest([1; 32]),
            size: 5,
            chunk_size: 65536,
            chunk_count: 1,
            chunks: vec![Digest([2; 32])],
        }
    }

    /// The canonical bytes of [`manifest`], as every message carries it.
    fn manifest_bytes() -> Vec<u8> {
        manifest().canonical_bytes()
    }

    /// Bytes of the socket address 10.0.0.1:7070: variant V4 (0), four octets, port 7070
    /// (varint: 251, u16 LE).
    const ADDR: [u8; 8] = [0, 10, 0, 0, 1, 251, 0x9e, 0x1b];

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Every message kind, with its payload pinned byte for byte. Changing any of these breaks
    /// compatibility and needs a new PROTOCOL_VERSION (and ALPN).
    #[test]
    fn golden_bytes() {
        let bits = Bitfield::full(1);
        // A bitfield: length 1 (varint), then its words: one u64 word 1 (varint 1).
        let bits_bytes: &[u8] = &[1, 1, 1];
        let meta = FileMeta {
            modified_ns: 300,
            replaces: Some(FileId(F)),
        };
        // FileMeta: modified_ns 300 (251, u16 LE), Some (1), then the id.
        let meta_bytes = cat(&[&[251, 44, 1, 1], &F]);
        let no_meta: &[u8] = &[0, 0];
        let tracker: Vec<(TrackerRequest, Vec<u8>)> = vec![
            // Register: variant 0, Some (1) address, one more address.
            (
                TrackerRequest::Register {
                    advertise: Some(addr()),
                    addrs: vec![addr()],
                },
                cat(&[&[0, 1], &ADDR, &[1], &ADDR]),
            ),
            // Announce: variant 1, manifest, bitfield, meta.
            (
                TrackerRequest::Announce {
                    manifest: manifest(),
                    chunks: bits.clone(),
                    meta,
                },
                cat(&[&[1], &manifest_bytes(), bits_bytes, &meta_bytes]),
            ),
            // HaveChunks: variant 2, file, two chunks 7 and 300.
            (
                TrackerRequest::HaveChunks {
                    file: FileId(F),
                    chunks: vec![7, 300],
                },
                cat(&[&[2], &F, &[2, 7, 251, 44, 1]]),
            ),
            (TrackerRequest::Withdraw { file: FileId(F) }, cat(&[&[3], &F])),
            (TrackerRequest::Keepalive, vec![4]),
            (TrackerRequest::Leave, vec![5]),
            // List: variant 6, the first page (after: None), 100 entries.
            (
                TrackerRequest::List {
                    page: PageRequest {
                        after: None,
                        limit: 100,
                    },
                },
                vec![6, 0, 100],
            ),
            // Search: variant 7, "mo" (length 2), exact false, after (Some) "a" and a file id, limit 0.
            (
                TrackerRequest::Search {
                    query: "mo".into(),
                    exact: false,
                    page: PageRequest {
                        after: Some(CatalogueCursor {
                            name: "a".into(),
                            file: FileId(F),
                        }),
                        limit: 0,
                    },
                },
                cat(&[&[7, 2, b'm', b'o', 0, 1, 1, b'a'], &F, &[0]]),
            ),
            (TrackerRequest::Resolve { prefix: "ab".into() }, vec![8, 2, b'a', b'b']),
            // Locate: variant 9, file, manifest wanted (1), 40 holders.
            (
                TrackerRequest::Locate {
                    file: FileId(F),
                    manifest: true,
                    want: 40,
                },
                cat(&[&[9], &F, &[1, 40]]),
            ),
            (TrackerRequest::Holders { file: FileId(F) }, cat(&[&[10], &F])),
            // Join: variant 11, file, bitfield, meta.
            (
                TrackerRequest::Join {
                    file: FileId(F),
                    chunks: bits.clone(),
                    meta,
                },
                cat(&[&[11], &F, bits_bytes, &meta_bytes]),
            ),
            // Batch: variant 12, two requests (Withdraw, Keepalive).
            (
                TrackerRequest::Batch(vec![
                    TrackerRequest::Withdraw { file: FileId(F) },
                    TrackerRequest::Keepalive,
                ]),
                cat(&[&[12, 2, 3], &F, &[4]]),
            ),
            // ShareUpdate: variant 13, share, one change: Delete (1), "a", file, deleted at 7,
            // then its 64-byte signature (no length).
            (
                TrackerRequest::ShareUpdate {
                    share: ShareId(S),
                    changes: vec![SignedChange {
                        change: ShareChange::Delete {
                            name: "a".into(),
                            was: FileId(F),
                            deleted_ns: 7,
                        },
                        signature: Signature([9; 64]),
                    }],
                },
                cat(&[&[13], &S, &[1, 1, 1, b'a'], &F, &[7], &[9; 64]]),
            ),
            // ShareChanges: variant 14, share, since 300.
            (
                TrackerRequest::ShareChanges {
                    share: ShareId(S),
                    since: 300,
                },
                cat(&[&[14], &S, &[251, 44, 1]]),
            ),
            (TrackerRequest::AwaitIntroductions, vec![15]),
            // Introduce: variant 16, peer, relay true.
            (
                TrackerRequest::Introduce {
                    peer: PeerId(P),
                    relay: true,
                },
                cat(&[&[16], &P, &[1]]),
            ),
            // OpenRelay: variant 17, an IPv4 address (variant 0, four bytes).
            (
                TrackerRequest::OpenRelay {
                    asker: [10, 0, 0, 5].into(),
                },
                vec![17, 0, 10, 0, 0, 5],
            ),
            // WhichWereChecks (added in version 8, at the end): variant 18, one peer.
            (
                TrackerRequest::WhichWereChecks { peers: vec![PeerId(P)] },
                cat(&[&[18, 1], &P]),
            ),
        ];
        for (message, payload) in tracker {
            check(&message, &payload);
        }
        let entry = CatalogueEntry {
            file: FileId(F),
            name: "a".into(),
            size: 5,
            chunk_count: 1,
            holders: 2,
            available: 1,
            meta: FileMeta::default(),
        };
        // An entry: file, name, size, chunk count, holders, available, meta.
        let entry_bytes = cat(&[&F, &[1, b'a', 5, 1, 2, 1], no_meta]);
        let responses: Vec<(TrackerResponse, Vec<u8>)> = vec![
            (TrackerResponse::Ok, vec![0]),
            // Registered: address, peer id, timeout 180, reports every 20 s.
            (
                TrackerResponse::Registered {
                    addr: addr(),
                    peer: PeerId(P),
                    timeout_secs: 180,
                    report_secs: 20,
                },
                cat(&[&[1], &ADDR, &P, &[180, 20]]),
            ),
            // Catalogue: one entry, 3 in all, more to come.
            (
                TrackerResponse::Catalogue(CataloguePage {
                    entries: vec![entry],
                    total: 3,
                    more: true,
                }),
                cat(&[&[2, 1], &entry_bytes, &[3, 1]]),
            ),
            (
                TrackerResponse::Matches(vec![(FileId(F), "a".into())]),
                cat(&[&[3, 1], &F, &[1, b'a']]),
            ),
            // Located: Some (1) manifest, meta, one holder (peer, address, one other address,
            // complete), 7 live.
            (
                TrackerResponse::Located {
                    manifest: Some(manifest()),
                    meta: FileMeta::default(),
                    holders: vec![Holder {
                        peer: PeerId(P),
                        addr: addr(),
                        other_addrs: vec![addr()],
                        complete: true,
                    }],
                    live: 7,
                    retired: false,
                },
                cat(&[
                    &[4, 1],
                    &manifest_bytes(),
                    no_meta,
                    &[1],
                    &P,
                    &ADDR,
                    &[1],
                    &ADDR,
                    &[1, 7, 0],
                ]),
            ),
            // Error: code Busy (4), message "no" (length 2).
            (
                TrackerResponse::Error {
                    code: ErrorCode::Busy,
                    message: "no".into(),
                },
                vec![5, 4, 2, b'n', b'o'],
            ),
            // Holdings: one (peer, address, bitfield).
            (
                TrackerResponse::Holdings(vec![Holding {
                    peer: PeerId(P),
                    addr: addr(),
                    chunks: bits.clone(),
                }]),
                cat(&[&[6, 1], &P, &ADDR, bits_bytes]),
            ),
            // Batch: variant 7, two responses (Ok, Error Busy "no").
            (
                TrackerResponse::Batch(vec![
                    TrackerResponse::Ok,
                    TrackerResponse::Error {
                        code: ErrorCode::Busy,
                        message: "no".into(),
                    },
                ]),
                vec![7, 2, 0, 5, 4, 2, b'n', b'o'],
            ),
            // Share: variant 8, epoch 1, version 2, one entry ("a", version 2, by, Present (0)
            // with file, no meta, size 5), no more.
            (
                TrackerResponse::Share(SharePage {
                    epoch: 1,
                    version: 2,
                    entries: vec![ShareEntry {
                        name: "a".into(),
                        version: 2,
                        by: PeerId(P),
                        state: ShareState::Present {
                            file: FileId(F),
                            meta: FileMeta::default(),
                            size: 5,
                        },
                        signature: Signature([9; 64]),
                    }],
                    more: false,
                }),
                cat(&[&[8, 1, 2, 1, 1, b'a', 2], &P, &[0], &F, no_meta, &[5], &[9; 64], &[0]]),
            ),
            // Introductions: variant 9, one (peer, address, Some relay pass: address, token).
            (
                TrackerResponse::Introductions(vec![Introduction {
                    peer: PeerId(P),
                    addr: addr(),
                    relay: Some(RelayPass {
                        addr: addr(),
                        token: [3; 16],
                    }),
                }]),
                cat(&[&[9, 1], &P, &ADDR, &[1], &ADDR, &[3; 16]]),
            ),
            // Introduced: variant 10, the holder's address, no relay pass.
            (
                TrackerResponse::Introduced {
                    addr: addr(),
                    relay: None,
                },
                cat(&[&[10], &ADDR, &[0]]),
            ),
            // RelayOpened: variant 11, port 40000 as a varint, two tokens.
            (
                TrackerResponse::RelayOpened {
                    port: 40_000,
                    tokens: [[1; 16], [2; 16]],
                },
                cat(&[&[11, 251, 64, 156], &[1; 16], &[2; 16]]),
            ),
            // Checks: variant 12, one peer.
            (TrackerResponse::Checks(vec![PeerId(P)]), cat(&[&[12, 1], &P])),
        ];
        for (message, payload) in responses {
            check(&message, &payload);
        }
        // GetChunk: variant 0, file, index 300.
        check(
            &PeerRequest::GetChunk {
                file: FileId(F),
                index: 300,
            },
            &cat(&[&[0], &F, &[251, 44, 1]]),
        );
        check(&PeerRequest::Status, &[1]);
        // Watch: variant 2, file, bitfield.
        check(
            &PeerRequest::Watch {
                file: FileId(F),
                have: bits.clone(),
            },
            &cat(&[&[2], &F, bits_bytes]),
        );
        // Chunk: variant 0, length 1 MiB (252, u32 LE).
        check(&PeerResponse::Chunk { len: 1 << 20 }, &[0, 252, 0, 0, 16, 0]);
        let status = FileStatus {
            id: FileId(F),
            name: "a".into(),
            path: "/x".into(),
            size: 5,
            chunk_count: 1,
            chunks_held: 1,
            bytes_held: 5,
            state: FileState::Seeding,
            bytes_served: 7,
            bytes_from_origin: 5,
        };
        let upload = UploadStatus {
            peer: PeerId(F),
            addr: "127.0.0.1:9".parse().unwrap(),
            file: FileId(F),
            name: "a".into(),
            bytes: 5,
            chunks: 1,
            rate: 250,
            idle_ms: 3,
            path: "relayed".into(),
            spot_check: true,
        };
        // Status is asked only by the node itself (`swarm status`, with the node's own key), so
        // its form goes with the build rather than the protocol's version: a `swarm status` of
        // another build says so and asks for a restart (it changed within version 8: an
        // upload's `spot_check`).
        // Status: one file (id, name, path "/x", size, chunks, held, bytes held, state 2, served,
        // from the origin), then
        // one upload (peer, address as variant 0 with 4 bytes and port, file, name, bytes,
        // chunks, rate, idle, path "relayed"), then one skipped path.
        check(
            &PeerResponse::Status(NodeStatus {
                files: vec![status],
                uploads: vec![upload],
                skipped: vec![SkippedPath {
                    path: "/y".into(),
                    why: "z".into(),
                }],
            }),
            &cat(&[
                &[1, 1],
                &F,
                // ..., then bytes served 7 and bytes from the origin 5.
                &[1, b'a', 2, b'/', b'x', 5, 1, 1, 5, 2, 7, 5],
                &[1],
                &F,
                &[0, 127, 0, 0, 1, 9],
                &F,
                &[1, b'a', 5, 1, 250, 3, 7],
                b"relayed",
                // The tracker's spot check: true.
                &[1],
                // One skipped path: "/y", why "z".
                &[1, 2, b'/', b'y', 1, b'z'],
            ]),
        );
        // Have: variant 2, bitfield.
        check(&PeerResponse::Have(bits.clone()), &cat(&[&[2], bits_bytes]));
        check(
            &PeerResponse::Error {
                code: ErrorCode::NotHeld,
                message: String::new(),
            },
            &[3, 3, 0],
        );
        // Availability: Gained (0) chunks 7 and 300; Lost (1) chunk 2.
        // Added after the others, so that older peers decode every earlier message alike.
        check(
            &PeerRequest::Rejected {
                file: FileId([1; 32]),
                index: 5,
            },
            &cat(&[&[3], &[1; 32], &[5]]),
        );
        check(&PeerResponse::Checked { intact: true }, &[4, 1]);
        // GetManifest: variant 4, file; its answer: variant 5, the manifest as in `Located`.
        check(&PeerRequest::GetManifest { file: FileId(F) }, &cat(&[&[4], &F]));
        check(&PeerResponse::Manifest(manifest()), &cat(&[&[5], &manifest_bytes()]));
        // GetSmallFiles: variant 5, the ids (a length, then each).
        let files = vec![FileId(F), FileId([1; 32])];
        check(&PeerRequest::GetSmallFiles { files }, &cat(&[&[5, 2], &F, &[1; 32]]));
        check(&Availability::Gained(vec![7, 300]), &[0, 2, 7, 251, 44, 1]);
        check(&Availability::Lost(vec![2]), &[1, 1, 2]);
    }

    /// `message` encodes to a frame of `payload` behind its length, and decodes back.
    fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(message: &T, payload: &[u8]) {
        let frame = encode_frame(message);
        assert_eq!(&frame[4..], payload, "{message:?}");
        assert_eq!(frame[..4], (payload.len() as u32).to_be_bytes(), "{message:?}");
        assert_eq!(&codec::decode::<T>(payload).unwrap(), message);
    }

    #[test]
    fn close_codes_round_trip() {
        for code in [
            CloseCode::Done,
            CloseCode::Cancelled,
            CloseCode::ProtocolViolation,
            CloseCode::ShuttingDown,
        ] {
            assert_eq!(CloseCode::from_code(code.code()), Some(code));
        }
        assert_eq!(CloseCode::from_code(quinn::VarInt::from_u32(999)), None);
    }

    #[test]
    fn catalogue_pages_cover_every_entry_once_in_order() {
        let entry = |name: &str, n: u8| CatalogueEntry {
            file: FileId([n; 32]),
            name: name.into(),
            size: 1,
            chunk_count: 1,
            holders: 1,
            available: 1,
            meta: FileMeta::default(),
        };
        // 25 entries, two of them under one name (ordered by id).
        let mut all: Vec<CatalogueEntry> = (0..24).map(|i| entry(&format!("f{i:02}"), i)).collect();
        all.push(entry("f05", 200));
        all.sort_by(|a, b| (a.name.as_str(), a.file).cmp(&(b.name.as_str(), b.file)));
        let mut seen = Vec::new();
        let mut request = PageRequest { after: None, limit: 10 };
        loop {
            let page = CataloguePage::of(all.clone(), &request);
            assert_eq!(page.total, 25);
            seen.extend(page.entries.iter().cloned());
            match page.next() {
                Some(next) => request = PageRequest { limit: 10, ..next },
                None => break,
            }
        }
        assert_eq!(seen, all);
        // Pages end before their names outgrow a frame.
        let long = "n".repeat(4096);
        let big: Vec<CatalogueEntry> = (0..3000u32).map(|i| entry(&format!("{long}{i:04}"), 0)).collect();
        let page = CataloguePage::of(big, &PageRequest::default());
        assert!(page.more && page.entries.len() < 3000);
        assert!(page.entries.iter().map(|e| e.name.len()).sum::<usize>() <= MAX_CATALOGUE_NAMES);
    }

    #[tokio::test]
    async fn frames_round_trip_through_a_stream() {
        let request = TrackerRequest::Search {
            query: "movie".into(),
            exact: false,
            page: PageRequest::default(),
        };
        let frame = encode_frame(&request);
        let got: TrackerRequest = read_frame(&mut frame.as_slice(), MAX_FRAME).await.unwrap();
        assert_eq!(got, request);
    }

    #[tokio::test]
    async fn refuses_oversized_and_broken_frames() {
        let huge = (MAX_FRAME + 1).to_be_bytes();
        let err = read_frame::<TrackerRequest, _>(&mut huge.as_slice(), MAX_FRAME)
            .await
            .unwrap_err();
        assert!(matches!(err, ProtocolError::FrameSize { .. }));
        let small_limit = encode_frame(&TrackerRequest::Search {
            query: "x".repeat(100),
            exact: true,
            page: PageRequest::default(),
        });
        let err = read_frame::<TrackerRequest, _>(&mut small_limit.as_slice(), 64)
            .await
            .unwrap_err();
        assert!(matches!(err, ProtocolError::FrameSize { limit: 64, .. }), "{err}");
        let truncated = &encode_frame(&TrackerRequest::List {
            page: PageRequest::default(),
        })[..4];
        assert!(read_frame::<TrackerRequest, _>(&mut &truncated[..], MAX_FRAME)
            .await
            .is_err());
        let empty = 0u32.to_be_bytes();
        assert!(read_frame::<TrackerRequest, _>(&mut empty.as_slice(), MAX_FRAME)
            .await
            .is_err());
    }

    proptest! {
        #[test]
        fn random_payloads_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = codec::decode::<TrackerRequest>(&body);
            let _ = codec::decode::<TrackerResponse>(&body);
            let _ = codec::decode::<PeerRequest>(&body);
            let _ = codec::decode::<PeerResponse>(&body);
        }

        #[test]
        fn requests_round_trip(file in any::<[u8; 32]>(), index in any::<u32>(), query in ".{0,40}") {
            let get = PeerRequest::GetChunk { file: FileId(file), index };
            prop_assert_eq!(codec::decode::<PeerRequest>(&encode_frame(&get)[4..]).unwrap(), get);
            let rejected = PeerRequest::Rejected { file: FileId(file), index };
            prop_assert_eq!(codec::decode::<PeerRequest>(&encode_frame(&rejected)[4..]).unwrap(), rejected);
            let search = TrackerRequest::Search { query, exact: true, page: PageRequest::default() };
            prop_assert_eq!(codec::decode::<TrackerRequest>(&encode_frame(&search)[4..]).unwrap(), search);
        }
    }
}
