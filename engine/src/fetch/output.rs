//! The file a download writes: found or created under the output directory without following
//! links ([`crate::out_dir`]), resumed from what an earlier run left, checked for room, and at
//! the end confirmed whole and renamed into place.
//!
//! # Disk space
//! Before fetching, the bytes still to write are compared with the free space of the output's
//! file system (`preallocate` reserves them instead); a disk that fills up during the fetch
//! stops it with [`Error::NoSpace`], keeping every verified chunk for the next run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use swarm_proto::{hashing, Bitfield, FileMeta, Manifest};
use tracing::{debug, info};

use super::options::{DiskIo, FetchOptions, Replace};
use crate::chunk_io::ChunkFile;
use crate::db::FileStamp;
use crate::error::{Error, Result};
use crate::held::{self, Held};
use crate::out_dir::{partial_name_for, Dir, Entry};

/// Chunks verified, written and read back at once: plenty for a disk's queue (each takes a
/// millisecond or two), and few read-back buffers and blocking threads.
pub const DISK_WRITERS: usize = 4;

/// What [`Output::prepare`] found.
pub enum Prepared {
    /// The file is already there with exactly this content.
    Complete {
        /// Where.
        path: PathBuf,
        /// Its metadata (our copy keeps its own modification time).
        meta: FileMeta,
    },
    /// A partial file is open for the download.
    Partial(Output),
}

/// A download's partial file and where it goes when done.
pub struct Output {
    dir: Dir,
    file_name: String,
    partial_name: String,
    replace: Replace,
    /// The hidden partial file's path.
    pub partial_path: PathBuf,
    /// The partial file.
    pub file: Arc<ChunkFile>,
    /// Chunks an earlier run left verified in it.
    pub have: Bitfield,
}

impl Output {
    /// Looks at the output's name and opens (or creates) the partial file beside it.
    pub async fn prepare(options: &FetchOptions, manifest: &Manifest, meta: FileMeta) -> Result<Prepared> {
        let out = Dir::open_root(&options.out_dir)?;
        let (dir, file_name) = out.parent_of(options.save_as.as_deref().unwrap_or(&manifest.name))?;
        let file_name = file_name.to_owned();
        let final_path = dir.join(&file_name);
        match dir.entry(&file_name)? {
            Entry::Missing => {}
            Entry::File(_) if same_content(&dir, &file_name, manifest).await? => {
                let modified = dir.open_read(&file_name)?.metadata().and_then(|m| m.modified());
                let meta = FileMeta {
                    modified_ns: modified.map(swarm_proto::meta::nanos_since_epoch).unwrap_or(0),
                    ..meta
                };
                return Ok(Prepared::Complete { path: final_path, meta });
            }
            Entry::File(_) if may_replace(&dir, &file_name, options.replace)? => {}
            Entry::File(_) => return Err(Error::Exists(final_path)),
            Entry::Link if options.replace == Replace::Always => {}
            Entry::Link => {
                return Err(Error::Unsafe {
                    path: final_path,
                    why: "is a symbolic link; swarm never writes through links. Remove it (a forced fetch \
                          replaces the link itself, never what it points to)"
                        .into(),
                })
            }
            Entry::Other => {
                return Err(Error::Unsafe {
                    path: final_path,
                    why: "is in the way (not a regular file). Move it away and run again".into(),
                })
            }
        }
        let partial_name = partial_name_for(&file_name);
        let (file, have) = open_partial(manifest, &dir, &partial_name, options.preallocate).await?;
        let direct = match options.disk_io {
            DiskIo::Direct => dir.reopen_direct(&partial_name, &file),
            DiskIo::Buffered => None,
        };
        Ok(Prepared::Partial(Output {
            partial_path: dir.join(&partial_name),
            file: Arc::new(ChunkFile::new(direct, file, DISK_WRITERS)),
            have,
            dir,
            file_name,
            partial_name,
            replace: options.replace,
        }))
    }

    /// The whole-file check, then the rename. Every chunk of the partial file has been checked
    /// against what the disk gave back, not only in memory: resumed chunks were hashed from
    /// disk when the download resumed, the others read back right after their write (with
    /// direct I/O, from the device) and compared with the verified bytes. Their hashes add up
    /// to the global hash (checked when the manifest was fetched). So the file is whole if
    /// every chunk is still confirmed (the chunk server unmarks chunks it finds changed on
    /// disk) and the size is right. The file gets `meta`'s modification time, is synced, and
    /// is renamed to its name; returns the final path.
    pub async fn finish(self, held: &Held, manifest: &Manifest, meta: &FileMeta) -> Result<PathBuf> {
        let partial = &self.partial_path;
        let file = self.file.file().clone();
        let confirmed = held.chunks();
        let size = file.metadata().map_err(|e| Error::io(partial, e))?.len();
        if !confirmed.is_complete() || size != manifest.size {
            return Err(Error::Integrity(format!(
                "{} does not hold the whole file after download ({} of {} chunks confirmed on disk, {size} of {} \
                 bytes); was it changed by another program? Run the fetch again to repair it",
                partial.display(),
                confirmed.count(),
                manifest.chunk_count,
                manifest.size
            )));
        }
        if let Some(time) = meta.modified() {
            file.set_modified(time).map_err(|e| Error::io(partial, e))?;
        }
        tokio::task::spawn_blocking(move || file.sync_data())
            .await?
            .map_err(|e| Error::io(partial, e))?;
        let replace = may_replace(&self.dir, &self.file_name, self.replace)?;
        self.dir.rename(&self.partial_name, &self.file_name, replace)?;
        Ok(self.dir.join(&self.file_name))
    }
}

