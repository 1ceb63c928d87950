//! Misbehaving peers and an absent tracker, on real loopback sockets: peers that send garbage,
//! the wrong chunk, too few bytes or a wrong length are banned and reported; peers that stall
//! or trickle are worked around; a fetch goes on when the tracker disappears, and asks a silent
//! tracker again until it answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_engine::tracker_client::TrackerClient;
use swarm_engine::{Bitfield, Identity, Manifest, PeerId, Progress};
use swarm_proto::protocol::{self, PeerRequest, PeerResponse};
use swarm_proto::transport::Transport;
use swarm_tracker::Tracker;

use crate::common::*;

/// How a fake peer answers every `GetChunk`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Misbehaviour {
    /// The right length of the wrong bytes.
    Garbage,
    /// Real data, of another chunk.
    WrongChunk,
    /// The right header, then half the bytes and the end of the stream.
    CutShort,
    /// A header announcing one byte too few, and that many bytes.
    WrongLength,
    /// Reads the request and never answers.
    Stall,
    /// The right header, then one byte every 50 ms.
    Trickle,
}

/// A peer that announces all of `data` at the tracker and answers as `how` says.
async fn misbehaving_peer(tracker: &Tracker, manifest: &Manifest, data: Arc<Vec<u8>>, how: Misbehaviour) -> PeerId {
    let transport = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
    let client = TrackerClient::new(transport.clone(), pinned(tracker), None);
    client.register(None, Vec::new()).await.unwrap();
    client
        .announce(manifest, &Bitfield::full(manifest.chunk_count), Default::default())
        .await
        .unwrap();
    let endpoint = transport.endpoint().clone();
    let manifest = Arc::new(manifest.clone());
    tokio::spawn(async move {
        let _client = client; // keeps the tracker session open
        while let Some(incoming) = endpoint.accept().await {
            let (manifest, data) = (manifest.clone(), data.clone());
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let index = match protocol::read_frame(&mut recv, 64 * 1024).await {
                        Ok(PeerRequest::GetChunk { index, .. }) => index,
                        // Says it holds everything, and keeps the watch open.
                        Ok(PeerRequest::Watch { .. }) => {
                            let all = PeerResponse::Have(Bitfield::full(manifest.chunk_count));
                            let _ = swarm_proto::transport::send_frame(&mut send, &all).await;
                            tokio::spawn(async move {
                                let _ = recv.read_to_end(usize::MAX).await;
                                drop(send);
                            });
                            continue;
                        }
                        _ => return,
                    };
                    let (manifest, data) = (manifest.clone(), data.clone());
                    tokio::spawn(async move {
                        let chunk = |i: u32| {
                            let start = manifest.chunk_offset(i) as usize;
                            data[start..start + manifest.chunk_len(i) as usize].to_vec()
                        };
                        let real = chunk(index);
                        let (header, body) = match how {
                            Misbehaviour::Garbage => (real.len(), vec![0xEE; real.len()]),
                            Misbehaviour::WrongChunk => (real.len(), chunk((index + 1) % manifest.chunk_count)),
                            Misbehaviour::CutShort => (real.len(), real[..real.len() / 2].to_vec()),
                            Misbehaviour::WrongLength => (real.len() - 1, real[..real.len() - 1].to_vec()),
                            Misbehaviour::Stall => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                return;
                            }
                            Misbehaviour::Trickle => (real.len(), real),
                        };
                        let header = PeerResponse::Chunk { len: header as u32 };
                        let _ = swarm_proto::transport::send_frame(&mut send, &header).await;
                        if how == Misbehaviour::Trickle {
                            for byte in body {
                                if send.write_all(&[byte]).await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        } else {
                            let _ = send.write_all(&body).await;
                        }
                        let _ = send.finish();
                        let _ = send.stopped().await;
                    });
                }
            });
        }
    });
    transport.id()
}

