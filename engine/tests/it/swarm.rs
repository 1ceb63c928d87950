//! End-to-end swarm tests on real loopback sockets, in one process: a tracker, seeders and
//! fetchers through the engine API, plus a lying tracker built from the engine's own transport
//! and protocol. Misbehaving peers are in `faults.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use swarm_engine::{
    DiskIo, Error, FetchOptions, FileId, Identity, Manifest, Node, NodeConfig, PeerFilter, PeerId, Progress, Sources,
    TrackerAddr,
};

use swarm_proto::protocol::{self, TrackerRequest, TrackerResponse, MAX_FRAME};
use swarm_proto::transport::Transport;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_seeders_serve_every_shape_of_file() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("big/several-chunks.bin", content(40 * CHUNK as usize + 12_345, 1)),
        ("empty.txt", Vec::new()),
        ("exact.bin", content(3 * CHUNK as usize, 2)),
        ("tiny.txt", b"hello swarm".to_vec()),
    ];
    let mut seeders = Vec::new();
    let mut seeded = Vec::new();
    for i in 0..3 {
        let share = tmp.path().join(format!("share{i}"));
        for (name, data) in &files {
            write(&share, name, data);
        }
        // Capped at 4 MB/s each, so every seeder is still busy when the others connect.
        let node = start_node(tmp.path(), &format!("seeder{i}"), pinned(&tracker), Some(4_000_000)).await;
        seeded = node.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap();
        seeders.push(node);
    }
    assert_eq!(seeded.len(), files.len());

    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
    let listed = fetcher.list().await.unwrap();
    assert_eq!(listed.len(), files.len());
    assert!(listed.iter().all(|e| e.holders == 3 || e.size == 0), "{listed:?}");

    let out = tmp.path().join("out");
    for file in &seeded {
        let report = fetcher.fetch(file.id, options(&out)).await.unwrap();
        let want = &files.iter().find(|(n, _)| *n == file.manifest.name).unwrap().1;
        let got = std::fs::read(out.join(&file.manifest.name)).unwrap();
        assert!(got == *want, "{} differs", file.manifest.name);
        assert_eq!(report.bytes_received(), want.len() as u64);
        if file.manifest.chunk_count >= 40 {
            assert!(
                report.received.len() >= 2,
                "expected several sources, got {:?}",
                report.received
            );
        }
    }
    // No partial files are left behind.
    let leftovers: Vec<_> = walk(&out)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("swarm-part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // --from restricts the fetch to one chosen peer.
    let chosen = seeders[1].id();
    let only = FetchOptions {
        sources: Sources::Only(chosen.to_string()[..10].parse().unwrap()),
        ..options(&tmp.path().join("from-one"))
    };
    let report = fetcher.fetch(seeded[0].id, only).await.unwrap();
    assert_eq!(report.received.keys().collect::<Vec<_>>(), vec![&chosen]);
    let nobody = FetchOptions {
        sources: Sources::Only(PeerFilter::Addr("127.0.0.1:9".parse().unwrap())),
        ..options(&tmp.path().join("from-none"))
    };
    let err = fetcher.fetch(seeded[0].id, nobody).await.unwrap_err();
    assert_eq!(err.kind(), swarm_engine::ErrorKind::NotFound, "{err}");

    // Through the page cache instead of direct I/O: the same file.
    let buffered = FetchOptions {
        disk_io: DiskIo::Buffered,
        ..options(&tmp.path().join("buffered"))
    };
    let big = seeded.iter().find(|f| f.manifest.chunk_count >= 40).unwrap();
    let report = fetcher.fetch(big.id, buffered).await.unwrap();
    let want = &files.iter().find(|(n, _)| *n == report.manifest.name).unwrap().1;
    let got = std::fs::read(tmp.path().join("buffered").join(&report.manifest.name)).unwrap();
    assert!(
        got == *want,
        "{} differs when fetched with buffered I/O",
        report.manifest.name
    );

    // Fetching again is "already complete" without downloading.
    let again = fetcher.fetch(seeded[0].id, options(&out)).await.unwrap();
    assert!(again.already_complete);
    assert_eq!(again.bytes_received(), 0);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_done_fetcher_serves_another() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let data = content(64 * CHUNK as usize, 3); // 4 MiB
    let share = tmp.path().join("share");
    write(&share, "movie.bin", &data);

    // The seeder uploads at 2 MB/s, so the first fetcher is about half done after a second.
    let seeder = start_node(tmp.path(), "seeder", pinned(&tracker), Some(2_000_000)).await;
    let id = seeder.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap()[0].id;

    let first = start_node(tmp.path(), "first", pinned(&tracker), None).await;
    let first_progress = Arc::new(Progress::default());
    let first_fetch = {
        let (first, out) = (first.clone(), tmp.path().join("out1"));
        let progress = first_progress.clone();
        tokio::spawn(async move {
            first
                .fetch(
                    id,
                    FetchOptions {
                        progress,
                        ..options(&out)
                    },
                )
                .await
        })
    };
    while first_progress.done() < data.len() as u64 / 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The seeder leaves: from now on, half the file exists only at the first fetcher.
    seeder.shutdown(Duration::from_secs(1)).await;

    let second = start_node(tmp.path(), "second", pinned(&tracker), None).await;
    let second_fetch = {
        let (second, out) = (second.clone(), tmp.path().join("out2"));
        tokio::spawn(async move { second.fetch(id, options(&out)).await })
    };
    // Let the second fetcher take what the first has, then bring a full copy back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reseeder = start_node(tmp.path(), "reseeder", pinned(&tracker), None).await;
    reseeder.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap();

    let first_report = first_fetch.await.unwrap().unwrap();
    let second_report = second_fetch.await.unwrap().unwrap();
    assert_eq!(std::fs::read(&first_report.path).unwrap(), data);
    assert_eq!(std::fs::read(&second_report.path).unwrap(), data);
    let from_first = second_report.received.get(&first.id()).copied().unwrap_or(0);
    assert!(
        from_first > 0,
        "the second fetcher got nothing from the first: {:?}",
        second_report.received
    );
}

