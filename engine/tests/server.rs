//! The chunk server answers every bad request with a clear error frame, over real QUIC.

use std::net::SocketAddr;
use std::sync::Arc;

use swarm_engine::protocol::{self, ErrorCode, Request, Response, PROTOCOL_VERSION};

/// The version byte of frames built by hand (the version fits in one byte for now).
const V: u8 = PROTOCOL_VERSION as u8;
use swarm_engine::transport::{self, Transport};
use swarm_engine::{FileId, Identity, Node, NodeConfig, Progress};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn error_code(response: Response) -> ErrorCode {
    match response {
        Response::Error { code, message } => {
            assert!(!message.is_empty());
            code
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_error_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("f.bin"), vec![3u8; 200_000]).unwrap();
    let node = Node::start(NodeConfig {
        state_dir: tmp.path().join("node"),
        listen: loopback(),
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let file = node
        .seed_dir(&share, 65536, &Progress::default())
        .await
        .unwrap()
        .remove(0);

    let client = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
    let (connection, proved) = client.connect(node.local_addr(), Some(node.id())).await.unwrap();
    assert_eq!(proved, node.id());

    // A real chunk comes back with its data.
    let (response, mut recv) = transport::exchange(
        &connection,
        &Request::GetChunk {
            file: file.id,
            index: 3,
        },
    )
    .await
    .unwrap();
    let Response::Chunk { len } = response else {
        panic!("{response:?}")
    };
    assert_eq!(len, file.manifest.chunk_len(3));
    let data = recv.read_to_end(1 << 20).await.unwrap();
    assert!(file.manifest.chunk_matches(3, &data));

    let unknown = Request::GetChunk {
        file: FileId([7; 32]),
        index: 0,
    };
    assert_eq!(
        error_code(transport::exchange(&connection, &unknown).await.unwrap().0).await,
        ErrorCode::NotFound
    );
    let out_of_range = Request::GetChunk {
        file: file.id,
        index: 99,
    };
    assert_eq!(
        error_code(transport::exchange(&connection, &out_of_range).await.unwrap().0).await,
        ErrorCode::NotHeld
    );
    assert_eq!(
        error_code(transport::exchange(&connection, &Request::List).await.unwrap().0).await,
        ErrorCode::Unsupported
    );
    // Another key may not ask for the node's status.
    assert_eq!(
        error_code(transport::exchange(&connection, &Request::Status).await.unwrap().0).await,
        ErrorCode::Unsupported
    );

    // Frames that break the protocol get a clear error, then the connection is closed; the
    // node keeps serving new connections.
    let mut future = protocol::encode_frame(&Request::Keepalive);
    future[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    let oversized = [0, 0, 4, 1, 0, V, 10]; // announces 1025 bytes: over the 1 KiB request cap
    let unknown_variant = [0, 0, 0, 3, 0, V, 200];
    let cases: [(&str, &[u8], ErrorCode); 5] = [
        ("future version", &future, ErrorCode::VersionMismatch),
        ("garbage", &[0, 0, 0, 5, 0, V, 0xff, 0xff, 0xff], ErrorCode::Malformed),
        ("truncated", &[0, 0, 0, 40, 0, V, 10, 1, 2], ErrorCode::Malformed),
        ("oversized", &oversized, ErrorCode::Malformed),
        ("unknown message type", &unknown_variant, ErrorCode::Malformed),
    ];
    for (what, bytes, code) in cases {
        let (connection, _) = client.connect(node.local_addr(), Some(node.id())).await.unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
        let answer: Response = protocol::read_frame(&mut recv).await.unwrap();
        assert_eq!(error_code(answer).await, code, "{what}");
        let closed = connection.closed().await;
        assert!(
            matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == transport::PROTOCOL_VIOLATION.into()),
            "{what}: {closed:?}"
        );
    }
    let (connection, _) = client.connect(node.local_addr(), Some(node.id())).await.unwrap();
    let again = transport::exchange(
        &connection,
        &Request::GetChunk {
            file: file.id,
            index: 0,
        },
    )
    .await
    .unwrap()
    .0;
    assert!(matches!(again, Response::Chunk { .. }), "still serving: {again:?}");

    // Dialling the node while expecting another id fails the handshake.
    let wrong = client
        .connect(node.local_addr(), Some(swarm_engine::PeerId([1; 32])))
        .await;
    assert!(wrong.is_err());
}
