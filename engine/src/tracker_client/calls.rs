//! A typed method per tracker request: registering, announcing, reporting chunks, shares,
//! listing and searching (all pages), resolving what a person typed, locating holders.

use std::net::SocketAddr;
use std::sync::Arc;

use swarm_proto::protocol::{
    CatalogueEntry, ErrorCode, Holding, PageRequest, TrackerRequest, TrackerResponse, INTRODUCTION_WAIT, MAX_BATCH,
    MAX_BATCH_LOCATES, MAX_BATCH_WANT, MAX_CHECKS_ASKED, MAX_FRAME,
};
use swarm_proto::share::SharePage;
use swarm_proto::share_key::SignedChange;
use swarm_proto::transport;
use swarm_proto::traversal::{Introduction, RelayPass};
use swarm_proto::{Bitfield, FileId, FileMeta, Manifest, PeerId, ShareId};

use super::{Located, RegisteredOrNot, Registration, TrackerClient, ANSWER_TIMEOUT, HANG_UP_WHEN_IDLE, MAX_LISTED};
use crate::error::{Error, Result};

impl TrackerClient {
    /// Waits at the tracker in use for peers that want to reach this one (see
    /// [`swarm_proto::traversal`]): the introductions made, at once, or none after about
    /// [`INTRODUCTION_WAIT`].
    pub async fn await_introductions(&self) -> Result<Vec<Introduction>> {
        /// Counts a wait until dropped (ended, or given up).
        struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _counted = Counted(&self.waiting);
        self.wait_for_introductions().await
    }

    async fn wait_for_introductions(&self) -> Result<Vec<Introduction>> {
        let index = self.current();
        let connection = self.connection(index).await?;
        let request = TrackerRequest::AwaitIntroductions;
        let wait = INTRODUCTION_WAIT + ANSWER_TIMEOUT;
        let answer = match tokio::time::timeout(wait, transport::exchange(&connection, &request, MAX_FRAME)).await {
            Ok(Ok((answer, _))) => answer,
            Ok(Err(e)) => {
                self.forget(&connection).await;
                return Err(self.error_at(index, format!("waiting for introductions: {e}")));
            }
            Err(_) => {
                self.forget(&connection).await;
                return Err(self.error_at(index, format!("no answer to a wait within {wait:?}")));
            }
        };
        match answer {
            TrackerResponse::Introductions(introductions) => Ok(introductions),
            other => Err(self.unexpected(other)),
        }
    }

    /// Asks the tracker to introduce this peer to `peer` (which it cannot reach directly),
    /// with a relay session if `relay`: where the tracker sees `peer`, and this side's relay
    /// pass.
    pub async fn introduce(&self, peer: PeerId, relay: bool) -> Result<(SocketAddr, Option<RelayPass>)> {
        match self.request(&TrackerRequest::Introduce { peer, relay }).await? {
            TrackerResponse::Introduced { addr, relay } => Ok((addr, relay)),
            other => Err(self.unexpected(other)),
        }
    }

    /// Starts this peer's session at the tracker: others reach it at `advertise` (or where
    /// the tracker sees it) or at `addrs`, its own.
    pub async fn register(&self, advertise: Option<SocketAddr>, addrs: Vec<SocketAddr>) -> Result<Registration> {
        match self.request(&TrackerRequest::Register { advertise, addrs }).await? {
            TrackerResponse::Registered {
                addr,
                timeout_secs,
                report_secs,
                ..
            } => Ok(Registration {
                addr,
                timeout_secs,
                report_secs,
            }),
            other => Err(self.unexpected(other)),
        }
    }

    /// Tells the tracker this peer holds `chunks` of the file `manifest` describes.
    pub async fn announce(&self, manifest: &Manifest, chunks: &Bitfield, meta: FileMeta) -> Result<RegisteredOrNot> {
        let request = TrackerRequest::Announce {
            manifest: manifest.clone(),
            chunks: chunks.clone(),
            meta,
        };
        self.simple(request).await
    }

