//! The tracker's in-memory state: the catalogue of manifests, the live peers, and per file who
//! holds which chunks ([`FileRecord`]). Synchronous and free of I/O, with time passed in; the
//! service drives it. Changes are here; what is read from it (listing, search, locate) is in
//! `reads`; a snapshot of it as plain data, and the state restored from one, in `snapshot`.
//!
//! # Invariants
//! - Every record is filed under the id that TLS proved for the connection that made it; no
//!   method takes a peer id from a message.
//! - `peers[p].files` lists exactly the files of which `p` is a holder.
//! - A manifest in `files` has passed [`Manifest::validate`] and its id is its key; every
//!   holding's bitfield has the manifest's chunk count.
//! - Manifests stay in the catalogue when their last holder leaves (and are persisted by the
//!   service) for [`Budgets::forget_after`], then are forgotten; peers and holdings are soft
//!   state that peers re-send after a tracker restart.
//! - Every peer session, manifest and holding is charged to an address ([`crate::budget`]):
//!   a peer's to the address it connected from, a manifest's to the address of the peer that
//!   first announced it (or to nobody, if reloaded from disk), a holding's to its holder's.
//!   `usage` is exactly the sum of those charges, and every one is refunded when its record
//!   goes.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use swarm_proto::protocol::{ErrorCode, Holder, Refusal};
use swarm_proto::share::SharePage;
use swarm_proto::share_key::SignedChange;
use swarm_proto::{Bitfield, FileId, FileMeta, Manifest, PeerId, ShareId};

use crate::audit::Claim;
use crate::budget::{holding_cost, manifest_cost, Budgets, Usage, PEER_COST};
use crate::file_record::FileRecord;
use crate::shares::{Author, ShareLog, Shares};

mod reads;
mod snapshot;

/// Most files one peer may announce, and room beyond them for the listings of the folders
/// they were seeded in (a folder of exactly 100,000 files is 100,001 announcements). Bounds
/// what a single peer can make the tracker list; the address's budget bounds the bytes.
pub const MAX_FILES_PER_PEER: usize = 100_000;
/// Announcements one peer may make beyond [`MAX_FILES_PER_PEER`]: its folders' listings.
pub const FOLDER_LISTINGS_PER_PEER: usize = 1_000;
/// Handout counts (how often a holder was given out by locates) halve every this long.
const HANDOUT_PERIOD: Duration = Duration::from_secs(60);

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal::new(code, message)
}

#[derive(Debug)]
struct PeerRecord {
    /// The address given out for it.
    addr: SocketAddr,
    /// Its other addresses, given out beside `addr` (not saved across a restart: a restored
    /// peer registers again, with them, on its first request).
    other_addrs: Vec<SocketAddr>,
    /// The address it connected from (an IPv6 one by its /64), which pays for what it makes
    /// the tracker keep.
    ip: IpAddr,
    last_seen: Instant,
    files: HashSet<FileId>,
    /// Restored from disk after a restart: its holdings are given out, but its first request
    /// is answered `NotRegistered`, so that it registers and announces afresh (the saved
    /// holdings may be a few seconds old).
    restored: bool,
}

/// One live peer, as the tracker's web view lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSummary {
    /// Its id.
    pub peer: PeerId,
    /// The address given out for it.
    pub addr: SocketAddr,
    /// How many files it holds (fully or in part).
    pub files: usize,
    /// How long since it was last heard from.
    pub silent: Duration,
}

/// What [`TrackerState::expire`] dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Peers silent for longer than the timeout.
    pub peers: Vec<PeerId>,
    /// Manifests nobody held for longer than [`Budgets::forget_after`].
    pub files: Vec<FileId>,
}

/// What [`TrackerState::locate`] found.
#[derive(Debug)]
pub struct Located {
    /// The manifest.
    pub manifest: Arc<Manifest>,
    /// What the newest holder announced with it.
    pub meta: FileMeta,
    /// A sample of live holders.
    pub holders: Vec<Holder>,
    /// How many live peers hold (or fetch) it.
    pub live: u32,
    /// Its last holder withdrew it, and nobody holds it since.
    pub retired: bool,
}

/// [`TrackerState`] as plain data ([`TrackerState::snapshot`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every manifest in the catalogue.
    pub files: Vec<SnapshotFile>,
    /// Every live peer, with what it holds.
    pub peers: Vec<SnapshotPeer>,
    /// Every share's listing.
    pub shares: Vec<(ShareId, ShareLog)>,
}

/// One file of a [`Snapshot`].
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Its manifest.
    pub manifest: Manifest,
    /// Who pays for it.
    pub charged: Option<IpAddr>,
    /// For how long nobody has held it, if nobody does.
    pub unheld_ms: Option<u64>,
    /// Its last holder withdrew it.
    pub retired: bool,
}

/// One peer of a [`Snapshot`].
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotPeer {
    /// Its id.
    pub peer: PeerId,
    /// The address given out for it.
    pub addr: SocketAddr,
    /// The address it pays from.
    pub ip: IpAddr,
    /// How long since it was last heard from.
    pub silent_ms: u64,
    /// Each file it holds: the chunks, the metadata, and whether a spot check passed.
    pub holdings: Vec<(FileId, Bitfield, FileMeta, bool)>,
}

