//! Parallel fetch throughput on loopback, verified end to end and written to disk, from 1, 2,
//! 4 and 8 in-process seeders, uncapped and capped; beside it, in the same group, a raw QUIC
//! stream between the same kind of endpoints (swarm's own transport: TLS, windows) that
//! neither hashes nor touches the disk: the ceiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use swarm_benches::{loopback, write_random, Swarm};
use swarm_proto::{Identity, Transport};

const UNCAPPED_SIZE: u64 = 1 << 30;
/// What each capped seeder has to send: 1.3 s at the cap, so that the limiter's initial burst
/// (a tenth of a second's worth) hardly counts.
const CAPPED_SHARE: u64 = 32 << 20;
/// Each seeder's cap in the capped runs: k seeders should give close to k times this.
const CAP: u64 = 25_000_000;

fn uncapped(c: &mut Criterion) {
    fetch_group(c, "fetch_1GiB", |_| UNCAPPED_SIZE, None);
}

fn capped(c: &mut Criterion) {
    fetch_group(
        c,
        "fetch_32MiB_per_seeder_capped_at_25MBps",
        |seeders| CAPPED_SHARE * seeders as u64,
        Some(CAP),
    );
}

/// One group: fetches from 1, 2, 4 and 8 seeders (each capped at `cap`) of a file of
/// `size(seeders)` bytes; the uncapped group also measures the raw QUIC ceiling.
fn fetch_group(c: &mut Criterion, name: &str, size: impl Fn(usize) -> u64, cap: Option<u64>) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    if cap.is_none() {
        group.throughput(Throughput::Bytes(UNCAPPED_SIZE));
        group.bench_function("raw_quic_stream_ceiling", |b| {
            let (server, client) = runtime.block_on(raw_pair());
            b.iter_custom(|iters| runtime.block_on(raw_transfers(&server, &client, iters)));
        });
    }
    let label = if cap.is_some() {
        "capped_seeders"
    } else {
        "uncapped_seeders"
    };
    for seeders in [1, 2, 4, 8] {
        let source = dir.path().join(format!("share{}/file.bin", size(seeders)));
        if !source.exists() {
            write_random(&source, size(seeders));
        }
        group.throughput(Throughput::Bytes(size(seeders)));
        let work = tempfile::tempdir_in(dir.path()).expect("temp dir");
        let mut swarm = runtime.block_on(Swarm::start(work.path(), &source, seeders, cap));
        group.bench_with_input(BenchmarkId::new(label, seeders), &seeders, |b, _| {
            b.iter_custom(|iters| runtime.block_on(fetches(&mut swarm, iters)));
        });
        runtime.block_on(swarm.stop());
    }
    group.finish();
}

async fn fetches(swarm: &mut Swarm, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        total += swarm.fetch_once().await;
    }
    total
}

/// Two endpoints like a seeder's and a fetcher's; the server sends UNCAPPED_SIZE bytes on
/// every stream it is asked on.
async fn raw_pair() -> (Transport, Transport) {
    let server = Transport::bind(Arc::new(Identity::generate().expect("key")), loopback()).expect("bind");
    let client = Transport::bind(Arc::new(Identity::generate().expect("key")), loopback()).expect("bind");
    let endpoint = server.endpoint().clone();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    tokio::spawn(async move {
                        let _ = recv.read_to_end(16).await;
                        let block = vec![7u8; 1 << 20];
                        for _ in 0..UNCAPPED_SIZE / block.len() as u64 {
                            if send.write_all(&block).await.is_err() {
                                return;
                            }
                        }
                        let _ = send.finish();
                        let _ = send.stopped().await;
                    });
                }
            });
        }
    });
    (server, client)
}

async fn raw_transfers(server: &Transport, client: &Transport, iters: u64) -> Duration {
    let (connection, _) = client
        .connect(server.local_addr(), Some(server.id()))
        .await
        .expect("connect");
    let started = Instant::now();
    for _ in 0..iters {
        let (mut send, mut recv) = connection.open_bi().await.expect("stream");
        send.write_all(b"go").await.expect("ask");
        send.finish().expect("finish");
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        while let Some(n) = recv.read(&mut buf).await.expect("read") {
            got += n as u64;
        }
        assert_eq!(got, UNCAPPED_SIZE);
    }
    let took = started.elapsed();
    connection.close(0u32.into(), b"done");
    took
}

criterion_group!(benches, uncapped, capped);
criterion_main!(benches);
