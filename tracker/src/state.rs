//! The tracker's in-memory state: the catalogue of manifests, the live peers, and per peer per
//! file a bitfield of the chunks it holds. Synchronous and free of I/O; the service drives it.
//!
//! # Invariants
//! - Every record is filed under the id that TLS proved for the connection that made it; no
//!   method takes a peer id from a message.
//! - `peers[p].files` lists exactly the files whose `holders` contain `p`.
//! - A manifest in `files` has passed [`Manifest::validate`] and its id is its key; every
//!   holder's bitfield has the manifest's chunk count.
//! - Manifests stay in the catalogue when their last holder leaves (and are persisted by the
//!   service); peers and holdings are soft state that peers re-send after a tracker restart.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_proto::protocol::{CatalogueEntry, ErrorCode, Holder, Refusal, MAX_CATALOGUE, MAX_HOLDERS};
use swarm_proto::{Bitfield, FileId, FileMeta, Manifest, PeerId};

/// Most files one peer may announce. Bounds what a single peer can make the tracker store.
pub const MAX_FILES_PER_PEER: usize = 100_000;

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal::new(code, message)
}

#[derive(Debug)]
struct PeerRecord {
    addr: SocketAddr,
    last_seen: Instant,
    files: HashSet<FileId>,
}

#[derive(Debug)]
struct FileRecord {
    manifest: Arc<Manifest>,
    holders: HashMap<PeerId, Holding>,
}

/// What one peer announced of one file.
#[derive(Debug)]
struct Holding {
    chunks: Bitfield,
    meta: FileMeta,
}

impl FileRecord {
    /// The metadata of the holder with the newest modification time.
    fn meta(&self) -> FileMeta {
        self.holders
            .values()
            .filter(|h| h.chunks.count() > 0)
            .map(|h| h.meta)
            .max_by_key(|m| m.modified_ns)
            .unwrap_or_default()
    }
}

/// The catalogue and who holds what.
#[derive(Debug)]
pub struct TrackerState {
    files: HashMap<FileId, FileRecord>,
    peers: HashMap<PeerId, PeerRecord>,
    peer_timeout: Duration,
}

impl TrackerState {
    /// An empty tracker that drops peers silent for `peer_timeout`.
    pub fn new(peer_timeout: Duration) -> TrackerState {
        TrackerState {
            files: HashMap::new(),
            peers: HashMap::new(),
            peer_timeout,
        }
    }

    /// The silence after which peers are dropped.
    pub fn peer_timeout(&self) -> Duration {
        self.peer_timeout
    }

    /// Adds a manifest to the catalogue (e.g. loaded from disk). Returns true if it was new.
    pub fn add_manifest(&mut self, manifest: Manifest) -> Result<bool, Refusal> {
        manifest
            .validate()
            .map_err(|e| refuse(ErrorCode::Invalid, format!("manifest refused: {e}")))?;
        let id = manifest.id();
        if self.files.contains_key(&id) {
            return Ok(false);
        }
        self.files.insert(
            id,
            FileRecord {
                manifest: Arc::new(manifest),
                holders: HashMap::new(),
            },
        );
        Ok(true)
    }

    /// Starts a fresh session for `peer` at `addr`, dropping whatever it held before.
    pub fn register(&mut self, peer: PeerId, addr: SocketAddr, now: Instant) {
        self.remove_peer(&peer);
        self.peers.insert(
            peer,
            PeerRecord {
                addr,
                last_seen: now,
                files: HashSet::new(),
            },
        );
    }

    fn live_peer(&mut self, peer: &PeerId, now: Instant) -> Result<&mut PeerRecord, Refusal> {
        let record = self.peers.get_mut(peer).ok_or_else(|| {
            refuse(
                ErrorCode::NotRegistered,
                "not registered (or expired): send Register first",
            )
        })?;
        record.last_seen = now;
        Ok(record)
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
        let record = self.live_peer(&peer, now)?;
        let id = manifest.id();
        if !record.files.contains(&id) && record.files.len() >= MAX_FILES_PER_PEER {
            return Err(refuse(
                ErrorCode::Limit,
                format!("a peer may announce at most {MAX_FILES_PER_PEER} files"),
            ));
        }
        record.files.insert(id);
        let is_new = match self.add_manifest(manifest) {
            Ok(is_new) => is_new,
            Err(refusal) => {
                self.peers.get_mut(&peer).expect("checked above").files.remove(&id);
                return Err(refusal);
            }
        };
        self.files
            .get_mut(&id)
            .expect("just added")
            .holders
            .insert(peer, Holding { chunks, meta });
        Ok((id, is_new))
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
        let held = self
            .files
            .get_mut(&file)
            .and_then(|f| f.holders.get_mut(&peer))
            .map(|h| &mut h.chunks)
            .expect("invariant: peer files match holders");
        if let Some(bad) = chunks.iter().find(|&&c| c >= held.len()) {
            return Err(refuse(ErrorCode::Invalid, format!("chunk {bad} is out of range")));
        }
        chunks.iter().for_each(|&c| {
            held.set(c);
        });
        Ok(())
    }

