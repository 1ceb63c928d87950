//! The loss bound (`swarm_proto::loss_bound`) on real sockets: a transfer between two nodes
//! through wan-relay losing datagrams at random. Heavy loss sets the bound on the sender's
//! connection; light random loss, such as a long lossy path has, never does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarm_proto::loss_bound::LossBound;
use swarm_proto::{Identity, Transport};
use wan_relay::{relay, Link, Shape, Socket};

/// Bytes sent through the relay.
const SENT: usize = 4 * 1024 * 1024;

/// The relay stands for a long lossy path, where a node uses BBR under the loss bound; on
/// loopback it would choose CUBIC (`swarm_proto::by_path`), so these tests name the far path's
/// controller. Set once, before any transport reads it.
fn use_the_far_paths_controller() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| std::env::set_var(swarm_proto::congestion::CONGESTION_ENV, "bbr-bound"));
}

/// Sends `SENT` bytes from a server to a client through a relay losing `loss` of the datagrams
/// each way (no delay, no cap); returns whether the loss bound was set on the server's
/// connection during the send.
async fn bound_was_set(loss: f64) -> bool {
    use_the_far_paths_controller();
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback).unwrap();
    let client = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback).unwrap();
    let shape = Shape {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss,
        rate: None,
        buffer: Duration::ZERO,
        max_datagram: Some(1472),
    };
    let listen = Socket::bind(loopback).unwrap();
    let relay_at = listen.local_addr().unwrap();
    let (up, down) = (Arc::new(Link::new(shape.clone())), Arc::new(Link::new(shape)));
    tokio::spawn(relay::run(listen, server.local_addr(), up, down));

    let accepting = server.endpoint().clone();
    let sending = tokio::spawn(async move {
        let connection = accepting.accept().await.unwrap().await.unwrap();
        let (mut send, _recv) = connection.accept_bi().await.unwrap();
        send.write_all(&vec![7u8; SENT]).await.unwrap();
        send.finish().unwrap();
        // Once the client has read it all, the controller says how often it set the bound.
        let _ = send.stopped().await;
        let state = connection.congestion_state().into_any();
        state
            .downcast::<LossBound>()
            .expect("peers use the loss bound")
            .times_set()
            > 0
    });
    let (connection, _) = client.connect(relay_at, Some(server.id())).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(b"go").await.unwrap();
    let got = recv.read_to_end(SENT).await.unwrap();
    assert_eq!(got.len(), SENT, "every byte arrives whatever the loss");
    sending.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_drops_a_tenth_sets_the_bound() {
    assert!(bound_was_set(0.10).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_drops_a_few_in_a_thousand_never_sets_it() {
    assert!(!bound_was_set(0.002).await);
}
