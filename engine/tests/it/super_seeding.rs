//! A seeder leaves a second copy of a chunk to the peers that hold it, over real QUIC: two
//! watchers speak the protocol by hand, so that who holds what is exactly known.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{Connection, SendStream};
use swarm_engine::launch::loopback;
use swarm_engine::offer::STUCK;
use swarm_engine::{Identity, Node};
use swarm_proto::protocol::{Availability, ErrorCode, PeerRequest, PeerResponse, MAX_FRAME};
use swarm_proto::transport::{self, Transport};
use swarm_proto::{Bitfield, FileId};

use crate::common::lone_seeder;

/// A peer of its own key, watching `file` on `node` while holding nothing: its connection,
/// its watch's sending half, and what the node offers it.
async fn watcher(node: &Node, file: FileId, chunks: u32) -> (Connection, SendStream, Bitfield) {
    let client = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
    let (connection, _) = client.connect(node.local_addr(), Some(node.id())).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let watch = PeerRequest::Watch {
        file,
        have: Bitfield::new(chunks),
    };
    transport::send_frame(&mut send, &watch).await.unwrap();
    let answer: PeerResponse = swarm_proto::protocol::read_frame(&mut recv, MAX_FRAME).await.unwrap();
    let PeerResponse::Have(offered) = answer else {
        panic!("a watch is answered with an offer, not {answer:?}")
    };
    // The node's later offers are not read: the stream's window holds them.
    tokio::spawn(async move {
        let _recv = recv;
        std::future::pending::<()>().await
    });
    (connection, send, offered)
}

/// Asks for chunk `index` of `file`: Ok with its length, or the refusal's code and message.
async fn get(connection: &Connection, file: FileId, index: u32) -> Result<u32, (ErrorCode, String)> {
    let request = PeerRequest::GetChunk { file, index };
    let (answer, mut recv) = transport::exchange(connection, &request, MAX_FRAME).await.unwrap();
    match answer {
        PeerResponse::Chunk { len } => {
            recv.read_to_end(1 << 20).await.unwrap();
            Ok(len)
        }
        PeerResponse::Error { code, message } => Err((code, message)),
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_leaves_a_second_copy_to_the_peers_that_hold_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, file) = lone_seeder(tmp.path(), &[5u8; 64 * 65536]).await;
    let (id, n) = (file.id, file.manifest.chunk_count);

    let (a, mut a_watch, a_offered) = watcher(&node, id, n).await;
    let (b, mut b_watch, b_offered) = watcher(&node, id, n).await;
    // A takes a chunk from the seeder and says so.
    let c = a_offered.iter().next().expect("the seeder offers A a window");
    assert!(get(&a, id, c).await.is_ok());
    transport::send_frame(&mut a_watch, &Availability::Gained(vec![c]))
        .await
        .unwrap();
    // B says it gained chunks it was never offered here: it reaches other holders.
    // (Each try, both say one more, so that neither goes idle meanwhile on a slow machine.)
    let mut refusal = None;
    let start = Instant::now();
    for d in (0..n).filter(|&d| d != c && !a_offered.get(d) && !b_offered.get(d)) {
        if refusal.is_some() || start.elapsed() > Duration::from_secs(5) {
            break;
        }
        for watch in [&mut a_watch, &mut b_watch] {
            transport::send_frame(watch, &Availability::Gained(vec![d]))
                .await
                .unwrap();
        }
        match get(&b, id, c).await {
            // Until A acknowledged all of c, the seeder is still sending it: another refusal.
            Err((_, message)) if message.contains("on its way") => {}
            Err(why) => refusal = Some(why),
            Ok(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, message) = refusal.expect("the seeder refuses B the chunk A holds");
    assert_eq!(code, ErrorCode::Busy);
    assert!(message.contains("held by other peers"), "{message}");
    // A chunk no watcher holds is sent to B at once.
    let fresh = (0..n).find(|&d| d != c && !a_offered.get(d)).unwrap();
    assert!(get(&b, id, fresh).await.is_ok(), "a chunk nobody holds is sent");
    // B gains nothing more elsewhere: it may reach nobody else, and is served the chunk too.
    tokio::time::sleep(STUCK + Duration::from_millis(200)).await;
    assert!(
        get(&b, id, c).await.is_ok(),
        "a watcher that gains nothing elsewhere is served"
    );
}