    /// `peer` no longer holds `file`.
    pub fn withdraw(&mut self, peer: PeerId, file: FileId, now: Instant) -> Result<(), Refusal> {
        let record = self.live_peer(&peer, now)?;
        record.files.remove(&file);
        if let Some(f) = self.files.get_mut(&file) {
            f.holders.remove(&peer);
        }
        Ok(())
    }

    /// Refreshes `peer`.
    pub fn keepalive(&mut self, peer: PeerId, now: Instant) -> Result<(), Refusal> {
        self.live_peer(&peer, now).map(|_| ())
    }

    /// Drops `peer` and everything it held. Returns true if it was known.
    pub fn remove_peer(&mut self, peer: &PeerId) -> bool {
        let Some(record) = self.peers.remove(peer) else {
            return false;
        };
        for file in record.files {
            if let Some(f) = self.files.get_mut(&file) {
                f.holders.remove(peer);
            }
        }
        true
    }

    /// Drops every peer silent for longer than the timeout; returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        let dead: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_seen) > self.peer_timeout)
            .map(|(id, _)| *id)
            .collect();
        for peer in &dead {
            self.remove_peer(peer);
        }
        dead
    }

    fn entry(&self, id: &FileId, record: &FileRecord) -> CatalogueEntry {
        let mut available = Bitfield::new(record.manifest.chunk_count);
        for holding in record.holders.values() {
            available.union_with(&holding.chunks);
        }
        CatalogueEntry {
            file: *id,
            name: record.manifest.name.clone(),
            size: record.manifest.size,
            chunk_count: record.manifest.chunk_count,
            holders: record.holders.values().filter(|h| h.chunks.count() > 0).count() as u32,
            available: available.count(),
            meta: record.meta(),
        }
    }

    fn entries<'a>(&'a self, keep: impl Fn(&FileRecord) -> bool + 'a) -> Vec<CatalogueEntry> {
        let mut entries: Vec<CatalogueEntry> = self
            .files
            .iter()
            .filter(|(_, r)| keep(r))
            .map(|(id, r)| self.entry(id, r))
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.file.cmp(&b.file)));
        entries.truncate(MAX_CATALOGUE);
        entries
    }

    /// The catalogue, sorted by name.
    pub fn list(&self) -> Vec<CatalogueEntry> {
        self.entries(|_| true)
    }

    /// Files whose name equals `query` (`exact`) or contains it, ignoring ASCII case for
    /// substring matches.
    pub fn search(&self, query: &str, exact: bool) -> Vec<CatalogueEntry> {
        let needle = query.to_ascii_lowercase();
        self.entries(move |r| {
            if exact {
                r.manifest.name == query
            } else {
                r.manifest.name.to_ascii_lowercase().contains(&needle)
            }
        })
    }

    /// Files whose hex id starts with `prefix`.
    pub fn resolve(&self, prefix: &str) -> Vec<(FileId, String)> {
        let prefix = prefix.to_ascii_lowercase();
        let mut found: Vec<(FileId, String)> = self
            .files
            .iter()
            .filter(|(id, _)| id.to_string().starts_with(&prefix))
            .map(|(id, r)| (*id, r.manifest.name.clone()))
            .take(MAX_CATALOGUE)
            .collect();
        found.sort();
        found
    }

    /// A file's manifest, its live holders (those holding at least one chunk) and the
    /// metadata of the newest of them.
    pub fn locate(&self, file: &FileId) -> Option<(Arc<Manifest>, Vec<Holder>, FileMeta)> {
        let record = self.files.get(file)?;
        let holders = record
            .holders
            .iter()
            .filter(|(_, holding)| holding.chunks.count() > 0)
            .filter_map(|(peer, holding)| {
                self.peers.get(peer).map(|p| Holder {
                    peer: *peer,
                    addr: p.addr,
                    chunks: holding.chunks.clone(),
                })
            })
            .take(MAX_HOLDERS)
            .collect();
        Some((record.manifest.clone(), holders, record.meta()))
    }

    /// Number of live peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Checks the invariants in the module doc; for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        for (peer, record) in &self.peers {
            for file in &record.files {
                assert!(self.files[file].holders.contains_key(peer));
            }
        }
        for (id, file) in &self.files {
            assert_eq!(file.manifest.id(), *id);
            for (peer, holding) in &file.holders {
                assert!(self.peers[peer].files.contains(id));
                assert_eq!(holding.chunks.len(), file.manifest.chunk_count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_proto::hashing::chunk_hash;

    fn manifest(name: &str, chunks: u32) -> Manifest {
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
    fn announce_locate_and_have() {
        let now = Instant::now();
        let mut t = TrackerState::new(Duration::from_secs(180));
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        let m = manifest("movies/a.mkv", 4);
        t.register(a, addr(1), now);
        t.register(b, addr(2), now);
        let (id, new) = t
            .announce(a, m.clone(), Bitfield::full(4), FileMeta::default(), now)
            .unwrap();
        assert!(new);
        let (_, again) = t.announce(b, m, Bitfield::new(4), FileMeta::default(), now).unwrap();
        assert!(!again);
        assert_eq!(t.locate(&id).unwrap().1.len(), 1, "b holds nothing yet");
        t.have(b, id, &[2], now).unwrap();
        let (_, holders, _) = t.locate(&id).unwrap();
        assert_eq!(holders.len(), 2);
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
    fn metadata_of_the_newest_live_holder_is_listed() {
        let now = Instant::now();
        let mut t = TrackerState::new(Duration::from_secs(10));
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
        t.register(a, addr(1), now);
        t.register(b, addr(2), now);
        let (id, _) = t.announce(a, m.clone(), Bitfield::full(2), older, now).unwrap();
        t.announce(b, m, Bitfield::full(2), newer, now).unwrap();
        assert_eq!(t.list()[0].meta, newer);
        assert_eq!(t.locate(&id).unwrap().2, newer);
        t.remove_peer(&b);
        assert_eq!(t.list()[0].meta, older, "a holder that left no longer counts");
        t.remove_peer(&a);
        assert_eq!(t.list()[0].meta, FileMeta::default());
    }

    #[test]
    fn peers_expire_and_leave() {
        let now = Instant::now();
        let mut t = TrackerState::new(Duration::from_secs(10));
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        let m = manifest("f", 2);
        t.register(a, addr(1), now);
        t.register(b, addr(2), now);
        let (id, _) = t
            .announce(a, m.clone(), Bitfield::full(2), FileMeta::default(), now)
            .unwrap();
        t.announce(b, m, Bitfield::full(2), FileMeta::default(), now).unwrap();
        t.keepalive(b, now + Duration::from_secs(8)).unwrap();
        assert_eq!(t.expire(now + Duration::from_secs(11)), vec![a]);
        assert_eq!(t.locate(&id).unwrap().1.len(), 1);
        assert_eq!(t.keepalive(a, now).unwrap_err().code, ErrorCode::NotRegistered);
        assert!(t.remove_peer(&b));
        assert!(t.locate(&id).unwrap().1.is_empty());
        assert_eq!(t.list().len(), 1, "the manifest stays in the catalogue");
        t.check_invariants();
    }

    #[test]
    fn refuses_bad_announcements() {
        let now = Instant::now();
        let mut t = TrackerState::new(Duration::from_secs(10));
        let a = PeerId([1; 32]);
        let m = manifest("f", 2);
        assert_eq!(
            t.announce(a, m.clone(), Bitfield::full(2), FileMeta::default(), now)
                .unwrap_err()
                .code,
            ErrorCode::NotRegistered
        );
        t.register(a, addr(1), now);
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
        let mut t = TrackerState::new(Duration::from_secs(10));
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        t.register(a, addr(1), now);
        t.register(b, addr(2), now);
        let one = manifest("f", 2);
        for i in 0..MAX_FILES_PER_PEER {
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
}