/// A tracker that answers every `Locate` with `manifest`, whatever was asked.
async fn lying_tracker(manifest: Manifest) -> (Transport, tokio::task::JoinHandle<()>) {
    let (transport, task, _) = stub_tracker(Some(manifest), vec![]).await;
    (transport, task)
}

/// A tracker that answers every `Locate` with `manifest` (or none) and `holders`, whatever was
/// asked, and notes whether a manifest was ever asked of it.
async fn stub_tracker(
    manifest: Option<Manifest>,
    holders: Vec<protocol::Holder>,
) -> (Transport, tokio::task::JoinHandle<()>, Arc<AtomicBool>) {
    let transport = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
    let endpoint = transport.endpoint().clone();
    let asked_for_manifest = Arc::new(AtomicBool::new(false));
    let asked = asked_for_manifest.clone();
    let task = tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let (manifest, holders, asked) = (manifest.clone(), holders.clone(), asked.clone());
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let request: TrackerRequest = protocol::read_frame(&mut recv, MAX_FRAME).await.unwrap();
                    let response = match request {
                        TrackerRequest::Register { .. } => TrackerResponse::Registered {
                            addr: connection.remote_address(),
                            peer: PeerId([0; 32]),
                            timeout_secs: 180,
                            report_secs: 1,
                        },
                        TrackerRequest::Locate { manifest: wanted, .. } => {
                            asked.fetch_or(wanted, Ordering::SeqCst);
                            TrackerResponse::Located {
                                manifest: manifest.clone(),
                                holders: holders.clone(),
                                meta: Default::default(),
                                live: holders.len() as u32,
                                retired: false,
                            }
                        }
                        _ => TrackerResponse::Ok,
                    };
                    swarm_proto::transport::send_frame(&mut send, &response).await.unwrap();
                    let _ = send.finish();
                    let _ = send.stopped().await;
                }
            });
        }
    });
    (transport, task, asked_for_manifest)
}

