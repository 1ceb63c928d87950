//! What is read from the tracker's state: listings, searches, locates, holdings and peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
#[cfg(doc)]
use swarm_proto::protocol::CataloguePage;
use swarm_proto::protocol::{CatalogueEntry, Holder, Holding, MAX_CATALOGUE, MAX_HOLDERS};
use swarm_proto::{FileId, Manifest, PeerId};

use super::{Located, PeerSummary, TrackerState, HANDOUT_PERIOD};
use crate::file_record::FileRecord;

impl TrackerState {
    fn entries<'a>(&'a self, keep: impl Fn(&FileRecord) -> bool + 'a) -> Vec<CatalogueEntry> {
        let mut entries: Vec<CatalogueEntry> = self
            .files
            .iter()
            .filter(|(_, r)| keep(r))
            .map(|(id, r)| r.entry(*id))
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.file.cmp(&b.file)));
        entries
    }

    /// The whole catalogue, sorted by name, then id (paged on the wire: [`CataloguePage::of`]).
    pub fn list(&self) -> Vec<CatalogueEntry> {
        self.entries(|_| true)
    }

    /// Files whose name equals `query` (`exact`) or contains it, ignoring case (Unicode's
    /// simple lowercase: `Ä` finds `ä`) for substring matches.
    pub fn search(&self, query: &str, exact: bool) -> Vec<CatalogueEntry> {
        let needle = query.to_lowercase();
        self.entries(move |r| {
            if exact {
                r.manifest.name == query
            } else {
                r.manifest.name.to_lowercase().contains(&needle)
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

    /// A file's manifest and up to `want` of its live holders other than `asker`, picked at
    /// random, the least handed out of late first (see [`FileRecord::sample`]).
    pub fn locate(
        &mut self,
        file: &FileId,
        asker: &PeerId,
        want: usize,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Option<Located> {
        let origin = *self.origin.get_or_insert(now);
        let period = now.saturating_duration_since(origin).as_secs() / HANDOUT_PERIOD.as_secs();
        let record = self.files.get_mut(file)?;
        let picked = record.sample(asker, want.min(MAX_HOLDERS), period, rng);
        let holders = picked
            .into_iter()
            .filter_map(|(peer, complete)| {
                self.peers.get(&peer).map(|p| Holder {
                    peer,
                    addr: p.addr,
                    other_addrs: p.other_addrs.clone(),
                    complete,
                })
            })
            .collect();
        Some(Located {
            manifest: record.manifest.clone(),
            meta: record.meta(),
            holders,
            live: record.holder_count() as u32,
            retired: record.retired,
        })
    }

    /// Who holds which chunks of a file: up to [`MAX_HOLDERS`] holders, those with the most
    /// chunks first.
    pub fn holdings(&self, file: &FileId) -> Option<Vec<Holding>> {
        let record = self.files.get(file)?;
        let mut holdings: Vec<Holding> = record
            .holdings()
            .filter_map(|(peer, holding)| {
                self.peers.get(peer).map(|p| Holding {
                    peer: *peer,
                    addr: p.addr,
                    chunks: holding.chunks.clone(),
                })
            })
            .collect();
        holdings.sort_by_key(|h| std::cmp::Reverse(h.chunks.count()));
        holdings.truncate(MAX_HOLDERS);
        Some(holdings)
    }

    /// The address given out for `peer`, if it is registered.
    pub fn peer_addr(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.peers.get(peer).map(|p| p.addr)
    }

    /// Up to `most` live peers, by address.
    pub fn peers(&self, most: usize, now: Instant) -> Vec<PeerSummary> {
        let mut peers: Vec<PeerSummary> = self
            .peers
            .iter()
            .map(|(peer, record)| PeerSummary {
                peer: *peer,
                addr: record.addr,
                files: record.files.len(),
                silent: now.saturating_duration_since(record.last_seen),
            })
            .collect();
        peers.sort_by_key(|p| (p.addr, p.peer));
        peers.truncate(most);
        peers
    }

    /// A file's manifest, if it is in the catalogue.
    pub fn manifest(&self, file: &FileId) -> Option<Arc<Manifest>> {
        self.files.get(file).map(|r| r.manifest.clone())
    }

    /// Number of files in the catalogue.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Number of live peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
}
