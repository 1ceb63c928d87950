//! Starting things, written once for the binary, the tests, the benches and the demo:
//!
//! - [`Peer`]: a node with its tracker, either one named on the command line (joined
//!   patiently: a tracker that is still starting is waited for, one that proves another id or
//!   speaks another version is not) or one embedded in the same process;
//! - [`LocalSwarm`]: a tracker and any number of nodes on loopback, in one directory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use swarm_proto::ConnectError;
use swarm_tracker::{Tracker, TrackerConfig, TrackerError};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::netutil::{loopback_for, own_addrs, reachable_addr};
use crate::node::{Node, NodeConfig};
use crate::tracker_client::{Registration, TrackerAddr, Trackers};

/// Pause between tries while the tracker does not answer.
const JOIN_RETRY: Duration = Duration::from_secs(2);
/// How long the first try may take before the person watching is told the tracker is silent.
pub const SLOW_ANSWER: Duration = Duration::from_secs(2);
/// Longest a seed behind a NAT waits for its router to map a port before printing its ticket
/// (the search itself gives up sooner).
const PORT_MAPPING_PATIENCE: Duration = Duration::from_secs(5);

/// Where a peer's tracker is.
#[derive(Debug, Clone)]
pub enum TrackerChoice {
    /// A tracker running elsewhere (or several sharing one state).
    Remote(Trackers),
    /// A tracker started in this process (in the node's state directory), listening here; on
    /// a free port if this one is taken.
    Embedded {
        /// Where it listens.
        listen: SocketAddr,
    },
}

/// What happened while a peer started, for the person watching.
#[derive(Debug)]
pub enum LaunchEvent<'a> {
    /// An embedded tracker started.
    EmbeddedTracker {
        /// Its id.
        id: swarm_proto::PeerId,
        /// Where it listens.
        addr: SocketAddr,
        /// The address asked for and why it could not be used, if it could not.
        moved_from: Option<(SocketAddr, &'a Error)>,
    },
    /// No tracker was given and the port asked for is taken by a swarm tracker already
    /// running on this machine: the node joins it instead of starting a separate swarm.
    JoinedLocalTracker {
        /// Its id.
        id: swarm_proto::PeerId,
        /// Where it listens.
        addr: SocketAddr,
    },
    /// The tracker has not answered the first try within [`SLOW_ANSWER`]; still trying.
    NoAnswerYet {
        /// The tracker's address as given.
        addr: &'a str,
    },
    /// The tracker does not answer yet; trying again every few seconds.
    Waiting(&'a Error),
    /// The tracker answered after some waiting.
    Answered,
}

/// A node and its tracker session (and the tracker itself, when embedded).
pub struct Peer {
    /// The node.
    pub node: Node,
    /// The tracker as other machines should name it (`ID@HOST:PORT`).
    pub public_tracker: String,
    /// What the tracker answered when the node joined.
    pub registration: Registration,
    embedded: Option<Tracker>,
}

impl Peer {
    /// Starts the node of `config` (whose `tracker` is set from `tracker`) and joins its
    /// tracker, waiting for it while it does not answer, until `stop` fires.
    pub async fn start(
        mut config: NodeConfig,
        tracker: TrackerChoice,
        stop: &CancellationToken,
        mut events: impl FnMut(LaunchEvent<'_>),
    ) -> Result<Peer> {
        let mut embedded = None;
        let public_tracker = match tracker {
            TrackerChoice::Remote(addr) => {
                let public = addr.to_string();
                config.tracker = Some(addr);
                public
            }
            TrackerChoice::Embedded { listen } => {
                let (public, tracker) = embedded_tracker(&mut config, listen, &mut events).await?;
                embedded = tracker;
                public
            }
        };
        let node = Node::start(config).await?;
        let registration = join_patiently(&node, stop, &mut events).await?;
        // Behind a NAT, the ticket printed next names a port the router maps, if it maps one.
        if let Ok(session) = node.session() {
            let settled = session.port_mapping_settled();
            let _ = tokio::time::timeout(PORT_MAPPING_PATIENCE, settled).await;
        }
        Ok(Peer {
            node,
            public_tracker,
            registration,
            embedded,
        })
    }

    /// This node as a ticket names it, so that the ticket still works once its tracker is gone:
    /// its id and the addresses others reach it at (the one the tracker gives out, then this
    /// machine's own, the one on the default route first). None beside an in-process tracker,
    /// which goes when this node goes.
    pub fn ticket_holder(&self) -> Option<swarm_proto::ticket::TicketHolder> {
        use swarm_proto::ticket::MAX_HOLDER_ADDRS;
        if self.embedded.is_some() {
            return None;
        }
        let given = self.registration.addr;
        let given = (!given.ip().is_loopback() && !given.ip().is_unspecified()).then_some(given);
        let mut addrs = Vec::new();
        // A port the router maps comes first: it works from anywhere, where the address the
        // tracker sees works only once a hole is punched, unless the seeder is not behind a NAT.
        let learnt = self.node.session().map(|s| s.learnt_addrs()).unwrap_or_default();
        for addr in learnt.into_iter().chain(given).chain(own_addrs(self.node.local_addr())) {
            if !addrs.contains(&addr) && addrs.len() < MAX_HOLDER_ADDRS {
                addrs.push(addr);
            }
        }
        Some(swarm_proto::ticket::TicketHolder {
            id: self.node.id(),
            addrs,
        })
    }

    /// Leaves the tracker, lets uploads finish (up to `grace`), and stops the embedded
    /// tracker, if any.
    pub async fn stop(self, grace: Duration) {
        self.node.shutdown(grace).await;
        if let Some(tracker) = self.embedded {
            tracker.stop().await;
        }
    }
}

/// Points `config` at the tracker for a node given none: the swarm tracker already on this
/// machine at `listen`'s port, or a new one started in this process (on a free port if that
/// one is taken by something else). Returns the tracker's address for other machines, and the
/// tracker if it was started here.
async fn embedded_tracker(
    config: &mut NodeConfig,
    listen: SocketAddr,
    events: &mut impl FnMut(LaunchEvent<'_>),
) -> Result<(String, Option<Tracker>)> {
    if let Some(id) = running_tracker(listen, &config.access).await {
        let here = tracker_seen_from(config.listen, listen);
        events(LaunchEvent::JoinedLocalTracker { id, addr: here });
        config.tracker = Some(
            TrackerAddr {
                host_port: here.to_string(),
                id: Some(id),
            }
            .into(),
        );
        return Ok((format!("{id}@{}", reachable_addr(listen)), None));
    }
    let tracker_config = TrackerConfig {
        state_dir: config.state_dir.join("tracker"),
        listen,
        access: config.access.clone(),
        ..TrackerConfig::default()
    };
    let (tracker, moved) = match Tracker::start(tracker_config.clone()).await {
        Ok(tracker) => (tracker, None),
        Err(TrackerError::Bind(e)) => {
            let any_port = SocketAddr::new(listen.ip(), 0);
            let tracker = Tracker::start(TrackerConfig {
                listen: any_port,
                ..tracker_config
            })
            .await
            .map_err(Error::from)?;
            (tracker, Some(Error::Bind(e)))
        }
        Err(e) => return Err(e.into()),
    };
    let local = tracker.local_addr();
    events(LaunchEvent::EmbeddedTracker {
        id: tracker.id(),
        addr: local,
        moved_from: moved.as_ref().map(|e| (listen, e)),
    });
    config.tracker = Some(
        TrackerAddr {
            host_port: tracker_seen_from(config.listen, local).to_string(),
            id: Some(tracker.id()),
        }
        .into(),
    );
    Ok((format!("{}@{}", tracker.id(), reachable_addr(local)), Some(tracker)))
}

/// Where a node bound to `node` dials a tracker on this machine bound to `tracker`: on
/// loopback, in the node's address family when the tracker listens on both (a node given
/// `--listen 127.0.0.1:0` cannot dial `[::1]`).
fn tracker_seen_from(node: SocketAddr, tracker: SocketAddr) -> SocketAddr {
    match (node, tracker.ip()) {
        (SocketAddr::V4(_), IpAddr::V6(ip)) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), tracker.port())
        }
        _ => loopback_for(tracker),
    }
}

