//! A pull-through mirror of a container registry whose blobs travel through the swarm
//! (`swarm registry`): container runtimes pull from it as from any registry (the pull side of
//! the OCI distribution API, [`serve`]); image manifests, which are small, come from the
//! upstream registry each time, and blobs, which are large, come from the swarm.
//!
//! A blob is a swarm file named by its digest (`sha256:…`) kept in the mirror's folder. The
//! mirror asks the tracker for a file of that name and fetches it as any file (every chunk
//! verified against its manifest); only if no peer has it does it read it from the upstream,
//! and then only if the tracker gives it the origin lease for that digest
//! ([`crate::tracker_client::TrackerClient::lease_origin`]): many hosts wanting one blob at
//! once cause one upstream read, and the others fetch it from the reader and from each other.
//! Whatever its source, a blob's SHA-256 is checked against its digest before the mirror
//! hands out a byte of it, so a peer or tracker that lies about a blob's name costs a fetch,
//! never a bad layer; such a copy is dropped and the next holder, or the upstream, is tried.
//!
//! - `names`: digests, repository names and references, checked before use.
//! - `api`: the HTTP side.
//! - `upstream`: requests to the upstream registry.

mod api;
pub mod names;
mod upstream;

pub use api::serve;
use names::BlobDigest;
pub use upstream::ImageManifest;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarm_proto::FileMeta;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::fetch::FetchOptions;
use crate::node::Node;
use crate::progress::Progress;

/// How often a mirror waiting for another host's upstream read asks the swarm whether the blob
/// is there yet, at first; the pause doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(250);
/// Longest pause between two such asks.
const MAX_POLL: Duration = Duration::from_secs(2);
/// How often the host reading a blob from the upstream extends its lease (a third of it).
const LEASE_RENEWAL: Duration = Duration::from_secs(swarm_proto::protocol::ORIGIN_LEASE.as_secs() / 3);
/// Most copies named by a digest tried from the swarm before the mirror reads the upstream.
const MAX_CANDIDATES: usize = 3;

/// Where a blob handed out came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobSource {
    /// This host's folder: fetched or read before.
    Here,
    /// Fetched from the swarm now.
    Swarm,
    /// Read from the upstream registry now (this host had the lease).
    Upstream,
}

impl BlobSource {
    /// The source's name in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            BlobSource::Here => "here",
            BlobSource::Swarm => "swarm",
            BlobSource::Upstream => "upstream",
        }
    }
}

/// A blob on this host's disk, its SHA-256 checked.
#[derive(Debug, Clone)]
pub struct Blob {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Where it came from.
    pub source: BlobSource,
}

/// How a mirror is set up.
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    /// The registry mirrored (`https://registry.example.com`).
    pub upstream: String,
    /// The folder blobs are kept in (and shared from).
    pub dir: PathBuf,
    /// Preferred chunk size for blobs read from the upstream.
    pub chunk_size: u32,
}

/// A registry mirror on a node.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    upstream: upstream::Upstream,
    dir: PathBuf,
    chunk_size: u32,
    /// One lock per digest being got, so that a host's clients asking for one blob at once get
    /// it once.
    getting: Mutex<HashMap<BlobDigest, Arc<tokio::sync::Mutex<()>>>>,
    /// Blobs in the folder whose SHA-256 this process has checked.
    checked: Mutex<HashSet<BlobDigest>>,
    /// Files named by a digest whose content turned out not to match it: never fetched again.
    liars: Mutex<HashSet<swarm_proto::FileId>>,
}

impl Mirror {
    /// A mirror of `options.upstream` on `node`, keeping blobs in `options.dir` (made if
    /// missing). The node should share that folder (and be joined to its tracker) for other
    /// hosts to find what this one holds.
    pub fn new(node: &Node, options: MirrorOptions) -> Result<Mirror> {
        let upstream = upstream::Upstream::new(&options.upstream)?;
        std::fs::create_dir_all(&options.dir).map_err(|e| Error::io(&options.dir, e))?;
        Ok(Mirror {
            inner: Arc::new(Inner {
                node: node.clone(),
                upstream,
                dir: options.dir,
                chunk_size: options.chunk_size,
                getting: Mutex::default(),
                checked: Mutex::default(),
                liars: Mutex::default(),
            }),
        })
    }

