//! Helpers shared by the engine's end-to-end tests: a tracker and nodes on loopback (through
//! the engine's own launch helpers), and deterministic content.

use std::path::{Path, PathBuf};
use std::time::Duration;

use swarm_engine::launch::{self, Caps};
use swarm_engine::{FetchOptions, Node, NodeConfig, Progress, SeededFile, TrackerAddr};
use swarm_tracker::Tracker;

#[allow(unused_imports)]
pub use swarm_engine::launch::{loopback, pinned};

pub const CHUNK: u32 = 64 * 1024;

pub async fn start_tracker(dir: &Path) -> Tracker {
    launch::loopback_tracker(dir, Duration::from_secs(180)).await.unwrap()
}

/// A tracker that lists whatever peers claim, without spot checks: for tests of how fetchers
/// cope with lying peers on their own (as they must with a lying tracker).
pub async fn start_credulous_tracker(dir: &Path) -> Tracker {
    Tracker::start(swarm_tracker::TrackerConfig {
        state_dir: dir.join("tracker"),
        listen: loopback(),
        audits: swarm_tracker::Audits {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

/// A node on loopback without a tracker, seeding `data` as `f.bin` in chunks of 64 KiB (its
/// state and share under `dir`), and the file seeded.
pub async fn lone_seeder(dir: &Path, data: &[u8]) -> (Node, SeededFile) {
    let share = dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("f.bin"), data).unwrap();
    let config = NodeConfig {
        state_dir: dir.join("node"),
        listen: launch::loopback(),
        ..NodeConfig::default()
    };
    let node = Node::start(config).await.unwrap();
    let file = node
        .seed_dir(&share, 65536, &Progress::default())
        .await
        .unwrap()
        .remove(0);
    (node, file)
}

pub async fn start_node(dir: &Path, name: &str, tracker: TrackerAddr, upload_rate: Option<u64>) -> Node {
    let caps = Caps {
        upload: upload_rate,
        download: None,
    };
    launch::loopback_node(&dir.join(name), tracker, caps).await.unwrap()
}

/// Deterministic pseudo-random content.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    path
}

pub fn options(out: &Path) -> FetchOptions {
    FetchOptions {
        out_dir: out.to_owned(),
        timeout: Some(Duration::from_secs(60)),
        ..FetchOptions::default()
    }
}