/// A tracker and an honest seeder, capped at `rate`, of a file of `chunks` full chunks.
async fn swarm_with_honest_seeder(
    dir: &std::path::Path,
    chunks: usize,
    rate: u64,
) -> (Tracker, swarm_engine::Node, swarm_engine::SeededFile, Arc<Vec<u8>>) {
    let tracker = start_credulous_tracker(dir).await;
    let data = Arc::new(content(chunks * CHUNK as usize, 5));
    let share = dir.join("share");
    write(&share, "data.bin", &data);
    let seeder = start_node(dir, "seeder", pinned(&tracker), Some(rate)).await;
    let file = seeder
        .seed_dir(&share, CHUNK, &Progress::default())
        .await
        .unwrap()
        .remove(0);
    (tracker, seeder, file, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_sending_bad_chunks_are_banned_and_the_file_arrives_intact() {
    let tmp = tempfile::tempdir().unwrap();
    // The honest seeder is capped (2 MiB at 1 MB/s) so that every liar is certain to be asked.
    let (tracker, _seeder, file, data) = swarm_with_honest_seeder(tmp.path(), 32, 1_000_000).await;
    let liars = [
        Misbehaviour::Garbage,
        Misbehaviour::WrongChunk,
        Misbehaviour::CutShort,
        Misbehaviour::WrongLength,
    ];
    let mut ids = Vec::new();
    for how in liars {
        ids.push(misbehaving_peer(&tracker, &file.manifest, data.clone(), how).await);
    }
    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
    assert_eq!(fetcher.holdings(file.id).await.unwrap().len(), 5);
    let out = tmp.path().join("out");
    let report = fetcher.fetch(file.id, options(&out)).await.unwrap();
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), *data);
    for (how, id) in liars.iter().zip(&ids) {
        assert!(
            report.banned.contains(id),
            "{how:?} was not banned: {:?}",
            report.banned
        );
        assert!(!report.received.contains_key(id), "{how:?} delivered a chunk");
    }
    assert_eq!(report.banned.len(), liars.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalling_and_trickling_peers_do_not_hold_the_fetch() {
    for how in [Misbehaviour::Stall, Misbehaviour::Trickle] {
        let tmp = tempfile::tempdir().unwrap();
        // 4 MiB from an honest seeder at 4 MB/s: about a second on its own.
        let (tracker, seeder, file, data) = swarm_with_honest_seeder(tmp.path(), 64, 4_000_000).await;
        let slow = misbehaving_peer(&tracker, &file.manifest, data.clone(), how).await;
        let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
        let out = tmp.path().join("out");
        let started = Instant::now();
        let report = fetcher.fetch(file.id, options(&out)).await.unwrap();
        let took = started.elapsed();
        assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), *data);
        assert!(!report.received.contains_key(&slow), "{how:?} delivered a whole chunk");
        assert_eq!(report.received[&seeder.id()], data.len() as u64);
        println!("{how:?}: 4 MiB in {took:?} (the honest seeder alone needs about 1.05 s)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_goes_on_when_the_tracker_disappears() {
    let tmp = tempfile::tempdir().unwrap();
    // 3 MiB at 1 MB/s: the tracker is gone for most of the fetch.
    let (tracker, seeder, file, data) = swarm_with_honest_seeder(tmp.path(), 48, 1_000_000).await;
    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
    let out = tmp.path().join("out");
    let fetch = {
        let (fetcher, out, id) = (fetcher.clone(), out.clone(), file.id);
        tokio::spawn(async move { fetcher.fetch(id, options(&out)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    tracker.stop().await;
    drop(tracker);
    let report = fetch.await.unwrap().unwrap();
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), *data);
    assert_eq!(report.received[&seeder.id()], data.len() as u64);
}

/// A fetch whose only way to find holders is the tracker asks a silent tracker again, with a
/// new handshake, and finishes once it answers: a tracker swamped by a crowd, or behind a
/// congested link, can miss a whole handshake's patience (40 s) and answer the next. Before,
/// the fetch gave up with the first handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_asks_a_silent_tracker_again_until_it_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let (tracker, seeder, file, data) = swarm_with_honest_seeder(tmp.path(), 8, 100_000_000).await;
    // The fetcher reaches the tracker only through a gate that drops everything until the
    // fetcher dials a second time.
    let gate = Gate::to(tracker.local_addr());
    let fetcher = node_asking_only(tmp.path(), gate.addr, Some(tracker.id())).await;
    let out = tmp.path().join("out");
    let options = swarm_engine::FetchOptions {
        timeout: Some(Duration::from_secs(300)),
        ..options(&out)
    };
    let started = Instant::now();
    let report = fetcher
        .fetch(file.id, options)
        .await
        .expect("fetched once the tracker answered");
    println!(
        "fetched in {:.1?}, the tracker dialled {} times",
        started.elapsed(),
        gate.dials()
    );
    assert!(gate.dials() >= 2, "the tracker was dialled again");
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), *data);
    assert_eq!(report.received[&seeder.id()], data.len() as u64);
    tracker.stop().await;
}

/// A node (not yet joined) whose only way to holders is the tracker at `tracker`: no local
/// discovery (the seeder is on this machine's network too), no port mapping.
async fn node_asking_only(
    dir: &std::path::Path,
    tracker: std::net::SocketAddr,
    id: Option<PeerId>,
) -> swarm_engine::Node {
    swarm_engine::Node::start(swarm_engine::NodeConfig {
        state_dir: dir.join("fetcher"),
        listen: loopback(),
        tracker: Some(
            swarm_engine::TrackerAddr {
                host_port: tracker.to_string(),
                id,
            }
            .into(),
        ),
        lan_discovery: false,
        port_mapping: false,
        ..swarm_engine::NodeConfig::default()
    })
    .await
    .unwrap()
}

/// A UDP relay to one address that drops every datagram until the one client behind it starts a
/// second QUIC connection (a new destination id in a long-header Initial packet): a link that
/// carries nothing for a first handshake's whole patience.
struct Gate {
    addr: std::net::SocketAddr,
    dialled: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Gate {
    fn to(target: std::net::SocketAddr) -> Gate {
        use std::net::UdpSocket;
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(target).unwrap();
        let addr = front.local_addr().unwrap();
        let dialled: Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Arc::default();
        let client = Arc::new(std::sync::Mutex::new(None));
        let (front_in, back_out, seen, from) = (
            front.try_clone().unwrap(),
            back.try_clone().unwrap(),
            dialled.clone(),
            client.clone(),
        );
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, sender)) = front_in.recv_from(&mut buf) {
                *from.lock().unwrap() = Some(sender);
                let mut seen = seen.lock().unwrap();
                if let Some(dcid) = initial_destination(&buf[..n]) {
                    if !seen.contains(&dcid) {
                        seen.push(dcid);
                    }
                }
                if seen.len() >= 2 {
                    let _ = back_out.send(&buf[..n]);
                }
            }
        });
        let seen = dialled.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = back.recv(&mut buf) {
                let to = *client.lock().unwrap();
                if let (Some(to), true) = (to, seen.lock().unwrap().len() >= 2) {
                    let _ = front.send_to(&buf[..n], to);
                }
            }
        });
        Gate { addr, dialled }
    }

    /// QUIC connections the client started through the gate.
    fn dials(&self) -> usize {
        self.dialled.lock().unwrap().len()
    }
}