/// How long a swarm tracker already on the asked port has to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The id of the swarm tracker already listening on this machine at `listen`'s port, if one
/// is (a fixed port only: the default 7070, or one asked for): a second `swarm seed` or
/// `swarm sync` then joins it, so that nodes on one machine form one swarm.
async fn running_tracker(listen: SocketAddr, access: &swarm_proto::access::Access) -> Option<swarm_proto::PeerId> {
    if listen.port() == 0 || swarm_proto::transport::bind_udp(listen).is_ok() {
        return None;
    }
    let identity = std::sync::Arc::new(swarm_proto::Identity::generate().ok()?);
    let any = SocketAddr::new(loopback_for(listen).ip(), 0);
    let transport = swarm_proto::Transport::bind_with(identity, any, access.clone()).ok()?;
    let target = loopback_for(listen);
    let probe = transport.connect_as(target, None, swarm_proto::transport::Profile::Tracker);
    let found = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok((connection, id))) => {
            connection.close(swarm_proto::protocol::CloseCode::Done.code(), b"found");
            Some(id)
        }
        _ => None,
    };
    transport.close().await;
    found
}

/// Can waiting help? Not if the tracker proved another id or speaks another version.
fn worth_waiting(error: &Error) -> bool {
    !matches!(
        error,
        Error::TrackerConnect {
            source: ConnectError::WrongId { .. } | ConnectError::VersionMismatch,
            ..
        }
    )
}

