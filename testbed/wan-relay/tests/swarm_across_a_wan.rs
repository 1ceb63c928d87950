//! A swarm fetch across emulated wide-area paths: two seeders, each reachable only through a
//! relay with 40 ms of round trip, 2% loss each way and a 200 Mbit/s cap. The file arrives
//! whole and verified, and the relays did drop datagrams on the way (QUIC recovered them).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use swarm_engine::launch::{loopback, LocalSwarm};
use swarm_engine::{FetchOptions, FileId, Node, NodeConfig, Progress, DEFAULT_CHUNK_SIZE};
use wan_relay::{relay, Link, Shape, Socket};

fn path_shape() -> Shape {
    Shape {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(2),
        loss: 0.02,
        rate: Some(200e6 / 8.0),
        buffer: Duration::from_millis(40),
        max_datagram: Some(1472),
    }
}

/// A node seeding the one file in `share`, advertising a relay in front of it: the node, the
/// file's id and the relay's links.
async fn seeder_behind_relay(swarm: &LocalSwarm, dir: &Path, share: &Path) -> (Node, FileId, Arc<Link>, Arc<Link>) {
    let listen = Socket::bind(loopback()).unwrap();
    let node = Node::start(NodeConfig {
        state_dir: dir.to_owned(),
        listen: loopback(),
        tracker: Some(swarm.tracker_addr().into()),
        advertise: Some(listen.local_addr().unwrap()),
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let (up, down) = (Arc::new(Link::new(path_shape())), Arc::new(Link::new(path_shape())));
    tokio::spawn(relay::run(listen, node.local_addr(), up.clone(), down.clone()));
    node.join_tracker().await.unwrap();
    let seeded = node
        .seed_dir(share, DEFAULT_CHUNK_SIZE, &Progress::default())
        .await
        .unwrap();
    (node, seeded[0].id, up, down)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_across_lossy_distant_paths_arrives_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let data: Vec<u8> = (0..12 * 1024 * 1024 + 777u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(share.join("disk.img"), &data).unwrap();

    let swarm = LocalSwarm::start(tmp.path(), Duration::from_secs(180)).await.unwrap();
    let (a, id, a_up, a_down) = seeder_behind_relay(&swarm, &tmp.path().join("a"), &share).await;
    let (b, _, b_up, b_down) = seeder_behind_relay(&swarm, &tmp.path().join("b"), &share).await;

    let fetcher = swarm_engine::launch::loopback_node(&tmp.path().join("f"), swarm.tracker_addr(), Default::default())
        .await
        .unwrap();
    let out = tmp.path().join("out");
    let options = FetchOptions {
        out_dir: out.clone(),
        ..FetchOptions::default()
    };
    fetcher
        .fetch(id, options)
        .await
        .expect("the fetch completes across the relays");
    assert!(std::fs::read(out.join("disk.img")).unwrap() == data, "the copy differs");

    let lost: u64 = [&a_up, &a_down, &b_up, &b_down].iter().map(|l| l.tally().lost).sum();
    let passed: u64 = [&a_down, &b_down].iter().map(|l| l.tally().passed).sum();
    assert!(lost > 0, "2% loss dropped nothing: the relays were not in the path");
    assert!(passed as usize >= data.len(), "the data came through the relays");
    for node in [fetcher, a, b] {
        node.shutdown(Duration::from_secs(1)).await;
    }
    swarm.stop().await;
}
