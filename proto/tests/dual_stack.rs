//! The default listening address, `[::]`, takes both families. Its own test binary: the TLS
//! resumption test in the library counts full handshakes process-wide.

use std::net::SocketAddr;
use std::sync::Arc;

use swarm_proto::transport::accept_streams;
use swarm_proto::{Identity, Transport};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A node on `[::]` is dialled over IPv4 and IPv6, sees an IPv4 dialler at its IPv4 address
/// (not `::ffff:…`), and sends bare datagrams to either family.
#[tokio::test]
async fn a_node_on_both_families_is_reached_and_sees_ipv4_as_ipv4() {
    let both = Transport::bind(Arc::new(Identity::generate().unwrap()), "[::]:0".parse().unwrap()).unwrap();
    if both.local_addr().is_ipv4() {
        eprintln!("skipped: no IPv6 on this machine");
        return;
    }
    let port = both.local_addr().port();
    let (remotes, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(accept_streams(
        both.clone(),
        CancellationToken::new(),
        TaskTracker::new(),
        move |stream| {
            let _ = remotes.send(stream.remote);
            async {}
        },
    ));
    for (dialler_at, node_at) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1")] {
        let dialler = Transport::bind(Arc::new(Identity::generate().unwrap()), dialler_at.parse().unwrap()).unwrap();
        let node = SocketAddr::new(node_at.parse().unwrap(), port);
        let (connection, _) = dialler.connect(node, Some(both.id())).await.unwrap();
        let (mut send, _recv) = connection.open_bi().await.unwrap();
        send.write_all(b"x").await.unwrap();
        assert_eq!(
            seen.recv().await.unwrap(),
            dialler.local_addr(),
            "dialled from {dialler_at}"
        );

        let udp = tokio::net::UdpSocket::bind(dialler_at).await.unwrap();
        both.send_datagram(udp.local_addr().unwrap(), b"punch").unwrap();
        let mut buffer = [0u8; 16];
        let (len, _) = udp.recv_from(&mut buffer).await.unwrap();
        assert_eq!(&buffer[..len], b"punch");
    }
}