/// Joins the tracker, trying again every few seconds while it does not answer (it may be
/// starting, as in a compose network), until it answers or `stop` fires.
async fn join_patiently(
    node: &Node,
    stop: &CancellationToken,
    events: &mut impl FnMut(LaunchEvent<'_>),
) -> Result<Registration> {
    let mut waited = false;
    loop {
        let joining = node.join_tracker();
        tokio::pin!(joining);
        let joined = tokio::select! {
            joined = &mut joining => joined,
            // A silent tracker takes a while to be called unreachable: say so early.
            _ = tokio::time::sleep(SLOW_ANSWER), if !waited => {
                let addr = node.tracker().map(|t| t.addr().host_port.clone()).unwrap_or_default();
                events(LaunchEvent::NoAnswerYet { addr: &addr });
                waited = true;
                tokio::select! {
                    joined = &mut joining => joined,
                    _ = stop.cancelled() => return Err(Error::Cancelled),
                }
            }
            _ = stop.cancelled() => return Err(Error::Cancelled),
        };
        match joined {
            Ok(registration) => {
                if waited {
                    events(LaunchEvent::Answered);
                }
                return Ok(registration);
            }
            Err(e) if !worth_waiting(&e) => return Err(e),
            Err(e) => {
                if !waited {
                    events(LaunchEvent::Waiting(&e));
                    waited = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(JOIN_RETRY) => {}
                    _ = stop.cancelled() => return Err(Error::Cancelled),
                }
            }
        }
    }
}

/// A tracker and nodes on loopback, all in one directory.
pub struct LocalSwarm {
    dir: PathBuf,
    /// The tracker.
    pub tracker: Tracker,
    nodes: Vec<Node>,
}

/// How a node of a [`LocalSwarm`] is capped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// Upload cap in bytes per second.
    pub upload: Option<u64>,
    /// Download cap in bytes per second.
    pub download: Option<u64>,
}

/// 127.0.0.1, any free port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A tracker on 127.0.0.1 with its state in `dir/tracker`, dropping peers silent for
/// `peer_timeout`.
pub async fn loopback_tracker(dir: &Path, peer_timeout: Duration) -> Result<Tracker> {
    Ok(Tracker::start(TrackerConfig {
        state_dir: dir.join("tracker"),
        listen: loopback(),
        peer_timeout,
        ..TrackerConfig::default()
    })
    .await?)
}

/// `tracker`'s address, pinned to its id.
pub fn pinned(tracker: &Tracker) -> TrackerAddr {
    TrackerAddr {
        host_port: tracker.local_addr().to_string(),
        id: Some(tracker.id()),
    }
}

/// A node on 127.0.0.1 with its state in `state_dir`, joined to `tracker`.
pub async fn loopback_node(state_dir: &Path, tracker: TrackerAddr, caps: Caps) -> Result<Node> {
    let node = Node::start(NodeConfig {
        state_dir: state_dir.to_owned(),
        listen: loopback(),
        tracker: Some(tracker.into()),
        advertise: None,
        max_upload_rate: caps.upload,
        max_download_rate: caps.download,
        ..NodeConfig::default()
    })
    .await?;
    node.join_tracker().await?;
    Ok(node)
}

impl LocalSwarm {
    /// Starts a tracker on 127.0.0.1 with its state in `dir/tracker`, dropping peers silent
    /// for `peer_timeout`.
    pub async fn start(dir: &Path, peer_timeout: Duration) -> Result<LocalSwarm> {
        Ok(LocalSwarm {
            dir: dir.to_owned(),
            tracker: loopback_tracker(dir, peer_timeout).await?,
            nodes: Vec::new(),
        })
    }

    /// The tracker's address, pinned to its id.
    pub fn tracker_addr(&self) -> TrackerAddr {
        pinned(&self.tracker)
    }

    /// A new node on 127.0.0.1 with its state in `dir/name`, joined to the tracker. The swarm
    /// shuts it down in [`LocalSwarm::stop`].
    pub async fn node(&mut self, name: &str, caps: Caps) -> Result<Node> {
        let node = loopback_node(&self.dir.join(name), self.tracker_addr(), caps).await?;
        self.nodes.push(node.clone());
        Ok(node)
    }

    /// Shuts every node down (briefly), then the tracker.
    pub async fn stop(self) {
        for node in &self.nodes {
            node.shutdown(Duration::from_secs(1)).await;
        }
        self.tracker.stop().await;
    }
}

impl From<TrackerError> for Error {
    fn from(error: TrackerError) -> Self {
        match error {
            TrackerError::Io { path, source } => Error::Io { path, source },
            TrackerError::Locked(e) => Error::Locked(e),
            TrackerError::Identity(e) => Error::Identity(e),
            TrackerError::Bind(e) => Error::Bind(e),
            TrackerError::Store { path, message } => Error::State { path, message },
            TrackerError::Shared(e) => Error::Tracker {
                addr: e.url,
                message: e.message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_dials_a_tracker_on_this_machine_in_its_own_family() {
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        let both = at("[::]:7070");
        assert_eq!(tracker_seen_from(at("127.0.0.1:0"), both), at("127.0.0.1:7070"));
        assert_eq!(tracker_seen_from(at("0.0.0.0:0"), both), at("127.0.0.1:7070"));
        assert_eq!(tracker_seen_from(at("[::]:0"), both), at("[::1]:7070"));
        assert_eq!(
            tracker_seen_from(at("127.0.0.1:0"), at("0.0.0.0:7070")),
            at("127.0.0.1:7070")
        );
        assert_eq!(
            tracker_seen_from(at("[::]:0"), at("10.1.2.3:7070")),
            at("10.1.2.3:7070")
        );
    }
}
