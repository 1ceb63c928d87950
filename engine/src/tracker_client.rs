//! Talking to a tracker: address parsing (`HOST:PORT` or `ID@HOST:PORT`), trust on first use
//! for unpinned trackers, one long-lived connection re-dialled when it drops, failover among
//! several trackers that share one state, and a typed method per request.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use quinn::Connection;
use tokio::sync::Mutex;

use swarm_proto::access::Access;
use swarm_proto::protocol::{
    CatalogueEntry, ErrorCode, Holder, Holding, PageRequest, TrackerRequest, TrackerResponse, INTRODUCTION_WAIT,
    MAX_BATCH, MAX_BATCH_LOCATES, MAX_BATCH_WANT, MAX_FRAME,
};
use swarm_proto::share::SharePage;
use swarm_proto::share_key::SignedChange;

/// Most catalogue entries one listing gathers over all its pages.
pub const MAX_LISTED: usize = 10_000_000;
use std::sync::Arc;
use swarm_proto::ticket::{self, Ticket, TicketTracker};
use swarm_proto::transport::{self, Profile, Transport};
use swarm_proto::traversal::{Introduction, RelayPass};
use swarm_proto::{Bitfield, ConnectError, FileId, FileMeta, Identity, Manifest, PeerId, ShareId};

use crate::error::{Error, Result};
use crate::known_trackers::KnownTrackers;

/// Pause before asking a busy tracker again; doubled each time.
const BUSY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// Longest wait for the answer to one request.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// How many times a busy tracker is asked again (about 3 s of pauses in all).
const BUSY_RETRIES: u32 = 5;
/// With other trackers to turn to, the longest wait for a dial or an answer before turning
/// to the next one.
const FAILOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where a tracker is, and optionally which id it must prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerAddr {
    /// `HOST:PORT`, resolved at each dial.
    pub host_port: String,
    /// The pinned id, from `ID@HOST:PORT`.
    pub id: Option<PeerId>,
}

impl FromStr for TrackerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, host_port) = match s.split_once('@') {
            Some((id, rest)) => (
                Some(
                    id.parse::<PeerId>()
                        .map_err(|e| format!("bad tracker id in `{s}`: {e}"))?,
                ),
                rest,
            ),
            None => (None, s),
        };
        match host_port.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(TrackerAddr {
                host_port: host_port.to_owned(),
                id,
            }),
            _ => Err(format!("`{s}` is not HOST:PORT or ID@HOST:PORT")),
        }
    }
}

impl fmt::Display for TrackerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "{id}@{}", self.host_port),
            None => f.write_str(&self.host_port),
        }
    }
}

/// Several trackers that share one state (`--store` on one Redis): a peer uses one of them,
/// picked at random so that peers spread over them, and turns to the next when it stops
/// answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trackers(Vec<TrackerAddr>);

impl Trackers {
    /// The list, or `None` if it is empty.
    pub fn new(list: Vec<TrackerAddr>) -> Option<Trackers> {
        (!list.is_empty()).then_some(Trackers(list))
    }

    /// Every tracker, in the order given.
    pub fn list(&self) -> &[TrackerAddr] {
        &self.0
    }

    /// The trackers a ticket names.
    pub fn of_ticket(ticket: &Ticket) -> Trackers {
        Trackers::named(&ticket.trackers).expect("a ticket names at least one tracker")
    }

    /// The trackers of a ticket's list, or `None` if it is empty.
    pub fn named(list: &[TicketTracker]) -> Option<Trackers> {
        let list = list
            .iter()
            .map(|t| TrackerAddr {
                host_port: t.host_port.clone(),
                id: t.id,
            })
            .collect();
        Trackers::new(list)
    }

    /// These trackers as a ticket names them (the first [`ticket::MAX_TRACKERS`]).
    pub fn for_ticket(&self) -> Vec<TicketTracker> {
        self.0
            .iter()
            .take(ticket::MAX_TRACKERS)
            .map(|t| TicketTracker {
                id: t.id,
                host_port: t.host_port.clone(),
            })
            .collect()
    }

