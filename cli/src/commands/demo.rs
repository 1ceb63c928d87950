//! `swarm demo`: a whole swarm in one process, on loopback.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::{RngCore, SeedableRng};
use swarm_engine::launch::{Caps, LocalSwarm};
use swarm_engine::{FetchOptions, Progress};

use crate::args::DemoArgs;
use crate::output;

use super::setup::shutdown_signal;

/// `swarm demo`: everything in one process on loopback.
pub async fn demo(args: DemoArgs) -> Result<()> {
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };
    // Ctrl-C ends the demo here, so that its temporary directory is removed on the way out.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::select! {
        outcome = run_demo(&args, &dir, stop.clone()) => outcome,
        _ = shutdown_signal() => {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            Err(anyhow::Error::from(swarm_engine::Error::Cancelled)
                .context("demo interrupted; its temporary files are removed"))
        }
    }
}

async fn run_demo(args: &DemoArgs, dir: &Path, stop: Arc<std::sync::atomic::AtomicBool>) -> Result<()> {
    let chunk_size = u32::try_from(args.chunk_size).unwrap_or(u32::MAX);
    swarm_proto::manifest::check_chunk_size(chunk_size)?;
    let share = dir.join("share");
    let data = share.join("demo.bin");
    crate::note!(
        "generating {} of random data in {}",
        output::bytes(args.size),
        data.display()
    );
    let size = args.size;
    let path = data.clone();
    tokio::task::spawn_blocking(move || generate(&path, size, &stop))
        .await?
        .with_context(|| format!("writing {}", data.display()))?;

    let mut swarm = LocalSwarm::start(dir, Duration::from_secs(180)).await?;
    let seeders = args.seeders.max(1);
    let mut nodes = Vec::new();
    let first = swarm.node("seeder0", Caps::default()).await?;
    let started = Instant::now();
    let file = first
        .seed_dir(&share, chunk_size, &Progress::default())
        .await?
        .remove(0);
    let hash_time = started.elapsed();
    nodes.push(first);
    for i in 1..seeders {
        let node = swarm.node(&format!("seeder{i}"), Caps::default()).await?;
        node.hold_complete((*file.manifest).clone(), file.path.clone(), file.meta)
            .await?;
        nodes.push(node);
    }
    crate::note!(
        "hashed at {:.0} MB/s; {seeders} seeder(s) share {} as {}",
        output::mb_per_sec(args.size, hash_time),
        file.manifest.name,
        file.id.short()
    );

    let fetcher = swarm.node("fetcher", Caps::default()).await?;
    let progress = Arc::new(Progress::default());
    let display = output::show_progress("fetching", progress.clone(), true);
    let options = FetchOptions {
        out_dir: dir.join("fetched"),
        progress,
        ..FetchOptions::default()
    };
    let report = fetcher.fetch(file.id, options).await;
    display.finish().await;
    let report = report?;
    crate::out!(
        "fetched {} from {} seeder(s) in {:.2} s: {:.0} MB/s, every chunk and the whole file verified",
        output::bytes(report.manifest.size),
        report.received.len(),
        report.elapsed.as_secs_f64(),
        output::mb_per_sec(report.bytes_received(), report.elapsed)
    );
    for (i, node) in nodes.iter().enumerate() {
        let got = report.received.get(&node.id()).copied().unwrap_or(0);
        crate::out!("  seeder{i} {}: {}", node.id().short(), output::bytes(got));
    }
    swarm.stop().await;
    Ok(())
}

/// Writes `size` pseudo-random bytes to `path`.
fn generate(path: &Path, size: u64, stop: &std::sync::atomic::AtomicBool) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().expect("a file path has a parent"))?;
    let mut out = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path)?);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);
    let mut block = vec![0u8; 4 << 20];
    let mut left = size;
    while left > 0 {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = left.min(block.len() as u64) as usize;
        rng.fill_bytes(&mut block[..n]);
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()
}
