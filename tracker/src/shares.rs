//! The shares' listings (see [`swarm_proto::share`]): per share, every path's current version
//! or tombstone, each stamped with the share version that set it, and signed by the share's
//! key. Changes reach [`Shares::update`] checked ([`swarm_proto::share::check_change`]: safe
//! name, the share key's signature, not stamped in the future).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use swarm_proto::protocol::{ErrorCode, Refusal, MAX_CATALOGUE_NAMES};
use swarm_proto::share::{ShareChange, ShareEntry, SharePage, MAX_SHARE_PAGE};
use swarm_proto::share_key::SignedChange;
use swarm_proto::{FileId, PeerId, ShareId};

/// Most paths (files and tombstones) in one share.
pub const MAX_SHARE_ENTRIES: usize = 1_000_000;
/// What a share costs, before its paths: charged to the address of the node that wrote to it
/// first.
pub const SHARE_COST: u64 = 1024;

/// What a path of a share costs: its entry (with signature), the path kept three times (the
/// entry, the map's key, the version index) and the bookkeeping around them. Charged to the
/// address of the node that added the path.
pub fn entry_cost(name: &str) -> u64 {
    384 + 3 * name.len() as u64
}

/// One share's listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareLog {
    /// Set when the share was first written to (milliseconds since the Unix epoch then).
    epoch: u64,
    /// The number of changes taken.
    version: u64,
    /// Every path's entry.
    entries: HashMap<String, ShareEntry>,
    /// Paths by the version of their entry.
    by_version: BTreeMap<u64, String>,
    /// What the share and its paths cost, by the address charged.
    charges: HashMap<IpAddr, u64>,
}

impl ShareLog {
    /// This log with its index rebuilt from its entries (see [`Shares::restore`]).
    fn made_whole(mut self) -> ShareLog {
        self.entries.retain(|name, entry| *name == entry.name);
        let mut by_version = BTreeMap::new();
        let mut entries: Vec<_> = self.entries.values().map(|e| (e.version, e.name.clone())).collect();
        entries.sort();
        for (version, name) in entries {
            match by_version.entry(version) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    self.entries.remove(&name);
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(name);
                }
            }
        }
        self.version = self.version.max(by_version.last_key_value().map_or(0, |(v, _)| *v));
        self.by_version = by_version;
        self
    }
}

/// Who sent changes: the node, and the address it pays from.
#[derive(Debug, Clone, Copy)]
pub struct Author {
    /// The node.
    pub peer: PeerId,
    /// Its address, charged for what it adds.
    pub ip: IpAddr,
}

/// Every share.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Shares {
    logs: HashMap<ShareId, ShareLog>,
}

impl Shares {
    /// Takes `changes` to `share` from `author`, in order, leaving out those
    /// that lose to the current entry and puts of files `listed` does not know under that name
    /// (`listed` gives a listed file's name and size). A new share, and each new path, is
    /// paid for with `charge` (the address's budget), which may refuse. `epoch` stamps a
    /// share written to for the first time. Returns how many were taken.
    pub fn update(
        &mut self,
        author: Author,
        share: &ShareId,
        changes: Vec<SignedChange>,
        epoch: u64,
        listed: impl Fn(&FileId) -> Option<(String, u64)>,
        mut charge: impl FnMut(u64) -> Result<(), Refusal>,
    ) -> Result<usize, Refusal> {
        let mut taken = 0;
        for signed in changes {
            let existing = self
                .logs
                .get(share)
                .and_then(|log| log.entries.get(signed.change.name()));
            if existing.is_some_and(|entry| !entry.is_replaced_by(&signed.change)) {
                continue;
            }
            let size = match &signed.change {
                ShareChange::Put { name, file, .. } => match listed(file) {
                    Some((listed_name, size)) if listed_name == *name => size,
                    _ => continue,
                },
                // A path never listed has nothing to delete.
                ShareChange::Delete { .. } if existing.is_none() => continue,
                ShareChange::Delete { .. } => 0,
            };
            if existing.is_none() {
                let mut cost = entry_cost(signed.change.name());
                match self.logs.get(share) {
                    Some(log) if log.entries.len() >= MAX_SHARE_ENTRIES => {
                        return Err(Refusal::new(
                            ErrorCode::Limit,
                            format!("a share holds at most {MAX_SHARE_ENTRIES} paths"),
                        ))
                    }
                    Some(_) => {}
                    None => cost += SHARE_COST,
                }
                charge(cost)?;
                let log = self.logs.entry(*share).or_insert_with(|| ShareLog {
                    epoch,
                    version: 0,
                    entries: HashMap::new(),
                    by_version: BTreeMap::new(),
                    charges: HashMap::new(),
                });
                *log.charges.entry(author.ip).or_default() += cost;
            }
            let log = self.logs.get_mut(share).expect("made above for a new path");
            // Only a hostile snapshot gets near the end of the numbers.
            log.version = log
                .version
                .checked_add(1)
                .ok_or_else(|| Refusal::new(ErrorCode::Limit, "this share has run out of version numbers"))?;
            let entry = ShareEntry::new(signed, log.version, author.peer, size);
            if let Some(old) = log.entries.insert(entry.name.clone(), entry.clone()) {
                log.by_version.remove(&old.version);
            }
            log.by_version.insert(entry.version, entry.name);
            taken += 1;
        }
        Ok(taken)
    }