/// The catalogue and who holds what.
#[derive(Debug)]
pub struct TrackerState {
    files: HashMap<FileId, FileRecord>,
    peers: HashMap<PeerId, PeerRecord>,
    peer_timeout: Duration,
    budgets: Budgets,
    usage: Usage,
    /// The first time seen, from which handout periods are counted.
    origin: Option<Instant>,
    /// The sync shares' listings.
    shares: Shares,
}

impl TrackerState {
    /// An empty tracker that drops peers silent for `peer_timeout` and keeps what `budgets`
    /// allow.
    pub fn new(peer_timeout: Duration, budgets: Budgets) -> TrackerState {
        TrackerState {
            files: HashMap::new(),
            peers: HashMap::new(),
            peer_timeout,
            budgets,
            usage: Usage::default(),
            origin: None,
            shares: Shares::default(),
        }
    }

    /// Bytes kept, as charged against the budgets.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// The silence after which peers are dropped.
    pub fn peer_timeout(&self) -> Duration {
        self.peer_timeout
    }

    /// Seconds between a peer's chunk reports, given how many peers are registered: every
    /// second for a small swarm (listings stay fresh), up to every 30 s for 1,500 peers and
    /// more, so that reports stay under about 50 a second however large the swarm grows.
    pub fn report_secs(&self) -> u32 {
        (self.peer_count() / 50).clamp(1, 30) as u32
    }

    /// Adds a manifest to the catalogue, charged to `payer` (nobody for one reloaded from
    /// disk), and unheld as of `now`. Returns true if it was new.
    pub fn add_manifest(&mut self, manifest: Manifest, payer: Option<IpAddr>, now: Instant) -> Result<bool, Refusal> {
        manifest
            .validate()
            .map_err(|e| refuse(ErrorCode::Invalid, format!("manifest refused: {e}")))?;
        let id = manifest.id();
        if self.files.contains_key(&id) {
            return Ok(false);
        }
        self.usage.charge(&self.budgets, payer, manifest_cost(&manifest))?;
        self.files.insert(id, FileRecord::new(Arc::new(manifest), payer, now));
        Ok(true)
    }

    /// Would `peer` be refused for lack of budget if it added `manifest` (if new) and a holding
    /// of it, and shares paths costing `share_bytes`? A check made before a change is
    /// committed to a shared log, so that refused changes never reach it; the change is still
    /// checked when it is applied.
    pub fn precheck(&self, peer: &PeerId, manifest: Option<&Manifest>, share_bytes: u64) -> Result<(), Refusal> {
        let Some(record) = self.peers.get(peer) else {
            return Ok(());
        };
        let mut cost = share_bytes;
        if let Some(manifest) = manifest {
            let id = manifest.id();
            if !self.files.contains_key(&id) {
                cost += manifest_cost(manifest);
            }
            if !record.files.contains(&id) {
                cost += holding_cost(manifest.chunk_count);
            }
        }
        if cost == 0 {
            return Ok(());
        }
        self.usage.fits(&self.budgets, Some(record.ip), cost)
    }

    /// What the new paths among `changes` would cost `share` (see [`Shares::new_paths_cost`]).
    pub fn share_cost(&self, share: &ShareId, changes: &[SignedChange]) -> u64 {
        self.shares.new_paths_cost(share, changes)
    }

    /// Starts a fresh session for `peer`, given out as `addr` (and `other_addrs`) and
    /// connected from `ip`, dropping whatever it held before.
    pub fn register(
        &mut self,
        peer: PeerId,
        addr: SocketAddr,
        other_addrs: Vec<SocketAddr>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.remove_peer(&peer, now);
        let ip = swarm_proto::transport::network_of(ip);
        self.usage.charge(&self.budgets, Some(ip), PEER_COST)?;
        self.peers.insert(
            peer,
            PeerRecord {
                addr,
                other_addrs,
                ip,
                last_seen: now,
                files: HashSet::new(),
                restored: false,
            },
        );
        Ok(())
    }

    fn live_peer(&mut self, peer: &PeerId, now: Instant) -> Result<&mut PeerRecord, Refusal> {
        let not_registered = || {
            refuse(
                ErrorCode::NotRegistered,
                "not registered (or expired): send Register first",
            )
        };
        let record = self.peers.get_mut(peer).ok_or_else(not_registered)?;
        if record.restored {
            return Err(not_registered());
        }
        record.last_seen = now;
        Ok(record)
    }

    /// Marks every peer as restored from disk after a restart (see `PeerRecord::restored`),
    /// and gives every share the new `epoch` ([`Shares::new_epoch`]).
    pub fn mark_restored(&mut self, epoch: u64) {
        for record in self.peers.values_mut() {
            record.restored = true;
        }
        self.shares.new_epoch(epoch);
    }