    /// Tells the tracker this peer holds `chunks` of `file`, which the tracker lists (it has
    /// just been located there): no manifest is sent. `Ok(None)`: the tracker does not list
    /// it (or predates `Join`); announce it in full instead.
    pub async fn join(&self, file: FileId, chunks: &Bitfield, meta: FileMeta) -> Result<Option<RegisteredOrNot>> {
        let request = TrackerRequest::Join {
            file,
            chunks: chunks.clone(),
            meta,
        };
        match self.request(&request).await? {
            TrackerResponse::Ok => Ok(Some(RegisteredOrNot::Ok)),
            TrackerResponse::Error {
                code: ErrorCode::NotRegistered,
                ..
            } => Ok(Some(RegisteredOrNot::NotRegistered)),
            TrackerResponse::Error {
                code: ErrorCode::NotFound | ErrorCode::Invalid,
                ..
            } => Ok(None),
            other => Err(self.unexpected(other)),
        }
    }

    /// Tells the tracker this peer holds `files` (manifest, chunks held, meta), in batches: by id
    /// first ([`TrackerRequest::Join`]), then in full for the files the tracker does not list.
    /// Stops at the first refusal, or at `NotRegistered`.
    pub async fn announce_all(&self, files: &[(Arc<Manifest>, Bitfield, FileMeta)]) -> Result<RegisteredOrNot> {
        let mut unknown = Vec::new();
        for batch in files.chunks(MAX_BATCH) {
            let joins = batch
                .iter()
                .map(|(manifest, chunks, meta)| TrackerRequest::Join {
                    file: manifest.id(),
                    chunks: chunks.clone(),
                    meta: *meta,
                })
                .collect();
            for (file, answer) in batch.iter().zip(self.batch(joins).await?) {
                match answer {
                    TrackerResponse::Ok => {}
                    TrackerResponse::Error {
                        code: ErrorCode::NotRegistered,
                        ..
                    } => return Ok(RegisteredOrNot::NotRegistered),
                    TrackerResponse::Error {
                        code: ErrorCode::NotFound | ErrorCode::Invalid,
                        ..
                    } => unknown.push(file),
                    other => return Err(self.unexpected(other)),
                }
            }
        }
        // Full announcements carry manifests: batches are cut to stay well inside a frame.
        let mut start = 0;
        while start < unknown.len() {
            let mut bytes = 0;
            let mut end = start;
            while end < unknown.len() && end - start < MAX_BATCH && (end == start || bytes < MAX_FRAME as usize / 4) {
                bytes += 64 + unknown[end].0.name.len() + 32 * unknown[end].0.chunks.len();
                end += 1;
            }
            let announces = unknown[start..end]
                .iter()
                .map(|(manifest, chunks, meta)| TrackerRequest::Announce {
                    manifest: (**manifest).clone(),
                    chunks: chunks.clone(),
                    meta: *meta,
                })
                .collect();
            for answer in self.batch(announces).await? {
                match answer {
                    TrackerResponse::Ok => {}
                    TrackerResponse::Error {
                        code: ErrorCode::NotRegistered,
                        ..
                    } => return Ok(RegisteredOrNot::NotRegistered),
                    other => return Err(self.unexpected(other)),
                }
            }
            start = end;
        }
        Ok(RegisteredOrNot::Ok)
    }

    /// Sends `requests` as one batch; one answer each, in order.
    async fn batch(&self, requests: Vec<TrackerRequest>) -> Result<Vec<TrackerResponse>> {
        let sent = requests.len();
        match self.request(&TrackerRequest::Batch(requests)).await? {
            TrackerResponse::Batch(answers) if answers.len() == sent => Ok(answers),
            other => Err(self.unexpected(other)),
        }
    }

    /// Tells the tracker about newly verified chunks.
    pub async fn have(&self, file: FileId, chunks: Vec<u32>) -> Result<RegisteredOrNot> {
        self.simple(TrackerRequest::HaveChunks { file, chunks }).await
    }

    /// Tells the tracker about newly verified chunks of many files, in batches cut to stay
    /// well inside a frame. Answers refused one by one are left (a file the tracker no longer
    /// lists); stops at `NotRegistered`.
    pub async fn have_all(&self, reports: &[(FileId, Vec<u32>)]) -> Result<RegisteredOrNot> {
        let mut start = 0;
        while start < reports.len() {
            let mut bytes = 0;
            let mut end = start;
            while end < reports.len() && end - start < MAX_BATCH && (end == start || bytes < MAX_FRAME as usize / 4) {
                bytes += 40 + 5 * reports[end].1.len();
                end += 1;
            }
            let requests = reports[start..end]
                .iter()
                .map(|(file, chunks)| TrackerRequest::HaveChunks {
                    file: *file,
                    chunks: chunks.clone(),
                })
                .collect();
            for (answer, (file, _)) in self.batch(requests).await?.into_iter().zip(&reports[start..end]) {
                match answer {
                    TrackerResponse::Ok => {}
                    TrackerResponse::Error {
                        code: ErrorCode::NotRegistered,
                        ..
                    } => return Ok(RegisteredOrNot::NotRegistered),
                    TrackerResponse::Error { message, .. } => {
                        tracing::debug!(file = %file.short(), "chunk report refused: {message}")
                    }
                    other => return Err(self.unexpected(other)),
                }
            }
            start = end;
        }
        Ok(RegisteredOrNot::Ok)
    }

