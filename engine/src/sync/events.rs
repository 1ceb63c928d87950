//! What a sync tells the person watching it.

use crate::error::Error;
use crate::fetch::FetchReport;
use crate::folder::Skipped;

/// Something a sync did, for people.
#[derive(Debug)]
pub enum SyncEvent {
    /// The folder was scanned: `files` shared, `hashed` of them hashed in this scan.
    Scanned {
        /// Files shared.
        files: usize,
        /// Files hashed now (new or changed).
        hashed: usize,
    },
    /// A file was fetched into the folder.
    Fetched(FetchReport),
    /// A local edit lost to a newer version elsewhere and was kept under another name.
    Conflict {
        /// The name both versions have.
        name: String,
        /// The name the local version was moved to.
        kept_as: String,
    },
    /// A file deleted elsewhere was put away here.
    Removed {
        /// Its name.
        name: String,
        /// Where it went, inside `.swarm/versions/`.
        kept_as: String,
    },
    /// A file deleted here was deleted in the share.
    Deleted {
        /// Its name.
        name: String,
    },
    /// A file or folder cannot be shared (said once per path while the sync runs).
    Skipped(Skipped),
    /// A file changed (or was deleted) here, on a node that has only the share's read-only
    /// key: the change stays here (said once per path and version).
    LocalOnly {
        /// Its name.
        name: String,
        /// It was deleted here (else edited or added).
        deleted: bool,
    },
    /// The tracker sent changes that are not the share's (not signed by its key, stamped in
    /// the future, or unsafe): they were ignored.
    Refused {
        /// How many.
        count: usize,
        /// Why the first was.
        why: String,
    },
    /// A download failed; it is tried again later.
    Failed {
        /// The file's name.
        name: String,
        /// Why.
        error: Error,
    },
}
