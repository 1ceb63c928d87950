//! Two nodes on loopback, which carries datagrams of 64 KiB: path MTU discovery climbs far
//! beyond an Ethernet frame, and batches of such datagrams, too large for one send, still
//! arrive (quinn alone would have the kernel refuse them and drop them without a word).

use std::net::SocketAddr;
use std::sync::Arc;

use swarm_proto::identity::Identity;
use swarm_proto::transport::Transport;

const SENT: usize = 64 * 1024 * 1024;

#[tokio::test]
async fn loopback_carries_datagrams_of_tens_of_kilobytes_and_loses_none() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback).unwrap();
    let client = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback).unwrap();
    let accepting = server.endpoint().clone();
    let received = tokio::spawn(async move {
        let connection = accepting.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = connection.accept_bi().await.unwrap();
        let mut hasher = blake3::Hasher::new();
        let mut total = 0;
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.unwrap() {
            total += chunk.bytes.len();
            hasher.update(&chunk.bytes);
        }
        send.write_all(hasher.finalize().as_bytes()).await.unwrap();
        send.finish().unwrap();
        let _ = connection.closed().await;
        total
    });

    let (connection, _) = client.connect(server.local_addr(), Some(server.id())).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let data: Vec<u8> = (0..SENT).map(|i| (i * 7 % 251) as u8).collect();
    for piece in data.chunks(1024 * 1024) {
        send.write_all(piece).await.unwrap();
    }
    send.finish().unwrap();
    let digest = recv.read_to_end(32).await.unwrap();
    let stats = connection.stats();
    connection.close(0u32.into(), b"done");
    assert_eq!(received.await.unwrap(), SENT);
    assert_eq!(digest, blake3::hash(&data).as_bytes(), "the bytes arrived intact");

    let mtu = stats.path.current_mtu;
    assert!(mtu > 16_000, "path MTU discovery stopped at {mtu} bytes on loopback");
    // Lost MTU probes are counted apart; a batch the kernel refused would be lost data.
    let (lost, sent) = (stats.path.lost_packets, stats.path.sent_packets);
    assert!(
        lost * 100 <= sent,
        "{lost} of {sent} packets lost on loopback (MTU {mtu})"
    );
}