    /// What the paths of `changes` not yet in `share` would cost, with the share if it is new.
    pub fn new_paths_cost(&self, share: &ShareId, changes: &[SignedChange]) -> u64 {
        let log = self.logs.get(share);
        let mut names = std::collections::HashSet::new();
        let paths: u64 = changes
            .iter()
            .map(|c| c.change.name())
            .filter(|name| log.is_none_or(|log| !log.entries.contains_key(*name)) && names.insert(*name))
            .map(entry_cost)
            .sum();
        match log {
            None if paths > 0 => paths + SHARE_COST,
            _ => paths,
        }
    }

    /// What the shares cost, by the address charged (to charge again after a restore).
    pub fn charges(&self) -> HashMap<IpAddr, u64> {
        let mut all: HashMap<IpAddr, u64> = HashMap::new();
        for log in self.logs.values() {
            for (ip, bytes) in &log.charges {
                let sum = all.entry(*ip).or_default();
                *sum = sum.saturating_add(*bytes);
            }
        }
        all
    }

    /// The entries of `share` changed after version `since`, in version order, a page at a
    /// time. An unknown share is empty, at epoch 0.
    pub fn changes(&self, share: &ShareId, since: u64) -> SharePage {
        let Some(log) = self.logs.get(share) else {
            return SharePage::default();
        };
        let mut entries = Vec::new();
        let mut names = 0;
        let mut more = false;
        for (_, name) in log.by_version.range(since.saturating_add(1)..) {
            if entries.len() == MAX_SHARE_PAGE || names + name.len() > MAX_CATALOGUE_NAMES {
                more = true;
                break;
            }
            names += name.len();
            entries.push(log.entries[name].clone());
        }
        SharePage {
            epoch: log.epoch,
            version: log.version,
            entries,
            more,
        }
    }

    /// Every share, as plain data.
    pub fn snapshot(&self) -> Vec<(ShareId, ShareLog)> {
        self.logs.iter().map(|(id, log)| (*id, log.clone())).collect()
    }

    /// The shares of a [`Shares::snapshot`]. A snapshot comes from disk or a shared Redis,
    /// so each log is made whole again rather than trusted: entries filed under another name
    /// are dropped, the version index is rebuilt from the entries (an entry whose version is
    /// taken is dropped too), and the share's version is at least its newest entry's.
    pub fn restore(saved: Vec<(ShareId, ShareLog)>) -> Shares {
        Shares {
            logs: saved.into_iter().map(|(id, log)| (id, log.made_whole())).collect(),
        }
    }

    /// Gives every share a new epoch, after a restart from a save that may have missed the
    /// last few changes: nodes then list each share from the start once, instead of missing
    /// changes numbered again.
    pub fn new_epoch(&mut self, epoch: u64) {
        for log in self.logs.values_mut() {
            log.epoch = epoch;
        }
    }

    /// How many shares there are.
    pub fn len(&self) -> usize {
        self.logs.len()
    }

    /// Are there none?
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_proto::share::ShareState;
    use swarm_proto::share_key::WriteKey;
    use swarm_proto::FileMeta;

