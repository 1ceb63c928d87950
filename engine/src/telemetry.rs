//! A node's metrics, through the `metrics` facade, and the recorder that keeps them (and the
//! tracker's, in the same process) for the `--metrics` port.
//!
//! Labels stay few: files by their short id, outcomes and reasons by a word. Peers are not a
//! label: in a swarm of thousands that would be thousands of series per node.

use std::time::Duration;

#[cfg(feature = "metrics")]
use metrics_exporter_prometheus::PrometheusHandle;
use swarm_proto::FileId;

#[cfg(feature = "metrics")]
use crate::error::{Error, Result};

/// Bytes of verified chunks written, by file.
pub const DOWNLOADED: &str = "swarm_downloaded_bytes_total";
/// Bytes of chunks sent to other peers, by file.
pub const UPLOADED: &str = "swarm_uploaded_bytes_total";
/// Bytes read from an HTTP origin (`swarm seed --url`), by file: beside [`UPLOADED`] of the
/// same file, what the swarm spared the origin.
pub const ORIGIN_READ: &str = "swarm_origin_read_bytes_total";
/// Bytes of blobs a registry mirror handed out, by where each blob came from (`here`,
/// `swarm`, `upstream`): beside [`ORIGIN_READ`], what the swarm spared the upstream registry.
pub const REGISTRY_BLOB: &str = "swarm_registry_blob_bytes_total";
/// Chunks verified against the manifest and written.
pub const CHUNKS_VERIFIED: &str = "swarm_chunks_verified_total";
/// Chunks refused, by reason (`bad data`, `read-back differs`).
pub const CHUNKS_REJECTED: &str = "swarm_chunks_rejected_total";
/// Peers banned from a download, by reason.
pub const PEERS_BANNED: &str = "swarm_peers_banned_total";
/// Uploads being sent now.
pub const UPLOADS_IN_FLIGHT: &str = "swarm_uploads_in_flight";
/// Chunk requests answered Busy, by reason (`slots`, `super-seeding`).
pub const BUSY: &str = "swarm_busy_answers_total";
/// Downloads finished, by outcome (`done`, `failed`).
pub const FETCHES: &str = "swarm_fetches_total";
/// How long finished downloads took.
pub const FETCH_SECONDS: &str = "swarm_fetch_seconds";

fn file_label(file: &FileId) -> String {
    file.short()
}

/// A verified chunk of `bytes` of `file` written.
pub fn chunk_fetched(file: &FileId, bytes: u64) {
    metrics::counter!(CHUNKS_VERIFIED).increment(1);
    metrics::counter!(DOWNLOADED, "file" => file_label(file)).increment(bytes);
}

/// A chunk refused for `reason`.
pub fn chunk_rejected(reason: &'static str) {
    metrics::counter!(CHUNKS_REJECTED, "reason" => reason).increment(1);
}

/// A peer banned from a download for `reason`.
pub fn peer_banned(reason: &'static str) {
    metrics::counter!(PEERS_BANNED, "reason" => reason).increment(1);
}

/// An upload of `bytes` of `file` sent whole.
pub fn chunk_uploaded(file: &FileId, bytes: u64) {
    metrics::counter!(UPLOADED, "file" => file_label(file)).increment(bytes);
}

/// `bytes` of `file` read from its origin.
pub fn origin_read(file: &FileId, bytes: u64) {
    metrics::counter!(ORIGIN_READ, "file" => file_label(file)).increment(bytes);
}

/// A registry mirror handed out a blob of `bytes` that came from `source`.
pub fn registry_blob(source: &'static str, bytes: u64) {
    metrics::counter!(REGISTRY_BLOB, "source" => source).increment(bytes);
}

/// Counts an upload in flight for as long as the value lives.
pub struct UploadInFlight;

impl UploadInFlight {
    /// Starts counting.
    pub fn start() -> UploadInFlight {
        metrics::gauge!(UPLOADS_IN_FLIGHT).increment(1.0);
        UploadInFlight
    }
}

impl Drop for UploadInFlight {
    fn drop(&mut self) {
        metrics::gauge!(UPLOADS_IN_FLIGHT).decrement(1.0);
    }
}

/// A chunk request answered Busy for `reason`.
pub fn busy(reason: &'static str) {
    metrics::counter!(BUSY, "reason" => reason).increment(1);
}

/// A download that ended after `took`, done or not.
pub fn fetch_ended(done: bool, took: Duration) {
    metrics::counter!(FETCHES, "outcome" => if done { "done" } else { "failed" }).increment(1);
    if done {
        metrics::histogram!(FETCH_SECONDS).record(took.as_secs_f64());
    }
}

/// Records every metric of this process (node and tracker) from now on, and returns the handle
/// that renders them in Prometheus's text format (served by `http::serve_metrics`).
/// Call once, from a tokio runtime: histograms are folded every 5 s on it.
#[cfg(feature = "metrics")]
pub fn install() -> Result<PrometheusHandle> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| Error::Metrics(e.to_string()))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
