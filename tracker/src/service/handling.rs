//! Answering requests: each stream's request read, limited, spot-checked where it makes a
//! claim, made as a change, and answered.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use swarm_proto::meta::nanos_since_epoch;
use swarm_proto::protocol::{
    CataloguePage, CloseCode, ErrorCode, ProtocolError, Refusal, TrackerRequest, TrackerResponse, MAX_BATCH,
    MAX_BATCH_LOCATES, MAX_BATCH_LOCATE_CHUNKS, MAX_BATCH_WANT, MAX_CHECKS_ASKED, MAX_FRAME,
};
use swarm_proto::share::check_change;
use swarm_proto::share_key::SignedChange;
use swarm_proto::transport::{self, IncomingStream};
use swarm_proto::{Bitfield, FileId, FileMeta, Manifest, PeerId, ShareId};
use tracing::{debug, info, warn, Instrument};

use crate::audit::{Claim, Verdict};
use crate::change::{Announce, Checked, Have, Join, Keepalive, Leave, Register, ShareUpdate, Withdraw};
use crate::telemetry;

use super::inner::{unix_ms_now, Audit, Service, Store, AUDITS_PER_BATCH, MAX_DEFERRED, REQUESTS_PER_SECOND};

pub(super) async fn serve_stream(mut stream: IncomingStream, service: &Service) -> Result<(), ProtocolError> {
    // Checked before the request is even read, so that a flood costs the tracker little.
    let response = if service.requests.check_key(&stream.peer).is_err() {
        let _ = stream.recv.stop(CloseCode::Cancelled.code());
        TrackerResponse::Error {
            code: ErrorCode::Busy,
            message: format!("too many requests from this peer (at most {REQUESTS_PER_SECOND} per second); slow down"),
        }
    } else {
        match transport::read_request(&mut stream.recv, MAX_FRAME).await {
            Ok(request) => {
                let kind = request_kind(&request);
                let span = tracing::debug_span!("request", kind, peer = %stream.peer.short());
                let started = Instant::now();
                let tracker_ip = stream.local_ip();
                let response = match request {
                    TrackerRequest::AwaitIntroductions => service.introducer.wait(stream.peer, tracker_ip).await,
                    TrackerRequest::Introduce { peer, relay } => {
                        let _in = span.enter();
                        service
                            .introduce(stream.peer, stream.remote, tracker_ip, peer, relay)
                            .await
                    }
                    request => {
                        service
                            .handle(stream.peer, stream.remote, request)
                            .instrument(span.clone())
                            .await
                    }
                };
                telemetry::request(kind, &response, started.elapsed());
                response
            }
            Err(refusal) => {
                transport::refuse_and_close::<TrackerResponse>(&mut stream, refusal).await;
                return Ok(());
            }
        }
    };
    let mut response = response;
    crate::vantage::as_seen_by(&mut response, stream.remote, stream.local_ip());
    transport::respond(&mut stream.send, &response).await?;
    let _ = stream.send.stopped().await;
    Ok(())
}

impl Service {
    /// `asker` (at `remote`, having dialled `tracker_ip`) asks to be introduced to `holder`.
    async fn introduce(
        &self,
        asker: PeerId,
        remote: SocketAddr,
        tracker_ip: Option<std::net::IpAddr>,
        holder: PeerId,
        relay: bool,
    ) -> TrackerResponse {
        let Some(holder_addr) = self.state().peer_addr(&holder) else {
            return Refusal::new(
                ErrorCode::NotFound,
                format!("peer {} is not registered here", holder.short()),
            )
            .into();
        };
        let answer = self
            .introducer
            .introduce(asker, remote, tracker_ip, holder, holder_addr, relay)
            .await;
        debug!(holder = %holder.short(), relay, ok = !matches!(answer, TrackerResponse::Error { .. }), "introduction");
        answer
    }

    async fn handle(&self, peer: PeerId, remote: SocketAddr, request: TrackerRequest) -> TrackerResponse {
        self.handle_with(peer, remote, request, Audit::Claim).await
    }

