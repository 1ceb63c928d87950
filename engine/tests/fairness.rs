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

mod common;
use common::*;

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

/// A fresh node fetches `file`, then leaves (so that it serves nobody after); returns how
/// long the fetch took.
async fn timed_fetch(swarm: &LocalSwarm, dir: &std::path::Path, name: &str, file: FileId) -> Duration {
    let node = loopback_node(
        &dir.join(format!("{name}-state")),
        swarm.tracker_addr(),
        Caps::default(),
    )
    .await
    .unwrap();
    let options = FetchOptions {
        timeout: Some(Duration::from_secs(120)),
        ..options(&dir.join(name))
    };
    let started = Instant::now();
    node.fetch(file, options).await.unwrap();
    let took = started.elapsed();
    node.shutdown(Duration::from_secs(1)).await;
    took
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