    /// `peer` holds `chunks` of `manifest`. Returns the file id and whether the manifest was
    /// new to the catalogue.
    pub fn announce(
        &mut self,
        peer: PeerId,
        manifest: Manifest,
        chunks: Bitfield,
        meta: FileMeta,
        now: Instant,
    ) -> Result<(FileId, bool), Refusal> {
        if chunks.len() != manifest.chunk_count || !chunks.is_well_formed() {
            return Err(refuse(ErrorCode::Invalid, "chunk bitfield does not fit the manifest"));
        }
        let ip = self.live_peer(&peer, now)?.ip;
        let id = manifest.id();
        let is_new = self.add_manifest(manifest, Some(ip), now)?;
        match self.join(peer, id, chunks, meta, now) {
            Ok(()) => Ok((id, is_new)),
            Err(refusal) => {
                if is_new {
                    self.forget(&id);
                }
                Err(refusal)
            }
        }
    }

    /// `peer` holds `chunks` of `file`, which is listed (no manifest is sent again).
    pub fn join(
        &mut self,
        peer: PeerId,
        file: FileId,
        chunks: Bitfield,
        meta: FileMeta,
        now: Instant,
    ) -> Result<(), Refusal> {
        let Some(record) = self.files.get(&file) else {
            return Err(refuse(
                ErrorCode::NotFound,
                format!("file {file} is not in the catalogue"),
            ));
        };
        if chunks.len() != record.manifest.chunk_count || !chunks.is_well_formed() {
            return Err(refuse(ErrorCode::Invalid, "chunk bitfield does not fit the manifest"));
        }
        let record = self.live_peer(&peer, now)?;
        let ip = record.ip;
        let already = record.files.contains(&file);
        if !already && record.files.len() >= MAX_FILES_PER_PEER + FOLDER_LISTINGS_PER_PEER {
            return Err(refuse(
                ErrorCode::Limit,
                format!(
                    "a peer may announce at most {MAX_FILES_PER_PEER} files (and {FOLDER_LISTINGS_PER_PEER} \
                     folder listings); seed the rest from another node"
                ),
            ));
        }
        let listed = self.files.get_mut(&file).expect("checked above");
        if !already {
            self.usage
                .charge(&self.budgets, Some(ip), holding_cost(listed.manifest.chunk_count))?;
            self.peers.get_mut(&peer).expect("checked above").files.insert(file);
        }
        listed.hold(peer, chunks, meta);
        Ok(())
    }

    /// A claim of `peer` about `file` to spot-check: the chunk at position `pick` (modulo their
    /// number) among those it claims. `None` if it claims none, or was checked already.
    pub fn claim_of(&self, peer: &PeerId, file: &FileId, pick: u64) -> Option<Claim> {
        let record = self.files.get(file)?;
        let holding = record.holding(peer).filter(|h| !h.audited)?;
        let count = u64::from(holding.chunks.count());
        let chunk = holding.chunks.iter().nth((pick % count.max(1)) as usize)?;
        Some(Claim {
            peer: *peer,
            addr: self.peers.get(peer)?.addr,
            file: *file,
            manifest: record.manifest.clone(),
            chunk,
        })
    }

    /// A claim to check again, picked by the random numbers `picks`: a file among those
    /// held, a holder of it, a chunk it claims.
    pub fn random_claim(&self, picks: [u64; 3]) -> Option<Claim> {
        // An empty file has no chunk to check.
        let held: Vec<(&FileId, &FileRecord)> = self
            .files
            .iter()
            .filter(|(_, f)| f.nonempty() > 0 && f.manifest.chunk_count > 0)
            .collect();
        let (file, record) = held.get((picks[0] % held.len().max(1) as u64) as usize)?;
        let claimants: Vec<(&PeerId, &crate::file_record::Holding)> =
            record.holdings().filter(|(_, h)| h.chunks.count() > 0).collect();
        let (peer, holding) = claimants[(picks[1] % claimants.len() as u64) as usize];
        let chunk = holding
            .chunks
            .iter()
            .nth((picks[2] % u64::from(holding.chunks.count())) as usize)?;
        Some(Claim {
            peer: *peer,
            addr: self.peers.get(peer)?.addr,
            file: **file,
            manifest: record.manifest.clone(),
            chunk,
        })
    }

    /// Records a spot check of what `peer` claims of `file`: a holder that `lied` no longer holds the file (and a
    /// manifest only it held is forgotten at once); one that did not is marked checked.
    /// Returns whether the holding was dropped.
    pub fn checked(&mut self, peer: &PeerId, file: &FileId, lied: bool, now: Instant) -> bool {
        let Some(record) = self.peers.get_mut(peer) else {
            return false;
        };
        if !lied {
            if let Some(record) = self.files.get_mut(file) {
                record.mark_audited(peer);
            }
            return false;
        }
        if !record.files.remove(file) {
            return false;
        }
        let ip = record.ip;
        self.drop_holding(peer, ip, file, now);
        if self.files.get(file).is_some_and(|f| f.is_unheld()) {
            self.forget(file);
        }
        true
    }