/// The destination connection id of a QUIC v1 Initial packet (RFC 9000, 17.2).
fn initial_destination(datagram: &[u8]) -> Option<Vec<u8>> {
    let (&first, rest) = datagram.split_first()?;
    let long_initial = first & 0x80 != 0 && (first >> 4) & 0x03 == 0;
    let length = usize::from(*rest.get(4)?);
    (long_initial && rest.get(..4)? == [0, 0, 0, 1]).then(|| rest.get(5..5 + length).map(<[u8]>::to_vec))?
}

/// A download cancelled (as from the web page) while its tracker is silent ends at once, with
/// `Cancelled`, instead of asking the tracker again for as long as the node runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_waiting_for_a_silent_tracker_can_be_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    // A socket that takes datagrams and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fetcher = node_asking_only(tmp.path(), silent.local_addr().unwrap(), None).await;
    let id = swarm_engine::FileId([7; 32]);
    let fetch = {
        let (fetcher, out) = (fetcher.clone(), tmp.path().join("out"));
        tokio::spawn(async move { fetcher.fetch(id, options(&out)).await })
    };
    let download = loop {
        if let Some(download) = fetcher.downloads().get(&id) {
            break download;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    download.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(30), fetch)
        .await
        .expect("the fetch ended on its cancel, not with the tracker's 40 s handshake")
        .unwrap();
    assert!(matches!(ended, Err(swarm_engine::Error::Cancelled)), "{ended:?}");
}
