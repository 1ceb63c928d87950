//! Downloading one file from every live holder at once.
//!
//! # Parts
//! - `output`: the file on disk: the hidden partial file (opened without following links),
//!   the chunks an earlier run left in it, free space, and the final check and rename.
//! - `shared`: what the coordinator and the peer workers share: the scheduler under a short
//!   lock, the in-flight budget, and the events the workers send.
//! - `peer`: one worker per holder, with several *lanes*, each a loop of "ask the scheduler
//!   for a chunk, request it, verify it, write it and read it back".
//! - `manifest_exchange`: the manifest from the holders, checked against the id; from the
//!   tracker only when no holder sends it.
//! - `coordinator`: owns the download: starts workers for the holders the tracker names, wakes
//!   on every verified chunk (saving progress, queueing tracker reports), re-locates holders
//!   from time to time, and ends the download on completion, a fatal error, a timeout or a
//!   cancel.
//!
//! # Trust
//! The manifest is checked against the requested id before anything else. Each chunk is
//! checked against the manifest before it is written; a peer that sends a bad chunk is banned
//! for this download and the chunk is asked of someone else. Each chunk is then read back from
//! the disk and compared with what was verified (`chunk_io`), so by the end the whole
//! file on disk is known to match the manifest, whose chunk hashes add up to the global hash;
//! only then is it renamed into place, in the same directory. A partial or wrong file never
//! appears under the final name.
//!
//! # Durability
//! A chunk is written in place only after it is verified, with direct I/O where the file
//! system allows. The partial file is not synced while the fetch runs: on resume every chunk of
//! the partial file is hashed again, so a chunk that a crash lost is fetched again, and one
//! written after the last progress record is kept. The finished file is synced, then renamed.

pub mod budget;
mod coordinator;
mod manifest_exchange;
mod options;
pub(crate) mod output;
mod peer;
pub mod policy;
mod shared;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use swarm_proto::protocol::Holder;
use swarm_proto::{Bitfield, FileId, FileMeta, Manifest};
use tracing::{debug, warn, Instrument};

use crate::db::DownloadRecord;
use crate::downloads::Registered;
use crate::error::{Error, Result};
use crate::held::Held;
use crate::tracker_client::Located;
pub(crate) use manifest_exchange::locate_with_manifest;
pub use manifest_exchange::TRACKER_PATIENCE;
pub use options::{holders_of, DiskIo, FetchOptions, FetchReport, PeerFilter, Replace, Sources};
use output::{Output, Prepared};
pub use policy::NEIGHBOURS;
pub(crate) use shared::Env;

/// Fetches `id` (see the module doc). The download is on the node's list of downloads from
/// this call on, before the returned future first runs.
pub(crate) fn fetch(
    env: Env,
    id: FileId,
    options: FetchOptions,
) -> impl std::future::Future<Output = Result<FetchReport>> {
    let label = options.label.clone().unwrap_or_else(|| id.short());
    let registered = env
        .downloads
        .begin(id, &label, options.progress.clone(), &env.shutdown)
        .ok_or(Error::AlreadyDownloading(label));
    let span = tracing::info_span!("fetch", file = %id.short());
    async move {
        let started = std::time::Instant::now();
        let result = fetch_registered(&env, id, options, registered?).await;
        crate::telemetry::fetch_ended(result.is_ok(), started.elapsed());
        result
    }
    .instrument(span)
}

