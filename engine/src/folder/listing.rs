//! Listing a shared folder: every regular file under it with what identifies its version on
//! disk, and what cannot be shared (links, unreadable entries, unsafe names). Nothing is read
//! or hashed here.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use swarm_proto::name;

use super::Skipped;
use crate::db::FileStamp;
use crate::error::{Error, Result};
use crate::trust::DiskStamp;

/// A regular file found in a folder.
#[derive(Debug, Clone)]
pub(super) struct Listed {
    /// Where it is.
    pub path: PathBuf,
    /// Its name in the folder.
    pub name: String,
    /// What a record of it is compared with.
    pub stamp: FileStamp,
    /// The version of its bytes (what the chunk server checks before vouching for a chunk).
    pub version: DiskStamp,
    /// Its modification time.
    pub modified: SystemTime,
}

/// What a folder holds.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Its regular files, sorted by path.
    pub files: Vec<Listed>,
    /// What cannot be shared.
    pub skipped: Vec<Skipped>,
}

/// An I/O error in a few words, without the OS's own text ("permission denied").
pub(super) fn briefly(error: &std::io::Error) -> String {
    error.kind().to_string()
}

/// Lists `start` (the folder `root` itself, or one file in it), never following a link and
/// leaving out partial downloads, `state_dir` and the folder's own `.swarm/`. One unreadable
/// file or folder is skipped and named; only a root that cannot be read fails.
pub(super) fn list(root: &Path, start: &Path, state_dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    let walk = walkdir::WalkDir::new(start)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let own = e.depth() == 1 && e.file_name() == crate::versions::SWARM_DIR && e.file_type().is_dir();
            !own && e.path() != state_dir
        });
    for entry in walk {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.depth() == 0 => {
                let path = e.path().unwrap_or(root).to_owned();
                return Err(Error::io(&path, e.into()));
            }
            Err(e) => {
                let path = e.path().unwrap_or(root).to_owned();
                let why = e.io_error().map_or_else(|| e.to_string(), briefly);
                listing.skipped.push(Skipped { path, why });
                continue;
            }
        };
        if entry.file_type().is_symlink() {
            listing.skipped.push(Skipped {
                path: entry.into_path(),
                why: "a symbolic link (not followed: share what it points to instead)".into(),
            });
            continue;
        }
        if !entry.file_type().is_file() || crate::out_dir::is_partial(entry.path()) {
            continue;
        }
        let Some(name) = name::name_of(root, entry.path()) else {
            listing.skipped.push(Skipped {
                path: entry.into_path(),
                why: "its name cannot be shared (not UTF-8, or unsafe)".into(),
            });
            continue;
        };
        let path = entry.into_path();
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            // Deleted since it was listed: as if it had never been there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // Not listed: what was shared from it before is withdrawn.
            Err(e) => {
                listing.skipped.push(Skipped { path, why: briefly(&e) });
                continue;
            }
        };
        let modified = metadata.modified().map_err(|e| Error::io(&path, e))?;
        listing.files.push(Listed {
            stamp: FileStamp::of(&metadata),
            version: DiskStamp::of(&metadata),
            modified,
            name,
            path,
        });
    }
    Ok(listing)
}
