//! One hostile peer beside an honest fetch, on real loopback sockets: a peer that asks for
//! many chunks and never reads them, and a greedy peer that asks again the moment a slot frees.
//! The honest fetch finishes either way; the tests print its time as a multiple of its time
//! without the hostile peer (the figures, not an assertion: these machines are noisy).
//!
//! The hostile peers connect from 127.0.0.2, as another machine would: what one address may
//! hold is capped, so that is where a peer's fair share is drawn.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_engine::launch::{loopback_node, Caps, LocalSwarm};
use swarm_engine::{FetchOptions, FileId, Identity, Node, Progress};
use swarm_proto::protocol::{PeerRequest, PeerResponse};
use swarm_proto::transport::{self, Transport};

use crate::common::*;

const MIB: usize = 1 << 20;

/// Another machine's address on this one.
fn other_machine() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], 0))
}

/// A swarm with one seeder (capped at `rate`) of `big.bin` (64 MiB) and `small.bin` of
/// `small` bytes, in 1 MiB chunks.
async fn seeded(dir: &std::path::Path, small: usize, rate: Option<u64>) -> (LocalSwarm, Node, FileId, FileId) {
    let share = dir.join("share");
    write(&share, "big.bin", &content(64 * MIB, 1));
    write(&share, "small.bin", &content(small, 2));
    let mut swarm = LocalSwarm::start(dir, Duration::from_secs(60)).await.unwrap();
    let caps = Caps {
        upload: rate,
        download: None,
    };
    let seeder = swarm.node("seeder", caps).await.unwrap();
    let files = seeder.seed_dir(&share, 1 << 20, &Progress::default()).await.unwrap();
    let id = |name: &str| files.iter().find(|f| f.manifest.name == name).unwrap().id;
    let (big, small) = (id("big.bin"), id("small.bin"));
    (swarm, seeder, big, small)
}

/// A fresh node fetches `file` (within two minutes), then leaves (so that it serves nobody
/// after); returns how long the fetch took.
async fn timed_fetch(swarm: &LocalSwarm, dir: &std::path::Path, name: &str, file: FileId) -> Duration {
    fetch_within(swarm, dir, name, file, Duration::from_secs(120)).await
}

