//! Helpers shared by the engine's end-to-end tests: a tracker and nodes on loopback, and
//! deterministic content.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use swarm_engine::{FetchOptions, Node, NodeConfig, TrackerAddr};
use swarm_tracker::{Tracker, TrackerConfig};

pub const CHUNK: u32 = 64 * 1024;

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub fn pinned(tracker: &Tracker) -> TrackerAddr {
    TrackerAddr {
        host_port: tracker.local_addr().to_string(),
        id: Some(tracker.id()),
    }
}

pub async fn start_tracker(dir: &Path) -> Tracker {
    Tracker::start(TrackerConfig {
        state_dir: dir.join("tracker"),
        listen: loopback(),
        peer_timeout: Duration::from_secs(180),
    })
    .await
    .unwrap()
}

pub async fn start_node(dir: &Path, name: &str, tracker: TrackerAddr, upload_rate: Option<u64>) -> Node {
    let node = Node::start(NodeConfig {
        state_dir: dir.join(name),
        listen: loopback(),
        tracker: Some(tracker),
        advertise: None,
        max_upload_rate: upload_rate,
        max_download_rate: None,
    })
    .await
    .unwrap();
    node.join_tracker().await.unwrap();
    node
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
