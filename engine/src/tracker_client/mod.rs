//! Talking to a tracker: address parsing (`HOST:PORT` or `ID@HOST:PORT`), trust on first use
//! for unpinned trackers, one long-lived connection re-dialled when it drops, failover among
//! several trackers that share one state, and a typed method per request.
//!
//! [`addr`]: tracker addresses; this module: the connection and failover; `calls`: a typed
//! method per request.

use std::net::SocketAddr;

use quinn::Connection;
use tokio::sync::Mutex;

use swarm_proto::access::Access;
use swarm_proto::protocol::{ErrorCode, Holder, ProtocolError, TrackerRequest, TrackerResponse, MAX_FRAME};
use swarm_proto::transport::{self, Profile, Transport};
use swarm_proto::{ConnectError, FileMeta, Identity, Manifest};

use crate::error::{Error, Result};
use crate::known_trackers::KnownTrackers;

pub mod addr;
mod calls;

pub use addr::{TrackerAddr, Trackers};

/// Most catalogue entries one listing gathers over all its pages.
pub const MAX_LISTED: usize = 10_000_000;

/// Pause before asking a busy tracker again; doubled each time.
const BUSY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// Longest wait for the answer to one request.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// How many times a busy tracker is asked again (about 3 s of pauses in all).
const BUSY_RETRIES: u32 = 5;
/// With other trackers to turn to, the longest wait for a dial or an answer before turning
/// to the next one.
const FAILOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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

/// How soon a keepalive that failed is tried again (see [`Registration::keepalive_every`]).
pub const KEEPALIVE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl Registration {
    /// How often a peer keeps its registration alive: twice per timeout. Each keepalive of an
    /// idle peer costs the tracker a (resumed) handshake, so 10,000 idle peers cost it a third
    /// less than at three per timeout; a keepalive that fails is tried again every
    /// [`KEEPALIVE_RETRY`], so a silent spell of the tracker's has half the timeout to pass.
    pub fn keepalive_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs((self.timeout_secs / 2).max(1))
    }
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
/// keepalives (every 90 s by default).
pub const HANG_UP_WHEN_IDLE: std::time::Duration = std::time::Duration::from_secs(15);
/// How long a session keeps its connection after joining, for the request that usually
/// follows at once (a fetch's first locate), which would otherwise pay a handshake of its own:
/// it hangs up then unless asked something since. Short, because a crowd of seeders joining
/// together would have the tracker hold all their connections meanwhile.
pub const HANG_UP_AFTER_JOIN: std::time::Duration = std::time::Duration::from_secs(2);

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

    /// Tracker `index` did not answer: see [`Error::is_tracker_silence`].
    fn silent_at(&self, index: usize, message: String) -> Error {
        Error::TrackerSilent {
            addr: self.trackers.0[index].host_port.clone(),
            message,
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
                        last_error = Some(self.silent_at(index, format!("no connection within {wait:?}")));
                        continue;
                    }
                }
            } else {
                self.connection(index).await?
            };
            let failure = match tokio::time::timeout(wait, transport::exchange(&connection, request, MAX_FRAME)).await {
                Ok(Ok((response, _))) => return Ok(response),
                // Asking again, or another tracker of the same swarm, gets the same answer.
                Ok(Err(ProtocolError::NotAdmitted(why))) => {
                    return Err(Error::TrackerConnect {
                        addr: self.trackers.0[index].host_port.clone(),
                        source: ConnectError::NotAdmitted(why),
                        hint: String::new(),
                    })
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {wait:?}"),
            };
            self.forget(&connection).await;
            if several {
                self.fail_over(index);
            }
            last_error = Some(self.silent_at(index, format!("request failed: {failure}")));
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

    /// Closes the connection, if one is open; the next request dials again. A peer with
    /// nothing more to ask for a while (one that has just joined, or only keeps its session
    /// alive) hangs up so that the tracker keeps no connection for it.
    pub async fn hang_up(&self) {
        if let Some((_, connection)) = self.connection.lock().await.take() {
            connection.close(swarm_proto::protocol::CloseCode::Done.code(), b"idle");
        }
    }

    /// Hangs up if nothing but keepalives was asked for `quiet` (see [`HANG_UP_WHEN_IDLE`] and
    /// [`HANG_UP_AFTER_JOIN`]), unless introductions are awaited on the connection (a peer
    /// behind a NAT waits for them there, and keeps its NAT's mapping to the tracker alive
    /// with it).
    pub async fn hang_up_if_idle(&self, quiet: std::time::Duration) {
        let idle = self.last_busy.lock().expect("lock poisoned").elapsed() >= quiet;
        let waiting = self.waiting.load(std::sync::atomic::Ordering::Relaxed) > 0;
        if idle && !waiting {
            self.hang_up().await;
        }
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
