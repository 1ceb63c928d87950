//! Two nodes on loopback, a local network: both ends of a connection run the near
//! controller (CUBIC) by default, not BBR, accepting as a node does
//! (`Transport::server_config_for` the remote address).

use std::net::SocketAddr;
use std::sync::Arc;

use swarm_proto::by_path::ByPath;
use swarm_proto::identity::Identity;
use swarm_proto::transport::Transport;

/// Whether `connection`'s controller is a [`ByPath`] that chose the near controller.
fn is_near(connection: &quinn::Connection) -> bool {
    let state = connection.congestion_state().into_any();
    state
        .downcast::<ByPath>()
        .expect("the default controller chooses by path")
        .is_near()
}

#[tokio::test]
async fn a_loopback_connection_runs_the_near_controller_at_both_ends() {
    let set = std::env::var_os(swarm_proto::congestion::CONGESTION_ENV);
    assert!(
        set.is_none(),
        "SWARM_CONGESTION={set:?} is set: this test checks the default"
    );
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback).unwrap();
    let client = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback).unwrap();
    let accepting = server.clone();
    let served = tokio::spawn(async move {
        let incoming = accepting.endpoint().accept().await.unwrap();
        let config = accepting.server_config_for(incoming.remote_address());
        let connection = incoming.accept_with(config).unwrap().await.unwrap();
        let (mut send, mut recv) = connection.accept_bi().await.unwrap();
        let asked = recv.read_to_end(1024).await.unwrap();
        send.write_all(&vec![7u8; 4 * 1024 * 1024]).await.unwrap();
        send.finish().unwrap();
        let _ = send.stopped().await;
        (asked, is_near(&connection))
    });

    let (connection, _) = client.connect(server.local_addr(), Some(server.id())).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(b"four mebibytes, please").await.unwrap();
    send.finish().unwrap();
    let got = recv.read_to_end(8 * 1024 * 1024).await.unwrap();
    assert_eq!(got.len(), 4 * 1024 * 1024);
    assert!(
        is_near(&connection),
        "the dialling end runs the far controller on loopback"
    );
    let (asked, server_near) = served.await.unwrap();
    connection.close(0u32.into(), b"done");
    assert_eq!(asked, b"four mebibytes, please");
    assert!(server_near, "the accepting end runs the far controller on loopback");
}
