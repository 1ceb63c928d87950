//! The tracker's state on one core: chunk-register updates and locates per second. Also
//! prints the memory that 10,000 peers holding a 1,000-chunk file take.

use std::net::SocketAddr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use swarm_proto::hashing::{chunk_hash, global_from_chunks};
use swarm_proto::{Bitfield, FileId, Manifest, PeerId};
use swarm_tracker::{Budgets, TrackerState};

const CHUNKS: u32 = 1000;

fn manifest(name: &str) -> Manifest {
    let chunk_size = 65536u32;
    let size = u64::from(CHUNKS) * u64::from(chunk_size);
    let data = vec![1u8; chunk_size as usize];
    let chunks: Vec<_> = (0..CHUNKS)
        .map(|i| chunk_hash(u64::from(i), chunk_size, &data))
        .collect();
    Manifest {
        name: name.into(),
        hash: global_from_chunks(size, chunk_size, &chunks).expect("several chunks"),
        size,
        chunk_size,
        chunk_count: CHUNKS,
        chunks,
    }
}

fn peer(i: u32) -> PeerId {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&i.to_be_bytes());
    PeerId(id)
}

fn addr(i: u32) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4000))
}

/// A tracker where `peers` peers each announced half of one 1,000-chunk file.
fn populated(peers: u32) -> (TrackerState, FileId) {
    let now = Instant::now();
    let budgets = Budgets {
        per_address: u64::MAX / 4,
        total: u64::MAX / 2,
        ..Budgets::default()
    };
    let mut state = TrackerState::new(std::time::Duration::from_secs(180), budgets);
    let m = manifest("bench.bin");
    let id = m.id();
    for i in 0..peers {
        state
            .register(peer(i), addr(i), Vec::new(), addr(i).ip(), now)
            .expect("register");
        let mut chunks = Bitfield::new(CHUNKS);
        for c in (i % 2..CHUNKS).step_by(2) {
            chunks.set(c);
        }
        state
            .announce(peer(i), m.clone(), chunks, Default::default(), now)
            .expect("announce");
    }
    (state, id)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn tracker(c: &mut Criterion) {
    let before = rss_bytes();
    let (big, _) = populated(10_000);
    println!(
        "tracker state for 10,000 peers each holding half of a 1,000-chunk file: {:.1} MiB (RSS growth)",
        (rss_bytes().saturating_sub(before)) as f64 / (1 << 20) as f64
    );
    drop(big);

    let mut group = c.benchmark_group("tracker_one_core");
    let (mut state, id) = populated(100);
    let now = Instant::now();
    let mut next = 0u32;
    group.throughput(Throughput::Elements(1));
    group.bench_function("chunk_register_update", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            let who = peer(next % 100);
            state.have(who, id, &[next % CHUNKS], now).expect("have")
        })
    });
    let mut rng = rand::rng();
    let asker = peer(1_000_000);
    group.bench_function("locate_40_of_100_holders", |b| {
        b.iter(|| state.locate(&id, &asker, 40, now, &mut rng).expect("located"))
    });
    group.finish();
}

criterion_group!(benches, tracker);
criterion_main!(benches);
