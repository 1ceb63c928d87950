//! `swarm relay`: the relay of [`crate::relay`] on a host of its own, for trackers that should
//! not carry the relayed traffic themselves. A tracker started with `--relay ID@HOST:PORT`
//! asks it for each session (`OpenRelay`, over QUIC, the tracker's id proved by TLS) and hands
//! the two peers passes to HOST at the session's port; the relay opens sessions only for the
//! trackers it was told to serve, and, like the tracker's own, reads nothing of what it passes.
//! [`RemoteRelay`] is the tracker's side.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use quinn::Connection;
use swarm_proto::access::Access;
use swarm_proto::dir_lock::DirLock;
use swarm_proto::protocol::{ErrorCode, Refusal, TrackerRequest, TrackerResponse};
use swarm_proto::transport::{self, IncomingStream, Profile};
use swarm_proto::traversal::RelayPass;
use swarm_proto::{PeerId, Transport};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::relay::Relay;
use crate::TrackerError;

/// Largest request a relay reads (an `OpenRelay` is a few bytes).
const MAX_REQUEST: u32 = 1024;

/// How to run a relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where its key is kept.
    pub state_dir: PathBuf,
    /// Its QUIC address; sessions bind on the same IP.
    pub listen: SocketAddr,
    /// Bytes per second across all sessions (`None`: no cap).
    pub rate: Option<NonZeroU32>,
    /// The trackers it opens sessions for.
    pub trackers: Vec<PeerId>,
    /// The swarm it belongs to (a private swarm's trackers prove its secret too).
    pub access: Access,
}

/// A running relay.
pub struct RelayServer {
    transport: Transport,
    relay: Arc<Relay>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    _lock: DirLock,
}

impl RelayServer {
    /// Loads or makes its key in `config.state_dir`, binds and starts serving its trackers.
    pub fn start(config: RelayConfig) -> Result<RelayServer, TrackerError> {
        let (lock, identity) = crate::state_dir::open(&config.state_dir)?;
        let transport = Transport::bind_as(identity, config.listen, config.access.clone(), Profile::Tracker)?;
        let shutdown = CancellationToken::new();
        let relay = Arc::new(Relay::new(config.rate, config.listen.ip(), shutdown.clone()));
        let tasks = TaskTracker::new();
        let (serving, trackers) = (relay.clone(), Arc::new(config.trackers));
        tasks.spawn(transport::accept_streams(
            transport.clone(),
            shutdown.clone(),
            tasks.clone(),
            move |stream: IncomingStream| {
                let (relay, trackers) = (serving.clone(), trackers.clone());
                async move {
                    if let Err(e) = serve(stream, &relay, &trackers).await {
                        debug!("relay request failed: {e}");
                    }
                }
            },
        ));
        Ok(RelayServer {
            transport,
            relay,
            shutdown,
            tasks,
            _lock: lock,
        })
    }

    /// The relay's id, for `swarm tracker --relay ID@HOST:PORT`.
    pub fn id(&self) -> PeerId {
        self.transport.id()
    }

    /// Its QUIC address.
    pub fn local_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// Bytes relayed so far.
    pub fn relayed(&self) -> u64 {
        self.relay.relayed()
    }

    /// Ends every session and stops.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.transport.close().await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn serve(
    mut stream: IncomingStream,
    relay: &Arc<Relay>,
    trackers: &[PeerId],
) -> Result<(), swarm_proto::protocol::ProtocolError> {
    let answer = if !trackers.contains(&stream.peer) {
        Refusal::new(
            ErrorCode::Invalid,
            format!(
                "this relay opens sessions only for its trackers (swarm relay --for ID), not for {}",
                stream.peer.short()
            ),
        )
        .into()
    } else {
        match transport::read_request::<TrackerRequest>(&mut stream.recv, MAX_REQUEST).await {
            Ok(TrackerRequest::OpenRelay { asker }) => {
                // The passes' addresses are the tracker's to fill in: it knows where it reached us.
                let here = stream.local_ip().unwrap_or(IpAddr::from([0, 0, 0, 0]));
                match relay.open(asker, here, here) {
                    Ok((first, second)) => TrackerResponse::RelayOpened {
                        port: first.addr.port(),
                        tokens: [first.token, second.token],
                    },
                    Err(refusal) => refusal.into(),
                }
            }
            Ok(_) => Refusal::new(
                ErrorCode::Unsupported,
                "this is a relay (swarm relay): it opens relay sessions for its trackers, nothing else",
            )
            .into(),
            Err(refusal) => {
                transport::refuse_and_close::<TrackerResponse>(&mut stream, refusal).await;
                return Ok(());
            }
        }
    };
    transport::respond(&mut stream.send, &answer).await?;
    let _ = stream.send.stopped().await;
    Ok(())
}