/// A peer that answers every request with `manifest`.
fn manifest_liar(manifest: Manifest) -> (Transport, tokio::task::JoinHandle<()>) {
    let transport = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
    let endpoint = transport.endpoint().clone();
    let task = tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let manifest = manifest.clone();
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else { return };
                while let Ok((mut send, _recv)) = connection.accept_bi().await {
                    let answer = protocol::PeerResponse::Manifest(manifest.clone());
                    let _ = swarm_proto::transport::send_frame(&mut send, &answer).await;
                    let _ = send.finish();
                }
            });
        }
    });
    (transport, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_comes_from_a_holder_and_a_holder_cannot_fake_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = content(10 * CHUNK as usize + 7, 9);
    let share = tmp.path().join("share");
    write(&share, "real.bin", &data);
    let tracker = start_tracker(tmp.path()).await;
    let seeder = start_node(tmp.path(), "seeder", pinned(&tracker), None).await;
    let id = seeder.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap()[0].id;
    let mut fake = Manifest::from_file(&share.join("real.bin"), "real.bin", CHUNK).unwrap();
    fake.name = "fake.bin".into();
    let (liar, _liar_task) = manifest_liar(fake);
    let holder = |peer: PeerId, addr: std::net::SocketAddr| protocol::Holder {
        peer,
        addr,
        other_addrs: Vec::new(),
        complete: true,
    };
    // The liar is named first; the tracker never sends the manifest.
    let holders = vec![
        holder(liar.id(), liar.local_addr()),
        holder(seeder.id(), seeder.local_addr()),
    ];
    let (stub, _task, asked_for_manifest) = stub_tracker(None, holders).await;
    let stub_addr = TrackerAddr {
        host_port: stub.local_addr().to_string(),
        id: Some(stub.id()),
    };
    let fetcher = start_node(tmp.path(), "fetcher", stub_addr, None).await;
    let out = tmp.path().join("out");
    let report = fetcher.fetch(id, options(&out)).await.unwrap();
    assert_eq!(report.manifest.name, "real.bin");
    assert!(std::fs::read(out.join("real.bin")).unwrap() == data);
    assert!(!out.join("fake.bin").exists());
    assert!(
        !asked_for_manifest.load(Ordering::SeqCst),
        "the tracker was asked for the manifest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_manifest_from_a_lying_tracker_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "share/real.bin", &content(100_000, 4));
    let manifest = Manifest::from_file(&path, "real.bin", CHUNK).unwrap();
    let id = manifest.id();
    let mut tampered = manifest.clone();
    tampered.name = "evil.bin".into();
    let (liar, _task) = lying_tracker(tampered).await;
    let liar_addr = TrackerAddr {
        host_port: liar.local_addr().to_string(),
        id: Some(liar.id()),
    };
    let fetcher = start_node(tmp.path(), "fetcher", liar_addr, None).await;
    let out = tmp.path().join("out");
    let err = fetcher.fetch(id, options(&out)).await.unwrap_err();
    assert!(matches!(err, Error::Manifest { .. }), "{err}");
    assert_eq!(err.kind(), swarm_engine::ErrorKind::Integrity);
    assert!(!out.join("evil.bin").exists() && !out.join("real.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_manifest_is_refused_by_the_fetcher_even_when_its_id_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "share/real.bin", &content(100_000, 4));
    let good = Manifest::from_file(&path, "real.bin", CHUNK).unwrap();
    let work = tmp.path().join("deep/inside");
    let out = work.join("out");
    for name in [
        "../escape.bin",
        "../../escape.bin",
        "/tmp/escape.bin",
        "a\\..\\escape.bin",
        "nul\0.bin",
    ] {
        // A tracker that made up a manifest with a hostile name, and asks for it by its own id.
        let mut hostile = good.clone();
        hostile.name = name.to_owned();
        let id = hostile.id();
        let (liar, _task) = lying_tracker(hostile).await;
        let liar_addr = TrackerAddr {
            host_port: liar.local_addr().to_string(),
            id: Some(liar.id()),
        };
        let fetcher = start_node(&work, &format!("fetcher-{}", id.short()), liar_addr, None).await;
        let err = fetcher.fetch(id, options(&out)).await.unwrap_err();
        assert!(matches!(err, Error::Manifest { .. }), "{name:?}: {err}");
        assert!(err.to_string().contains("name"), "{name:?}: {err}");
    }
    assert!(!tmp.path().join("deep/escape.bin").exists() && !tmp.path().join("escape.bin").exists());
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_ambiguous_ids_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let node = start_node(tmp.path(), "node", pinned(&tracker), None).await;
    let err = node.resolve("0123456789abcdef").await.unwrap_err();
    assert_eq!(err.kind(), swarm_engine::ErrorKind::NotFound, "{err}");
    let err = node.fetch(FileId([9; 32]), options(tmp.path())).await.unwrap_err();
    assert_eq!(err.kind(), swarm_engine::ErrorKind::NotFound, "{err}");
    assert!(
        node.resolve("abc").await.is_err(),
        "prefixes under 8 digits are refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_tracker_id_is_refused_by_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let wrong = TrackerAddr {
        host_port: tracker.local_addr().to_string(),
        id: Some(PeerId([1; 32])),
    };
    let node = Node::start(NodeConfig {
        state_dir: tmp.path().join("node"),
        listen: loopback(),
        tracker: Some(wrong.into()),
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let err = node.join_tracker().await.unwrap_err();
    assert!(err.to_string().contains("expected node"), "{err}");
}

/// A peer that has located a file joins its swarm by id; a file the tracker does not list
/// is refused so that the peer announces it in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_located_file_is_joined_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let seeder = start_node(tmp.path(), "seeder", pinned(&tracker), None).await;
    write(&tmp.path().join("share"), "f.bin", &content(300_000, 5));
    let file = seeder
        .seed_dir(&tmp.path().join("share"), 65536, &Progress::default())
        .await
        .unwrap()
        .remove(0);
    let identity = Arc::new(Identity::generate().unwrap());
    let transport = Transport::bind(identity, loopback()).unwrap();
    let me = transport.id();
    let client = swarm_engine::TrackerClient::new(transport, pinned(&tracker), None);
    client.register(None, Vec::new()).await.unwrap();
    let none = swarm_engine::Bitfield::new(file.manifest.chunk_count);
    let unknown = client.join(FileId([7; 32]), &none, Default::default()).await.unwrap();
    assert!(unknown.is_none(), "an unlisted file is not joined: {unknown:?}");
    let joined = client.join(file.id, &none, Default::default()).await.unwrap();
    assert_eq!(joined, Some(swarm_engine::tracker_client::RegisteredOrNot::Ok));
    let holders = seeder.holdings(file.id).await.unwrap();
    assert!(holders.iter().any(|h| h.peer == me), "the joiner is listed");
}