    /// Tells the tracker this peer no longer holds `file`.
    pub async fn withdraw(&self, file: FileId) -> Result<RegisteredOrNot> {
        self.simple(TrackerRequest::Withdraw { file }).await
    }

    /// Tells the tracker what changed in a folder synced as `share` (at most
    /// [`MAX_BATCH`] changes).
    pub async fn share_update(&self, share: &ShareId, changes: Vec<SignedChange>) -> Result<RegisteredOrNot> {
        self.simple(TrackerRequest::ShareUpdate { share: *share, changes })
            .await
    }

    /// The entries of `share` changed since version `since`: every page of them, in version
    /// order, with the share's epoch and version as of the last page.
    pub async fn share_changes(&self, share: &ShareId, since: u64) -> Result<SharePage> {
        let mut all = SharePage::default();
        let mut since = since;
        loop {
            let request = TrackerRequest::ShareChanges { share: *share, since };
            let page = match self.request(&request).await? {
                TrackerResponse::Share(page) => page,
                other => return Err(self.unexpected(other)),
            };
            // Each page must go on from the last: a tracker that sends anything else is lying
            // or broken, and a loop on it would never end.
            let in_order = page.entries.windows(2).all(|w| w[0].version < w[1].version)
                && page.entries.first().is_none_or(|e| e.version > since)
                && !(page.more && page.entries.is_empty());
            if !in_order || all.entries.len() + page.entries.len() > MAX_LISTED {
                return Err(Error::Tracker {
                    addr: self.addr().host_port.clone(),
                    message: format!(
                        "sent share {share} out of order or longer than {MAX_LISTED} entries; is it a swarm tracker?"
                    ),
                });
            }
            if all.epoch != 0 && page.epoch != all.epoch {
                return Err(Error::Tracker {
                    addr: self.addr().host_port.clone(),
                    message: format!("share {share} began again while it was listed; list it again"),
                });
            }
            since = page.entries.last().map_or(since, |e| e.version);
            all.epoch = page.epoch;
            all.version = page.version;
            all.entries.extend(page.entries);
            if !page.more {
                return Ok(all);
            }
        }
    }

    /// Refreshes this peer at the tracker.
    pub async fn keepalive(&self) -> Result<RegisteredOrNot> {
        let answer = self.simple(TrackerRequest::Keepalive).await;
        self.hang_up_if_idle(HANG_UP_WHEN_IDLE).await;
        answer
    }

    /// Leaves the tracker gracefully.
    pub async fn leave(&self) -> Result<()> {
        self.simple(TrackerRequest::Leave).await.map(|_| ())
    }

    async fn simple(&self, request: TrackerRequest) -> Result<RegisteredOrNot> {
        match self.request(&request).await? {
            TrackerResponse::Ok => Ok(RegisteredOrNot::Ok),
            TrackerResponse::Error {
                code: ErrorCode::NotRegistered,
                ..
            } => Ok(RegisteredOrNot::NotRegistered),
            other => Err(self.unexpected(other)),
        }
    }

    /// The whole catalogue, sorted by name, then id: every page of it, less the versions a
    /// listed one replaced that nobody holds any more.
    pub async fn list(&self) -> Result<Vec<CatalogueEntry>> {
        Ok(without_superseded(
            self.all_pages(|page| TrackerRequest::List { page }).await?,
        ))
    }

    /// Files whose name equals or contains `query`: every page of them (replaced versions nobody
    /// holds left out, as in [`TrackerClient::list`]).
    pub async fn search(&self, query: &str, exact: bool) -> Result<Vec<CatalogueEntry>> {
        let found = self
            .all_pages(|page| TrackerRequest::Search {
                query: query.to_owned(),
                exact,
                page,
            })
            .await?;
        Ok(without_superseded(found))
    }