/// A tracker's side of a relay on another host: one QUIC connection to it, dialled again when
/// it dropped, and the relay's id proved on every dial.
pub struct RemoteRelay {
    transport: Transport,
    addr: SocketAddr,
    id: PeerId,
    connection: tokio::sync::Mutex<Option<Connection>>,
}

impl RemoteRelay {
    /// The relay `id` at `addr`, dialled from the tracker's `transport`.
    pub fn new(transport: Transport, id: PeerId, addr: SocketAddr) -> RemoteRelay {
        RemoteRelay {
            transport,
            addr,
            id,
            connection: tokio::sync::Mutex::default(),
        }
    }

    /// Opens a session for a peer at `asker` and the holder it wants: a pass for each, to the
    /// relay's address as this tracker reaches it.
    pub async fn open(&self, asker: IpAddr) -> Result<(RelayPass, RelayPass), Refusal> {
        let failed = |why: String| Refusal::new(ErrorCode::Busy, format!("the relay at {}: {why}", self.addr));
        let connection = self.connection().await.map_err(|e| failed(e.to_string()))?;
        let request = TrackerRequest::OpenRelay { asker };
        let answer = transport::exchange::<_, TrackerResponse>(&connection, &request, MAX_REQUEST).await;
        match answer {
            Ok((TrackerResponse::RelayOpened { port, tokens }, _)) => {
                let pass = |token| RelayPass {
                    addr: SocketAddr::new(self.addr.ip(), port),
                    token,
                };
                Ok((pass(tokens[0]), pass(tokens[1])))
            }
            Ok((TrackerResponse::Error { code, message }, _)) => {
                Err(Refusal::new(code, format!("the relay at {}: {message}", self.addr)))
            }
            Ok((other, _)) => Err(failed(format!("answered {other:?} to OpenRelay"))),
            Err(e) => {
                *self.connection.lock().await = None;
                Err(failed(e.to_string()))
            }
        }
    }

    async fn connection(&self) -> Result<Connection, swarm_proto::ConnectError> {
        let mut held = self.connection.lock().await;
        if let Some(connection) = held.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(connection.clone());
        }
        let (connection, _) = self
            .transport
            .connect_as(self.addr, Some(self.id), Profile::Tracker)
            .await?;
        *held = Some(connection.clone());
        Ok(connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_proto::Identity;

    /// A relay on loopback serving the tracker `served`; returns it and its address.
    fn relay_for(served: PeerId, dir: &std::path::Path) -> RelayServer {
        RelayServer::start(RelayConfig {
            state_dir: dir.to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            rate: None,
            trackers: vec![served],
            access: Access::Open,
        })
        .unwrap()
    }

    fn node() -> Transport {
        Transport::bind(Arc::new(Identity::generate().unwrap()), "127.0.0.1:0".parse().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_relay_opens_sessions_for_its_trackers_only() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = node();
        let relay = relay_for(tracker.id(), dir.path());

        let remote = RemoteRelay::new(tracker.clone(), relay.id(), relay.local_addr());
        let (mine, theirs) = remote.open("10.0.0.5".parse().unwrap()).await.expect("a session");
        assert_eq!(mine.addr, theirs.addr, "one session, one port");
        assert_eq!(
            mine.addr.ip(),
            relay.local_addr().ip(),
            "at the relay's address as dialled"
        );
        assert_ne!(mine.token, theirs.token);

        let stranger = node();
        let refused = RemoteRelay::new(stranger, relay.id(), relay.local_addr())
            .open("10.0.0.6".parse().unwrap())
            .await
            .expect_err("not one of its trackers");
        assert!(refused.message.contains("only for its trackers"), "{}", refused.message);

        let impostor = RemoteRelay::new(tracker, PeerId([9; 32]), relay.local_addr())
            .open("10.0.0.5".parse().unwrap())
            .await
            .expect_err("a relay that cannot prove the id named");
        assert!(
            impostor.message.contains(&relay.id().short().to_string()),
            "the id it proved is named: {}",
            impostor.message
        );
        relay.stop().await;
    }
}
