//! What the criterion benches share: random files, and a swarm (tracker plus seeders) on
//! loopback that a fresh fetcher can download from, once per measured iteration.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use swarm_engine::launch::{loopback_node, Caps, LocalSwarm};
use swarm_engine::{FetchOptions, FileId, Progress};

pub mod tracker_process;

pub use swarm_engine::launch::loopback;

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
    local: LocalSwarm,
    /// The file's id.
    pub file: FileId,
    /// Its size.
    pub size: u64,
    fetches: u32,
}

impl Swarm {
    /// Starts the swarm in `dir` for the file at `source` (hashed once, then reused).
    pub async fn start(dir: &Path, source: &Path, seeders: usize, upload_rate: Option<u64>) -> Swarm {
        let mut local = LocalSwarm::start(dir, Duration::from_secs(180))
            .await
            .expect("tracker starts");
        let share = source.parent().expect("a file path");
        let caps = Caps {
            upload: upload_rate,
            download: None,
        };
        let mut file = None;
        for i in 0..seeders {
            let node = local.node(&format!("seeder{i}"), caps).await.expect("node starts");
            let seeded = node
                .seed_dir(share, swarm_engine::DEFAULT_CHUNK_SIZE, &Progress::default())
                .await
                .expect("seeding works");
            file = Some(seeded[0].id);
        }
        Swarm {
            dir: dir.to_owned(),
            local,
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
        let state = self.dir.join(&name);
        let fetcher = loopback_node(&state, self.local.tracker_addr(), Caps::default())
            .await
            .expect("node starts");
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
        let _ = std::fs::remove_dir_all(&state);
        took
    }

    /// Stops every node and the tracker.
    pub async fn stop(self) {
        self.local.stop().await;
    }
}