    /// [`Service::handle`], spot-checking a claim the request makes only if `audit` says so.
    async fn handle_with(
        &self,
        peer: PeerId,
        remote: SocketAddr,
        request: TrackerRequest,
        audit: Audit,
    ) -> TrackerResponse {
        match request {
            TrackerRequest::Register { advertise, addrs } => {
                let addr = advertise.unwrap_or(remote);
                let register = Register {
                    peer,
                    addr,
                    other_addrs: crate::vantage::other_addrs(addr, addrs),
                    ip: remote.ip(),
                };
                match self.commit(register).await {
                    Ok(Ok(())) => self.registered(peer),
                    Ok(Err(refusal)) | Err(refusal) => refusal.into(),
                }
            }
            TrackerRequest::Announce { manifest, chunks, meta } => {
                self.announce(peer, manifest, chunks, meta, audit).await
            }
            TrackerRequest::Batch(requests) => self.batch(peer, remote, requests).await,
            TrackerRequest::OpenRelay { .. } => Refusal::new(
                ErrorCode::Unsupported,
                "this is a tracker: relay sessions are opened by a relay (swarm relay) for its trackers",
            )
            .into(),
            TrackerRequest::Join { file, chunks, meta } => {
                let join = Join {
                    peer,
                    file,
                    chunks,
                    meta,
                };
                match self.commit(join).await {
                    Ok(Ok(())) => self.check_claim(peer, Ok((file, None)), audit).await,
                    Ok(Err(refusal)) | Err(refusal) => refusal.into(),
                }
            }
            TrackerRequest::HaveChunks { file, chunks } => done(self.commit(Have { peer, file, chunks }).await),
            TrackerRequest::Withdraw { file } => done(self.commit(Withdraw { peer, file }).await),
            TrackerRequest::Keepalive => done(self.commit(Keepalive { peer }).await),
            TrackerRequest::Leave => match self.commit(Leave { peer }).await {
                Ok(left) => {
                    if left {
                        info!("left");
                    }
                    TrackerResponse::Ok
                }
                Err(refusal) => refusal.into(),
            },
            TrackerRequest::ShareUpdate { share, changes } => self.share_update(peer, share, changes).await,
            TrackerRequest::WhichWereChecks { peers } if peers.len() > MAX_CHECKS_ASKED => Refusal::new(
                ErrorCode::Limit,
                format!("at most {MAX_CHECKS_ASKED} peers may be asked about at once"),
            )
            .into(),
            TrackerRequest::WhichWereChecks { peers } => {
                TrackerResponse::Checks(self.auditor.which_were_checks(peer, &peers))
            }
            TrackerRequest::LeaseOrigin { key, release } => self.leases.ask(peer, key, release, Instant::now()),
            read => self.answer(peer, read),
        }
    }

    /// The answer to a registration just made: the address the tracker gives out for `peer`,
    /// and how often it must speak.
    fn registered(&self, peer: PeerId) -> TrackerResponse {
        let state = self.state();
        let Some(addr) = state.peer_addr(&peer) else {
            return Refusal::new(
                ErrorCode::NotRegistered,
                "registration lost at once; send Register again",
            )
            .into();
        };
        info!(%addr, "registered");
        TrackerResponse::Registered {
            addr,
            peer,
            timeout_secs: state.peer_timeout().as_secs(),
            report_secs: state.report_secs(),
        }
    }

    /// Changes to a share's listing.
    async fn share_update(&self, peer: PeerId, share: ShareId, changes: Vec<SignedChange>) -> TrackerResponse {
        if changes.len() > MAX_BATCH {
            return Refusal::new(
                ErrorCode::Limit,
                format!(
                    "a share update holds at most {MAX_BATCH} changes, not {}",
                    changes.len()
                ),
            )
            .into();
        }
        // Checked before anything is committed: a forged or future change never reaches the
        // state, nor the log that other trackers read.
        let now_ns = nanos_since_epoch(SystemTime::now());
        if let Some(why) = changes.iter().find_map(|c| check_change(&share, c, now_ns).err()) {
            return Refusal::new(ErrorCode::Invalid, why).into();
        }
        let epoch = unix_ms_now();
        let update = ShareUpdate {
            peer,
            share,
            changes,
            epoch,
        };
        match self.commit(update).await {
            Ok(Ok(_)) => TrackerResponse::Ok,
            Ok(Err(refusal)) | Err(refusal) => refusal.into(),
        }
    }