    /// A ticket for `file` on these trackers, naming `holders` too.
    pub fn ticket_for(&self, file: FileId, holders: Vec<ticket::TicketHolder>) -> Ticket {
        Ticket {
            file,
            trackers: self.for_ticket(),
            holders: holders.into_iter().take(ticket::MAX_HOLDERS).collect(),
        }
    }
}

impl From<TrackerAddr> for Trackers {
    fn from(addr: TrackerAddr) -> Self {
        Trackers(vec![addr])
    }
}

impl FromStr for Trackers {
    type Err = String;

    /// `A,B,C`, each `HOST:PORT` or `ID@HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let list = s
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(TrackerAddr::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Trackers::new(list).ok_or_else(|| "no tracker given".to_owned())
    }
}

impl fmt::Display for Trackers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

/// A file located through the tracker.
#[derive(Debug, Clone)]
pub struct Located {
    /// The manifest as the tracker sent it (not yet checked), if it was asked for.
    pub manifest: Option<Manifest>,
    /// A random sample of live holders.
    pub holders: Vec<Holder>,
    /// What the holders announced with it.
    pub meta: FileMeta,
    /// How many live peers hold (or fetch) it.
    pub live: u32,
    /// Nobody holds it because its last holder withdrew it (replaced or deleted it).
    pub retired: bool,
}

/// What the tracker answered to `Register`.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// The address the tracker gives out for this peer.
    pub addr: SocketAddr,
    /// Seconds of silence after which the tracker drops this peer.
    pub timeout_secs: u64,
    /// Seconds between chunk reports.
    pub report_secs: u32,
}

/// A connection to a tracker, re-dialled on demand; with several trackers, to the one in use.
pub struct TrackerClient {
    transport: Transport,
    trackers: Trackers,
    /// The index of the tracker in use.
    current: std::sync::atomic::AtomicUsize,
    known: Option<KnownTrackers>,
    /// The open connection, and the index of the tracker it goes to.
    connection: Mutex<Option<(usize, Connection)>>,
    /// When a request other than a keepalive was last made.
    last_busy: std::sync::Mutex<std::time::Instant>,
    /// Waits for introductions under way: the connection they run on is kept.
    waiting: std::sync::atomic::AtomicUsize,
}

/// A client that made no request but keepalives for this long hangs up after each keepalive:
/// an idle peer holds no connection (about 60 KiB of the tracker's memory) between its
/// keepalives, once a minute.
const HANG_UP_WHEN_IDLE: std::time::Duration = std::time::Duration::from_secs(15);