    /// The blob `digest` of `repository` on this host's disk, checked: from the folder, else
    /// from the swarm, else from the upstream (by this host if the tracker gives it the lease,
    /// else by the host that has it, and then from the swarm).
    pub async fn blob(&self, repository: &str, digest: BlobDigest) -> Result<Blob> {
        let lock = {
            let mut getting = self.inner.getting.lock().expect("mirror lock poisoned");
            getting.entry(digest).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        let got = self.get(repository, digest).await;
        let mut getting = self.inner.getting.lock().expect("mirror lock poisoned");
        // Kept while other requests wait on it (each holds a clone), so that they all share it.
        if Arc::strong_count(&lock) == 2 {
            getting.remove(&digest);
        }
        drop(getting);
        let blob = got?;
        crate::telemetry::registry_blob(blob.source.label(), blob.size);
        Ok(blob)
    }

    /// The size of blob `digest` if this host holds it, the swarm lists it, or the upstream
    /// says (without fetching it).
    pub async fn blob_size(&self, repository: &str, digest: BlobDigest) -> Result<u64> {
        if let Some(blob) = self.here(digest).await? {
            return Ok(blob.size);
        }
        if let Some(entry) = self.listed(digest).await.into_iter().next() {
            return Ok(entry.size);
        }
        self.inner.upstream.blob_size(repository, digest).await
    }

    /// Image manifest `reference` (a tag or a digest) of `repository` from the upstream, asked
    /// for with the client's `Accept` header; one asked for by digest is checked against it.
    pub async fn manifest(&self, repository: &str, reference: &str, accept: Option<&str>) -> Result<ImageManifest> {
        self.inner.upstream.manifest(repository, reference, accept).await
    }

    async fn get(&self, repository: &str, digest: BlobDigest) -> Result<Blob> {
        if let Some(blob) = self.here(digest).await? {
            return Ok(blob);
        }
        let session = self.inner.node.tracker()?;
        let key = format!("oci-blob {digest}");
        let mut pause = FIRST_POLL;
        let mut said_waiting = false;
        let stopping = self.inner.node.stopping();
        loop {
            if let Some(blob) = self.fetch_from_swarm(digest).await {
                return Ok(blob);
            }
            let (holder, left) = match session.lease_origin(&key, false).await {
                Ok(lease) => lease,
                Err(e) if e.is_tracker_silence() => {
                    // With no tracker, no other host can be asked or waited for: the upstream
                    // it is, as a plain mirror would.
                    warn!(%digest, "the tracker does not answer ({e}): reading the blob from the upstream");
                    return self.read_upstream(repository, digest).await;
                }
                Err(e) => return Err(e),
            };
            if holder == self.inner.node.id() {
                return self.read_from_upstream(repository, digest, &key).await;
            }
            if !said_waiting {
                info!(%digest, reader = %holder.short(), "another host reads this blob from the upstream; waiting for it");
                said_waiting = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause.min(left.max(Duration::from_millis(50)))) => {}
                _ = stopping.cancelled() => return Err(Error::Cancelled),
            }
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// The blob in this host's folder, checked once per process.
    async fn here(&self, digest: BlobDigest) -> Result<Option<Blob>> {
        let path = self.inner.dir.join(digest.file_name());
        let size = match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_file() => metadata.len(),
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let blob = Blob {
            path: path.clone(),
            size,
            source: BlobSource::Here,
        };
        if self
            .inner
            .checked
            .lock()
            .expect("mirror lock poisoned")
            .contains(&digest)
        {
            return Ok(Some(blob));
        }
        if self.check(&path, digest).await? {
            return Ok(Some(blob));
        }
        warn!(path = %path.display(), %digest, "a blob in the mirror's folder does not match its digest; removed");
        let _ = std::fs::remove_file(&path);
        Ok(None)
    }

    /// Does the file at `path` have the SHA-256 `digest`? Remembered if so.
    async fn check(&self, path: &Path, digest: BlobDigest) -> Result<bool> {
        let owned = path.to_owned();
        let got = tokio::task::spawn_blocking(move || BlobDigest::of_file(&owned))
            .await?
            .map_err(|e| Error::io(path, e))?;
        let ok = got == digest;
        if ok {
            self.inner.checked.lock().expect("mirror lock poisoned").insert(digest);
        }
        Ok(ok)
    }

    /// The catalogue's files named `digest` that live peers hold whole between them, leaving
    /// out those found to lie, the most held first.
    async fn listed(&self, digest: BlobDigest) -> Vec<swarm_proto::protocol::CatalogueEntry> {
        let name = digest.file_name();
        match self.inner.node.search(&name, true).await {
            Ok(found) => {
                let liars = self.inner.liars.lock().expect("mirror lock poisoned");
                let mut found: Vec<_> = found
                    .into_iter()
                    .filter(|e| e.name == name && e.holders > 0 && e.available == e.chunk_count)
                    .filter(|e| !liars.contains(&e.file))
                    .collect();
                found.sort_by_key(|e| std::cmp::Reverse(e.holders));
                found.truncate(MAX_CANDIDATES);
                found
            }
            Err(e) => {
                warn!(%digest, "could not ask the tracker for the blob: {e}");
                Vec::new()
            }
        }
    }

    /// The blob fetched from the swarm and checked, if some holder has a copy that matches.
    async fn fetch_from_swarm(&self, digest: BlobDigest) -> Option<Blob> {
        for entry in self.listed(digest).await {
            let options = FetchOptions {
                out_dir: self.inner.dir.clone(),
                label: Some(digest.to_string()),
                ..FetchOptions::default()
            };
            let report = match self.inner.node.fetch(entry.file, options).await {
                Ok(report) => report,
                Err(e) => {
                    warn!(%digest, file = %entry.file.short(), "could not fetch the blob from the swarm: {e}");
                    continue;
                }
            };
            match self.check(&report.path, digest).await {
                Ok(true) => {
                    if let Err(e) = self.inner.node.remember_fetched(&report).await {
                        warn!(%digest, "{e}");
                    }
                    let size = report.manifest.size;
                    return Some(Blob {
                        path: report.path,
                        size,
                        source: BlobSource::Swarm,
                    });
                }
                Ok(false) => {
                    warn!(
                        %digest,
                        file = %entry.file.short(),
                        "a file named by this digest holds other content (its holders lie); dropped"
                    );
                    self.inner
                        .liars
                        .lock()
                        .expect("mirror lock poisoned")
                        .insert(entry.file);
                }
                Err(e) => warn!(%digest, "{e}"),
            }
            self.inner.node.stop_holding(report.id).await;
            let _ = std::fs::remove_file(&report.path);
        }
        None
    }

    /// The blob read from the upstream by this host, which holds the lease `key`, and shared.
    async fn read_from_upstream(&self, repository: &str, digest: BlobDigest, key: &str) -> Result<Blob> {
        let session = self.inner.node.tracker()?.clone();
        let renewing = {
            let (session, key) = (session.clone(), key.to_owned());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_RENEWAL).await;
                    if let Err(e) = session.lease_origin(&key, false).await {
                        warn!("could not extend the lease on reading {key}: {e}");
                    }
                }
            })
        };
        info!(%digest, "no peer has this blob: reading it from the upstream");
        let read = self.read_upstream(repository, digest).await;
        renewing.abort();
        // On success the lease is left to lapse: a host that asked the swarm a moment before
        // the blob was announced then waits for it rather than read it again. On failure it is
        // given up, and the next host tries at once.
        if read.is_err() {
            if let Err(e) = session.lease_origin(key, true).await {
                warn!("could not give up the lease on reading {key}: {e}");
            }
        }
        read
    }

    async fn read_upstream(&self, repository: &str, digest: BlobDigest) -> Result<Blob> {
        let url = self.inner.upstream.blob_url(repository, digest)?;
        let progress = Progress::default();
        let name = digest.file_name();
        let read = crate::origin::read_named(
            &self.inner.node,
            &url,
            &self.inner.dir,
            &name,
            self.inner.chunk_size,
            &progress,
            Some(digest.0),
        )
        .await?;
        self.inner.checked.lock().expect("mirror lock poisoned").insert(digest);
        let Some(manifest) = read.manifest else {
            // Kept: there was a copy already (another client's request got it meanwhile).
            let size = std::fs::metadata(&read.path)
                .map_err(|e| Error::io(&read.path, e))?
                .len();
            return Ok(Blob {
                path: read.path,
                size,
                source: BlobSource::Here,
            });
        };
        let size = manifest.size;
        let meta = FileMeta {
            modified_ns: swarm_proto::meta::nanos_since_epoch(std::time::SystemTime::now()),
            replaces: None,
        };
        self.inner.node.hold_complete(manifest, read.path.clone(), meta).await?;
        Ok(Blob {
            path: read.path,
            size,
            source: BlobSource::Upstream,
        })
    }
}
