//! A node's session with its tracker: a handle, and a task that does the periodic work.
//!
//! The handle registers, announces and withdraws files, and locates them; a request answered
//! `NotRegistered` (the tracker restarted, or expired this peer) registers again at once and
//! re-announces everything held. The task sends keepalives, and sends newly verified chunks in
//! batches, so that a download never waits for the tracker and a busy swarm does not send one
//! request per chunk.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarm_proto::protocol::MAX_BATCH;
use swarm_proto::share_key::SignedChange;
use swarm_proto::{FileId, ShareId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::error::{Error, Result};
use crate::held::{Held, HeldFiles};
use crate::tracker_client::{
    Located, RegisteredOrNot, Registration, TrackerClient, HANG_UP_AFTER_JOIN, KEEPALIVE_RETRY,
};

/// Longest wait for the tracker to take a batch of chunk reports; the batch is kept and sent
/// again later if it does not.
const REPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the tracker when leaving.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The first pause before a silent tracker is asked again by
/// [`Session::locate_until_answered`]; it doubles up to [`SILENT_TRACKER_MAX_PAUSE`]. Each try
/// is a new handshake, so a crowd of silent fetchers comes back spread out, not in step.
const SILENT_TRACKER_PAUSE: Duration = Duration::from_secs(1);
const SILENT_TRACKER_MAX_PAUSE: Duration = Duration::from_secs(8);

/// How long a tracker that did not answer is taken for silent (see [`Session::seems_silent`]).
pub const SILENCE_REMEMBERED: Duration = Duration::from_secs(30);

/// The session; cheap to clone.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

/// How a node makes itself reachable to others.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reachability {
    /// The address to give out instead of the one the tracker sees.
    pub advertise: Option<SocketAddr>,
    /// Behind a NAT, ask the router for a port ([`crate::port_mapping`]).
    pub port_mapping: bool,
}