    fn put(key: &WriteKey, name: &str, id: u8, modified_ns: u64) -> SignedChange {
        key.sign(ShareChange::Put {
            name: name.into(),
            file: FileId([id; 32]),
            meta: FileMeta {
                modified_ns,
                replaces: None,
            },
        })
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const AUTHOR: Author = Author {
        peer: PeerId([7; 32]),
        ip: IP,
    };

    fn free(_: u64) -> Result<(), Refusal> {
        Ok(())
    }

    /// Files 1 to 9 are listed under "a", 10 and up under "b".
    fn listed(file: &FileId) -> Option<(String, u64)> {
        Some((if file.0[0] < 10 { "a" } else { "b" }.into(), 3))
    }

    #[test]
    fn changes_are_paged_by_version_and_losers_left_out() {
        let key = WriteKey::generate();
        let share = key.id();
        let mut shares = Shares::default();
        let taken = shares
            .update(
                AUTHOR,
                &share,
                vec![put(&key, "a", 1, 10), put(&key, "b", 10, 10), put(&key, "a", 2, 5)],
                99,
                listed,
                free,
            )
            .unwrap();
        assert_eq!(taken, 2, "the older version of a loses");
        let page = shares.changes(&share, 0);
        assert_eq!((page.epoch, page.version, page.entries.len()), (99, 2, 2));
        assert!(
            page.entries.iter().all(|e| e.signed().verify(&share)),
            "entries keep their signatures"
        );
        // A put under the wrong name is left out; a newer version of a is taken.
        assert_eq!(
            shares
                .update(AUTHOR, &share, vec![put(&key, "a", 11, 50)], 0, listed, free)
                .unwrap(),
            0
        );
        assert_eq!(
            shares
                .update(AUTHOR, &share, vec![put(&key, "a", 3, 50)], 0, listed, free)
                .unwrap(),
            1
        );
        let page = shares.changes(&share, 2);
        assert_eq!(page.entries.len(), 1);
        assert_eq!((page.entries[0].name.as_str(), page.entries[0].version), ("a", 3));
        // A deletion of the current version takes; the path's old version leaves the log.
        let delete = key.sign(ShareChange::Delete {
            name: "a".into(),
            was: FileId([3; 32]),
            deleted_ns: 60,
        });
        assert_eq!(shares.update(AUTHOR, &share, vec![delete], 0, listed, free).unwrap(), 1);
        let all = shares.changes(&share, 0);
        let versions: Vec<u64> = all.entries.iter().map(|e| e.version).collect();
        assert_eq!(versions, vec![2, 4]);
        assert!(matches!(
            all.entries[1].state,
            ShareState::Deleted { deleted_ns: 60, .. }
        ));
        // Replaying the versions it replaced changes nothing.
        let replays = vec![put(&key, "a", 1, 10), put(&key, "a", 3, 50)];
        assert_eq!(shares.update(AUTHOR, &share, replays, 0, listed, free).unwrap(), 0);
        // Other shares see none of it.
        assert_eq!(shares.changes(&WriteKey::generate().id(), 0), SharePage::default());
        assert_eq!(Shares::restore(shares.snapshot()), shares);
    }

    #[test]
    fn new_shares_and_paths_are_charged_and_refused_past_the_budget() {
        let key = WriteKey::generate();
        let mut shares = Shares::default();
        let mut spent = 0;
        let mut budget = |cost: u64| {
            if spent + cost > 2000 {
                return Err(Refusal::new(ErrorCode::Limit, "full"));
            }
            spent += cost;
            Ok(())
        };
        let taken = shares
            .update(AUTHOR, &key.id(), vec![put(&key, "a", 1, 10)], 1, listed, &mut budget)
            .unwrap();
        assert_eq!(taken, 1);
        assert_eq!(shares.charges()[&IP], SHARE_COST + entry_cost("a"));
        // A new version of a path costs nothing more; an update that takes nothing makes no share.
        shares
            .update(AUTHOR, &key.id(), vec![put(&key, "a", 2, 20)], 1, listed, &mut budget)
            .unwrap();
        let other = WriteKey::generate();
        shares
            .update(
                AUTHOR,
                &other.id(),
                vec![put(&other, "a", 11, 10)],
                1,
                listed,
                &mut budget,
            )
            .unwrap();
        assert_eq!(shares.len(), 1, "no share for an update that took nothing");
        // Past the budget: refused.
        let refused = shares.update(
            AUTHOR,
            &other.id(),
            vec![put(&other, "a", 3, 10)],
            1,
            listed,
            &mut budget,
        );
        assert!(refused.is_err());
        assert_eq!(shares.len(), 1);
    }

    /// Found by the shared_log fuzz target: a snapshot (from a Redis anyone on its network
    /// may write) with charges that overflow when summed, an index naming a path that is not
    /// there, and the last version number. It is restored whole and nothing panics.
    #[test]
    fn a_hostile_snapshot_is_made_whole() {
        let key = WriteKey::generate();
        let share = key.id();
        let mut shares = Shares::default();
        let changes = vec![put(&key, "a", 1, 10), put(&key, "b", 10, 10)];
        shares.update(AUTHOR, &share, changes, 1, listed, free).unwrap();
        let mut saved = shares.snapshot();
        let mut copy = saved[0].clone();
        copy.0 = WriteKey::generate().id();
        saved.push(copy);
        for (_, log) in &mut saved {
            log.charges.insert(IP, u64::MAX);
            log.by_version.insert(77, "nowhere".into());
            log.version = u64::MAX;
        }
        let mut b = saved[0].1.entries["b"].clone();
        b.version = 1;
        saved[0].1.entries.insert("b".into(), b);
        let mut restored = Shares::restore(saved);
        assert_eq!(restored.charges()[&IP], u64::MAX);
        let page = restored.changes(&share, 0);
        let names: Vec<_> = page.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names.len(),
            1,
            "one of the two entries at version 1 is dropped: {names:?}"
        );
        let refused = restored.update(AUTHOR, &share, vec![put(&key, "a", 2, 20)], 1, listed, free);
        assert!(refused.unwrap_err().message.contains("version numbers"));
    }
}
