//! Folders shared and fetched as one collection ([`swarm_proto::collection`]).
//!
//! A seeder writes the collection of a folder it shares into its state directory
//! (`collections/ID/NAME.swarm-collection`) and serves it like any file. A fetcher fetches
//! that file (verified like any other), decodes it, and fetches the files it lists, several at
//! once, into `OUT/NAME/PATH`; each file is checked against its id on the way as usual, then
//! given the collection's modification time and permission bits. Every file is resumable on
//! its own, so running the same fetch again goes on where it stopped.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use futures_util::stream::{self, StreamExt};
use swarm_proto::collection::{Collection, Entry};
use swarm_proto::protocol::Holder;
use swarm_proto::{FileId, FileMeta, Manifest};

use crate::error::{Error, Result};
use crate::fetch::{FetchOptions, FetchReport, Replace};
use crate::folder::SeededFile;
use crate::node::Node;
use crate::out_dir::{Dir, Entry as DirEntry};
use crate::progress::Progress;
use crate::small_files;

/// Largest collection file a fetcher reads into memory: 256 MiB, about two million files.
const MAX_COLLECTION_BYTES: u64 = 256 * 1024 * 1024;
/// Files of a folder fetched at once, unless told otherwise.
pub const DEFAULT_PARALLEL: usize = 8;
/// Where collections live inside a node's state directory.
const COLLECTIONS_DIR: &str = "collections";

/// A collection this node shares.
#[derive(Debug, Clone)]
pub struct SharedCollection {
    /// Its id: the id of the file that carries it.
    pub id: FileId,
    /// What it lists.
    pub collection: Arc<Collection>,
}

/// How a collection is fetched.
#[derive(Debug, Clone)]
pub struct CollectionOptions {
    /// The folder is recreated as `out_dir/NAME`.
    pub out_dir: PathBuf,
    /// Files fetched at once.
    pub parallel: usize,
    /// Sources, replacement, timeout and disk I/O for every file; its `out_dir`, `progress`
    /// and `label` are set per file.
    pub each: FetchOptions,
    /// Bytes of the chosen files, done and total.
    pub progress: Arc<Progress>,
}

/// What fetching a collection did.
#[derive(Debug)]
pub struct CollectionReport {
    /// Where the folder is: `out_dir/NAME`.
    pub root: PathBuf,
    /// Files fetched or found complete, in path order.
    pub done: Vec<(Entry, Option<FetchReport>)>,
    /// Files that failed, with why.
    pub failed: Vec<(Entry, Error)>,
    /// Time taken.
    pub elapsed: Duration,
}

impl CollectionReport {
    /// Bytes received from peers (not counting files found complete or resumed chunks).
    pub fn bytes_received(&self) -> u64 {
        self.done
            .iter()
            .flat_map(|(_, r)| r)
            .map(FetchReport::bytes_received)
            .sum()
    }
}

/// Entries of one file id (fetched one after the other), each with its progress.
type Group = (Vec<Entry>, Vec<Arc<Progress>>);

