//! What the criterion benches share: random files, and a swarm (tracker plus seeders) on
//! loopback that a fresh fetcher can download from, once per measured iteration.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use swarm_engine::{FetchOptions, FileId, Node, NodeConfig, Progress, TrackerAddr};
use swarm_tracker::{Tracker, TrackerConfig};

/// 127.0.0.1 on a free port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Writes `size` pseudo-random bytes (BLAKE3 in XOF mode: fast and incompressible).
pub fn write_random(path: &Path, size: u64) {
    std::fs::create_dir_all(path.parent().expect("a file path")).expect("create the directory");
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create the file"));
    let mut reader = blake3::Hasher::new()
        .update(path.to_string_lossy().as_bytes())
        .finalize_xof();
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        reader.fill(&mut block[..n]);
        file.write_all(&block[..n]).expect("write the file");
        left -= n as u64;
    }
    file.flush().expect("flush the file");
}

/// A tracker and `seeders` nodes seeding one file, each capped at `upload_rate` if given.
pub struct Swarm {
    dir: PathBuf,
    tracker: Tracker,
    seeders: Vec<Node>,
    /// The file's id.
    pub file: FileId,
    /// Its size.
    pub size: u64,
    fetches: u32,
}

impl Swarm {
    /// Starts the swarm in `dir` for the file at `source` (hashed once, then reused).
    pub async fn start(dir: &Path, source: &Path, seeders: usize, upload_rate: Option<u64>) -> Swarm {
        let tracker = Tracker::start(TrackerConfig {
            state_dir: dir.join("tracker"),
            listen: loopback(),
            peer_timeout: Duration::from_secs(180),
        })
        .await
        .expect("tracker starts");
        let share = source.parent().expect("a file path");
        let mut nodes = Vec::new();
        let mut file = None;
        for i in 0..seeders {
            let node = node(dir, &format!("seeder{i}"), &tracker, upload_rate).await;
            let seeded = node
                .seed_dir(share, swarm_engine::DEFAULT_CHUNK_SIZE, &Progress::default())
                .await
                .expect("seeding works");
            file = Some(seeded[0].id);
            nodes.push(node);
        }
        Swarm {
            dir: dir.to_owned(),
            tracker,
            seeders: nodes,
            file: file.expect("at least one seeder"),
            size: std::fs::metadata(source).expect("the source exists").len(),
            fetches: 0,
        }
    }

    /// Fetches the file once with a new node into a new directory (removed afterwards), and
    /// returns the time the fetch took, verification and rename included.
    pub async fn fetch_once(&mut self) -> Duration {
        self.fetches += 1;
        let name = format!("fetcher{}", self.fetches);
        let fetcher = node(&self.dir, &name, &self.tracker, None).await;
        let out = self.dir.join(format!("out{}", self.fetches));
        let options = FetchOptions {
            out_dir: out.clone(),
            ..FetchOptions::default()
        };
        let started = Instant::now();
        fetcher.fetch(self.file, options).await.expect("the fetch works");
        let took = started.elapsed();
        fetcher.shutdown(Duration::from_secs(1)).await;
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(self.dir.join(&name));
        took
    }

    /// Stops every node and the tracker.
    pub async fn stop(self) {
        for node in &self.seeders {
            node.shutdown(Duration::from_secs(1)).await;
        }
        self.tracker.stop().await;
    }
}

async fn node(dir: &Path, name: &str, tracker: &Tracker, upload_rate: Option<u64>) -> Node {
    let node = Node::start(NodeConfig {
        state_dir: dir.join(name),
        listen: loopback(),
        tracker: Some(TrackerAddr {
            host_port: tracker.local_addr().to_string(),
            id: Some(tracker.id()),
        }),
        max_upload_rate: upload_rate,
        ..NodeConfig::default()
    })
    .await
    .expect("node starts");
    node.join_tracker().await.expect("node joins the tracker");
    node
}