    /// A batch of holding updates, done in order, one answer each. Only announcements, joins,
    /// chunk reports and withdrawals may be batched.
    async fn batch(&self, peer: PeerId, remote: SocketAddr, requests: Vec<TrackerRequest>) -> TrackerResponse {
        if requests.len() > MAX_BATCH {
            return Refusal::new(
                ErrorCode::Limit,
                format!("a batch holds at most {MAX_BATCH} requests, not {}", requests.len()),
            )
            .into();
        }
        // A few claims of a batch are spot-checked, not all: checks are one at a time, and a
        // node sharing 20,000 files would wait minutes for its batches. The others are left
        // to the random checks that run all the time.
        let claims: Vec<usize> = (0..requests.len())
            .filter(|&i| {
                matches!(
                    requests[i],
                    TrackerRequest::Announce { .. } | TrackerRequest::Join { .. }
                )
            })
            .collect();
        let audited: Vec<usize> =
            rand::seq::IndexedRandom::choose_multiple(&claims[..], &mut rand::rng(), AUDITS_PER_BATCH)
                .copied()
                .collect();
        let locates = requests
            .iter()
            .filter(|r| matches!(r, TrackerRequest::Locate { .. }))
            .count();
        if locates > MAX_BATCH_LOCATES {
            return Refusal::new(
                ErrorCode::Limit,
                format!("a batch holds at most {MAX_BATCH_LOCATES} locates, not {locates}"),
            )
            .into();
        }
        let mut answers = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            let answer = match request {
                TrackerRequest::Announce { .. }
                | TrackerRequest::Join { .. }
                | TrackerRequest::HaveChunks { .. }
                | TrackerRequest::Withdraw { .. } => {
                    let audit = if audited.contains(&i) {
                        Audit::Claim
                    } else {
                        Audit::Skip
                    };
                    Box::pin(self.handle_with(peer, remote, request, audit)).await
                }
                TrackerRequest::Locate { file, manifest, want } => self.locate_in_batch(peer, file, manifest, want),
                _ => Refusal::new(
                    ErrorCode::Unsupported,
                    "only Announce, Join, HaveChunks, Withdraw and Locate may be batched",
                )
                .into(),
            };
            answers.push(answer);
        }
        TrackerResponse::Batch(answers)
    }

    /// A locate within a batch: at most [`MAX_BATCH_WANT`] holders, and only of a file small
    /// enough that a batch's answer stays well inside a frame.
    fn locate_in_batch(&self, peer: PeerId, file: FileId, manifest: bool, want: u16) -> TrackerResponse {
        let chunks = self.state().manifest(&file).map(|m| m.chunk_count);
        if chunks.is_some_and(|c| c > MAX_BATCH_LOCATE_CHUNKS) {
            return Refusal::new(
                ErrorCode::Invalid,
                format!(
                    "file {} has more than {MAX_BATCH_LOCATE_CHUNKS} chunks: locate it alone, not in a batch",
                    file.short()
                ),
            )
            .into();
        }
        self.answer(
            peer,
            TrackerRequest::Locate {
                file,
                manifest,
                want: want.min(MAX_BATCH_WANT),
            },
        )
    }

    /// An announcement: recorded, its claim spot-checked, and a new manifest persisted.
    async fn announce(
        &self,
        peer: PeerId,
        manifest: Manifest,
        chunks: Bitfield,
        meta: FileMeta,
        audit: Audit,
    ) -> TrackerResponse {
        let copy = matches!(self.store, Store::Embedded(_)).then(|| manifest.clone());
        let announce = Announce {
            peer,
            manifest,
            chunks,
            meta,
        };
        match self.commit(announce).await {
            Ok(announced) => {
                self.check_claim(peer, announced.map(|(id, is_new)| (id, copy.filter(|_| is_new))), audit)
                    .await
            }
            Err(refusal) => refusal.into(),
        }
    }

    /// What follows a recorded holding of `file` (or its refusal): the claim spot-checked
    /// (when the audit budget allows), and a manifest new to the embedded catalogue persisted
    /// once it is known not to be a lie.
    async fn check_claim(
        &self,
        peer: PeerId,
        recorded: Result<(FileId, Option<Manifest>), Refusal>,
        audit: Audit,
    ) -> TrackerResponse {
        let (claim, new_manifest) = match recorded {
            Ok((id, new_manifest)) => {
                let claim = (audit == Audit::Claim && self.auditor.enabled())
                    .then(|| self.state().claim_of(&peer, &id, rand::random()))
                    .flatten();
                (claim, new_manifest)
            }
            Err(refusal) => {
                warn!("announce refused: {}", refusal.message);
                return refusal.into();
            }
        };
        let claim = claim.and_then(|claim| {
            if !self.introducer.waits(&peer) {
                return Some(claim);
            }
            let mut deferred = self.deferred.lock().expect("deferred claims lock poisoned");
            if deferred.len() < MAX_DEFERRED {
                debug!(file = %claim.file.short(), "spot check deferred: the holder is behind a NAT");
                deferred.push_back(claim);
            }
            None
        });
        if let Some(claim) = claim {
            match self.auditor.check(&claim).await {
                Some(Verdict::Lied(why)) => {
                    self.record_check(&claim, true).await;
                    warn!(file = %claim.file.short(), "spot check failed, not listed: {why}");
                    return TrackerResponse::Error {
                        code: ErrorCode::Invalid,
                        message: format!(
                            "spot check failed: asked for chunk {} of {}, this peer {why}; it is not listed as a holder",
                            claim.chunk,
                            claim.file.short()
                        ),
                    };
                }
                Some(Verdict::Held) => self.record_check(&claim, false).await,
                Some(Verdict::Unknown(why)) => debug!(file = %claim.file.short(), "spot check inconclusive: {why}"),
                None => debug!(file = %claim.file.short(), "spot check deferred: audit budget in use"),
            }
        }
        if let (Some(manifest), Store::Embedded(store)) = (new_manifest, &self.store) {
            info!(file = %manifest.id().short(), name = %manifest.name, "new file in the catalogue");
            store.insert(&manifest);
        }
        TrackerResponse::Ok
    }

    /// Records the outcome of a spot check of `claim`.
    pub(super) async fn record_check(&self, claim: &Claim, lied: bool) {
        let checked = Checked {
            peer: claim.peer,
            file: claim.file,
            lied,
        };
        if let Err(refusal) = self.commit(checked).await {
            debug!("spot check not recorded: {}", refusal.message);
        }
    }

    /// A request that changes nothing, answered from this tracker's memory.
    fn answer(&self, peer: PeerId, request: TrackerRequest) -> TrackerResponse {
        let mut state = self.state();
        match request {
            TrackerRequest::List { page } => TrackerResponse::Catalogue(CataloguePage::of(state.list(), &page)),
            TrackerRequest::Search { query, exact, page } => {
                TrackerResponse::Catalogue(CataloguePage::of(state.search(&query, exact), &page))
            }
            TrackerRequest::Resolve { prefix } => TrackerResponse::Matches(state.resolve(&prefix)),
            TrackerRequest::Locate { file, manifest, want } => {
                match state.locate(&file, &peer, usize::from(want), Instant::now(), &mut rand::rng()) {
                    Some(located) => TrackerResponse::Located {
                        manifest: manifest.then(|| (*located.manifest).clone()),
                        meta: located.meta,
                        holders: located.holders,
                        live: located.live,
                        retired: located.retired,
                    },
                    None => not_in_catalogue(&file),
                }
            }
            TrackerRequest::ShareChanges { share, since } => TrackerResponse::Share(state.share_changes(&share, since)),
            TrackerRequest::Holders { file } => match state.holdings(&file) {
                Some(holdings) => TrackerResponse::Holdings(holdings),
                None => not_in_catalogue(&file),
            },
            // Requests that change the state are made by `handle`, never answered from memory.
            change => Refusal::new(
                ErrorCode::Internal,
                format!(
                    "{} changes the state; it cannot be answered as a read",
                    request_kind(&change)
                ),
            )
            .into(),
        }
    }
}

