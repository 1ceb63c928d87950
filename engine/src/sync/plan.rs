//! What a sync does next, decided without I/O: the folder as last scanned and the share as
//! last listed go in, a [`Plan`] comes out (what to tell the tracker, what to fetch, what to
//! put away); the sync loop in the parent module only carries plans out.
//!
//! The rules that can destroy a user's files are decided here, and these invariants hold for
//! every input (checked by the property test below over random folders and shares):
//! 1. A node with the read-only key tells the tracker nothing.
//! 2. A file still being written (unsettled) or a collection's listing is never told,
//!    fetched, put away or deleted; a local file being downloaded is left alone.
//! 3. Each name gets at most one action: told, fetched, put away, or kept local.
//! 4. A local version is told only if the share has no version of its name or an older one
//!    (newest wins: later modification time, ties to the larger id), and never if it is
//!    stamped further in the future than the allowed clock skew.
//! 5. A deletion is told only for a file deleted here whose share version is the very one
//!    deleted, stamped after that version was modified (a deletion that raced an edit
//!    elsewhere loses).
//! 6. A local file is put away only for a tombstone at least as new as its modification
//!    time; a newer local file is told instead (on a writer).
//! 7. A download is the share's current version of a name, differs from the local one, and
//!    carries the local version it replaces; downloads come sorted by name.
//! 8. A read-only node does not fetch back what it deleted while the share still lists
//!    that very version.
//! 9. Every settled local version that differs from the share's gets an action (none is
//!    forgotten).
//!
//! Whether a download replaces the local version in place or keeps it as a conflict copy is
//! [`replacing`]'s call.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use swarm_proto::collection::Collection;
use swarm_proto::ids::FileId;
use swarm_proto::share::{ShareChange, ShareEntry, ShareState, MAX_CLOCK_SKEW};
use swarm_proto::FileMeta;

use crate::folder::{Origin, SeededFile};

/// A download planned from the share.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    /// The path in the share.
    pub name: String,
    /// The share's version.
    pub file: FileId,
    /// Its size.
    pub size: u64,
    /// Its modification time and the version it replaced.
    pub meta: FileMeta,
    /// The local version it replaces, if any.
    pub mine: Option<SeededFile>,
}

/// What the planner is given.
pub(super) struct Situation<'a> {
    /// The folder's files as last scanned (and settled).
    pub local: &'a [SeededFile],
    /// Names modified too recently to act on.
    pub unsettled: &'a [String],
    /// Names being downloaded, with the version being fetched.
    pub in_flight: &'a HashMap<String, FileId>,
    /// The share as last listed.
    pub share: &'a HashMap<String, ShareEntry>,
    /// Files deleted here since the last plan, by name.
    pub deleted_here: &'a HashMap<String, FileId>,
    /// On a read-only node: files deleted here that stay deleted, by name.
    pub kept_here: &'a HashMap<String, FileId>,
    /// This node holds the share's read-write key.
    pub writer: bool,
    /// Now, nanoseconds since the Unix epoch.
    pub now_ns: u64,
}

/// What a sync does next.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Changes to tell the tracker (to sign and send).
    pub tell: Vec<ShareChange>,
    /// Local files to move into `.swarm/versions/`, with the tombstone's time.
    pub put_away: Vec<(SeededFile, u64)>,
    /// Local changes that stay here (read-only node): the local version, or `None` for a
    /// deletion.
    pub local_only: Vec<(String, Option<FileId>)>,
    /// Deletions here to remember as kept on a read-only node.
    pub keep_deleted: Vec<(String, FileId)>,
    /// Local files stamped too far in the future to share yet.
    pub in_future: Vec<PathBuf>,
    /// Downloads, sorted by name.
    pub downloads: Vec<Planned>,
}

/// Decides what to do about every name of the folder and of the share.
pub(super) fn plan(now: &Situation) -> Plan {
    let unsettled: HashSet<&str> = now.unsettled.iter().map(String::as_str).collect();
    let mut plan = Plan::default();
    plan_local_files(now, &unsettled, &mut plan);
    plan_share_entries(now, &unsettled, &mut plan);
    plan.downloads.sort_by(|a, b| a.name.cmp(&b.name));
    plan
}