async fn fetch_registered(
    env: &Env,
    id: FileId,
    mut options: FetchOptions,
    mut registered: Registered,
) -> Result<FetchReport> {
    let started = Instant::now();
    // Cancelled (from the web page, say) while a silent tracker is asked again and again.
    let (manifest, located) = tokio::select! {
        found = manifest_and_holders(env, id, &mut options) => found?,
        _ = registered.cancelled.cancelled() => return Err(Error::Cancelled),
    };
    let (manifest, meta) = (Arc::new(manifest), located.meta);
    registered.set_name(&manifest.name);
    options.progress.set_total(manifest.size);
    let report = |path: PathBuf, already_complete: bool, meta: FileMeta| FetchReport {
        id,
        manifest: manifest.clone(),
        path,
        already_complete,
        meta,
        resumed_chunks: 0,
        received: HashMap::new(),
        banned: Vec::new(),
        elapsed: started.elapsed(),
    };
    refuse_if_retired(&options, &manifest, &located, id)?;
    let output = match Output::prepare(&options, &manifest, meta).await? {
        Prepared::Complete { path, meta } => {
            debug!(path = %path.display(), "already complete");
            options.progress.advance(manifest.size);
            let chunks = Bitfield::full(manifest.chunk_count);
            env.store.add(manifest.clone(), path.clone(), chunks, meta);
            return Ok(report(path, true, meta));
        }
        Prepared::Partial(output) => output,
    };
    let resumed_chunks = output.have.count();
    options.progress.advance(manifest.bytes_in(&output.have));
    let held = start_holding(env, id, &manifest, &output, meta).await?;
    let holders = holders_to_use(env, id, &options.sources, located.holders).await?;
    let outcome = coordinator::run(coordinator::Plan {
        env: env.clone(),
        id,
        manifest: manifest.clone(),
        file: output.file.clone(),
        held: held.clone(),
        holders,
        sources: options.sources.clone(),
        timeout: options.timeout,
        started,
        cancelled: registered.cancelled.clone(),
        offered: &mut registered.sources,
        hurried: &mut registered.hurried,
        progress: options.progress.clone(),
    })
    .await?;
    let path = output.finish(&held, &manifest, &meta).await?;
    held.set_path(path.clone());
    if let Err(e) = env.state.remove_download(&id) {
        warn!("{e}");
    }
    Ok(FetchReport {
        resumed_chunks,
        received: outcome.received,
        banned: outcome.banned,
        ..report(path, false, meta)
    })
}

/// The manifest of `id`, checked against it, and where its holders are: as the options
/// carry them (located ahead, by a sync), or asked of the holders and the tracker (with the
/// manifest saved by an earlier run of this download, if any).
async fn manifest_and_holders(env: &Env, id: FileId, options: &mut FetchOptions) -> Result<(Manifest, Located)> {
    if let Some((manifest, located)) = options.located.take().and_then(|mut l| Some((l.manifest.take()?, l))) {
        manifest
            .verify(&id)
            .map_err(|source| Error::Manifest { file: Some(id), source })?;
        return Ok((manifest, located));
    }
    let saved = env.state.download(&id).ok().flatten().map(|record| record.manifest);
    let (lan, want) = (env.lan.as_ref(), policy::NEIGHBOURS);
    locate_with_manifest(&env.session, &env.transport, lan, id, want, saved, &options.holders).await
}

/// Refuses a file every holder withdrew (replaced or deleted), unless it is on disk already.
fn refuse_if_retired(options: &FetchOptions, manifest: &Manifest, located: &Located, id: FileId) -> Result<()> {
    let saved_as = options.save_as.as_deref().unwrap_or(&manifest.name);
    if located.retired && located.live == 0 && !options.out_dir.join(saved_as).exists() {
        return Err(Error::NotFound(format!(
            "{} ({}) is no longer held: every peer that had it withdrew it (it was replaced or deleted); \
             fetch its current version instead (swarm search '{}')",
            manifest.name,
            id.short(),
            manifest.name
        )));
    }
    Ok(())
}

/// Holds the partial file (it serves its chunks while it downloads), puts the download on
/// record for `swarm status` and a resume, and tells the tracker.
async fn start_holding(
    env: &Env,
    id: FileId,
    manifest: &Arc<Manifest>,
    output: &Output,
    meta: FileMeta,
) -> Result<Arc<Held>> {
    let have = output.have.clone();
    let held = env
        .store
        .add(manifest.clone(), output.partial_path.clone(), have.clone(), meta);
    // The download is on record (for `swarm status`) from its start, even if killed at once.
    let record = DownloadRecord {
        manifest: (**manifest).clone(),
        partial: output.partial_path.clone(),
        chunks: have,
    };
    env.state.save_download(&id, &record)?;
    // Made durable at once so that a crash leaves progress to resume; a file of one chunk has
    // none, and sled writes its record within half a second anyway.
    if manifest.chunk_count > 1 {
        env.state.flush()?;
    }
    if manifest.chunk_count <= 1 {
        env.session.announce_later(held.clone());
    } else if let Err(e) = env.session.announce_download(&held).await {
        warn!("could not announce the download to the tracker: {e}");
    }
    Ok(held)
}

/// The holders to fetch from: those located, or, when one peer is asked for, that one among
/// all holders (it may not be in a random sample).
async fn holders_to_use(env: &Env, id: FileId, sources: &Sources, located: Vec<Holder>) -> Result<Vec<Holder>> {
    let Sources::Only(_) = sources else {
        return Ok(located);
    };
    let holdings = env.session.client().holdings(id).await?;
    let holders = holdings.into_iter().map(|h| Holder {
        peer: h.peer,
        addr: h.addr,
        other_addrs: Vec::new(),
        complete: h.chunks.is_complete(),
    });
    Ok(holders.filter(|h| sources.admits(h)).collect())
}
