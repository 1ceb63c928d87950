//! What a tracker's catalogue costs: announces manifests to one real tracker process until a
//! given number of bytes of chunk hashes is kept (each manifest held by the announcing peer),
//! then prints the tracker's resident memory and its state on disk beside the hashes and what
//! its budgets charged for them. Also restarts the tracker and prints its memory once it
//! reloaded the catalogue from disk.
//!
//!     tracker-memory --kept 120MiB --manifest 2MiB     # big files (4 TiB each)
//!     tracker-memory --kept 16MiB --manifest 1KiB      # many small ones

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use swarm_benches::tracker_process::{start_tracker, usage};
use swarm_proto::hashing::global_from_chunks;
use swarm_proto::protocol::{ErrorCode, TrackerRequest, TrackerResponse, MAX_FRAME};
use swarm_proto::transport::{self, Transport};
use swarm_proto::{Bitfield, Digest, Identity, Manifest};

#[derive(Parser, Debug)]
#[command(about = "What one swarm tracker's memory and disk grow by per byte of manifests it keeps")]
struct Args {
    /// The swarm binary that runs the tracker.
    #[arg(long, default_value = "target/release/swarm")]
    bin: PathBuf,
    /// Bytes of chunk hashes to have the tracker keep.
    #[arg(long, default_value = "120MiB", value_parser = parse_size)]
    kept: u64,
    /// Bytes of chunk hashes in each manifest (1 KiB: small files; 2 MiB: a 4 TiB file).
    #[arg(long, default_value = "2MiB", value_parser = parse_size)]
    manifest: u64,
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| e.to_string())
}

/// A consistent manifest of `chunks` chunks of 64 KiB nobody holds.
fn made_up(n: u64, chunks: u32) -> Manifest {
    const CHUNK_SIZE: u32 = 64 * 1024;
    let hashes: Vec<Digest> = (0..chunks)
        .map(|c| Digest(*blake3::hash(&[n.to_le_bytes(), u64::from(c).to_le_bytes()].concat()).as_bytes()))
        .collect();
    let size = u64::from(chunks) * u64::from(CHUNK_SIZE);
    let hash = if chunks == 1 {
        hashes[0]
    } else {
        global_from_chunks(size, CHUNK_SIZE, &hashes).expect("two or more chunks")
    };
    Manifest {
        name: format!("made-up/{n}.bin"),
        hash,
        size,
        chunk_size: CHUNK_SIZE,
        chunk_count: chunks,
        chunks: hashes,
    }
}

/// Bytes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let args = Args::parse();
    let chunks = (args.manifest / 32).max(1) as u32;
    let count = args.kept.div_ceil(u64::from(chunks) * 32);
    let kept = (count * u64::from(chunks) * 32) as f64 / MIB;
    let charged = count as f64 * (32.0 * f64::from(chunks) + 20.0 + 512.0) / MIB;
    let state = tempfile::tempdir().expect("temporary directory");
    // Budgets far above what is sent, and manifests nobody holds kept for the whole run.
    let budgets = [
        "--budget",
        "64GiB",
        "--budget-per-address",
        "64GiB",
        "--forget-after",
        "1h",
    ];
    let extra: Vec<&str> = ["--no-audits"].into_iter().chain(budgets).collect();
    let (mut tracker, addr) = start_tracker(&args.bin, state.path(), &extra);
    let pid = tracker.id();
    std::thread::sleep(Duration::from_millis(500));
    let (_, before) = usage(pid);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let me = Transport::bind(
            Arc::new(Identity::generate().expect("key")),
            "127.0.0.1:0".parse().expect("address"),
        )
        .expect("bind");
        let host_port = addr.host_port.parse().expect("tracker address");
        let (connection, _) = me.connect(host_port, addr.id).await.expect("tracker answers");
        let ask = |request: TrackerRequest| {
            let connection = connection.clone();
            async move {
                transport::exchange::<_, TrackerResponse>(&connection, &request, MAX_FRAME)
                    .await
                    .expect("tracker answers")
                    .0
            }
        };
        ask(TrackerRequest::Register {
            advertise: None,
            addrs: vec![],
        })
        .await;
        for n in 0..count {
            let manifest = made_up(n, chunks);
            loop {
                let request = TrackerRequest::Announce {
                    manifest: manifest.clone(),
                    chunks: Bitfield::new(chunks),
                    meta: Default::default(),
                };
                match ask(request).await {
                    TrackerResponse::Ok => break,
                    // Past the tracker's request rate for one peer: as a node does, later.
                    TrackerResponse::Error {
                        code: ErrorCode::Busy, ..
                    } => tokio::time::sleep(Duration::from_millis(20)).await,
                    other => panic!("manifest {n} refused: {other:?}"),
                }
            }
        }
        // Stays registered: what it announced stays held by nobody, and kept.
    });
    std::thread::sleep(Duration::from_secs(3));
    let (_, after) = usage(pid);
    let disk = disk_bytes(state.path()) as f64 / MIB;
    println!(
        "{count} manifests of {:.3} MiB: {kept:.0} MiB of hashes kept, {charged:.0} MiB charged to budgets",
        f64::from(chunks) * 32.0 / MIB
    );
    println!(
        "running:   resident {before:.0} -> {after:.0} MiB (+{:.0} MiB: {:.2}x the hashes, {:.2}x what was charged); \
         state on disk {disk:.0} MiB ({:.2}x the hashes)",
        after - before,
        (after - before) / kept,
        (after - before) / charged,
        disk / kept
    );
    let _ = tracker.kill();
    let _ = tracker.wait();

    let (mut tracker, _) = start_tracker(&args.bin, state.path(), &extra);
    let pid = tracker.id();
    std::thread::sleep(Duration::from_secs(3));
    let (_, reloaded) = usage(pid);
    println!(
        "restarted: resident {reloaded:.0} MiB (+{:.0} MiB over an empty tracker: {:.2}x the hashes, {:.2}x what was charged)",
        reloaded - before,
        (reloaded - before) / kept,
        (reloaded - before) / charged
    );
    let _ = tracker.kill();
    let _ = tracker.wait();
}