/// Each local file against the share: told if newer here, fetched over if newer there, put
/// away if deleted there since.
fn plan_local_files(now: &Situation, unsettled: &HashSet<&str>, plan: &mut Plan) {
    let latest_allowed = now.now_ns.saturating_add(MAX_CLOCK_SKEW.as_nanos() as u64);
    for mine in now.local {
        let name = mine.manifest.name.as_str();
        if unsettled.contains(name) || now.in_flight.contains_key(name) || Collection::is_collection_name(name) {
            continue;
        }
        let newer_here = match now.share.get(name).map(|e| &e.state) {
            None => true,
            Some(ShareState::Present { file, .. }) if *file == mine.id => false,
            Some(&ShareState::Present { file, meta, size }) => {
                let newer = mine.meta.is_newer(&mine.id, &meta, &file);
                if !newer {
                    plan.downloads.push(Planned {
                        name: name.to_owned(),
                        file,
                        size,
                        meta,
                        mine: Some(mine.clone()),
                    });
                }
                newer
            }
            Some(&ShareState::Deleted { deleted_ns, .. }) => {
                let newer = mine.meta.modified_ns > deleted_ns;
                if !newer {
                    plan.put_away.push((mine.clone(), deleted_ns));
                }
                newer
            }
        };
        if !newer_here {
            continue;
        }
        if !now.writer {
            plan.local_only.push((name.to_owned(), Some(mine.id)));
        } else if mine.meta.modified_ns > latest_allowed {
            plan.in_future.push(mine.path.clone());
        } else {
            plan.tell.push(ShareChange::Put {
                name: name.to_owned(),
                file: mine.id,
                meta: mine.meta,
            });
        }
    }
}

/// Each name the share lists and the folder lacks: fetched, or deleted in the share if it was
/// deleted here.
fn plan_share_entries(now: &Situation, unsettled: &HashSet<&str>, plan: &mut Plan) {
    let local: HashSet<&str> = now.local.iter().map(|f| f.manifest.name.as_str()).collect();
    for (name, entry) in now.share {
        let ShareState::Present { file, meta, size } = entry.state else {
            continue;
        };
        let name = name.as_str();
        if local.contains(name) || unsettled.contains(name) || Collection::is_collection_name(name) {
            continue;
        }
        if now.deleted_here.get(name) == Some(&file) {
            if now.writer {
                plan.tell.push(ShareChange::Delete {
                    name: name.to_owned(),
                    was: file,
                    // Stamped after the version it deletes, whatever this clock says.
                    deleted_ns: now.now_ns.max(meta.modified_ns.saturating_add(1)),
                });
            } else {
                plan.local_only.push((name.to_owned(), None));
                plan.keep_deleted.push((name.to_owned(), file));
            }
            continue;
        }
        if !now.writer && now.kept_here.get(name) == Some(&file) {
            // Deleted here on a read-only node: not fetched back until the share changes.
            continue;
        }
        plan.downloads.push(Planned {
            name: name.to_owned(),
            file,
            size,
            meta,
            mine: None,
        });
    }
}

/// How a download treats the local version it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replacing {
    /// Nobody edited it here (it was fetched and is unchanged since, or the winner says it
    /// replaced exactly this version): it is replaced, its old content kept in
    /// `.swarm/versions/`.
    InPlace,
    /// It is a local edit that lost: it is renamed as a conflict copy first.
    AsConflict,
}

