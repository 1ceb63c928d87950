//! One file of the catalogue: its manifest, who holds what of it, and the figures listings
//! need, kept up to date as holdings change so that no request scans the holders.
//!
//! # Invariants
//! - `order` lists exactly the holders, each once, and `holdings[p].slot` is `p`'s index in it
//!   (so a holder can be picked at random, and removed, in constant time).
//! - `copies[c]` counts the holders holding chunk `c`; `available` counts the chunks with a
//!   copy; `nonempty` and `complete` count the holders with some and with every chunk (of an
//!   empty file, which has none, every holder counts as both).
//! - `meta` is the metadata of the holder (with chunks, or of an empty file) with the newest
//!   modification time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
use swarm_proto::protocol::CatalogueEntry;
use swarm_proto::{Bitfield, FileId, FileMeta, Manifest, PeerId};

/// What one peer holds of the file.
#[derive(Debug)]
pub struct Holding {
    /// The chunks it holds.
    pub chunks: Bitfield,
    /// What it announced with them.
    pub meta: FileMeta,
    /// A spot check found one of its chunks where it said.
    pub audited: bool,
    /// Its index in `order`.
    slot: usize,
    /// How often it was handed out lately, and in which period that was counted.
    handed: (u32, u64),
}

impl Holding {
    /// How often it was handed out lately, halved for every period since it was counted.
    fn recent_handouts(&self, period: u64) -> u32 {
        let (count, counted) = self.handed;
        count.checked_shr(period.saturating_sub(counted) as u32).unwrap_or(0)
    }
}

/// A file in the catalogue.
#[derive(Debug)]
pub struct FileRecord {
    /// Its manifest.
    pub manifest: Arc<Manifest>,
    /// Who pays for the manifest (nobody, if it was reloaded from disk).
    pub charged: Option<IpAddr>,
    /// Since when no live peer holds it.
    pub unheld_since: Option<Instant>,
    /// Its last holder withdrew it (replaced or deleted it), and nobody has held it since.
    pub retired: bool,
    holdings: HashMap<PeerId, Holding>,
    order: Vec<PeerId>,
    copies: Vec<u32>,
    available: u32,
    nonempty: u32,
    complete: u32,
    meta: FileMeta,
}

impl FileRecord {
    /// A file nobody holds yet.
    pub fn new(manifest: Arc<Manifest>, charged: Option<IpAddr>, now: Instant) -> FileRecord {
        FileRecord {
            copies: vec![0; manifest.chunk_count as usize],
            manifest,
            charged,
            unheld_since: Some(now),
            retired: false,
            holdings: HashMap::new(),
            order: Vec::new(),
            available: 0,
            nonempty: 0,
            complete: 0,
            meta: FileMeta::default(),
        }
    }

    /// What `peer` holds, if it holds anything.
    pub fn holding(&self, peer: &PeerId) -> Option<&Holding> {
        self.holdings.get(peer)
    }

    /// Every holder and what it holds.
    pub fn holdings(&self) -> impl Iterator<Item = (&PeerId, &Holding)> {
        self.holdings.iter()
    }

    /// Holders (with or without chunks yet).
    pub fn holder_count(&self) -> usize {
        self.order.len()
    }

    /// Holders with at least one chunk (of an empty file: every holder).
    pub fn nonempty(&self) -> u32 {
        self.nonempty
    }

    /// Has it no holder at all?
    pub fn is_unheld(&self) -> bool {
        self.order.is_empty()
    }

    /// Does a holding of `chunks` count as holding the file: some chunk of it, or, for an
    /// empty file, nothing (which is all of it)?
    fn counts(&self, chunks: &Bitfield) -> bool {
        chunks.count() > 0 || self.manifest.chunk_count == 0
    }

    /// Counts `chunks` in or out of the figures.
    fn count(&mut self, chunks: &Bitfield, up: bool) {
        let total = self.manifest.chunk_count;
        let held = chunks.count();
        for c in chunks.iter() {
            let copies = &mut self.copies[c as usize];
            if up {
                *copies += 1;
                if *copies == 1 {
                    self.available += 1;
                }
            } else {
                *copies -= 1;
                if *copies == 0 {
                    self.available -= 1;
                }
            }
        }
        let step = |n: &mut u32| if up { *n += 1 } else { *n -= 1 };
        let counts = self.counts(chunks);
        if counts {
            step(&mut self.nonempty);
        }
        if held == total && counts {
            step(&mut self.complete);
        }
    }

    /// `peer` holds `chunks`, announced with `meta` (replacing what it held before).
    pub fn hold(&mut self, peer: PeerId, chunks: Bitfield, meta: FileMeta) {
        let (audited, handed) = match self.release(&peer) {
            Some(old) => (old.audited, old.handed),
            None => (false, (0, 0)),
        };
        self.count(&chunks, true);
        if self.counts(&chunks) && meta.modified_ns >= self.meta.modified_ns {
            self.meta = meta;
        }
        self.order.push(peer);
        self.holdings.insert(
            peer,
            Holding {
                chunks,
                meta,
                audited,
                slot: self.order.len() - 1,
                handed,
            },
        );
        self.unheld_since = None;
        self.retired = false;
    }