/// Writes the collection of `files` (shared from the folder called `name`) into the state
/// directory and serves it.
pub async fn share(node: &Node, name: &str, files: &[SeededFile], chunk_size: u32) -> Result<SharedCollection> {
    let mut entries = Vec::with_capacity(files.len());
    for file in files {
        let metadata = std::fs::metadata(&file.path).map_err(|e| Error::io(&file.path, e))?;
        entries.push(Entry {
            path: file.manifest.name.clone(),
            file: file.id,
            size: file.manifest.size,
            mode: metadata.permissions().mode() & 0o777,
            modified_ns: file.meta.modified_ns,
        });
    }
    let collection = Collection::new(name.to_owned(), entries).map_err(|e| Error::Collection {
        what: format!("the folder {name}"),
        why: e.to_string(),
    })?;
    let dir = node.state_dir().join(COLLECTIONS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let file_name = collection.file_name();
    let scratch = dir.join(format!(".{file_name}.{}.new", std::process::id()));
    std::fs::write(&scratch, collection.encode()).map_err(|e| Error::io(&scratch, e))?;
    let manifest = {
        let (scratch, file_name) = (scratch.clone(), file_name.clone());
        tokio::task::spawn_blocking(move || Manifest::from_file(&scratch, &file_name, chunk_size)).await??
    };
    let id = manifest.id();
    let home = dir.join(id.to_string());
    std::fs::create_dir_all(&home).map_err(|e| Error::io(&home, e))?;
    let path = home.join(&file_name);
    std::fs::rename(&scratch, &path).map_err(|e| Error::io(&path, e))?;
    let newest = collection.entries.iter().map(|e| e.modified_ns).max().unwrap_or(0);
    let meta = FileMeta {
        modified_ns: newest,
        replaces: None,
    };
    node.hold_complete(manifest, path, meta).await?;
    Ok(SharedCollection {
        id,
        collection: Arc::new(collection),
    })
}

/// The collection `id` names, fetched (verified) into the state directory, or `None` if `id`
/// names a plain file. For a plain file, its manifest and the holders located with it are left
/// in `each.located`, so that its fetch starts from them instead of locating it again (two
/// round trips to a holder, one of them a handshake).
pub async fn open(node: &Node, id: FileId, each: &mut FetchOptions) -> Result<Option<Collection>> {
    let (manifest, mut located) = node.locate(id, &each.holders).await?;
    if !Collection::is_collection_name(&manifest.name) {
        located.manifest = Some(manifest);
        each.located = Some(located);
        return Ok(None);
    }
    if manifest.size > MAX_COLLECTION_BYTES {
        return Err(Error::Collection {
            what: id.to_string(),
            why: format!(
                "it is {} long; swarm reads collections of at most {}",
                crate::human(manifest.size),
                crate::human(MAX_COLLECTION_BYTES)
            ),
        });
    }
    let options = FetchOptions {
        out_dir: node.state_dir().join(COLLECTIONS_DIR).join(id.to_string()),
        replace: Replace::Always,
        progress: Arc::default(),
        label: Some(manifest.name.clone()),
        save_as: None,
        ..each.clone()
    };
    let report = node.fetch(id, options).await?;
    let bytes = std::fs::read(&report.path).map_err(|e| Error::io(&report.path, e))?;
    let collection = Collection::decode(&bytes).map_err(|e| Error::Collection {
        what: format!("{id} ({})", swarm_proto::name::printable(&manifest.name)),
        why: e.to_string(),
    })?;
    Ok(Some(collection))
}

/// Fetches `chosen` (entries of `collection`, whose id is `id`) into `options.out_dir/NAME`.
/// Entries with the same file id (one file listed under several paths) are fetched one after
/// the other, since a node downloads an id once at a time; the others several at once. A file
/// that fails does not stop the others: see [`CollectionReport::failed`]. The folder is on the
/// node's list of downloads ([`crate::downloads::Downloads::folders`]) while it is fetched.
pub async fn fetch(
    node: &Node,
    id: FileId,
    collection: &Collection,
    chosen: Vec<Entry>,
    options: CollectionOptions,
) -> Result<CollectionReport> {
    let started = Instant::now();
    let root = options.out_dir.join(&collection.name);
    let root_dir = Arc::new(Dir::open_root(&root)?);
    options.progress.set_total(chosen.iter().map(|e| e.size).sum());
    let listed = node
        .downloads()
        .begin_folder(id, &collection.name, chosen.len(), options.progress.clone())
        .ok_or_else(|| Error::AlreadyDownloading(format!("{}/", collection.name)))?;
    let mut by_id: BTreeMap<FileId, Vec<Entry>> = BTreeMap::new();
    for entry in chosen {
        by_id.entry(entry.file).or_default().push(entry);
    }
    let groups: Vec<Group> = by_id
        .into_values()
        .map(|entries| {
            let progress = entries.iter().map(|_| Arc::default()).collect();
            (entries, progress)
        })
        .collect();
    let all_progress: Vec<Arc<Progress>> = groups.iter().flat_map(|(_, p)| p.iter().cloned()).collect();
    let mut report = CollectionReport {
        root: root.clone(),
        done: Vec::new(),
        failed: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let groups = fetch_small_files(node, id, &root_dir, &options.each, groups, &listed, &mut report).await;
    let fetches = stream::iter(groups)
        .map(|(entries, progress)| {
            let (root, root_dir, options) = (&root, &root_dir, &options);
            async move {
                let mut results = Vec::with_capacity(entries.len());
                for (entry, progress) in entries.into_iter().zip(progress) {
                    let result = fetch_one(node, root, root_dir, &entry, &options.each, progress).await;
                    results.push((entry, result));
                }
                results
            }
        })
        .buffer_unordered(options.parallel.max(1))
        .flat_map(stream::iter);
    tokio::pin!(fetches);
    // The folder's progress is summed over its files on each tick only: summed on each file
    // done too, it cost O(files²) (3.6% of the fetcher's CPU at 10,000 files).
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let tally = |progress: &Progress| {
        progress.set_done(all_progress.iter().map(|p| p.done()).sum());
        progress.set_peers(all_progress.iter().map(|p| p.peers()).max().unwrap_or(0));
    };
    loop {
        tokio::select! {
            next = fetches.next() => match next {
                Some((entry, Ok(fetched))) => {
                    listed.file_done();
                    report.done.push((entry, fetched));
                }
                Some((_, Err(Error::Cancelled))) => return Err(Error::Cancelled),
                Some((entry, Err(e))) => report.failed.push((entry, e)),
                None => break,
            },
            _ = tick.tick() => tally(&options.progress),
        }
    }
    tally(&options.progress);
    report.done.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Fetches the small files listed once many per request from the folder's holders (see
/// [`small_files`]), into `report`; returns the other groups and the small files that did not
/// come, to be fetched one by one.
async fn fetch_small_files(
    node: &Node,
    id: FileId,
    root_dir: &Arc<Dir>,
    each: &FetchOptions,
    groups: Vec<Group>,
    listed: &crate::downloads::FolderRegistered,
    report: &mut CollectionReport,
) -> Vec<Group> {
    let (small, mut groups): (Vec<_>, Vec<_>) = groups
        .into_iter()
        .partition(|(entries, _)| entries.len() == 1 && small_files::is_small(entries[0].size));
    if small.is_empty() {
        return groups;
    }
    let wanted = small.into_iter().map(|(mut entries, mut progress)| {
        let entry = entries.remove(0);
        let meta = FileMeta {
            modified_ns: entry.modified_ns,
            replaces: None,
        };
        small_files::Wanted {
            entry,
            meta,
            set_mode: true,
            progress: progress.remove(0),
        }
    });
    let holders = folder_holders(node, id, each).await;
    let fetched = small_files::fetch(node, root_dir, holders, wanted.collect()).await;
    for (wanted, fetched) in fetched.done {
        listed.file_done();
        report.done.push((wanted.entry, Some(fetched)));
    }
    groups.extend(fetched.left.into_iter().map(|w| (vec![w.entry], vec![w.progress])));
    groups
}

/// Holders of the folder `id` that `each` lets the fetch use (none if they cannot be found).
async fn folder_holders(node: &Node, id: FileId, each: &FetchOptions) -> Vec<Holder> {
    match node.locate(id, &each.holders).await {
        Ok((_, located)) => located.holders.into_iter().filter(|h| each.sources.admits(h)).collect(),
        Err(e) => {
            tracing::debug!("no holders of the folder for its small files: {e}");
            Vec::new()
        }
    }
}

/// One file of a collection: fetched (or created, if empty), then given its time and mode.
async fn fetch_one(
    node: &Node,
    root: &Path,
    root_dir: &Dir,
    entry: &Entry,
    each: &FetchOptions,
    progress: Arc<Progress>,
) -> Result<Option<FetchReport>> {
    let (dir, file_name) = root_dir.parent_of(&entry.path)?;
    let fetched = if entry.size == 0 {
        create_empty(&dir, file_name, each.replace)?;
        None
    } else {
        let options = FetchOptions {
            out_dir: root.to_owned(),
            save_as: Some(entry.path.clone()),
            label: Some(entry.path.clone()),
            progress,
            ..each.clone()
        };
        let report = node.fetch(entry.file, options).await?;
        if report.manifest.size != entry.size {
            return Err(Error::Integrity(format!(
                "the collection says {} is {} bytes, but its file holds {}",
                report.path.display(),
                entry.size,
                report.manifest.size
            )));
        }
        Some(report)
    };
    let file = dir.open_read(file_name)?;
    let path = dir.join(file_name);
    if entry.modified_ns > 0 {
        file.set_modified(UNIX_EPOCH + Duration::from_nanos(entry.modified_ns))
            .map_err(|e| Error::io(&path, e))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o777 | 0o600))
        .map_err(|e| Error::io(&path, e))?;
    Ok(fetched)
}

/// An empty file needs no peer: its content is known.
fn create_empty(dir: &Dir, name: &str, replace: Replace) -> Result<()> {
    match dir.entry(name)? {
        DirEntry::File(metadata) if metadata.len() == 0 => return Ok(()),
        DirEntry::File(_) | DirEntry::Link if replace != Replace::Always => return Err(Error::Exists(dir.join(name))),
        DirEntry::Other => {
            return Err(Error::Unsafe {
                path: dir.join(name),
                why: "is in the way (not a regular file). Move it away and run again".into(),
            })
        }
        DirEntry::Link => dir.remove(name)?,
        DirEntry::File(_) | DirEntry::Missing => {}
    }
    let (file, _) = dir.open_or_create(name)?;
    file.set_len(0).map_err(|e| Error::io(&dir.join(name), e))
}
