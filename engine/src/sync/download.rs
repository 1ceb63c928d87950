//! One download of a sync: how it is fetched, and how it ended.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use swarm_proto::ids::FileId;

use super::plan::Planned;
use crate::error::Result;
use crate::fetch::{FetchOptions, FetchReport, Replace};
use crate::progress::Progress;
use crate::tracker_client::Located;

/// The options of the download of `planned` into `dir`.
pub(super) fn fetch_options(dir: &Path, planned: &Planned, replace: Replace, located: Option<Located>) -> FetchOptions {
    FetchOptions {
        out_dir: dir.to_owned(),
        replace,
        // A download whose holders all vanish gives up, so that a newer version can be
        // fetched instead; it is tried again later.
        timeout: Some(Duration::from_secs(120) + Duration::from_secs(planned.size / (1 << 20))),
        progress: Arc::new(Progress::default()),
        label: Some(planned.name.clone()),
        located,
        ..FetchOptions::default()
    }
}

/// A finished download.
pub(super) struct Download {
    /// The path in the share.
    pub name: String,
    /// The version fetched.
    pub file: FileId,
    /// How it ended.
    pub result: Result<FetchReport>,
}
