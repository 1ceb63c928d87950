//! The chunk server answers every bad request with a clear error frame, over real QUIC.

use std::sync::Arc;

use swarm_engine::launch::loopback;
use swarm_engine::{FileId, Identity};
use swarm_proto::protocol::{self, CloseCode, ErrorCode, PeerRequest, PeerResponse, TrackerRequest, MAX_FRAME};
use swarm_proto::transport::{self, Transport};

use crate::common::lone_seeder;

/// Largest answer frame read here.
const MAX: u32 = MAX_FRAME;

async fn error_code(response: PeerResponse) -> ErrorCode {
    match response {
        PeerResponse::Error { code, message } => {
            assert!(!message.is_empty());
            code
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_error_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, file) = lone_seeder(tmp.path(), &[3u8; 200_000]).await;

    let client = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
    let (connection, proved) = client.connect(node.local_addr(), Some(node.id())).await.unwrap();
    assert_eq!(proved, node.id());

    // A real chunk comes back with its data.
    let (response, mut recv) = transport::exchange(
        &connection,
        &PeerRequest::GetChunk {
            file: file.id,
            index: 3,
        },
        MAX,
    )
    .await
    .unwrap();
    let PeerResponse::Chunk { len } = response else {
        panic!("{response:?}")
    };
    assert_eq!(len, file.manifest.chunk_len(3));
    let data = recv.read_to_end(1 << 20).await.unwrap();
    assert!(file.manifest.chunk_matches(3, &data));

    let unknown = PeerRequest::GetChunk {
        file: FileId([7; 32]),
        index: 0,
    };
    assert_eq!(
        error_code(transport::exchange(&connection, &unknown, MAX).await.unwrap().0).await,
        ErrorCode::NotFound
    );
    let out_of_range = PeerRequest::GetChunk {
        file: file.id,
        index: 99,
    };
    assert_eq!(
        error_code(transport::exchange(&connection, &out_of_range, MAX).await.unwrap().0).await,
        ErrorCode::NotHeld
    );
    // A tracker request does not decode as a peer request: the frame is malformed here.
    let (connection2, _) = client.connect(node.local_addr(), Some(node.id())).await.unwrap();
    let answer =
        transport::exchange::<_, PeerResponse>(&connection2, &TrackerRequest::Resolve { prefix: "ab".into() }, MAX)
            .await;
    assert_eq!(error_code(answer.unwrap().0).await, ErrorCode::Malformed);
    // Another key may not ask for the node's status.
    assert_eq!(
        error_code(
            transport::exchange(&connection, &PeerRequest::Status, MAX)
                .await
                .unwrap()
                .0
        )
        .await,
        ErrorCode::Unsupported
    );

    // Frames that break the protocol get a clear error, then the connection is closed; the
    // node keeps serving new connections.
    let oversized = [0, 1, 0, 1, 0]; // announces 65,537 bytes: over the 64 KiB request cap
    let cases: [(&str, &[u8], ErrorCode); 5] = [
        ("garbage", &[0, 0, 0, 3, 0xff, 0xff, 0xff], ErrorCode::Malformed),
        ("truncated", &[0, 0, 0, 40, 0, 1, 2], ErrorCode::Malformed),
        ("oversized", &oversized, ErrorCode::Malformed),
        ("unknown message type", &[0, 0, 0, 1, 200], ErrorCode::Malformed),
        ("empty frame", &[0, 0, 0, 0], ErrorCode::Malformed),
    ];
    for (what, bytes, code) in cases {
        let (connection, _) = client.connect(node.local_addr(), Some(node.id())).await.unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
        let answer: PeerResponse = protocol::read_frame(&mut recv, MAX).await.unwrap();
        assert_eq!(error_code(answer).await, code, "{what}");
        let closed = connection.closed().await;
        assert!(
            matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == CloseCode::ProtocolViolation.code()),
            "{what}: {closed:?}"
        );
    }
    let (connection, _) = client.connect(node.local_addr(), Some(node.id())).await.unwrap();
    let again = transport::exchange(
        &connection,
        &PeerRequest::GetChunk {
            file: file.id,
            index: 0,
        },
        MAX,
    )
    .await
    .unwrap()
    .0;
    assert!(matches!(again, PeerResponse::Chunk { .. }), "still serving: {again:?}");

    // Dialling the node while expecting another id fails the handshake, naming the id seen.
    let wrong = client
        .connect(node.local_addr(), Some(swarm_engine::PeerId([1; 32])))
        .await;
    match wrong {
        Err(swarm_proto::ConnectError::WrongId { expected, actual }) => {
            assert_eq!(expected, swarm_engine::PeerId([1; 32]));
            assert_eq!(actual, node.id());
        }
        other => panic!("expected a wrong-id refusal, got {:?}", other.map(|(_, id)| id)),
    }
}