/// Whether `planned` may replace `mine` in place.
pub(super) fn replacing(mine: &SeededFile, planned: &Planned) -> Replacing {
    if mine.origin == Origin::Fetched || planned.meta.replaces == Some(mine.id) {
        Replacing::InPlace
    } else {
        Replacing::AsConflict
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use swarm_proto::ids::PeerId;
    use swarm_proto::share_key::Signature;
    use swarm_proto::Manifest;

    use super::*;

    const NOW: u64 = 1_800_000_000_000_000_000;
    const NAMES: [&str; 5] = ["a", "b", "c/d", "e", "f.swarm-collection"];

    fn version(n: u8) -> FileId {
        FileId([n; 32])
    }

    fn local_file(name: &str, n: u8, modified_ns: u64, origin: Origin) -> SeededFile {
        let manifest = Manifest {
            name: name.to_owned(),
            hash: swarm_proto::Digest([n; 32]),
            size: 1,
            chunk_size: 1 << 16,
            chunk_count: 1,
            chunks: vec![swarm_proto::Digest([n; 32])],
        };
        SeededFile {
            id: version(n),
            manifest: Arc::new(manifest),
            path: PathBuf::from("/sync").join(name),
            meta: FileMeta {
                modified_ns,
                replaces: None,
            },
            origin,
        }
    }

    /// One name: the local file (version, modification time, origin), the share's entry
    /// (deleted, version, time) and flags (1 unsettled, 2 in flight or kept deleted, 4 the
    /// listed version replaces version 1 or was deleted here, 8 another version deleted here).
    type NameState = (Option<(u8, u64, u8)>, Option<(bool, u8, u64)>, u8);

    /// One name's state on each side, drawn from a few versions and times so that equal
    /// versions, equal times and tombstones all come up often.
    fn any_name_state() -> impl Strategy<Value = NameState> {
        let time = prop_oneof![
            Just(NOW - 10),
            Just(NOW),
            Just(NOW + 5),
            Just(NOW + 2 * MAX_CLOCK_SKEW.as_nanos() as u64)
        ];
        (
            proptest::option::of((1u8..4, time.clone(), 0u8..3)),
            proptest::option::of((any::<bool>(), 1u8..4, time)),
            0u8..16,
        )
    }

    struct World {
        local: Vec<SeededFile>,
        unsettled: Vec<String>,
        in_flight: HashMap<String, FileId>,
        share: HashMap<String, ShareEntry>,
        deleted_here: HashMap<String, FileId>,
        kept_here: HashMap<String, FileId>,
    }

    impl World {
        fn situation(&self, writer: bool) -> Situation<'_> {
            Situation {
                local: &self.local,
                unsettled: &self.unsettled,
                in_flight: &self.in_flight,
                share: &self.share,
                deleted_here: &self.deleted_here,
                kept_here: &self.kept_here,
                writer,
                now_ns: NOW,
            }
        }
    }

    fn world(states: Vec<NameState>) -> World {
        let mut w = World {
            local: Vec::new(),
            unsettled: Vec::new(),
            in_flight: HashMap::new(),
            share: HashMap::new(),
            deleted_here: HashMap::new(),
            kept_here: HashMap::new(),
        };
        for (name, (mine, listed, flags)) in NAMES.iter().zip(states) {
            let name = name.to_string();
            if let Some((n, modified, origin)) = mine {
                let origin = [Origin::Known, Origin::Hashed, Origin::Fetched][origin as usize];
                w.local.push(local_file(&name, n, modified, origin));
            }
            if let Some((deleted, n, at)) = listed {
                let state = if deleted {
                    ShareState::Deleted {
                        was: version(n),
                        deleted_ns: at,
                    }
                } else {
                    ShareState::Present {
                        file: version(n),
                        meta: FileMeta {
                            modified_ns: at,
                            replaces: (flags & 4 != 0).then(|| version(1)),
                        },
                        size: 1,
                    }
                };
                let entry = ShareEntry {
                    name: name.clone(),
                    version: 1,
                    by: PeerId([9; 32]),
                    state,
                    signature: Signature([0; 64]),
                };
                w.share.insert(name.clone(), entry);
            }
            if flags & 1 != 0 {
                w.unsettled.push(name.clone());
            }
            if flags & 2 != 0 && mine.is_some() {
                w.in_flight.insert(name.clone(), version(7));
            }
            if mine.is_none() {
                if let Some((false, n, _)) = listed {
                    // Deleted here: sometimes the listed version, sometimes another one.
                    if flags & 8 != 0 {
                        w.deleted_here.insert(name.clone(), version(n % 3 + 1));
                    } else if flags & 4 != 0 {
                        w.deleted_here.insert(name.clone(), version(n));
                    } else if flags & 2 != 0 {
                        w.kept_here.insert(name.clone(), version(n));
                    }
                }
            }
        }
        w
    }

    fn names_told(plan: &Plan) -> Vec<&str> {
        plan.tell
            .iter()
            .map(|c| match c {
                ShareChange::Put { name, .. } | ShareChange::Delete { name, .. } => name.as_str(),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn plans_keep_the_sync_invariants(states in proptest::collection::vec(any_name_state(), NAMES.len()), writer in any::<bool>()) {
            let w = world(states);
            let now = w.situation(writer);
            let plan = plan(&now);
            let latest_allowed = NOW + MAX_CLOCK_SKEW.as_nanos() as u64;
            let listed = |name: &str| w.share.get(name).map(|e| e.state.clone());
            let mine = |name: &str| w.local.iter().find(|f| f.manifest.name == name);

            // 1. A read-only node tells nothing.
            if !writer {
                prop_assert!(plan.tell.is_empty());
            }
            // 3. One action per name.
            let mut acted: Vec<&str> = names_told(&plan);
            acted.extend(plan.downloads.iter().map(|d| d.name.as_str()));
            acted.extend(plan.put_away.iter().map(|(f, _)| f.manifest.name.as_str()));
            acted.extend(plan.local_only.iter().map(|(n, _)| n.as_str()));
            let all = acted.len();
            acted.sort();
            acted.dedup();
            prop_assert_eq!(all, acted.len(), "a name got two actions: {:?}", plan);
            for name in &acted {
                // 2. Nothing unsettled, in flight (locally) or a collection's listing is acted on.
                prop_assert!(!w.unsettled.iter().any(|u| u == name));
                prop_assert!(!Collection::is_collection_name(name));
                prop_assert!(mine(name).is_none() || !w.in_flight.contains_key(*name));
            }
            for change in &plan.tell {
                match change {
                    // 4. Only newer versions, never stamped too far ahead.
                    ShareChange::Put { name, file, meta } => {
                        let local = mine(name).expect("a put is of a local file");
                        prop_assert_eq!(*file, local.id);
                        prop_assert!(meta.modified_ns <= latest_allowed);
                        match listed(name) {
                            None => {}
                            Some(ShareState::Present { file: theirs, meta: their_meta, .. }) => {
                                prop_assert!(local.meta.is_newer(&local.id, &their_meta, &theirs));
                            }
                            Some(ShareState::Deleted { deleted_ns, .. }) => prop_assert!(local.meta.modified_ns > deleted_ns),
                        }
                    }
                    // 5. Deletions of exactly the listed version, stamped after it.
                    ShareChange::Delete { name, was, deleted_ns } => {
                        prop_assert_eq!(w.deleted_here.get(name), Some(was));
                        let Some(ShareState::Present { file, meta, .. }) = listed(name) else {
                            return Err(TestCaseError::fail("a deletion of a name the share does not list"));
                        };
                        prop_assert_eq!(file, *was);
                        prop_assert!(*deleted_ns > meta.modified_ns);
                        prop_assert!(mine(name).is_none());
                    }
                }
            }
            // 6. Put away only for a tombstone at least as new.
            for (file, deleted_ns) in &plan.put_away {
                let Some(ShareState::Deleted { deleted_ns: listed_ns, .. }) = listed(&file.manifest.name) else {
                    return Err(TestCaseError::fail("put away without a tombstone"));
                };
                prop_assert_eq!(*deleted_ns, listed_ns);
                prop_assert!(file.meta.modified_ns <= listed_ns);
            }
            // 7. Downloads are the share's current versions, carrying what they replace.
            prop_assert!(plan.downloads.windows(2).all(|w| w[0].name < w[1].name));
            for d in &plan.downloads {
                let Some(ShareState::Present { file, meta, .. }) = listed(&d.name) else {
                    return Err(TestCaseError::fail("a download of a name the share does not list"));
                };
                prop_assert_eq!(d.file, file);
                prop_assert_eq!(d.meta, meta);
                match mine(&d.name) {
                    Some(local) => {
                        prop_assert_ne!(local.id, file);
                        prop_assert_eq!(d.mine.as_ref().map(|m| m.id), Some(local.id));
                        prop_assert!(meta.is_newer(&file, &local.meta, &local.id));
                    }
                    None => prop_assert!(d.mine.is_none()),
                }
                // 8. What a read-only node deleted stays deleted.
                if !writer {
                    prop_assert_ne!(w.kept_here.get(&d.name), Some(&file));
                    prop_assert_ne!(w.deleted_here.get(&d.name), Some(&file));
                }
            }
            // 9. Every settled local version that differs from the share's is acted on.
            for local in &w.local {
                let name = local.manifest.name.as_str();
                let idle = !w.unsettled.iter().any(|u| u == name) && !w.in_flight.contains_key(name);
                let same = matches!(listed(name), Some(ShareState::Present { file, .. }) if file == local.id);
                let too_new = writer && local.meta.modified_ns > latest_allowed;
                if idle && !same && !Collection::is_collection_name(name) {
                    prop_assert!(acted.contains(&name) || too_new, "{} forgotten: {:?}", name, plan);
                }
            }
        }

        #[test]
        fn a_local_edit_is_never_replaced_in_place(origin in 0u8..3, replaces_mine in any::<bool>()) {
            let origin = [Origin::Known, Origin::Hashed, Origin::Fetched][origin as usize];
            let mine = local_file("a", 1, NOW, origin);
            let planned = Planned {
                name: "a".into(),
                file: version(2),
                size: 1,
                meta: FileMeta { modified_ns: NOW + 1, replaces: replaces_mine.then_some(version(1)) },
                mine: Some(mine.clone()),
            };
            let expected = if origin == Origin::Fetched || replaces_mine { Replacing::InPlace } else { Replacing::AsConflict };
            prop_assert_eq!(replacing(&mine, &planned), expected);
        }
    }
}
