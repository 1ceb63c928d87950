//! Small files of a folder fetched many per request ([`PeerRequest::GetSmallFiles`]).
//!
//! Fetched one by one, a file of a few bytes costs a tracker request, a connection with its
//! handshake, a watch, a chunk request and a sync of its own: a folder of tiny files went at
//! about 500 files a second. Here a batch of up to [`MAX_SMALL_FILES`] files costs one request
//! on one connection per holder. Trust is unchanged: each manifest is checked against the
//! file's id and each file against its manifest before a byte is written, each file is written
//! under its hidden partial name, given its time and mode, synced, and only then renamed into
//! place, never over anything. A holder that sends something that does not match is not asked
//! again; whatever a batch did not bring (not held there, a local error, a lie, a lost
//! connection) is left for the usual fetch, file by file.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use futures_util::stream::{self, StreamExt};
use quinn::{Connection, RecvStream};
use swarm_proto::collection::Entry;
use swarm_proto::protocol::{self, CloseCode, Holder, PeerRequest, PeerResponse, MAX_SMALL_FILE, MAX_SMALL_FILES};
use swarm_proto::transport;
use swarm_proto::{Bitfield, FileMeta, Manifest};
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::fetch::FetchReport;
use crate::node::Node;
use crate::out_dir::{self, Dir, Entry as DirEntry};
use crate::progress::Progress;
use crate::traversal;

/// Batches asked for at once, over all holders.
const BATCHES_AT_ONCE: usize = 4;
/// Holders of the folder asked for batches (more add connections, not speed).
const HOLDERS_USED: usize = 4;
/// How long a holder has for each file of a batch: a silent one leaves the rest of the batch to
/// the usual fetch.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Largest answer frame read: a manifest of one chunk and its name.
const MAX_ANSWER: u32 = 64 * 1024;

/// A file of the folder to fetch.
pub(crate) struct Wanted {
    /// Its path in the folder, id, size, mode and time.
    pub entry: Entry,
    /// What it is held and announced with.
    pub meta: FileMeta,
    /// The file takes the entry's mode (else the usual one for new files).
    pub set_mode: bool,
    /// Its share of the folder's progress.
    pub progress: Arc<Progress>,
}

/// What fetching small files did.
pub(crate) struct Outcome {
    /// Files written, with their reports.
    pub done: Vec<(Wanted, FetchReport)>,
    /// Files left for the usual fetch.
    pub left: Vec<Wanted>,
}

/// Can a file of `size` bytes come in a batch: a file small enough, not empty (that needs no peer)?
pub(crate) fn is_small(size: u64) -> bool {
    size > 0 && size <= MAX_SMALL_FILE
}

