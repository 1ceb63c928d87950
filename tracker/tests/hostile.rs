//! The tracker against hostile input on real QUIC connections: broken frames, hostile
//! manifests, a peer acting for another, a request flood and a connection flood.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::Connection;
use swarm_proto::protocol::{
    self, CloseCode, ErrorCode, TrackerRequest as Request, TrackerResponse as Response, MAX_FRAME,
};
use swarm_proto::transport::{self, Transport, MAX_CONNECTIONS_PER_IP};
use swarm_proto::{Bitfield, Identity, Manifest, PeerId};
use swarm_tracker::{Tracker, TrackerConfig};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn start(dir: &std::path::Path) -> Tracker {
    Tracker::start(TrackerConfig {
        state_dir: dir.join("tracker"),
        listen: loopback(),
        peer_timeout: Duration::from_secs(60),
        ..TrackerConfig::default()
    })
    .await
    .unwrap()
}

/// A fresh peer identity with its own endpoint, connected to the tracker.
async fn peer(tracker: &Tracker) -> (Transport, Connection) {
    let transport = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
    let (connection, _) = transport
        .connect(tracker.local_addr(), Some(tracker.id()))
        .await
        .unwrap();
    (transport, connection)
}

async fn ask(connection: &Connection, request: &Request) -> Response {
    transport::exchange(connection, request, MAX_FRAME).await.unwrap().0
}