    /// `peer` newly holds `chunks` too. Returns the first chunk out of range, if any (then
    /// nothing changed).
    pub fn add_chunks(&mut self, peer: &PeerId, chunks: &[u32]) -> Result<(), u32> {
        let total = self.manifest.chunk_count;
        if let Some(&bad) = chunks.iter().find(|&&c| c >= total) {
            return Err(bad);
        }
        let Some(holding) = self.holdings.get_mut(peer) else {
            return Ok(());
        };
        let before = holding.chunks.count();
        for &c in chunks {
            if !holding.chunks.get(c) {
                holding.chunks.set(c);
                self.copies[c as usize] += 1;
                if self.copies[c as usize] == 1 {
                    self.available += 1;
                }
            }
        }
        let after = holding.chunks.count();
        if before == 0 && after > 0 {
            self.nonempty += 1;
            if holding.meta.modified_ns >= self.meta.modified_ns {
                self.meta = holding.meta;
            }
        }
        if before < total && after == total {
            self.complete += 1;
        }
        Ok(())
    }

    /// `peer` no longer holds the file; returns what it held. The file becomes unheld as of
    /// `now` if it was the last holder.
    pub fn release_at(&mut self, peer: &PeerId, now: Instant) -> Option<Holding> {
        let holding = self.release(peer)?;
        if self.order.is_empty() {
            self.unheld_since = Some(now);
        }
        Some(holding)
    }

    fn release(&mut self, peer: &PeerId) -> Option<Holding> {
        let holding = self.holdings.remove(peer)?;
        self.order.swap_remove(holding.slot);
        if let Some(moved) = self.order.get(holding.slot) {
            self.holdings.get_mut(moved).expect("order lists holders").slot = holding.slot;
        }
        self.count(&holding.chunks, false);
        if holding.meta == self.meta {
            self.meta = self
                .holdings
                .values()
                .filter(|h| self.counts(&h.chunks))
                .map(|h| h.meta)
                .max_by_key(|m| m.modified_ns)
                .unwrap_or_default();
        }
        Some(holding)
    }

    /// Marks `peer`'s holding as spot-checked.
    pub fn mark_audited(&mut self, peer: &PeerId) {
        if let Some(holding) = self.holdings.get_mut(peer) {
            holding.audited = true;
        }
    }

    /// The catalogue entry of this file, known as `id`.
    pub fn entry(&self, id: FileId) -> CatalogueEntry {
        CatalogueEntry {
            file: id,
            name: self.manifest.name.clone(),
            size: self.manifest.size,
            chunk_count: self.manifest.chunk_count,
            holders: self.nonempty,
            available: self.available,
            meta: self.meta,
        }
    }

    /// The metadata its newest holder announced.
    pub fn meta(&self) -> FileMeta {
        self.meta
    }

    /// Up to `want` holders other than `asker`, picked at random and the least handed out of
    /// late first (so that no holder is given to everyone): of twice as many picked at random,
    /// those handed out least, with holders of some chunks before holders of none. Each one
    /// handed out is counted in `period` (counts halve with every later period). Returns each
    /// with whether it holds every chunk.
    pub fn sample(&mut self, asker: &PeerId, want: usize, period: u64, rng: &mut impl Rng) -> Vec<(PeerId, bool)> {
        let mut candidates: Vec<PeerId> = if self.order.len() <= want.saturating_mul(2) + 1 {
            self.order.clone()
        } else {
            let mut picked: Vec<PeerId> = (0..want * 2)
                .map(|_| self.order[rng.random_range(0..self.order.len())])
                .collect();
            picked.sort();
            picked.dedup();
            picked
        };
        candidates.retain(|p| p != asker);
        let key = |p: &PeerId| {
            let h = &self.holdings[p];
            (
                h.recent_handouts(period),
                h.chunks.count() == 0,
                rng_free_tiebreak(p, period),
            )
        };
        candidates.sort_by_cached_key(key);
        candidates.truncate(want);
        let total = self.manifest.chunk_count;
        candidates
            .into_iter()
            .map(|p| {
                let holding = self.holdings.get_mut(&p).expect("candidates are holders");
                holding.handed = (holding.recent_handouts(period).saturating_add(1), period);
                (p, holding.chunks.count() == total)
            })
            .collect()
    }

    /// Checks the invariants in the module doc; for tests.
    pub fn check_invariants(&self) {
        assert_eq!(self.order.len(), self.holdings.len());
        for (i, peer) in self.order.iter().enumerate() {
            assert_eq!(self.holdings[peer].slot, i);
        }
        let mut copies = vec![0u32; self.manifest.chunk_count as usize];
        for holding in self.holdings.values() {
            holding.chunks.iter().for_each(|c| copies[c as usize] += 1);
        }
        assert_eq!(copies, self.copies);
        assert_eq!(self.available as usize, copies.iter().filter(|&&n| n > 0).count());
        let with = |f: &dyn Fn(&Holding) -> bool| self.holdings.values().filter(|h| f(h)).count() as u32;
        assert_eq!(self.nonempty, with(&|h| self.counts(&h.chunks)));
        assert_eq!(
            self.complete,
            with(&|h| h.chunks.count() == self.manifest.chunk_count && self.counts(&h.chunks))
        );
        let newest = self
            .holdings
            .values()
            .filter(|h| self.counts(&h.chunks))
            .map(|h| h.meta.modified_ns)
            .max()
            .unwrap_or(0);
        assert_eq!(self.meta.modified_ns, newest);
    }
}

/// A tie-break that differs between holders and between periods, without a random number
/// generator: so that equally good holders are not always handed out in the same order.
fn rng_free_tiebreak(peer: &PeerId, period: u64) -> u64 {
    let bytes: [u8; 8] = peer.0[..8].try_into().expect("8 bytes");
    u64::from_le_bytes(bytes) ^ period.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