struct Inner {
    client: Arc<TrackerClient>,
    store: Arc<HeldFiles>,
    advertise: Option<SocketAddr>,
    port_mapping: bool,
    /// Addresses this node learnt it is reachable at (a port its router maps), registered
    /// beside its own.
    learnt_addrs: Mutex<Vec<SocketAddr>>,
    /// Fired once asking the router for a port ended (or was not needed).
    mapping_settled: CancellationToken,
    /// Set once joined; cleared when leaving.
    registration: tokio::sync::Mutex<Option<Registration>>,
    /// Newly verified chunks not yet sent, by file.
    reports: Mutex<BTreeMap<FileId, Vec<u32>>>,
    /// Downloads to announce with the next reports, by file (see [`Session::announce_later`]).
    joins: Mutex<BTreeMap<FileId, Arc<Held>>>,
    /// When a request last found the tracker silent, unless it answered since.
    silent_since: Mutex<Option<std::time::Instant>>,
    /// How holders were reached lately (directly, through their NAT, through a relay).
    paths: crate::nat::Paths,
    /// Connections kept for the next dial of their holder.
    warm: Arc<crate::warm::Warm>,
    /// Where peers introduced to this node come from.
    ways_in: Arc<crate::nat::WaysIn>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Session {
    /// A session with the tracker `client` talks to, for the files in `store`; where peers
    /// introduced to this node come from goes to `ways_in`. Nothing is sent before
    /// [`Session::join`].
    pub fn new(
        client: Arc<TrackerClient>,
        store: Arc<HeldFiles>,
        reach: Reachability,
        ways_in: Arc<crate::nat::WaysIn>,
    ) -> Session {
        Session {
            inner: Arc::new(Inner {
                client,
                store,
                advertise: reach.advertise,
                port_mapping: reach.port_mapping,
                learnt_addrs: Mutex::new(Vec::new()),
                mapping_settled: CancellationToken::new(),
                registration: tokio::sync::Mutex::new(None),
                reports: Mutex::new(BTreeMap::new()),
                joins: Mutex::new(BTreeMap::new()),
                silent_since: Mutex::new(None),
                paths: Default::default(),
                warm: Default::default(),
                ways_in,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// The tracker client, for queries (list, search, resolve).
    pub fn client(&self) -> &Arc<TrackerClient> {
        &self.inner.client
    }

    /// Registers, announces every held file, and starts the keepalive and report task.
    pub async fn join(&self) -> Result<Registration> {
        let mut slot = self.inner.registration.lock().await;
        // A join that fails, or is given up from outside (after a patience of the caller's),
        // leaves the tracker marked silent, so that fetches do not wait for it again.
        let mut unanswered = SilentUnlessAnswered(self, true);
        // A join still waiting when the node leaves gives up (and lets the leave go on).
        let (registration, announced) = tokio::select! {
            biased;
            _ = self.inner.shutdown.cancelled() => return Err(Error::Cancelled),
            joined = self.register_and_announce() => joined?,
        };
        unanswered.1 = false;
        self.note_silence(false);
        let first = slot.is_none();
        *slot = Some(registration);
        drop(slot);
        self.announce_added_since(&announced).await?;
        // Nothing more to say for now, unless a fetch follows (it asks at once, on this
        // connection): if nothing is asked soon, the tracker need not keep a connection for us.
        let (client, stop) = (self.inner.client.clone(), self.inner.shutdown.clone());
        self.inner.tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(HANG_UP_AFTER_JOIN) => client.hang_up_if_idle(HANG_UP_AFTER_JOIN).await,
            }
        });
        if first {
            let own = crate::netutil::own_addrs(self.inner.client.local_addr());
            let behind_nat = self.inner.advertise.is_none() && crate::nat::behind_nat(registration.addr, &own);
            if behind_nat {
                debug!(seen = %registration.addr, "behind a NAT: waiting at the tracker for peers that want to reach this one");
                let (client, stop) = (self.inner.client.clone(), self.inner.shutdown.clone());
                let ways_in = self.inner.ways_in.clone();
                self.inner
                    .tasks
                    .spawn(crate::nat::answer_introductions(client, ways_in, stop));
            }
            if behind_nat && self.inner.port_mapping {
                let session = self.clone();
                self.inner.tasks.spawn(async move {
                    let mapping = session.map_port().await;
                    session.inner.mapping_settled.cancel();
                    if let Some(mapping) = mapping {
                        session.keep_mapped(mapping).await;
                    }
                });
            } else {
                self.inner.mapping_settled.cancel();
            }
            let session = self.clone();
            let period = registration.keepalive_every();
            let reports = Duration::from_secs(u64::from(registration.report_secs.max(1)));
            let span = tracing::info_span!("tracker", addr = %self.inner.client.addr().host_port);
            self.inner
                .tasks
                .spawn(async move { session.run(period, reports).await }.instrument(span));
        }
        Ok(registration)
    }

    /// Has [`Session::join`] succeeded (and no leave happened since)?
    pub async fn is_joined(&self) -> bool {
        self.inner.registration.lock().await.is_some()
    }

    /// [`Session::is_joined`] without waiting for a (re)join under way, which counts as not
    /// joined: it announces what is held itself, and what was added meanwhile after it.
    fn joined_now(&self) -> bool {
        self.inner.registration.try_lock().is_ok_and(|slot| slot.is_some())
    }

    /// Registers and announces every held file; returns the registration and the files
    /// announced.
    async fn register_and_announce(&self) -> Result<(Registration, HashSet<FileId>)> {
        let client = &self.inner.client;
        let mut own = crate::netutil::own_addrs(client.local_addr());
        own.extend(self.inner.learnt_addrs.lock().expect("addresses lock poisoned").iter());
        own.truncate(swarm_proto::protocol::MAX_PEER_ADDRS);
        let registration = client.register(self.inner.advertise, own).await?;
        let held = self.inner.store.all();
        client.announce_all(&holdings(&held)).await?;
        Ok((registration, held.iter().map(|h| h.id).collect()))
    }

    /// Announces the files held now that are not among `announced`: those added while a
    /// (re)join announced the others.
    async fn announce_added_since(&self, announced: &HashSet<FileId>) -> Result<()> {
        let added: Vec<Arc<Held>> = self
            .inner
            .store
            .all()
            .into_iter()
            .filter(|held| !announced.contains(&held.id))
            .collect();
        if !added.is_empty() {
            // A tracker that forgot this peer again at once is noticed at the next keepalive.
            self.inner.client.announce_all(&holdings(&added)).await?;
        }
        Ok(())
    }

    /// Registers again after the tracker forgot this peer, if still joined.
    async fn rejoin(&self) -> Result<()> {
        info!("the tracker forgot this peer; registering again");
        self.register_again().await
    }

    /// Registers (and announces what is held) again, if joined.
    async fn register_again(&self) -> Result<()> {
        let mut slot = self.inner.registration.lock().await;
        if slot.is_none() {
            return Ok(());
        }
        let (registration, announced) = self.register_and_announce().await?;
        *slot = Some(registration);
        drop(slot);
        self.announce_added_since(&announced).await
    }

    /// Announces a held file (what it holds now), if joined.
    pub async fn announce(&self, held: &Held) -> Result<()> {
        if !self.joined_now() {
            return Ok(());
        }
        let client = &self.inner.client;
        if client.announce(&held.manifest, &held.chunks(), held.meta).await? == RegisteredOrNot::NotRegistered {
            self.rejoin().await?;
        }
        Ok(())
    }

    /// Announces many held files at once (in batches), if joined.
    pub async fn announce_many(&self, held: &[Arc<Held>]) -> Result<()> {
        if held.is_empty() || !self.joined_now() {
            return Ok(());
        }
        if self.inner.client.announce_all(&holdings(held)).await? == RegisteredOrNot::NotRegistered {
            self.rejoin().await?;
        }
        Ok(())
    }

    /// Announces a download of a file just located at the tracker: by id, and in full only
    /// if the tracker no longer lists it.
    pub async fn announce_download(&self, held: &Held) -> Result<()> {
        if !self.joined_now() {
            return Ok(());
        }
        let client = &self.inner.client;
        let joined = match client.join(held.id, &held.chunks(), held.meta).await {
            Ok(Some(joined)) => joined,
            Ok(None) | Err(_) => client.announce(&held.manifest, &held.chunks(), held.meta).await?,
        };
        if joined == RegisteredOrNot::NotRegistered {
            self.rejoin().await?;
        }
        Ok(())
    }

    /// Announces a download with the next batch of chunk reports instead of at once: for a
    /// file of one chunk, which has nothing to give others before it is complete, and would
    /// otherwise cost a request of its own (a sync of 20,000 small files makes 20,000).
    pub fn announce_later(&self, held: Arc<Held>) {
        self.inner
            .joins
            .lock()
            .expect("joins lock poisoned")
            .insert(held.id, held);
    }

    /// Withdraws `file` (best effort: a tracker that does not list it is fine).
    pub async fn withdraw(&self, file: FileId) {
        self.inner.reports.lock().expect("reports lock poisoned").remove(&file);
        self.inner.joins.lock().expect("joins lock poisoned").remove(&file);
        if !self.is_joined().await {
            return;
        }
        match self.inner.client.withdraw(file).await {
            Ok(RegisteredOrNot::NotRegistered) => {
                let _ = self.rejoin().await;
            }
            Ok(RegisteredOrNot::Ok) => {}
            Err(e) => debug!(file = %file.short(), "withdraw: {e}"),
        }
    }

    /// Tells the tracker what changed in a folder synced as `share` (registering again first
    /// if the tracker forgot this peer: only registered peers may change a share).
    pub async fn share_update(&self, share: &ShareId, changes: Vec<SignedChange>) -> Result<()> {
        let client = &self.inner.client;
        for batch in changes.chunks(MAX_BATCH) {
            if client.share_update(share, batch.to_vec()).await? == RegisteredOrNot::NotRegistered {
                self.rejoin().await?;
                client.share_update(share, batch.to_vec()).await?;
            }
        }
        Ok(())
    }

    /// Queues newly verified chunks of `file` for the tracker; returns at once.
    pub fn report(&self, file: FileId, chunks: &[u32]) {
        let mut reports = self.inner.reports.lock().expect("reports lock poisoned");
        reports.entry(file).or_default().extend_from_slice(chunks);
    }

    /// Did the tracker fail to answer within the last [`SILENCE_REMEMBERED`]? Callers with
    /// holders of their own then do not wait for it again.
    pub fn seems_silent(&self) -> bool {
        let since = *self.inner.silent_since.lock().expect("silence lock");
        since.is_some_and(|t| t.elapsed() < SILENCE_REMEMBERED)
    }

    /// Records that the tracker answered (`silent` false) or did not.
    pub fn note_silence(&self, silent: bool) {
        *self.inner.silent_since.lock().expect("silence lock") = silent.then(std::time::Instant::now);
    }

    /// Up to `want` live holders of a file, and its manifest (not yet checked) if `manifest`.
    pub async fn locate(&self, file: FileId, manifest: bool, want: u16) -> Result<Located> {
        self.inner.client.locate(file, manifest, want).await
    }

    /// [`Session::locate`] without the manifest, asked again while the tracker stays silent,
    /// until it answers or the session ends: for a fetch that has no other way to find
    /// holders. A tracker busy with a crowd, or behind a lossy link, can miss a handshake's
    /// whole patience (40 s) and answer the next; the caller's own deadline (`--timeout`)
    /// ends the wait sooner. Said once, as a warning.
    pub async fn locate_until_answered(&self, file: FileId, want: u16) -> Result<Located> {
        let mut pause = SILENT_TRACKER_PAUSE;
        let mut said = false;
        loop {
            let asked = tokio::select! {
                biased;
                _ = self.inner.shutdown.cancelled() => return Err(Error::Cancelled),
                asked = self.locate(file, false, want) => asked,
            };
            match asked {
                Err(e) if e.is_tracker_silence() => {
                    self.note_silence(true);
                    if !said {
                        warn!("{e}; asking again until it answers (--timeout or Ctrl-C to give up)");
                        said = true;
                    }
                    tokio::select! {
                        _ = self.inner.shutdown.cancelled() => return Err(Error::Cancelled),
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(SILENT_TRACKER_MAX_PAUSE);
                }
                answer => return answer,
            }
        }
    }

    /// Asks the router for a port and registers again with the address it gives.
    async fn map_port(&self) -> Option<crate::port_mapping::Mapping> {
        let port = self.inner.client.local_addr().port();
        let asked = tokio::select! {
            _ = self.inner.shutdown.cancelled() => return None,
            asked = crate::port_mapping::Mapping::ask(port) => asked,
        };
        let mapping = match asked {
            Ok(mapping) => mapping,
            Err(e) => {
                debug!("no port on the router: {e}");
                return None;
            }
        };
        info!(at = %mapping.external, "the router maps a port to this node: peers reach it there directly");
        self.inner
            .learnt_addrs
            .lock()
            .expect("addresses lock poisoned")
            .push(mapping.external);
        if let Err(e) = self.register_again().await {
            debug!("could not tell the tracker about the port mapped: {e}");
        }
        Some(mapping)
    }

    /// Keeps `mapping` leased until the session ends, then removes it.
    async fn keep_mapped(&self, mapping: crate::port_mapping::Mapping) {
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => break,
                _ = tokio::time::sleep(crate::port_mapping::RENEW_EVERY) => {
                    if let Err(e) = mapping.renew().await {
                        warn!("{e}");
                    }
                }
            }
        }
        mapping.remove().await;
    }

    /// Waits until asking the router for a port ended (at once if this node does not ask):
    /// a seed waits for it before printing its ticket, which then names the port.
    pub async fn port_mapping_settled(&self) {
        self.inner.mapping_settled.cancelled().await
    }

    /// Addresses this node learnt it is reachable at (a port its router maps).
    pub fn learnt_addrs(&self) -> Vec<SocketAddr> {
        self.inner.learnt_addrs.lock().expect("addresses lock poisoned").clone()
    }

    /// How holders were reached lately.
    pub fn paths(&self) -> &crate::nat::Paths {
        &self.inner.paths
    }

    /// Connections kept for the next dial of their holder.
    pub fn warm(&self) -> &Arc<crate::warm::Warm> {
        &self.inner.warm
    }

    /// Asks the tracker to introduce this node to `peer` (with a relay session if `relay`):
    /// where the tracker sees `peer`, and a relay pass. Refused at once while the tracker
    /// seems silent.
    pub async fn introduce(
        &self,
        peer: swarm_proto::PeerId,
        relay: bool,
    ) -> Result<(SocketAddr, Option<swarm_proto::traversal::RelayPass>)> {
        if self.seems_silent() {
            return Err(Error::Timeout("the tracker is not answering".into()));
        }
        self.inner.client.introduce(peer, relay).await
    }

    /// Sends what is queued, tells the tracker this peer leaves, and stops the task.
    pub async fn leave(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        if self.inner.registration.lock().await.take().is_none() {
            return;
        }
        self.send_reports().await;
        match tokio::time::timeout(LEAVE_TIMEOUT, self.inner.client.leave()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("could not tell the tracker we are leaving: {e}"),
            Err(_) => warn!("could not tell the tracker we are leaving: no answer in {LEAVE_TIMEOUT:?}"),
        }
    }

    /// The task: keepalives every `period` (every [`KEEPALIVE_RETRY`] after one failed),
    /// chunk reports every `report_every` (as the tracker asked: less often when it serves many
    /// peers).
    async fn run(&self, period: Duration, report_every: Duration) {
        let mut next_keepalive = tokio::time::Instant::now() + period;
        let mut reports = tokio::time::interval(report_every);
        let mut healthy = true;
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = reports.tick() => self.send_reports().await,
                _ = tokio::time::sleep_until(next_keepalive) => {
                    let outcome = match self.inner.client.keepalive().await {
                        Ok(RegisteredOrNot::Ok) => Ok(()),
                        Ok(RegisteredOrNot::NotRegistered) => self.rejoin().await,
                        Err(e) => Err(e),
                    };
                    match outcome {
                        Ok(()) if !healthy => {
                            info!("tracker reachable again");
                            healthy = true;
                        }
                        Ok(()) => {}
                        Err(e) => {
                            if healthy {
                                warn!("keepalive failed, will keep trying: {e}");
                            }
                            healthy = false;
                        }
                    }
                    let wait = if healthy { period } else { KEEPALIVE_RETRY.min(period) };
                    next_keepalive = tokio::time::Instant::now() + wait;
                }
            }
        }
    }

    /// Sends the queued announcements and chunk reports (in batches), keeping those the
    /// tracker does not take for later.
    async fn send_reports(&self) {
        let joins = std::mem::take(&mut *self.inner.joins.lock().expect("joins lock poisoned"));
        let pending = std::mem::take(&mut *self.inner.reports.lock().expect("reports lock poisoned"));
        // Files withdrawn since are left out; a file announced now goes with all it holds.
        let joins: Vec<Arc<Held>> = joins
            .into_values()
            .filter(|held| self.inner.store.get(&held.id).is_some())
            .collect();
        let joined: std::collections::HashSet<FileId> = joins.iter().map(|h| h.id).collect();
        let reports: Vec<(FileId, Vec<u32>)> = pending
            .into_iter()
            .filter(|(file, _)| self.inner.store.get(file).is_some() && !joined.contains(file))
            .collect();
        if joins.is_empty() && reports.is_empty() {
            return;
        }
        let client = &self.inner.client;
        let sent = tokio::time::timeout(REPORT_TIMEOUT, async {
            if !joins.is_empty() && client.announce_all(&holdings(&joins)).await? == RegisteredOrNot::NotRegistered {
                return Ok(RegisteredOrNot::NotRegistered);
            }
            client.have_all(&reports).await
        })
        .await;
        let failure = match sent {
            Ok(Ok(RegisteredOrNot::Ok)) => return,
            // Registering again re-announces every held file with all its chunks.
            Ok(Ok(RegisteredOrNot::NotRegistered)) => match self.rejoin().await {
                Ok(()) => return,
                Err(e) => e,
            },
            Ok(Err(e)) => e,
            Err(_) => Error::Timeout(format!("no answer in {REPORT_TIMEOUT:?}")),
        };
        debug!(
            "could not tell the tracker about {} downloads and new chunks of {} files (will retry): {failure}",
            joins.len(),
            reports.len()
        );
        for held in joins {
            self.announce_later(held);
        }
        for (file, chunks) in reports {
            self.report(file, &chunks);
        }
    }
}

/// Marks the tracker silent when dropped while `.1` is set: a join that got no answer.
struct SilentUnlessAnswered<'a>(&'a Session, bool);

impl Drop for SilentUnlessAnswered<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.note_silence(true);
        }
    }
}

/// What `held` files hold, as the tracker is told.
fn holdings(
    held: &[Arc<Held>],
) -> Vec<(
    std::sync::Arc<swarm_proto::Manifest>,
    swarm_proto::Bitfield,
    swarm_proto::FileMeta,
)> {
    held.iter().map(|h| (h.manifest.clone(), h.chunks(), h.meta)).collect()
}