fn code(response: Response) -> ErrorCode {
    match response {
        Response::Error { code, message } => {
            assert!(!message.is_empty());
            code
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A valid manifest of `len` bytes named `name`.
fn manifest(name: &str, len: usize) -> Manifest {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![5u8; len]).unwrap();
    Manifest::from_file(&path, name, 65536).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_frames_get_an_error_and_a_closed_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start(tmp.path()).await;
    let over = (MAX_FRAME + 1).to_be_bytes();
    let oversized = [over[0], over[1], over[2], over[3], 6];
    let cases: [(&str, &[u8], ErrorCode); 6] = [
        ("garbage", &[0, 0, 0, 3, 0xff, 0xff, 0xff], ErrorCode::Malformed),
        ("truncated", &[0, 0, 0, 90, 1], ErrorCode::Malformed),
        ("over the frame cap", &oversized, ErrorCode::Malformed),
        ("empty frame", &[0, 0, 0, 0], ErrorCode::Malformed),
        ("unknown message type", &[0, 0, 0, 1, 99], ErrorCode::Malformed),
        ("trailing bytes", &[0, 0, 0, 2, 6, 0], ErrorCode::Malformed),
    ];
    for (what, bytes, expected) in cases {
        let (_transport, connection) = peer(&tracker).await;
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
        let answer: Response = protocol::read_frame(&mut recv, MAX_FRAME).await.unwrap();
        assert_eq!(code(answer), expected, "{what}");
        let closed = connection.closed().await;
        assert!(
            matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c)
                if c.error_code == CloseCode::ProtocolViolation.code()),
            "{what}: {closed:?}"
        );
    }
    // Unharmed: a new connection is served.
    let (_transport, connection) = peer(&tracker).await;
    assert!(matches!(
        ask(
            &connection,
            &Request::List {
                page: Default::default()
            }
        )
        .await,
        Response::Catalogue(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_manifests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start(tmp.path()).await;
    let (_transport, connection) = peer(&tracker).await;
    assert!(matches!(
        ask(
            &connection,
            &Request::Register {
                advertise: None,
                addrs: vec![]
            }
        )
        .await,
        Response::Registered { .. }
    ));
    let good = manifest("good.bin", 200_000);
    let mut cases: Vec<(&str, Manifest)> = Vec::new();
    let mut m = good.clone();
    m.chunk_count += 1;
    cases.push(("chunk count that does not match the size", m));
    let mut m = good.clone();
    m.size = u64::MAX;
    cases.push(("absurd size", m));
    let mut m = good.clone();
    m.chunk_size = 1000;
    cases.push(("chunk size not a power of two", m));
    let mut m = good.clone();
    m.chunks.pop();
    cases.push(("fewer chunk hashes than chunks", m));
    let mut m = good.clone();
    m.hash = swarm_proto::Digest([0; 32]);
    cases.push(("chunk hashes that do not add up to the global hash", m));
    let mut m = good.clone();
    m.size = 1 << 40;
    m.chunk_count = 1 << 24;
    m.chunks = vec![swarm_proto::Digest([1; 32]); 300_000];
    cases.push(("too many chunks", m));
    for name in [
        "../escape",
        "/etc/passwd",
        "dir\\file",
        "nul\0byte",
        "a/../../b",
        "",
        "clear\x1b[2Jscreen",
        "forged\nline",
        "txt\u{202e}exe.txt",
    ] {
        let mut m = good.clone();
        m.name = name.to_owned();
        cases.push(("unsafe name", m));
    }
    let mut m = good.clone();
    m.name = "x".repeat(5000);
    cases.push(("overlong name", m));
    for (what, manifest) in cases {
        let chunks = Bitfield::full(manifest.chunk_count.min(1 << 20));
        let answer = ask(
            &connection,
            &Request::Announce {
                manifest,
                chunks,
                meta: Default::default(),
            },
        )
        .await;
        assert_eq!(code(answer), ErrorCode::Invalid, "{what}");
    }
    let Response::Catalogue(listed) = ask(
        &connection,
        &Request::List {
            page: Default::default(),
        },
    )
    .await
    else {
        panic!("no catalogue")
    };
    assert!(listed.entries.is_empty(), "nothing hostile was stored: {listed:?}");
    // The same connection still works for a good manifest.
    let chunks = Bitfield::full(good.chunk_count);
    assert_eq!(
        ask(
            &connection,
            &Request::Announce {
                manifest: good,
                chunks,
                meta: Default::default()
            }
        )
        .await,
        Response::Ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_act_for_another() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start(tmp.path()).await;
    let (a_transport, a) = peer(&tracker).await;
    let (_b_transport, b) = peer(&tracker).await;
    let file = manifest("a.bin", 100_000);
    let id = file.id();
    ask(
        &a,
        &Request::Register {
            advertise: None,
            addrs: vec![],
        },
    )
    .await;
    let chunks = Bitfield::full(file.chunk_count);
    ask(
        &a,
        &Request::Announce {
            manifest: file,
            chunks,
            meta: Default::default(),
        },
    )
    .await;
    ask(
        &b,
        &Request::Register {
            advertise: None,
            addrs: vec![],
        },
    )
    .await;
    // B can only speak for itself: its leave and withdraw touch nothing of A's.
    ask(&b, &Request::Withdraw { file: id }).await;
    ask(
        &b,
        &Request::HaveChunks {
            file: id,
            chunks: vec![0],
        },
    )
    .await;
    assert_eq!(ask(&b, &Request::Leave).await, Response::Ok);
    let Response::Holdings(holders) = ask(&b, &Request::Holders { file: id }).await else {
        panic!("not located")
    };
    let holders: Vec<PeerId> = holders.iter().map(|h| h.peer).collect();
    assert_eq!(
        holders,
        vec![a_transport.id()],
        "only A holds the file, as A announced it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_does_not_stop_the_tracker_answering_others() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = Arc::new(start(tmp.path()).await);
    let (_flooder_transport, flood) = peer(&tracker).await;
    let (answered, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Instant::now() + Duration::from_secs(3);
    let floods: Vec<_> = (0..32)
        .map(|_| {
            let (flood, answered, busy) = (flood.clone(), answered.clone(), busy.clone());
            tokio::spawn(async move {
                while Instant::now() < stop {
                    match transport::exchange(
                        &flood,
                        &Request::List {
                            page: Default::default(),
                        },
                        MAX_FRAME,
                    )
                    .await
                    {
                        Ok((Response::Catalogue(_), _)) => answered.fetch_add(1, Ordering::Relaxed),
                        Ok((
                            Response::Error {
                                code: ErrorCode::Busy, ..
                            },
                            _,
                        )) => busy.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected answer to the flood: {other:?}"),
                    };
                }
            })
        })
        .collect();

    // Meanwhile another peer registers, announces and locates.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (honest_transport, honest) = peer(&tracker).await;
    let file = manifest("honest.bin", 300_000);
    let id = file.id();
    assert!(matches!(
        ask(
            &honest,
            &Request::Register {
                advertise: None,
                addrs: vec![]
            }
        )
        .await,
        Response::Registered { .. }
    ));
    let chunks = Bitfield::full(file.chunk_count);
    assert_eq!(
        ask(
            &honest,
            &Request::Announce {
                manifest: file,
                chunks,
                meta: Default::default()
            }
        )
        .await,
        Response::Ok
    );
    let Response::Holdings(holders) = ask(&honest, &Request::Holders { file: id }).await else {
        panic!("not located")
    };
    let took = started.elapsed();
    assert_eq!(holders[0].peer, honest_transport.id());
    for flood in floods {
        flood.await.unwrap();
    }
    let (answered, busy) = (answered.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    println!("during the flood ({answered} answered, {busy} told busy) another peer registered, announced and located in {took:?}");
    assert!(busy > 0, "the flood was limited");
    // A bound for a working tracker, not a speed goal: a starved one would not answer at all.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_from_one_address_are_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start(tmp.path()).await;
    let client = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
    let mut open = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_IP {
        let (connection, _) = client.connect(tracker.local_addr(), Some(tracker.id())).await.unwrap();
        open.push(connection);
    }
    let refused = client.connect(tracker.local_addr(), Some(tracker.id())).await;
    assert!(
        refused.is_err(),
        "connection {} was accepted",
        MAX_CONNECTIONS_PER_IP + 1
    );
    // Closing one frees a slot.
    open.pop().unwrap().close(0u32.into(), b"bye");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = client.connect(tracker.local_addr(), Some(tracker.id())).await;
    assert!(again.is_ok(), "{:?}", again.err());
    assert!(matches!(
        ask(
            &open[0],
            &Request::List {
                page: Default::default()
            }
        )
        .await,
        Response::Catalogue(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_holds_only_holding_updates_and_answers_each() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start(tmp.path()).await;
    let (_transport, a) = peer(&tracker).await;
    ask(
        &a,
        &Request::Register {
            advertise: None,
            addrs: vec![],
        },
    )
    .await;
    let file = manifest("batched.bin", 100_000);
    let id = file.id();
    let chunks = Bitfield::full(file.chunk_count);
    let batch = Request::Batch(vec![
        // Unknown to the tracker yet: a join is answered NotFound, the announce then lists it.
        Request::Join {
            file: id,
            chunks: chunks.clone(),
            meta: Default::default(),
        },
        Request::Announce {
            manifest: file,
            chunks,
            meta: Default::default(),
        },
        // Not a holding update: refused on its own, the rest still done.
        Request::Keepalive,
        Request::Batch(vec![]),
        Request::List {
            page: Default::default(),
        },
    ]);
    let Response::Batch(answers) = ask(&a, &batch).await else {
        panic!("a batch is answered with a batch")
    };
    assert_eq!(answers.len(), 5);
    assert_eq!(code(answers[0].clone()), ErrorCode::NotFound);
    assert_eq!(answers[1], Response::Ok);
    for refused in &answers[2..] {
        assert_eq!(code(refused.clone()), ErrorCode::Unsupported);
    }
    let Response::Holdings(holders) = ask(&a, &Request::Holders { file: id }).await else {
        panic!("not listed")
    };
    assert_eq!(holders.len(), 1);
    // Too many at once: refused whole.
    let withdrawals = (0..=protocol::MAX_BATCH)
        .map(|_| Request::Withdraw { file: id })
        .collect();
    assert_eq!(code(ask(&a, &Request::Batch(withdrawals)).await), ErrorCode::Limit);

    // Locates may be batched: a few holders each, and only of files with small manifests.
    let big = manifest("big.bin", (protocol::MAX_BATCH_LOCATE_CHUNKS as usize + 1) * 65536);
    let big_id = big.id();
    let big_chunks = Bitfield::full(big.chunk_count);
    let announced = ask(
        &a,
        &Request::Announce {
            manifest: big,
            chunks: big_chunks,
            meta: Default::default(),
        },
    )
    .await;
    assert_eq!(announced, Response::Ok);
    let locate = |file| Request::Locate {
        file,
        manifest: true,
        want: u16::MAX,
    };
    let Response::Batch(answers) = ask(&a, &Request::Batch(vec![locate(id), locate(big_id)])).await else {
        panic!("a batch is answered with a batch")
    };
    assert!(
        matches!(&answers[0], Response::Located { manifest: Some(m), .. } if m.id() == id),
        "{:?}",
        answers[0]
    );
    assert_eq!(code(answers[1].clone()), ErrorCode::Invalid);
    let too_many = (0..=protocol::MAX_BATCH_LOCATES).map(|_| locate(id)).collect();
    assert_eq!(code(ask(&a, &Request::Batch(too_many)).await), ErrorCode::Limit);
}