    /// Asks for page after page until the last. Each page must start after the previous one
    /// ended, and all of them hold at most [`MAX_LISTED`] entries, so a tracker cannot keep a
    /// node asking for ever.
    async fn all_pages(&self, request: impl Fn(PageRequest) -> TrackerRequest) -> Result<Vec<CatalogueEntry>> {
        let mut entries: Vec<CatalogueEntry> = Vec::new();
        let mut page = PageRequest::default();
        loop {
            let answer = match self.request(&request(page.clone())).await? {
                TrackerResponse::Catalogue(answer) => answer,
                other => return Err(self.unexpected(other)),
            };
            let cursor = |e: &CatalogueEntry| (e.name.clone(), e.file);
            let in_order = answer.entries.windows(2).all(|w| cursor(&w[0]) < cursor(&w[1]))
                && match (entries.last(), answer.entries.first()) {
                    (Some(last), Some(first)) => cursor(last) < cursor(first),
                    _ => true,
                };
            if !in_order || entries.len() + answer.entries.len() > MAX_LISTED {
                return Err(Error::Tracker {
                    addr: self.addr().host_port.clone(),
                    message: format!(
                        "sent a catalogue out of order or longer than {MAX_LISTED} entries; is it a swarm tracker?"
                    ),
                });
            }
            let next = answer.next();
            entries.extend(answer.entries);
            match next {
                Some(next) => page = next,
                None => return Ok(entries),
            }
        }
    }

    /// The file a person means by `text`: its id, the unique file whose id starts with `text`
    /// (8+ hex digits), else a name: exact (a folder's name finds its collection), or else the
    /// only name containing it. Of several versions under one name, the newest.
    pub async fn resolve(&self, text: &str) -> Result<FileId> {
        if let Ok(id) = text.parse::<FileId>() {
            return Ok(id);
        }
        if swarm_proto::ids::is_id_prefix(text) {
            match self.resolve_prefix(text).await {
                Err(Error::NotFound(_)) => {}
                found => return found,
            }
        }
        self.resolve_name(text).await
    }

