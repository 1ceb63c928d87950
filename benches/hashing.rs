//! Building a manifest (chunk hashes and the global hash, from the page cache, on every core)
//! beside plain BLAKE3 over the same file with one thread and with every core.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use swarm_benches::write_random;
use swarm_engine::{Manifest, DEFAULT_CHUNK_SIZE};

const SIZE: u64 = 512 << 20;

fn hashing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("file.bin");
    write_random(&path, SIZE);
    let mut group = c.benchmark_group("hash_512MiB");
    group.throughput(Throughput::Bytes(SIZE));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("swarm_manifest", |b| {
        b.iter(|| Manifest::from_file(&path, "file.bin", DEFAULT_CHUNK_SIZE).expect("hash"))
    });
    group.bench_function("blake3_all_cores", |b| {
        b.iter(|| blake3::Hasher::new().update_mmap_rayon(&path).expect("hash").finalize())
    });
    group.bench_function("blake3_one_thread", |b| {
        b.iter(|| blake3::Hasher::new().update_mmap(&path).expect("hash").finalize())
    });
    group.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