/// Fetches `wanted` (small files, each listed once, see [`is_small`]) from `holders` into
/// `root`, in batches; see the module doc.
pub(crate) async fn fetch(node: &Node, root: &Arc<Dir>, mut holders: Vec<Holder>, wanted: Vec<Wanted>) -> Outcome {
    // Complete holders first: they have every file.
    holders.sort_by_key(|h| !h.complete);
    holders.truncate(HOLDERS_USED);
    let (Ok(session), false) = (node.session(), holders.is_empty()) else {
        return Outcome {
            done: Vec::new(),
            left: wanted,
        };
    };
    let links: Vec<Link> = holders.into_iter().map(Link::new).collect();
    let mut batches = Vec::new();
    let mut wanted = wanted.into_iter().peekable();
    while wanted.peek().is_some() {
        batches.push(wanted.by_ref().take(MAX_SMALL_FILES).collect::<Vec<_>>());
    }
    let (links, root) = (&links, root);
    let results = stream::iter(batches.into_iter().enumerate())
        .map(|(i, batch)| async move {
            // Its turn's holder, or the next that can be reached and has not lied.
            for k in 0..links.len() {
                let link = &links[(i + k) % links.len()];
                if let Some(connection) = link.connect(node, session).await {
                    return fetch_batch(node, root, link, &connection, batch).await;
                }
            }
            (Vec::new(), batch)
        })
        .buffer_unordered(BATCHES_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    for link in links {
        if let Some(Some(connection)) = link.connection.get() {
            connection.close(CloseCode::Done.code(), b"done");
        }
    }
    let mut outcome = Outcome {
        done: Vec::new(),
        left: Vec::new(),
    };
    for (done, left) in results {
        outcome.done.extend(done);
        outcome.left.extend(left);
    }
    outcome
}

/// A holder asked for batches: its connection, made once, and whether it lied.
struct Link {
    holder: Holder,
    connection: OnceCell<Option<Connection>>,
    lied: AtomicBool,
}

impl Link {
    fn new(holder: Holder) -> Link {
        Link {
            holder,
            connection: OnceCell::new(),
            lied: AtomicBool::new(false),
        }
    }

    /// The connection to the holder, unless it could not be reached, lied, or closed the
    /// connection (a peer of an older build does, at the request it does not know).
    async fn connect(&self, node: &Node, session: &crate::session::Session) -> Option<Connection> {
        if self.lied.load(Ordering::Relaxed) {
            return None;
        }
        let reach = || async {
            let (peer, addrs) = (self.holder.peer, self.holder.addrs());
            match traversal::reach(node.transport(), session, peer, &addrs).await {
                Ok(reached) => Some(reached.connection),
                Err(e) => {
                    debug!(peer = %peer.short(), "not reached for small files: {e}");
                    None
                }
            }
        };
        let connection = self.connection.get_or_init(reach).await;
        connection.clone().filter(|c| c.close_reason().is_none())
    }
}

/// A file received and checked, not yet written.
struct Received {
    wanted: Wanted,
    manifest: Arc<Manifest>,
    data: Vec<u8>,
}

/// One batch from `link`: the files received, written and held, and those left.
async fn fetch_batch(
    node: &Node,
    root: &Arc<Dir>,
    link: &Link,
    connection: &Connection,
    batch: Vec<Wanted>,
) -> (Vec<(Wanted, FetchReport)>, Vec<Wanted>) {
    let started = Instant::now();
    let (received, mut left) = receive(node, link, connection, batch).await;
    let peer = link.holder.peer;
    let root = root.clone();
    let written = tokio::task::spawn_blocking(move || write_all(&root, received)).await;
    let Ok((written, unwritten)) = written else {
        return (Vec::new(), left);
    };
    left.extend(unwritten);
    let mut done = Vec::with_capacity(written.len());
    for (received, path, already_complete) in written {
        let wanted = received.wanted;
        let (entry, meta) = (&wanted.entry, wanted.meta);
        let held = node
            .store()
            .add(received.manifest.clone(), path.clone(), Bitfield::full(1), meta);
        if let Ok(session) = node.session() {
            session.announce_later(held);
        }
        wanted.progress.set_total(entry.size);
        wanted.progress.advance(entry.size);
        wanted.progress.set_peers(u64::from(!already_complete));
        let report = FetchReport {
            id: entry.file,
            manifest: received.manifest,
            path,
            already_complete,
            meta,
            resumed_chunks: 0,
            received: if already_complete {
                HashMap::new()
            } else {
                HashMap::from([(peer, entry.size)])
            },
            banned: Vec::new(),
            elapsed: started.elapsed(),
        };
        done.push((wanted, report));
    }
    (done, left)
}

/// Asks `link` for the files of `batch` and checks what it sends: the files received, and those
/// not (with every file after a lie or a failure).
async fn receive(
    node: &Node,
    link: &Link,
    connection: &Connection,
    batch: Vec<Wanted>,
) -> (Vec<Received>, Vec<Wanted>) {
    let files = batch.iter().map(|wanted| wanted.entry.file).collect();
    let request = PeerRequest::GetSmallFiles { files };
    let asked = tokio::time::timeout(ANSWER_WITHIN, transport::exchange(connection, &request, MAX_ANSWER)).await;
    let (mut answer, mut recv) = match asked {
        Ok(Ok((answer, recv))) => (Some(answer), recv),
        Ok(Err(e)) => {
            debug!(peer = %link.holder.peer.short(), "no small files: {e}");
            return (Vec::new(), batch);
        }
        Err(_) => return (Vec::new(), batch),
    };
    let mut received = Vec::with_capacity(batch.len());
    let mut left = Vec::new();
    let mut batch = batch.into_iter();
    for wanted in batch.by_ref() {
        let first = answer.take();
        let one = tokio::time::timeout(ANSWER_WITHIN, receive_one(&mut recv, first, &wanted.entry)).await;
        match one {
            Ok(Ok(Some((manifest, data)))) => {
                if let Some(limit) = node.download_limit() {
                    limit.acquire(data.len()).await;
                }
                received.push(Received { wanted, manifest, data });
            }
            Ok(Ok(None)) => left.push(wanted),
            Ok(Err(Answer::Lie(why))) => {
                if !link.lied.swap(true, Ordering::Relaxed) {
                    warn!(peer = %link.holder.peer.short(), "holder sent {}: {why}; not asked again", wanted.entry.path);
                }
                left.push(wanted);
                break;
            }
            Ok(Err(Answer::Failed(why))) => {
                debug!(peer = %link.holder.peer.short(), "small files stopped: {why}");
                left.push(wanted);
                break;
            }
            Err(_) => {
                left.push(wanted);
                break;
            }
        }
    }
    let _ = recv.stop(CloseCode::Done.code());
    left.extend(batch);
    (received, left)
}

/// Why a batch stopped early.
enum Answer {
    /// The holder sent what does not match: it is not asked again.
    Lie(String),
    /// The stream broke.
    Failed(String),
}

/// Reads the answer for `entry` (its first frame is `first`, when already read): the file's
/// manifest and bytes, checked, or `None` when the holder did not send it.
async fn receive_one(
    recv: &mut RecvStream,
    first: Option<PeerResponse>,
    entry: &Entry,
) -> std::result::Result<Option<(Arc<Manifest>, Vec<u8>)>, Answer> {
    let failed = |e: protocol::ProtocolError| Answer::Failed(e.to_string());
    let head = match first {
        Some(head) => head,
        None => protocol::read_frame(recv, MAX_ANSWER).await.map_err(failed)?,
    };
    let manifest = match head {
        PeerResponse::Manifest(manifest) => manifest,
        PeerResponse::Error { .. } => return Ok(None),
        other => return Err(Answer::Lie(format!("an unexpected answer ({other:?})"))),
    };
    if let Err(e) = manifest.verify(&entry.file) {
        return Err(Answer::Lie(format!("a manifest that does not match its id ({e})")));
    }
    if manifest.size != entry.size || manifest.chunk_count != 1 {
        return Err(Answer::Lie(format!(
            "a file of {} bytes in {} chunks where the folder lists {} bytes",
            manifest.size, manifest.chunk_count, entry.size
        )));
    }
    let len = match protocol::read_frame(recv, MAX_ANSWER).await.map_err(failed)? {
        PeerResponse::Chunk { len } => len,
        other => return Err(Answer::Lie(format!("an unexpected answer ({other:?})"))),
    };
    if u64::from(len) != manifest.size {
        return Err(Answer::Lie(format!("{len} bytes for a file of {}", manifest.size)));
    }
    let mut data = vec![0; len as usize];
    recv.read_exact(&mut data)
        .await
        .map_err(|e| Answer::Failed(e.to_string()))?;
    if !manifest.chunk_matches(0, &data) {
        return Err(Answer::Lie("bytes that do not match the manifest".into()));
    }
    Ok(Some((Arc::new(manifest), data)))
}

/// Writes every file received under its partial name with its time and mode, syncs them, then
/// renames each into place (never over anything); a file found there already with the same
/// bytes is complete. Blocking. Returns the files in place, with their paths and whether they
/// were there already, and those not (to be fetched the usual way, which says why if it fails
/// too).
#[allow(clippy::type_complexity)]
fn write_all(root: &Dir, received: Vec<Received>) -> (Vec<(Received, PathBuf, bool)>, Vec<Wanted>) {
    let mut written = Vec::with_capacity(received.len());
    let mut left = Vec::new();
    let mut staged = Vec::with_capacity(received.len());
    for file in received {
        match stage(root, &file) {
            Ok(Staged::New(dir, name, handle)) => staged.push((file, dir, name, handle)),
            Ok(Staged::Complete(path)) => written.push((file, path, true)),
            Ok(Staged::Elsewhere) => left.push(file.wanted),
            Err(e) => {
                debug!("{e}; fetched the usual way");
                left.push(file.wanted);
            }
        }
    }
    for (file, dir, name, handle) in staged {
        let partial = out_dir::partial_name_for(&name);
        let synced = handle.sync_data().map_err(|e| Error::io(&dir.join(&partial), e));
        match synced.and_then(|()| dir.rename(&partial, &name, false)) {
            Ok(()) => written.push((file, dir.join(&name), false)),
            Err(e) => {
                debug!("{e}; fetched the usual way");
                let _ = dir.remove(&partial);
                left.push(file.wanted);
            }
        }
    }
    (written, left)
}

/// Where a file received stands on disk.
enum Staged {
    /// Written under its partial name (in that directory, to be renamed to that name).
    New(Dir, String, std::fs::File),
    /// Already at its name with the same bytes.
    Complete(PathBuf),
    /// Something else is at its name or partial name: the usual fetch knows what to do.
    Elsewhere,
}

/// Writes `file` under its partial name, with its time and mode, unless something is at its
/// name or partial name already (see [`Staged`]).
fn stage(root: &Dir, file: &Received) -> Result<Staged> {
    let entry = &file.wanted.entry;
    let (dir, name) = root.parent_of(&entry.path)?;
    let partial = out_dir::partial_name_for(name);
    match dir.entry(name)? {
        DirEntry::Missing => {}
        DirEntry::File(metadata) if metadata.len() == entry.size => {
            let mut there = dir.open_read(name)?;
            let mut bytes = Vec::with_capacity(file.data.len());
            there
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(&dir.join(name), e))?;
            if bytes != file.data {
                return Ok(Staged::Elsewhere);
            }
            if file.wanted.set_mode {
                set_time_and_mode(&there, &file.wanted).map_err(|e| Error::io(&dir.join(name), e))?;
            }
            return Ok(Staged::Complete(dir.join(name)));
        }
        _ => return Ok(Staged::Elsewhere),
    }
    if !matches!(dir.entry(&partial)?, DirEntry::Missing) {
        return Ok(Staged::Elsewhere);
    }
    let (mut handle, _) = dir.open_or_create(&partial)?;
    let written = handle
        .write_all(&file.data)
        .and_then(|()| set_time_and_mode(&handle, &file.wanted));
    if let Err(e) = written {
        let _ = dir.remove(&partial);
        return Err(Error::io(&dir.join(&partial), e));
    }
    Ok(Staged::New(dir, name.to_owned(), handle))
}

/// Gives `file` the entry's modification time, and its mode when the entry says so.
fn set_time_and_mode(file: &std::fs::File, wanted: &Wanted) -> std::io::Result<()> {
    let entry = &wanted.entry;
    if entry.modified_ns > 0 {
        file.set_modified(UNIX_EPOCH + Duration::from_nanos(entry.modified_ns))?;
    }
    if wanted.set_mode {
        file.set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o777 | 0o600))?;
    }
    Ok(())
}