/// May the file `name` in `dir` (if any) be replaced? Always when asked, or when it is still
/// the regular file the caller allowed.
fn may_replace(dir: &Dir, name: &str, replace: Replace) -> Result<bool> {
    Ok(match replace {
        Replace::Always => true,
        Replace::Never => false,
        Replace::IfUnchanged(allowed) => matches!(dir.entry(name)?, Entry::File(m) if FileStamp::of(&m) == allowed),
    })
}

/// Does the regular file `name` in `dir` hold exactly the manifest's content?
async fn same_content(dir: &Dir, name: &str, manifest: &Manifest) -> Result<bool> {
    let file = dir.open_read(name)?;
    let path = dir.join(name);
    let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
    if len != manifest.size {
        return Ok(false);
    }
    let chunk_size = manifest.chunk_size;
    let hashes = tokio::task::spawn_blocking(move || {
        hashing::hash_open_file(&file, chunk_size).map_err(|e| Error::io(&path, e))
    })
    .await??;
    Ok(hashes.global == manifest.hash)
}

/// Opens (or creates) the partial file `name` in `dir` at its full size, finds the chunks an
/// earlier run left verified in it, and makes sure the rest will fit on its file system.
///
/// The partial file is opened through [`Dir`]: never through a link, only if it is a regular
/// file with no other hard link, and checked so before it is resized.
///
/// Every chunk of an existing partial file is hashed again, not only the ones recorded in sled:
/// a chunk written after the last record (just before a crash) is kept too, and one changed on
/// disk since is dropped. Holes read as zeros and hash fast; hashing runs on every core and is
/// far quicker than fetching the chunk again.
async fn open_partial(manifest: &Manifest, dir: &Dir, name: &str, preallocate: bool) -> Result<(File, Bitfield)> {
    let path = &dir.join(name);
    let (file, existed) = dir.open_or_create(name)?;
    // One writer per partial file: a second fetch of the same file into the same folder (from
    // another process) would race the first to the rename and fail halfway. The lock goes
    // with the file, when the fetch ends or its process dies.
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            return Err(Error::Unsafe {
                path: path.to_owned(),
                why: "is being written by another swarm fetch of the same file into the same folder; wait \
                      for it to finish (the same command then finds the file complete), or give another -o"
                    .into(),
            })
        }
        Err(e) => debug!("cannot lock {}: {e}; fetching without the lock", path.display()),
    }
    if file.metadata().map_err(|e| Error::io(path, e))?.len() != manifest.size {
        file.set_len(manifest.size).map_err(|e| Error::io(path, e))?;
    }
    let (file, have) = if existed && manifest.chunk_count > 0 {
        let file = Arc::new(file);
        let (check, manifest_copy) = (file.clone(), manifest.clone());
        let have = tokio::task::spawn_blocking(move || held::chunks_on_disk(&check, &manifest_copy)).await?;
        info!(
            chunks = have.count(),
            "resuming with the chunks already verified on disk"
        );
        (Arc::try_unwrap(file).expect("the check task has ended"), have)
    } else {
        (file, Bitfield::new(manifest.chunk_count))
    };
    let missing = manifest.size - manifest.bytes_in(&have);
    let room = if preallocate {
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, manifest.size)
            .map_err(|e| no_space_or_io(path, missing, &file, e.into()))
    } else {
        match free_space(&file) {
            Some(available) if available < missing => Err(Error::NoSpace {
                path: path.to_owned(),
                needed: missing,
                available,
            }),
            _ => Ok(()),
        }
    };
    if let Err(e) = room {
        if !existed {
            // Nothing was fetched into it yet: leave no empty file behind.
            let _ = dir.remove(name);
        }
        return Err(e);
    }
    Ok((file, have))
}

/// Bytes an unprivileged writer may still use on the file system holding `file`, if it says.
pub fn free_space(file: &File) -> Option<u64> {
    let stats = rustix::fs::fstatvfs(file).ok()?;
    (stats.f_blocks > 0).then(|| stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Turns "disk full" into [`Error::NoSpace`] with the figures, anything else into an I/O error.
pub fn no_space_or_io(path: &Path, needed: u64, file: &File, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Error::NoSpace {
            path: path.to_owned(),
            needed,
            available: free_space(file).unwrap_or(0),
        },
        _ => Error::io(path, e),
    }
}