    /// Drops a manifest nobody holds, refunding it.
    fn forget(&mut self, file: &FileId) {
        if let Some(record) = self.files.remove(file) {
            debug_assert!(record.is_unheld());
            self.usage.refund(record.charged, manifest_cost(&record.manifest));
        }
    }

    /// Drops `peer`'s holding of `file`, refunding it.
    fn drop_holding(&mut self, peer: &PeerId, ip: IpAddr, file: &FileId, now: Instant) {
        if let Some(record) = self.files.get_mut(file) {
            if record.release_at(peer, now).is_some() {
                self.usage.refund(Some(ip), holding_cost(record.manifest.chunk_count));
            }
        }
    }

    /// Chunk-register: `peer` has newly verified `chunks` of `file`.
    pub fn have(&mut self, peer: PeerId, file: FileId, chunks: &[u32], now: Instant) -> Result<(), Refusal> {
        let record = self.live_peer(&peer, now)?;
        if !record.files.contains(&file) {
            return Err(refuse(
                ErrorCode::NotFound,
                "announce the file before registering chunks of it",
            ));
        }
        let file = self
            .files
            .get_mut(&file)
            .expect("invariant: peer files are in the catalogue");
        file.add_chunks(&peer, chunks)
            .map_err(|bad| refuse(ErrorCode::Invalid, format!("chunk {bad} is out of range")))
    }

    /// `peer` no longer holds `file`.
    pub fn withdraw(&mut self, peer: PeerId, file: FileId, now: Instant) -> Result<(), Refusal> {
        let record = self.live_peer(&peer, now)?;
        record.files.remove(&file);
        let ip = record.ip;
        self.drop_holding(&peer, ip, &file, now);
        if let Some(record) = self.files.get_mut(&file).filter(|r| r.is_unheld()) {
            record.retired = true;
        }
        Ok(())
    }

    /// Takes `changes` to `share` from `peer` (see [`Shares::update`]), charging new shares and
    /// paths to its address; a share new to the tracker gets `epoch`. Returns how many were
    /// taken.
    pub fn share_update(
        &mut self,
        peer: PeerId,
        share: &ShareId,
        changes: Vec<SignedChange>,
        epoch: u64,
        now: Instant,
    ) -> Result<usize, Refusal> {
        let ip = self.live_peer(&peer, now)?.ip;
        let (files, usage, budgets) = (&self.files, &mut self.usage, &self.budgets);
        self.shares.update(
            Author { peer, ip },
            share,
            changes,
            epoch,
            |file| files.get(file).map(|r| (r.manifest.name.clone(), r.manifest.size)),
            |cost| usage.charge(budgets, Some(ip), cost),
        )
    }

    /// The entries of `share` changed since version `since`.
    pub fn share_changes(&self, share: &ShareId, since: u64) -> SharePage {
        self.shares.changes(share, since)
    }

    /// Refreshes `peer`.
    pub fn keepalive(&mut self, peer: PeerId, now: Instant) -> Result<(), Refusal> {
        self.live_peer(&peer, now).map(|_| ())
    }

    /// Drops `peer` and everything it held. Returns true if it was known.
    pub fn remove_peer(&mut self, peer: &PeerId, now: Instant) -> bool {
        let Some(record) = self.peers.remove(peer) else {
            return false;
        };
        for file in &record.files {
            self.drop_holding(peer, record.ip, file, now);
        }
        self.usage.refund(Some(record.ip), PEER_COST);
        true
    }