/// A connection to `seeder` from another machine, with its own identity.
async fn hostile_connection(seeder: &Node) -> (Transport, quinn::Connection) {
    let transport = Transport::bind(Arc::new(Identity::generate().unwrap()), other_machine()).unwrap();
    let (connection, _) = transport.connect(seeder.local_addr(), Some(seeder.id())).await.unwrap();
    (transport, connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_does_not_jam_the_seeder() {
    let tmp = tempfile::tempdir().unwrap();
    let (swarm, seeder, big, small) = seeded(tmp.path(), 8 * MIB, None).await;
    let quiet = timed_fetch(&swarm, tmp.path(), "quiet", small).await;

    // 64 chunk requests, every one answered into a stream nobody reads.
    let (_transport, connection) = hostile_connection(&seeder).await;
    let mut unread = Vec::new();
    for index in 0..64 {
        let (mut send, recv) = connection.open_bi().await.unwrap();
        transport::send_frame(&mut send, &PeerRequest::GetChunk { file: big, index })
            .await
            .unwrap();
        send.finish().unwrap();
        unread.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let jammed = timed_fetch(&swarm, tmp.path(), "beside-a-jammer", small).await;
    println!(
        "8 MiB fetch: {:.2} s alone, {:.2} s beside a peer that never reads 64 chunks ({:.1}x)",
        quiet.as_secs_f64(),
        jammed.as_secs_f64(),
        jammed.as_secs_f64() / quiet.as_secs_f64()
    );
    assert_eq!(
        std::fs::read(tmp.path().join("beside-a-jammer/small.bin")).unwrap(),
        content(8 * MIB, 2)
    );
    drop(unread);
    swarm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greedy_peer_gets_its_share_and_no_more() {
    let tmp = tempfile::tempdir().unwrap();
    let (swarm, seeder, big, small) = seeded(tmp.path(), 16 * MIB, Some(16_000_000)).await;
    let quiet = timed_fetch(&swarm, tmp.path(), "quiet", small).await;

    // 64 loops asking for chunks again the moment each answer is read (or refused).
    let (_transport, connection) = hostile_connection(&seeder).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (taken, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut loops = Vec::new();
    for n in 0..64u32 {
        let (connection, stop, taken, refused) = (connection.clone(), stop.clone(), taken.clone(), refused.clone());
        loops.push(tokio::spawn(async move {
            let mut index = n;
            while !stop.load(Ordering::Relaxed) {
                index = (index + 1) % 64;
                let request = PeerRequest::GetChunk { file: big, index };
                match transport::exchange::<_, PeerResponse>(&connection, &request, 1024).await {
                    Ok((PeerResponse::Chunk { len }, mut recv)) => {
                        let data = recv.read_to_end(len as usize).await.unwrap_or_default();
                        taken.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = taken.load(Ordering::Relaxed);
    let crowded = timed_fetch(&swarm, tmp.path(), "beside-a-greedy-peer", small).await;
    let greedy_bytes = taken.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    let share = quiet * 2;
    println!(
        "16 MiB fetch from a 16 MB/s seeder: {:.2} s alone; {:.2} s beside a peer running 64 request loops \
         ({:.1}x alone, {:.2}x a fair half share); the greedy peer got {:.1} MiB meanwhile and {} refusals",
        quiet.as_secs_f64(),
        crowded.as_secs_f64(),
        crowded.as_secs_f64() / quiet.as_secs_f64(),
        crowded.as_secs_f64() / share.as_secs_f64(),
        greedy_bytes as f64 / MIB as f64,
        refused.load(Ordering::Relaxed)
    );
    assert_eq!(
        std::fs::read(tmp.path().join("beside-a-greedy-peer/small.bin")).unwrap(),
        content(16 * MIB, 2)
    );
    assert!(
        greedy_bytes > 0,
        "the greedy peer is served too, only not before everyone else"
    );
    for task in loops {
        task.abort();
    }
    swarm.stop().await;
}

/// A fresh identity's connection to `seeder` from address `ip`.
async fn connection_from(seeder: &Node, ip: [u8; 4]) -> (Transport, quinn::Connection) {
    let transport = Transport::bind(Arc::new(Identity::generate().unwrap()), SocketAddr::from((ip, 0))).unwrap();
    let (connection, _) = transport.connect(seeder.local_addr(), Some(seeder.id())).await.unwrap();
    (transport, connection)
}

/// Fetches `file` on a fresh node, giving up after `limit`, then leaves; returns how long it
/// took.
async fn fetch_within(
    swarm: &LocalSwarm,
    dir: &std::path::Path,
    name: &str,
    file: FileId,
    limit: Duration,
) -> Duration {
    let node = loopback_node(
        &dir.join(format!("{name}-state")),
        swarm.tracker_addr(),
        Caps::default(),
    )
    .await
    .unwrap();
    let options = FetchOptions {
        timeout: Some(limit),
        ..options(&dir.join(name))
    };
    let started = Instant::now();
    let fetched = node.fetch(file, options).await;
    let took = started.elapsed();
    node.shutdown(Duration::from_secs(1)).await;
    if let Err(e) = fetched {
        panic!("{name}: the fetch gave up after {took:.1?} ({e})");
    }
    took
}

/// Peers that watch a seeder's file and never fetch it cost the seeder nothing: what it
/// offers them and they do not take stops holding those chunks back from the others. The
/// honest 64 MiB fetch must finish within twice its quiet time (it took ten before offers
/// expired); the tests print the ratio, which the issue wants within 1.5x.
async fn watched_fetch(connections: u8, watches_per_connection: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let (swarm, seeder, big, _) = seeded(tmp.path(), MIB, Some(32_000_000)).await;
    let quiet = fetch_within(&swarm, tmp.path(), "quiet", big, Duration::from_secs(60)).await;
    let (mut watchers, mut links) = (Vec::new(), Vec::new());
    let mut accepted = 0;
    for n in 0..connections {
        let (transport, connection) = connection_from(&seeder, [127, 0, 10 + n, 2]).await;
        for _ in 0..watches_per_connection {
            let Ok((mut send, mut recv)) = connection.open_bi().await else {
                break;
            };
            let watch = PeerRequest::Watch {
                file: big,
                have: swarm_proto::Bitfield::new(64),
            };
            transport::send_frame(&mut send, &watch).await.unwrap();
            let offered: PeerResponse = swarm_proto::protocol::read_frame(&mut recv, 1 << 20).await.unwrap();
            accepted += usize::from(matches!(offered, PeerResponse::Have(_)));
            watchers.push((send, recv));
        }
        links.push((transport, connection));
    }
    let watched = fetch_within(
        &swarm,
        tmp.path(),
        "beside-watchers",
        big,
        quiet * 2 + Duration::from_secs(5),
    )
    .await;
    println!(
        "64 MiB fetch from a 32 MB/s seeder: {:.2} s alone, {:.2} s beside {} watch streams that never fetch \
         ({accepted} accepted) on {connections} connections from as many networks ({:.2}x)",
        quiet.as_secs_f64(),
        watched.as_secs_f64(),
        usize::from(connections) * watches_per_connection,
        watched.as_secs_f64() / quiet.as_secs_f64()
    );
    drop((watchers, links));
    swarm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_only_watch_do_not_hold_a_seeder_back() {
    watched_fetch(8, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_peers_that_only_watch_do_not_hold_a_seeder_back() {
    watched_fetch(64, 1).await;
}

/// 6,000 watch streams: 100 on each of 60 connections from 60 networks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_thousand_watch_streams_do_not_hold_a_seeder_back() {
    watched_fetch(60, 100).await;
}

/// Identities cost nothing; networks do. 64 fresh identities from 4 addresses of one other
/// network, each asking for chunks in a loop, share the seeder's slots and its capped rate as
/// one network, not as 64 peers: the honest 64 MiB fetch from another network gets about
/// half, and must finish within three times its quiet time (it gave up after 20 s before
/// slots took turns by network, and took 4.7x while the cap was shared per upload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_identities_from_few_networks_get_their_networks_share() {
    let tmp = tempfile::tempdir().unwrap();
    let (swarm, seeder, big, _) = seeded(tmp.path(), 16 * MIB, Some(16_000_000)).await;
    let quiet = fetch_within(&swarm, tmp.path(), "quiet", big, Duration::from_secs(60)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let taken = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    let mut endpoints = Vec::new();
    for n in 0..64u8 {
        let (transport, connection) = connection_from(&seeder, [127, 0, 20, 2 + n % 4]).await;
        endpoints.push(transport);
        let (stop, taken) = (stop.clone(), taken.clone());
        loops.push(tokio::spawn(async move {
            let mut index = u32::from(n);
            while !stop.load(Ordering::Relaxed) {
                index = (index + 7) % 64;
                let request = PeerRequest::GetChunk { file: big, index };
                match transport::exchange::<_, PeerResponse>(&connection, &request, 1024).await {
                    Ok((PeerResponse::Chunk { len }, mut recv)) => {
                        let data = recv.read_to_end(len as usize).await.unwrap_or_default();
                        taken.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let crowded = fetch_within(&swarm, tmp.path(), "beside-many-ids", big, quiet * 3).await;
    stop.store(true, Ordering::Relaxed);
    println!(
        "64 MiB fetch from a 16 MB/s seeder: {:.2} s alone, {:.2} s beside 64 identities on 4 addresses of one \
         network ({:.2}x; a fair half is 2x); they got {:.0} MiB in all",
        quiet.as_secs_f64(),
        crowded.as_secs_f64(),
        crowded.as_secs_f64() / quiet.as_secs_f64(),
        taken.load(Ordering::Relaxed) as f64 / MIB as f64
    );
    for task in loops {
        task.abort();
    }
    swarm.stop().await;
}
