//! Upload slots weighed by round trip (`swarm_engine::uploads`), on real sockets: a peer 100 ms
//! away may keep three times the chunks in flight that a peer 20 ms away may, because each of
//! its slots lasts five times as long. Each peer reaches the seeder through its own wan-relay
//! and asks for 64 chunks at once: the near one has 16 sent, 16 wait, and the other 32 are
//! refused `Busy`; the distant one has 48 sent, 16 wait, none refused. Every chunk sent arrives
//! whole either way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarm_engine::launch::{loopback, Caps, LocalSwarm};
use swarm_engine::{FileId, Identity, Node, Progress};
use swarm_proto::protocol::{ErrorCode, PeerRequest, PeerResponse};
use swarm_proto::transport::{self, Transport};
use wan_relay::{relay, Link, Shape, Socket};

/// Chunks of the file, and requests each peer sends at once.
const CHUNKS: u32 = 64;
const CHUNK: u32 = 64 * 1024;

/// A path of round trip `rtt`, otherwise perfect.
fn path(rtt: Duration) -> Arc<Link> {
    Arc::new(Link::new(Shape {
        delay: rtt / 2,
        jitter: Duration::ZERO,
        loss: 0.0,
        rate: None,
        buffer: Duration::ZERO,
        max_datagram: Some(1472),
    }))
}

/// The address of a relay to `seeder` across a path of round trip `rtt`.
fn relay_to(seeder: &Node, rtt: Duration) -> SocketAddr {
    let listen = Socket::bind(loopback()).unwrap();
    let at = listen.local_addr().unwrap();
    tokio::spawn(relay::run(listen, seeder.local_addr(), path(rtt), path(rtt)));
    at
}

/// A new peer asks `seeder` through `relay` for all `CHUNKS` chunks of `file` at once; returns
/// how many were refused `Busy` (every other one is read whole).
async fn refusals(seeder: &Node, relay: SocketAddr, file: FileId) -> usize {
    let peer = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
    let (connection, _) = peer.connect(relay, Some(seeder.id())).await.unwrap();
    let asks: Vec<_> = (0..CHUNKS)
        .map(|index| {
            let connection = connection.clone();
            tokio::spawn(async move {
                let request = PeerRequest::GetChunk { file, index };
                match transport::exchange::<_, PeerResponse>(&connection, &request, 1024).await {
                    Ok((PeerResponse::Chunk { len }, mut recv)) => {
                        let data = recv.read_to_end(len as usize).await.unwrap();
                        assert_eq!(data.len(), CHUNK as usize, "chunk {index} arrives whole");
                        false
                    }
                    Ok((
                        PeerResponse::Error {
                            code: ErrorCode::Busy, ..
                        },
                        _,
                    )) => true,
                    other => panic!("chunk {index}: unexpected answer {other:?}"),
                }
            })
        })
        .collect();
    let mut refused = 0;
    for ask in asks {
        refused += usize::from(ask.await.unwrap());
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distant_peer_keeps_three_times_the_chunks_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let data: Vec<u8> = (0..CHUNKS * CHUNK)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(share.join("file.bin"), &data).unwrap();
    let mut swarm = LocalSwarm::start(tmp.path(), Duration::from_secs(60)).await.unwrap();
    let seeder = swarm.node("seeder", Caps::default()).await.unwrap();
    let seeded = seeder.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap();
    let file = seeded[0].id;

    let near = refusals(&seeder, relay_to(&seeder, Duration::from_millis(20)), file).await;
    let far = refusals(&seeder, relay_to(&seeder, Duration::from_millis(100)), file).await;
    println!("of {CHUNKS} chunks asked at once: {near} refused 20 ms away, {far} refused 100 ms away");
    assert_eq!(near, 32, "20 ms away: 16 sent, 16 waiting, the rest refused");
    assert_eq!(far, 0, "100 ms away: 48 sent, 16 waiting, none refused");
    swarm.stop().await;
}
