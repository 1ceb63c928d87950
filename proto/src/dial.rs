//! Dialling a node that has several addresses (one per interface, say, or one on the LAN and
//! one behind a NAT), as RFC 8305's "happy eyeballs" does for hosts: the first address is
//! tried at once and each next one a moment later while none has answered, every attempt runs
//! to the end, and the first handshake that proves the node's id wins. An address that does
//! not answer costs [`STAGGER`], not a whole handshake timeout.
//!
//! Written here rather than taken from a crate: the happy-eyeballs crates dial TCP sockets,
//! and this races QUIC handshakes on one shared endpoint.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use quinn::Connection;
use tokio::task::JoinSet;

use crate::ids::PeerId;
use crate::transport::{ConnectError, Transport};

/// How long an attempt has alone before the next address is tried too.
pub const STAGGER: Duration = Duration::from_millis(250);

/// Every address of a node failed: each with why.
#[derive(Debug)]
pub struct DialError(pub Vec<(SocketAddr, ConnectError)>);

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => write!(f, "no address to dial"),
            [(_, why)] => write!(f, "{why}"),
            tried => {
                let each: Vec<String> = tried.iter().map(|(addr, why)| format!("at {addr}: {why}")).collect();
                write!(f, "{}", each.join("; "))
            }
        }
    }
}

impl std::error::Error for DialError {}

impl DialError {
    /// The node was reached but is of another version or swarm: other addresses of it would
    /// only say the same.
    pub fn is_final(&self) -> bool {
        self.0
            .iter()
            .any(|(_, e)| matches!(e, ConnectError::VersionMismatch | ConnectError::NotAdmitted(_)))
    }
}

/// A node reached.
#[derive(Debug)]
pub struct Dialled {
    /// The connection, its id proved.
    pub connection: Connection,
    /// The address that answered.
    pub addr: SocketAddr,
    /// The addresses that had failed by then, each with why (those still trying are dropped).
    pub failed: Vec<(SocketAddr, ConnectError)>,
}

/// Dials the node `expected` at `addrs` (likeliest first, duplicates skipped), staggered by
/// [`STAGGER`]; returns the first connection that proved its id.
pub async fn connect_first(
    transport: &Transport,
    addrs: &[SocketAddr],
    expected: PeerId,
) -> Result<Dialled, DialError> {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if !unique.contains(addr) {
            unique.push(*addr);
        }
    }
    let mut waiting = unique.into_iter();
    let mut attempts = JoinSet::new();
    let mut failed = Vec::new();
    loop {
        if let Some(addr) = waiting.next() {
            let transport = transport.clone();
            attempts.spawn(async move { (addr, transport.connect(addr, Some(expected)).await) });
        }
        let more_waiting = waiting.len() > 0;
        let next = async {
            if more_waiting {
                tokio::time::timeout(STAGGER, attempts.join_next()).await.ok()
            } else {
                Some(attempts.join_next().await)
            }
        };
        match next.await {
            // The stagger passed with no answer: start the next address.
            None => continue,
            // Every attempt ended, and none was left to start.
            Some(None) => return Err(DialError(failed)),
            Some(Some(Ok((addr, Ok((connection, _)))))) => {
                return Ok(Dialled {
                    connection,
                    addr,
                    failed,
                })
            }
            Some(Some(Ok((addr, Err(why))))) => failed.push((addr, why)),
            Some(Some(Err(panicked))) => std::panic::resume_unwind(panicked.into_panic()),
        }
    }
}

/// Dials the node `expected` at `addr` once at each of `at` (from now) until one handshake
/// proves its id: for a path that opens a moment from now (a NAT being punched from the other
/// side), where a first attempt's packets may be dropped and QUIC would wait a second or more
/// before sending them again.
pub async fn connect_repeatedly(
    transport: &Transport,
    addr: SocketAddr,
    expected: PeerId,
    at: &[Duration],
) -> Result<Connection, ConnectError> {
    let mut attempts = JoinSet::new();
    for &delay in at {
        let transport = transport.clone();
        attempts.spawn(async move {
            tokio::time::sleep(delay).await;
            transport.connect(addr, Some(expected)).await
        });
    }
    let mut last = None;
    while let Some(done) = attempts.join_next().await {
        match done {
            Ok(Ok((connection, _))) => return Ok(connection),
            Ok(Err(e)) => last = Some(e),
            Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
        }
    }
    Err(last.unwrap_or(ConnectError::Unreachable("no attempt made".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;
    use std::sync::Arc;

    fn transport() -> Transport {
        let identity = Arc::new(Identity::generate().unwrap());
        Transport::bind(identity, "127.0.0.1:0".parse().unwrap()).unwrap()
    }

    /// A UDP socket nobody answers on: dialling it hangs until the handshake times out.
    fn silent() -> (std::net::UdpSocket, SocketAddr) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        (socket, addr)
    }

    fn serve(node: &Transport) {
        let endpoint = node.endpoint().clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                tokio::spawn(async move {
                    if let Ok(connection) = incoming.await {
                        connection.closed().await;
                    }
                });
            }
        });
    }

    #[tokio::test]
    async fn a_silent_first_address_costs_a_stagger_and_the_next_one_is_kept() {
        let (node, dialler) = (transport(), transport());
        serve(&node);
        let (_socket, nowhere) = silent();
        let dialled = connect_first(&dialler, &[nowhere, node.local_addr()], node.id())
            .await
            .unwrap();
        assert_eq!(dialled.addr, node.local_addr());
        assert_eq!(crate::transport::remote_id(&dialled.connection), Some(node.id()));
        // Dialled one after the other, the silent address would have failed (timed out) first.
        assert!(dialled.failed.is_empty(), "waited for the silent address to fail");
    }

    #[tokio::test]
    async fn an_address_where_another_node_answers_is_passed_over() {
        let (node, impostor, dialler) = (transport(), transport(), transport());
        serve(&node);
        serve(&impostor);
        let dialled = connect_first(&dialler, &[impostor.local_addr(), node.local_addr()], node.id())
            .await
            .unwrap();
        assert_eq!(dialled.addr, node.local_addr());
        let failed = connect_first(&dialler, &[impostor.local_addr()], node.id())
            .await
            .unwrap_err();
        assert!(matches!(failed.0[..], [(_, ConnectError::WrongId { .. })]), "{failed}");
        assert!(!failed.is_final());
    }
}