    /// Drops every peer silent for longer than the timeout, and every manifest nobody has
    /// held for [`Budgets::forget_after`].
    pub fn expire(&mut self, now: Instant) -> Expired {
        let peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_seen) > self.peer_timeout)
            .map(|(id, _)| *id)
            .collect();
        for peer in &peers {
            self.remove_peer(peer, now);
        }
        let forget_after = self.budgets.forget_after;
        let files: Vec<FileId> = self
            .files
            .iter()
            .filter(|(_, f)| {
                f.unheld_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= forget_after)
            })
            .map(|(id, _)| *id)
            .collect();
        for file in &files {
            self.forget(file);
        }
        Expired { peers, files }
    }

    /// Checks the invariants in the module doc; for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut charged: HashMap<Option<IpAddr>, u64> = HashMap::new();
        for (peer, record) in &self.peers {
            *charged.entry(Some(record.ip)).or_default() += PEER_COST;
            for file in &record.files {
                assert!(self.files[file].holding(peer).is_some());
            }
        }
        for (id, file) in &self.files {
            file.check_invariants();
            assert_eq!(file.manifest.id(), *id);
            assert_eq!(file.is_unheld(), file.unheld_since.is_some());
            *charged.entry(file.charged).or_default() += manifest_cost(&file.manifest);
            for (peer, holding) in file.holdings() {
                assert!(self.peers[peer].files.contains(id));
                assert_eq!(holding.chunks.len(), file.manifest.chunk_count);
                *charged.entry(Some(self.peers[peer].ip)).or_default() += holding_cost(file.manifest.chunk_count);
            }
        }
        for (ip, bytes) in self.shares.charges() {
            *charged.entry(Some(ip)).or_default() += bytes;
        }
        assert_eq!(charged.values().sum::<u64>(), self.usage.total());
        for (address, bytes) in charged {
            if let Some(address) = address {
                assert_eq!(self.usage.of(&address), bytes, "{address}");
                assert!(bytes <= self.budgets.per_address);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::net::IpAddr;
    use swarm_proto::hashing::chunk_hash;

    /// A consistent manifest of `chunks` chunks named `name` (also used by other modules' tests).
    pub(crate) fn manifest(name: &str, chunks: u32) -> Manifest {
        let chunk_size = 65536u32;
        let size = u64::from(chunks) * u64::from(chunk_size);
        let data = vec![1u8; chunk_size as usize];
        let hashes: Vec<_> = (0..chunks)
            .map(|i| chunk_hash(u64::from(i), chunk_size, &data))
            .collect();
        Manifest {
            name: name.into(),
            hash: swarm_proto::hashing::global_from_chunks(size, chunk_size, &hashes).unwrap(),
            size,
            chunk_size,
            chunk_count: chunks,
            chunks: hashes,
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn an_empty_file_is_held_whole_by_its_holders_and_never_spot_checked() {
        let now = Instant::now();
        let mut t = TrackerState::new(Duration::from_secs(180), Budgets::default());
        let a = PeerId([1; 32]);
        t.register(a, addr(1), vec![], addr(1).ip(), now).unwrap();
        let empty = manifest("empty.txt", 0);
        let meta = FileMeta {
            modified_ns: 42,
            replaces: None,
        };
        let (id, _) = t.announce(a, empty, Bitfield::full(0), meta, now).unwrap();
        let entry = &t.list()[0];
        assert_eq!((entry.holders, entry.available, entry.chunk_count), (1, 0, 0));
        assert_eq!(entry.meta, meta);
        assert!(t.claim_of(&a, &id, 7).is_none());
        assert!(t.random_claim([1, 2, 3]).is_none());
        t.remove_peer(&a, now);
        assert_eq!(t.list()[0].holders, 0);
    }

    #[test]
    fn restored_peers_are_handed_out_but_must_register_again() {
        let now = Instant::now();
        let mut t = TrackerState::new(Duration::from_secs(180), Budgets::default());
        let a = PeerId([1; 32]);
        t.register(a, addr(1), vec![], addr(1).ip(), now).unwrap();
        let (id, _) = t
            .announce(a, manifest("a.bin", 3), Bitfield::full(3), FileMeta::default(), now)
            .unwrap();
        let mut restored = TrackerState::restore(t.snapshot(now), Duration::from_secs(180), Budgets::default(), now);
        restored.mark_restored(1);
        let mut rng = rand::rng();
        let located = restored.locate(&id, &PeerId([9; 32]), 10, now, &mut rng).unwrap();
        assert_eq!(located.holders.len(), 1);
        let refused = restored.keepalive(a, now).unwrap_err();
        assert_eq!(refused.code, ErrorCode::NotRegistered);
        assert_eq!(
            restored.have(a, id, &[0], now).unwrap_err().code,
            ErrorCode::NotRegistered
        );
        restored.register(a, addr(1), vec![], addr(1).ip(), now).unwrap();
        restored.keepalive(a, now).unwrap();
        restored.check_invariants();
    }

    #[test]
    fn announce_locate_and_have() {
        let now = Instant::now();
        let mut t = TrackerState::new(Duration::from_secs(180), Budgets::default());
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        let m = manifest("movies/a.mkv", 4);
        t.register(a, addr(1), vec![], addr(1).ip(), now).unwrap();
        t.register(b, addr(2), vec![], addr(2).ip(), now).unwrap();
        let (id, new) = t
            .announce(a, m.clone(), Bitfield::full(4), FileMeta::default(), now)
            .unwrap();
        assert!(new);
        let (_, again) = t.announce(b, m, Bitfield::new(4), FileMeta::default(), now).unwrap();
        assert!(!again);
        let asker = PeerId([9; 32]);
        let mut rng = rand::rng();
        let located = t.locate(&id, &asker, 10, now, &mut rng).unwrap();
        assert_eq!(located.holders.len(), 2, "b is handed out too: it is fetching");
        assert_eq!(located.live, 2);
        assert_eq!(t.list()[0].holders, 1, "but listed as a holder only once it has chunks");
        t.have(b, id, &[2], now).unwrap();
        let holders = t.locate(&id, &a, 10, now, &mut rng).unwrap().holders;
        assert_eq!(holders.len(), 1, "the asker is never handed itself");
        assert!(!holders[0].complete);
        let entry = &t.list()[0];
        assert_eq!((entry.holders, entry.available), (2, 4));
        assert_eq!(t.search("A.MKV", false).len(), 1);
        assert_eq!(t.search("a.mkv", true).len(), 0);
        assert_eq!(t.search("movies/a.mkv", true).len(), 1);
        assert_eq!(t.resolve(&id.to_string()[..8]), vec![(id, "movies/a.mkv".into())]);
        assert!(t.have(b, id, &[4], now).is_err(), "out of range");
        t.check_invariants();
    }

    #[test]
    fn search_ignores_case_beyond_ascii() {
        let now = Instant::now();
        let mut t = TrackerState::new(Duration::from_secs(180), Budgets::default());
        let a = PeerId([1; 32]);
        t.register(a, addr(1), vec![], addr(1).ip(), now).unwrap();
        t.announce(
            a,
            manifest("Ärger/ÉTÉ.mkv", 2),
            Bitfield::full(2),
            FileMeta::default(),
            now,
        )
        .unwrap();
        assert_eq!(t.search("été", false).len(), 1);
        assert_eq!(t.search("ärger", false).len(), 1);
        assert_eq!(t.search("été.mkv", true).len(), 0, "exact means exact");
    }

    #[test]
    fn metadata_of_the_newest_live_holder_is_listed() {
        let now = Instant::now();
        let mut t = TrackerState::new(Duration::from_secs(10), Budgets::default());
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        let m = manifest("f", 2);
        let older = FileMeta {
            modified_ns: 100,
            replaces: None,
        };
        let newer = FileMeta {
            modified_ns: 200,
            replaces: Some(FileId([9; 32])),
        };
        t.register(a, addr(1), vec![], addr(1).ip(), now).unwrap();
        t.register(b, addr(2), vec![], addr(2).ip(), now).unwrap();
        let (id, _) = t.announce(a, m.clone(), Bitfield::full(2), older, now).unwrap();
        t.announce(b, m, Bitfield::full(2), newer, now).unwrap();
        assert_eq!(t.list()[0].meta, newer);
        assert_eq!(t.locate(&id, &a, 10, now, &mut rand::rng()).unwrap().meta, newer);
        t.remove_peer(&b, now);
        assert_eq!(t.list()[0].meta, older, "a holder that left no longer counts");
        t.remove_peer(&a, now);
        assert_eq!(t.list()[0].meta, FileMeta::default());
    }

    #[test]
    fn peers_expire_and_leave() {
        let now = Instant::now();
        let mut t = TrackerState::new(Duration::from_secs(10), Budgets::default());
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        let m = manifest("f", 2);
        t.register(a, addr(1), vec![], addr(1).ip(), now).unwrap();
        t.register(b, addr(2), vec![], addr(2).ip(), now).unwrap();
        let (id, _) = t
            .announce(a, m.clone(), Bitfield::full(2), FileMeta::default(), now)
            .unwrap();
        t.announce(b, m, Bitfield::full(2), FileMeta::default(), now).unwrap();
        t.keepalive(b, now + Duration::from_secs(8)).unwrap();
        assert_eq!(t.expire(now + Duration::from_secs(11)).peers, vec![a]);
        assert_eq!(t.locate(&id, &a, 10, now, &mut rand::rng()).unwrap().live, 1);
        assert_eq!(t.keepalive(a, now).unwrap_err().code, ErrorCode::NotRegistered);
        assert!(t.remove_peer(&b, now));
        assert_eq!(t.locate(&id, &a, 10, now, &mut rand::rng()).unwrap().live, 0);
        assert_eq!(t.list().len(), 1, "the manifest stays in the catalogue");
        t.check_invariants();
    }

    #[test]
    fn refuses_bad_announcements() {
        let now = Instant::now();
        let mut t = TrackerState::new(Duration::from_secs(10), Budgets::default());
        let a = PeerId([1; 32]);
        let m = manifest("f", 2);
        assert_eq!(
            t.announce(a, m.clone(), Bitfield::full(2), FileMeta::default(), now)
                .unwrap_err()
                .code,
            ErrorCode::NotRegistered
        );
        t.register(a, addr(1), vec![], addr(1).ip(), now).unwrap();
        assert_eq!(
            t.announce(a, m.clone(), Bitfield::full(3), FileMeta::default(), now)
                .unwrap_err()
                .code,
            ErrorCode::Invalid
        );
        let mut evil = m;
        evil.name = "../etc/passwd".into();
        assert_eq!(
            t.announce(a, evil, Bitfield::full(2), FileMeta::default(), now)
                .unwrap_err()
                .code,
            ErrorCode::Invalid
        );
        assert!(t.list().is_empty());
        t.check_invariants();
    }

    #[test]
    fn one_peer_may_announce_only_so_many_files() {
        let now = Instant::now();
        let roomy = Budgets {
            per_address: 1 << 30,
            ..Budgets::default()
        };
        let mut t = TrackerState::new(Duration::from_secs(10), roomy);
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        t.register(a, addr(1), vec![], addr(1).ip(), now).unwrap();
        t.register(b, addr(2), vec![], addr(2).ip(), now).unwrap();
        let one = manifest("f", 2);
        // 100,000 files and their folder's listing are fine (one more was refused before).
        for i in 0..MAX_FILES_PER_PEER + FOLDER_LISTINGS_PER_PEER {
            let mut m = one.clone();
            m.name = format!("f{i}");
            t.announce(a, m, Bitfield::full(2), FileMeta::default(), now).unwrap();
        }
        let mut extra = one.clone();
        extra.name = "one-too-many".into();
        let refusal = t
            .announce(a, extra.clone(), Bitfield::full(2), FileMeta::default(), now)
            .unwrap_err();
        assert_eq!(refusal.code, ErrorCode::Limit);
        assert!(refusal.message.contains("at most"), "{}", refusal.message);
        // Re-announcing a file it already has is fine, and other peers are not affected.
        let mut again = one.clone();
        again.name = "f0".into();
        t.announce(a, again, Bitfield::full(2), FileMeta::default(), now)
            .unwrap();
        t.announce(b, extra, Bitfield::full(2), FileMeta::default(), now)
            .unwrap();
        assert_eq!(t.search("one-too-many", true).len(), 1, "announced by b");
        t.check_invariants();
    }

    #[test]
    fn budgets_bound_what_one_address_makes_the_tracker_keep() {
        let now = Instant::now();
        let budgets = Budgets {
            per_address: 16 * 1024,
            total: 1 << 20,
            forget_after: Duration::from_secs(60),
        };
        let mut t = TrackerState::new(Duration::from_secs(10), budgets);
        let (hostile, honest) = (PeerId([1; 32]), PeerId([2; 32]));
        t.register(hostile, addr(1), vec![], "10.0.0.1".parse().unwrap(), now)
            .unwrap();
        t.register(honest, addr(2), vec![], "10.0.0.2".parse().unwrap(), now)
            .unwrap();
        // 100-chunk manifests cost about 4 KiB each: the hostile address gets three.
        let mut accepted = 0;
        let refusal = loop {
            match t.announce(
                hostile,
                manifest(&format!("junk{accepted}"), 100),
                Bitfield::new(100),
                FileMeta::default(),
                now,
            ) {
                Ok(_) => accepted += 1,
                Err(refusal) => break refusal,
            }
        };
        assert_eq!(refusal.code, ErrorCode::Limit);
        assert!((2..=4).contains(&accepted), "{accepted}");
        assert!(t.usage().of(&"10.0.0.1".parse().unwrap()) <= budgets.per_address);
        // Another address is not affected.
        t.announce(
            honest,
            manifest("real", 100),
            Bitfield::full(100),
            FileMeta::default(),
            now,
        )
        .unwrap();
        // The hostile peer leaves: its manifests stay (charged to it) until forgotten.
        t.remove_peer(&hostile, now);
        assert_eq!(t.list().len(), accepted + 1);
        let expired = t.expire(now + Duration::from_secs(61));
        assert_eq!(expired.files.len(), accepted);
        assert_eq!(t.usage().of(&"10.0.0.1".parse().unwrap()), 0);
        assert_eq!(t.list().len(), 1, "the held file stays");
        t.check_invariants();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Register(u8),
        Announce(u8, u8, bool),
        Have(u8, u8, u32),
        Withdraw(u8, u8),
        Leave(u8),
        Expire(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..5).prop_map(Op::Register),
            (0u8..5, 0u8..6, any::<bool>()).prop_map(|(p, f, full)| Op::Announce(p, f, full)),
            (0u8..5, 0u8..6, 0u32..12).prop_map(|(p, f, c)| Op::Have(p, f, c)),
            (0u8..5, 0u8..6).prop_map(|(p, f)| Op::Withdraw(p, f)),
            (0u8..5).prop_map(Op::Leave),
            (0u64..40).prop_map(Op::Expire),
        ]
    }

    proptest::proptest! {
        /// Random sessions of five peers on three addresses, six files and tight budgets:
        /// every invariant (the charges among them) holds after every step.
        #[test]
        fn invariants_hold_under_any_sequence(ops in proptest::collection::vec(op(), 1..120)) {
            let start = Instant::now();
            let budgets = Budgets { per_address: 4096, total: 10_000, forget_after: Duration::from_secs(20) };
            let mut t = TrackerState::new(Duration::from_secs(15), budgets);
            let files: Vec<Manifest> = (0..6).map(|i| manifest(&format!("f{i}"), 10)).collect();
            let ip = |p: u8| IpAddr::from([10, 0, 0, p % 3]);
            let mut clock = 0;
            for op in ops {
                let now = start + Duration::from_secs(clock);
                match op {
                    Op::Register(p) => { let _ = t.register(PeerId([p; 32]), addr(u16::from(p)), vec![], ip(p), now); }
                    Op::Announce(p, f, full) => {
                        let chunks = if full { Bitfield::full(10) } else { Bitfield::new(10) };
                        let _ = t.announce(PeerId([p; 32]), files[f as usize].clone(), chunks, FileMeta::default(), now);
                    }
                    Op::Have(p, f, c) => { let _ = t.have(PeerId([p; 32]), files[f as usize].id(), &[c], now); }
                    Op::Withdraw(p, f) => { let _ = t.withdraw(PeerId([p; 32]), files[f as usize].id(), now); }
                    Op::Leave(p) => { t.remove_peer(&PeerId([p; 32]), now); }
                    Op::Expire(seconds) => { clock += seconds; t.expire(start + Duration::from_secs(clock)); }
                }
                t.check_invariants();
            }
        }
    }

    /// Everything two states answer, compared.
    fn assert_same_answers(a: &TrackerState, b: &TrackerState, files: &[Manifest]) {
        assert_eq!(a.list(), b.list());
        assert_eq!(a.peer_count(), b.peer_count());
        assert_eq!(a.usage(), b.usage());
        for m in files {
            let sorted = |t: &TrackerState| {
                let mut h = t.holdings(&m.id()).unwrap_or_default();
                h.sort_by_key(|h| h.peer);
                h
            };
            assert_eq!(sorted(a), sorted(b));
        }
    }

    proptest::proptest! {
        /// Random sessions applied as changes: a state rebuilt from a snapshot answers as the
        /// original did, then and after time passes (silences and unheld times survive).
        #[test]
        fn a_restored_snapshot_answers_as_the_original(ops in proptest::collection::vec(op(), 1..120), later in 0u64..40) {
            use crate::change::{Announce, Change, Expire, Have, Leave, Register, Withdraw};
            let start = Instant::now();
            let budgets = Budgets { per_address: 4096, total: 10_000, forget_after: Duration::from_secs(20) };
            let mut t = TrackerState::new(Duration::from_secs(15), budgets);
            let files: Vec<Manifest> = (0..6).map(|i| manifest(&format!("f{i}"), 10)).collect();
            let mut clock = 0;
            for op in ops {
                let change: Change = match op {
                    Op::Register(p) => Register { peer: PeerId([p; 32]), addr: addr(u16::from(p)), other_addrs: vec![], ip: IpAddr::from([10, 0, 0, p % 3]) }.into(),
                    Op::Announce(p, f, full) => Announce {
                        peer: PeerId([p; 32]),
                        manifest: files[f as usize].clone(),
                        chunks: if full { Bitfield::full(10) } else { Bitfield::new(10) },
                        meta: FileMeta::default(),
                    }.into(),
                    Op::Have(p, f, c) => Have { peer: PeerId([p; 32]), file: files[f as usize].id(), chunks: vec![c] }.into(),
                    Op::Withdraw(p, f) => Withdraw { peer: PeerId([p; 32]), file: files[f as usize].id() }.into(),
                    Op::Leave(p) => Leave { peer: PeerId([p; 32]) }.into(),
                    Op::Expire(seconds) => { clock += seconds; Expire.into() }
                };
                change.apply(&mut t, start + Duration::from_secs(clock));
            }
            let now = start + Duration::from_secs(clock);
            let snapshot = swarm_proto::codec::encode(&t.snapshot(now));
            let snapshot = swarm_proto::codec::decode_record(&snapshot).unwrap();
            let mut restored = TrackerState::restore(snapshot, Duration::from_secs(15), budgets, now);
            restored.check_invariants();
            assert_same_answers(&t, &restored, &files);
            let then = now + Duration::from_secs(later);
            let sorted = |mut e: Expired| {
                e.peers.sort();
                e.files.sort();
                e
            };
            proptest::prop_assert_eq!(sorted(t.expire(then)), sorted(restored.expire(then)));
            restored.check_invariants();
            assert_same_answers(&t, &restored, &files);
        }
    }

    #[test]
    fn locates_spread_the_holders_instead_of_handing_out_the_same_ones() {
        let now = Instant::now();
        let roomy = Budgets {
            per_address: u64::MAX / 4,
            total: u64::MAX / 2,
            ..Budgets::default()
        };
        let mut t = TrackerState::new(Duration::from_secs(180), roomy);
        let m = manifest("popular", 8);
        let id = m.id();
        let peer = |i: u32| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            PeerId(id)
        };
        for i in 0..1000 {
            t.register(peer(i), addr(1), vec![], addr(1).ip(), now).unwrap();
            let chunks = if i % 10 == 0 {
                Bitfield::full(8)
            } else {
                Bitfield::new(8)
            };
            t.announce(peer(i), m.clone(), chunks, FileMeta::default(), now)
                .unwrap();
        }
        let mut rng = rand::rng();
        let mut handed: HashMap<PeerId, u32> = HashMap::new();
        let mut answers = HashSet::new();
        for i in 0..1000 {
            let located = t.locate(&id, &peer(i), 40, now, &mut rng).unwrap();
            assert_eq!(located.holders.len(), 40);
            assert!(located.holders.iter().all(|h| h.peer != peer(i)));
            let mut list: Vec<PeerId> = located.holders.iter().map(|h| h.peer).collect();
            list.sort();
            answers.insert(list);
            for h in located.holders {
                *handed.entry(h.peer).or_default() += 1;
            }
        }
        assert!(answers.len() > 990, "only {} different answers in 1,000", answers.len());
        let most = *handed.values().max().unwrap();
        let mean = 40_000.0 / 1000.0;
        assert!(
            handed.len() > 950,
            "only {} of 1,000 holders were ever handed out",
            handed.len()
        );
        assert!(
            f64::from(most) < mean * 2.5,
            "one holder was handed out {most} times (mean {mean})"
        );
        t.check_invariants();
    }
}