impl TrackerClient {
    /// A client for the tracker(s) at `trackers`; with `known`, unpinned trackers are
    /// remembered on first contact and must keep the same id afterwards.
    pub fn new(transport: Transport, trackers: impl Into<Trackers>, known: Option<KnownTrackers>) -> TrackerClient {
        let trackers = trackers.into();
        let first = rand::random_range(0..trackers.0.len());
        TrackerClient {
            transport,
            trackers,
            current: std::sync::atomic::AtomicUsize::new(first),
            known,
            connection: Mutex::new(None),
            last_busy: std::sync::Mutex::new(std::time::Instant::now()),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A client with a throwaway identity and endpoint, for one-off queries (`ls`, `search`).
    pub fn ephemeral(addr: impl Into<Trackers>, known: Option<KnownTrackers>, access: Access) -> Result<TrackerClient> {
        let transport = Transport::bind_with(
            std::sync::Arc::new(Identity::generate()?),
            SocketAddr::from(([0, 0, 0, 0], 0)),
            access,
        )?;
        Ok(TrackerClient::new(transport, addr, known))
    }

    /// The address of the tracker in use.
    pub fn addr(&self) -> &TrackerAddr {
        &self.trackers.0[self.current()]
    }

    /// Every tracker this client may use.
    pub fn trackers(&self) -> &Trackers {
        &self.trackers
    }

    fn current(&self) -> usize {
        self.current.load(std::sync::atomic::Ordering::Relaxed) % self.trackers.0.len()
    }

    /// Turns from tracker `failed` to the next one (unless another request did already).
    fn fail_over(&self, failed: usize) {
        let next = (failed + 1) % self.trackers.0.len();
        let moved = self.current.compare_exchange(
            failed,
            next,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
        if moved.is_ok() {
            tracing::warn!(
                from = %self.trackers.0[failed].host_port,
                to = %self.trackers.0[next].host_port,
                "tracker not answering; turning to the next"
            );
        }
    }

    fn error(&self, message: impl Into<String>) -> Error {
        self.error_at(self.current(), message)
    }

    fn error_at(&self, index: usize, message: impl Into<String>) -> Error {
        Error::Tracker {
            addr: self.trackers.0[index].host_port.clone(),
            message: message.into(),
        }
    }

    async fn dial(&self, index: usize) -> Result<Connection> {
        let addr = &self.trackers.0[index];
        let target = tokio::net::lookup_host(&addr.host_port)
            .await
            .map_err(|e| self.error_at(index, format!("cannot resolve: {e}")))?
            .map(swarm_proto::transport::canonical)
            // The resolver's order (RFC 6724: IPv6 first only where this machine has a route of
            // that kind); a socket on `[::]` reaches both families, one on `0.0.0.0` only IPv4.
            .find(|a| a.is_ipv4() || self.transport.local_addr().is_ipv6())
            .ok_or_else(|| {
                self.error_at(
                    index,
                    "it has only IPv6 addresses and this node listens on IPv4 only (see --listen)",
                )
            })?;
        let remembered = match (&addr.id, &self.known) {
            (Some(_), _) | (None, None) => None,
            (None, Some(known)) => known.get(&addr.host_port)?,
        };
        let expected = addr.id.or(remembered);
        let (connection, id) = self.transport.connect_as(target, expected, Profile::Tracker).await.map_err(|source| {
            let hint = match (&source, remembered, addr.id) {
                (ConnectError::WrongId { .. }, Some(_), None) => format!(
                    "; this tracker was remembered with another id (known_trackers): if it was re-keyed on purpose, name it with its new id, NEWID@{}",
                    addr.host_port
                ),
                (ConnectError::WrongId { .. }, _, Some(_)) => "; check the tracker id given".to_owned(),
                (ConnectError::Unreachable(_), ..) => "; is `swarm tracker` running there?".to_owned(),
                _ => String::new(),
            };
            Error::TrackerConnect {
                addr: addr.host_port.clone(),
                source,
                hint,
            }
        })?;
        if expected.is_none() {
            if let Some(known) = &self.known {
                known.remember(&addr.host_port, id)?;
            }
            tracing::info!(tracker = %id.short(), addr = %addr.host_port, "trusting tracker on first use");
        }
        Ok(connection)
    }

    /// Sends `request`, dialling (again) if needed, and returns the answer as it came.
    /// A tracker that says `Busy` (this peer sent too many requests lately) is asked again
    /// after a growing pause, a few times, before its answer is passed on.
    pub async fn request(&self, request: &TrackerRequest) -> Result<TrackerResponse> {
        if *request != TrackerRequest::Keepalive {
            *self.last_busy.lock().expect("lock poisoned") = std::time::Instant::now();
        }
        let mut pause = BUSY_BACKOFF;
        for _ in 0..BUSY_RETRIES {
            match self.request_once(request).await? {
                TrackerResponse::Error {
                    code: ErrorCode::Busy, ..
                } => {
                    tracing::debug!("tracker is rate-limiting us; asking again in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                response => return Ok(response),
            }
        }
        self.request_once(request).await
    }

    /// One request, to the tracker in use. A connection that fails is dropped and dialled
    /// again once; with several trackers, a tracker that does not answer within
    /// [`FAILOVER_TIMEOUT`] is left for the next, each tried in turn.
    async fn request_once(&self, request: &TrackerRequest) -> Result<TrackerResponse> {
        let several = self.trackers.0.len() > 1;
        let wait = if several { FAILOVER_TIMEOUT } else { ANSWER_TIMEOUT };
        let attempts = if several { self.trackers.0.len() + 1 } else { 2 };
        let mut last_error = None;
        for _ in 0..attempts {
            let index = self.current();
            let connection = if several {
                match tokio::time::timeout(wait, self.connection(index)).await {
                    Ok(Ok(connection)) => connection,
                    Ok(Err(e)) => {
                        self.fail_over(index);
                        last_error = Some(e);
                        continue;
                    }
                    Err(_) => {
                        self.fail_over(index);
                        last_error = Some(self.error_at(index, format!("no connection within {wait:?}")));
                        continue;
                    }
                }
            } else {
                self.connection(index).await?
            };
            let failure = match tokio::time::timeout(wait, transport::exchange(&connection, request, MAX_FRAME)).await {
                Ok(Ok((response, _))) => return Ok(response),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {wait:?}"),
            };
            self.forget(&connection).await;
            if several {
                self.fail_over(index);
            }
            last_error = Some(self.error_at(index, format!("request failed: {failure}")));
        }
        Err(last_error.expect("loop ran"))
    }

    /// The live connection to tracker `index`, dialled if there is none. The lock is held
    /// while dialling so that concurrent requests share one new connection.
    async fn connection(&self, index: usize) -> Result<Connection> {
        let mut slot = self.connection.lock().await;
        if let Some((_, c)) = slot
            .as_ref()
            .filter(|(at, c)| *at == index && c.close_reason().is_none())
        {
            return Ok(c.clone());
        }
        if let Some((_, old)) = slot.take() {
            old.close(
                swarm_proto::protocol::CloseCode::Done.code(),
                b"moved to another tracker",
            );
        }
        let c = self.dial(index).await?;
        *slot = Some((index, c.clone()));
        Ok(c)
    }

    async fn forget(&self, failed: &Connection) {
        let mut slot = self.connection.lock().await;
        if slot.as_ref().is_some_and(|(_, c)| c.stable_id() == failed.stable_id()) {
            *slot = None;
        }
    }

    fn unexpected(&self, response: TrackerResponse) -> Error {
        match response {
            TrackerResponse::Error { code, message } => self.error(format!("{message} ({code:?})")),
            other => self.error(format!("unexpected answer {other:?}")),
        }
    }

    /// The address this client's endpoint is bound to (the node's own).
    pub fn local_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// The endpoint this client sends from (the node's own).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

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
        let idle = self.last_busy.lock().expect("lock poisoned").elapsed() >= HANG_UP_WHEN_IDLE;
        // A peer behind a NAT waits for introductions on this connection (and keeps its NAT's
        // mapping to the tracker alive with it): it stays.
        let waiting = self.waiting.load(std::sync::atomic::Ordering::Relaxed) > 0;
        if idle && !waiting {
            self.hang_up().await;
        }
        answer
    }

    /// Closes the connection, if one is open; the next request dials again. A peer with
    /// nothing more to ask for a while (one that has just joined, or only keeps its session
    /// alive) hangs up so that the tracker keeps no connection for it.
    pub async fn hang_up(&self) {
        if let Some((_, connection)) = self.connection.lock().await.take() {
            connection.close(swarm_proto::protocol::CloseCode::Done.code(), b"idle");
        }
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

    fn not_in_catalogue(&self, file: FileId) -> Error {
        Error::NotFound(format!(
            "file {file} is not in the catalogue of tracker {}",
            self.addr().host_port
        ))
    }
}

/// Whether the tracker still knew this peer when it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisteredOrNot {
    /// Done.
    Ok,
    /// The tracker has forgotten this peer (it restarted, or the peer was silent too long):
    /// register again and re-announce.
    NotRegistered,
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
    use swarm_proto::FileMeta;

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

    #[test]
    fn parses_tracker_addresses() {
        let plain: TrackerAddr = "tracker:7070".parse().unwrap();
        assert_eq!(plain.host_port, "tracker:7070");
        assert_eq!(plain.id, None);
        let id = PeerId([7; 32]);
        let pinned: TrackerAddr = format!("{id}@10.0.0.1:7070").parse().unwrap();
        assert_eq!(pinned.id, Some(id));
        assert_eq!(pinned.to_string(), format!("{id}@10.0.0.1:7070"));
        assert!("nohost".parse::<TrackerAddr>().is_err());
        assert!("x@h:1".parse::<TrackerAddr>().is_err());
        assert!("h:99999".parse::<TrackerAddr>().is_err());
    }
}