    async fn resolve_name(&self, text: &str) -> Result<FileId> {
        let entries = self.search(text, false).await?;
        let folder = format!("{text}{}", swarm_proto::collection::SUFFIX);
        let exact: Vec<&CatalogueEntry> = entries.iter().filter(|e| e.name == text || e.name == folder).collect();
        let candidates = if exact.is_empty() {
            entries.iter().collect()
        } else {
            exact
        };
        let names: std::collections::BTreeSet<&str> = candidates.iter().map(|e| e.name.as_str()).collect();
        if names.len() > 1 {
            return Err(Error::AmbiguousId {
                prefix: text.to_owned(),
                candidates: candidates.iter().take(10).map(|e| (e.file, e.name.clone())).collect(),
            });
        }
        candidates
            .into_iter()
            .reduce(|a, b| if b.meta.is_newer(&b.file, &a.meta, &a.file) { b } else { a })
            .map(|newest| newest.file)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no file at tracker {} has an id starting with or a name containing `{text}`; `swarm ls` lists them",
                    self.addr().host_port
                ))
            })
    }

    async fn resolve_prefix(&self, text: &str) -> Result<FileId> {
        let prefix = text.to_ascii_lowercase();
        match self
            .request(&TrackerRequest::Resolve { prefix: prefix.clone() })
            .await?
        {
            TrackerResponse::Matches(matches) => match matches.as_slice() {
                [] => Err(Error::NotFound(format!(
                    "no file id starts with {prefix} at tracker {}",
                    self.addr().host_port
                ))),
                [(id, _)] => Ok(*id),
                _ => Err(Error::AmbiguousId {
                    prefix,
                    candidates: matches,
                }),
            },
            other => Err(self.unexpected(other)),
        }
    }

    /// Up to `want` live holders of a file, picked at random by the tracker, and its
    /// manifest if `manifest`.
    pub async fn locate(&self, file: FileId, manifest: bool, want: u16) -> Result<Located> {
        let answer = self.request(&TrackerRequest::Locate { file, manifest, want }).await?;
        self.located(file, answer)
    }

    /// The tracker's answer to a locate of `file`.
    fn located(&self, file: FileId, answer: TrackerResponse) -> Result<Located> {
        match answer {
            TrackerResponse::Located {
                manifest,
                holders,
                meta,
                live,
                retired,
            } => Ok(Located {
                manifest,
                holders,
                meta,
                live,
                retired,
            }),
            TrackerResponse::Error {
                code: ErrorCode::NotFound,
                ..
            } => Err(self.not_in_catalogue(file)),
            other => Err(self.unexpected(other)),
        }
    }

    /// Locates many files in batches of [`MAX_BATCH_LOCATES`], each with its manifest and up
    /// to `want` holders (at most [`MAX_BATCH_WANT`]): one answer per file, in order. Meant for
    /// small files (a tracker refuses, one by one, files too large to locate in a batch).
    pub async fn locate_many(&self, files: &[FileId], want: u16) -> Result<Vec<Result<Located>>> {
        let mut answers = Vec::with_capacity(files.len());
        for batch in files.chunks(MAX_BATCH_LOCATES) {
            let requests = batch
                .iter()
                .map(|file| TrackerRequest::Locate {
                    file: *file,
                    manifest: true,
                    want: want.min(MAX_BATCH_WANT),
                })
                .collect();
            for (file, answer) in batch.iter().zip(self.batch(requests).await?) {
                answers.push(self.located(*file, answer));
            }
        }
        Ok(answers)
    }

    /// Who holds which chunks of a file (up to 200 holders).
    pub async fn holdings(&self, file: FileId) -> Result<Vec<Holding>> {
        match self.request(&TrackerRequest::Holders { file }).await? {
            TrackerResponse::Holdings(holdings) => Ok(holdings),
            TrackerResponse::Error {
                code: ErrorCode::NotFound,
                ..
            } => Err(self.not_in_catalogue(file)),
            other => Err(self.unexpected(other)),
        }
    }

    /// Those of `peers` (this node served them lately) that were the tracker's spot checks
    /// of this node and have ended (at most [`MAX_CHECKS_ASKED`] are asked about; the rest are
    /// left out).
    pub async fn which_were_checks(&self, mut peers: Vec<PeerId>) -> Result<Vec<PeerId>> {
        peers.truncate(MAX_CHECKS_ASKED);
        match self.request(&TrackerRequest::WhichWereChecks { peers }).await? {
            TrackerResponse::Checks(checks) => Ok(checks),
            other => Err(self.unexpected(other)),
        }
    }

    /// Asks for (or, with `release`, gives up) the lease on reading `key` from its origin (see
    /// [`TrackerRequest::LeaseOrigin`]): who holds it now, and for how much longer.
    pub async fn lease_origin(&self, key: &str, release: bool) -> Result<(PeerId, std::time::Duration)> {
        let request = TrackerRequest::LeaseOrigin {
            key: key.to_owned(),
            release,
        };
        match self.request(&request).await? {
            TrackerResponse::OriginLease { holder, ms_left } => {
                Ok((holder, std::time::Duration::from_millis(ms_left.into())))
            }
            other => Err(self.unexpected(other)),
        }
    }

    fn not_in_catalogue(&self, file: FileId) -> Error {
        Error::NotFound(format!(
            "file {file} is not in the catalogue of tracker {}",
            self.addr().host_port
        ))
    }
}

/// `entries` without the versions that a listed one replaced and that no live peer holds any
/// more (a synced file's old versions, kept in the catalogue for an hour): what is there now.
fn without_superseded(entries: Vec<CatalogueEntry>) -> Vec<CatalogueEntry> {
    let replaced: std::collections::HashSet<swarm_proto::FileId> =
        entries.iter().filter_map(|e| e.meta.replaces).collect();
    entries
        .into_iter()
        .filter(|e| e.holders > 0 || !replaced.contains(&e.file))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, holders: u32, replaces: Option<u8>) -> CatalogueEntry {
        CatalogueEntry {
            file: FileId([n; 32]),
            name: "notes.txt".into(),
            size: 1,
            chunk_count: 1,
            holders,
            available: holders.min(1),
            meta: FileMeta {
                modified_ns: 0,
                replaces: replaces.map(|r| FileId([r; 32])),
            },
        }
    }

    #[test]
    fn a_replaced_version_nobody_holds_is_not_listed() {
        let listed = without_superseded(vec![entry(1, 0, None), entry(2, 1, Some(1)), entry(3, 0, None)]);
        let ids: Vec<u8> = listed.iter().map(|e| e.file.0[0]).collect();
        assert_eq!(
            ids,
            vec![2, 3],
            "1 was replaced by 2 and is held by no one; 3 was replaced by none"
        );
        let still_held = without_superseded(vec![entry(1, 1, None), entry(2, 1, Some(1))]);
        assert_eq!(still_held.len(), 2, "an old version someone still serves stays");
    }
}
