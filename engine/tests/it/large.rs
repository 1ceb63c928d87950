//! A file over 4 GiB, end to end on loopback: no 32-bit offset anywhere. Sparse on the seeder
//! side, so it is made in an instant; slow-ish (it moves 4 GiB), hence ignored by default and
//! run by `.ci/run` with `--ignored`.

use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use swarm_engine::{FetchOptions, Manifest, Node, NodeConfig, Progress, TrackerAddr};
use swarm_tracker::{Tracker, TrackerConfig};

const SIZE: u64 = (4 << 30) + 3 * 1024 * 1024 + 17;
/// Marks written around the 4 GiB boundary and at both ends, where a wrapped offset would land
/// them somewhere else.
const MARKS: [(u64, &[u8]); 4] = [
    (0, b"first bytes"),
    ((4 << 30) - 5, b"across the 4 GiB line"),
    ((4 << 30) + 1024 * 1024, b"past it"),
    (SIZE - 4, b"end!"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "moves 4 GiB; run with --ignored (CI does)"]
async fn a_file_over_4_gib_round_trips() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let source = share.join("huge.img");
    let file = std::fs::File::create(&source).unwrap();
    file.set_len(SIZE).unwrap();
    for (offset, bytes) in MARKS {
        file.write_all_at(bytes, offset).unwrap();
    }
    drop(file);

    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let tracker = Tracker::start(TrackerConfig {
        state_dir: tmp.path().join("tracker"),
        listen: loopback,
        peer_timeout: Duration::from_secs(180),
        ..TrackerConfig::default()
    })
    .await
    .unwrap();
    let addr = TrackerAddr {
        host_port: tracker.local_addr().to_string(),
        id: Some(tracker.id()),
    };
    let node = |name: &str| NodeConfig {
        state_dir: tmp.path().join(name),
        listen: loopback,
        tracker: Some(addr.clone().into()),
        ..NodeConfig::default()
    };
    let seeder = Node::start(node("seeder")).await.unwrap();
    seeder.join_tracker().await.unwrap();
    let seeded = seeder.seed_dir(&share, 4 << 20, &Progress::default()).await.unwrap();
    let manifest: &Manifest = &seeded[0].manifest;
    assert_eq!(manifest.size, SIZE);
    assert_eq!(manifest.chunk_count, SIZE.div_ceil(4 << 20) as u32);

    let fetcher = Node::start(node("fetcher")).await.unwrap();
    fetcher.join_tracker().await.unwrap();
    let out = tmp.path().join("out");
    let report = fetcher
        .fetch(
            seeded[0].id,
            FetchOptions {
                out_dir: out.clone(),
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.bytes_received(), SIZE);
    let fetched = std::fs::File::open(out.join("huge.img")).unwrap();
    assert_eq!(fetched.metadata().unwrap().len(), SIZE);
    for (offset, bytes) in MARKS {
        let mut got = vec![0u8; bytes.len()];
        fetched.read_exact_at(&mut got, offset).unwrap();
        assert_eq!(got, bytes, "at offset {offset}");
    }
    eprintln!(
        "4 GiB+ fetched in {:.1} s ({:.0} MB/s)",
        report.elapsed.as_secs_f64(),
        SIZE as f64 / 1e6 / report.elapsed.as_secs_f64()
    );
}