/// The answer to a change that gives only a refusal or nothing.
fn done(committed: Result<Result<(), Refusal>, Refusal>) -> TrackerResponse {
    match committed {
        Ok(Ok(())) => TrackerResponse::Ok,
        Ok(Err(refusal)) | Err(refusal) => refusal.into(),
    }
}

fn not_in_catalogue(file: &swarm_proto::FileId) -> TrackerResponse {
    TrackerResponse::Error {
        code: ErrorCode::NotFound,
        message: format!("file {file} is not in the catalogue"),
    }
}

/// A short name for a request's kind, for spans and logs.
fn request_kind(request: &TrackerRequest) -> &'static str {
    match request {
        TrackerRequest::Register { .. } => "register",
        TrackerRequest::Announce { .. } => "announce",
        TrackerRequest::HaveChunks { .. } => "have",
        TrackerRequest::Withdraw { .. } => "withdraw",
        TrackerRequest::Keepalive => "keepalive",
        TrackerRequest::Leave => "leave",
        TrackerRequest::List { .. } => "list",
        TrackerRequest::Search { .. } => "search",
        TrackerRequest::Resolve { .. } => "resolve",
        TrackerRequest::Locate { .. } => "locate",
        TrackerRequest::Holders { .. } => "holders",
        TrackerRequest::Join { .. } => "join",
        TrackerRequest::Batch(_) => "batch",
        TrackerRequest::ShareUpdate { .. } => "share_update",
        TrackerRequest::ShareChanges { .. } => "share_changes",
        TrackerRequest::AwaitIntroductions => "await_introductions",
        TrackerRequest::Introduce { .. } => "introduce",
        TrackerRequest::OpenRelay { .. } => "open_relay",
        TrackerRequest::WhichWereChecks { .. } => "which_were_checks",
        TrackerRequest::LeaseOrigin { .. } => "lease_origin",
    }
}
