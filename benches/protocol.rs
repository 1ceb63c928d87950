//! Encoding and decoding frames: a chunk request, and a locate answer with 50 holders of a
//! 1,000-chunk file.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use swarm_proto::codec::decode;
use swarm_proto::protocol::{encode_frame, Holder, PeerRequest, TrackerResponse};
use swarm_proto::{FileId, Manifest, PeerId};

fn protocol(c: &mut Criterion) {
    let mut group = c.benchmark_group("frames");
    let request = PeerRequest::GetChunk {
        file: FileId([7; 32]),
        index: 123_456,
    };
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_get_chunk", |b| b.iter(|| encode_frame(&request)));
    let frame = encode_frame(&request);
    group.bench_function("decode_get_chunk", |b| {
        b.iter(|| decode::<PeerRequest>(&frame[4..]).expect("decodes"))
    });

    let manifest = Manifest {
        name: "some/where/file.bin".into(),
        hash: swarm_proto::Digest([1; 32]),
        size: 1000 << 20,
        chunk_size: 1 << 20,
        chunk_count: 1000,
        chunks: vec![swarm_proto::Digest([2; 32]); 1000],
    };
    let holders = (0..50u8)
        .map(|i| Holder {
            peer: PeerId([i; 32]),
            addr: std::net::SocketAddr::from(([10, 0, 0, i], 4000)),
            other_addrs: Vec::new(),
            complete: i % 2 == 0,
        })
        .collect();
    let located = TrackerResponse::Located {
        manifest: Some(manifest),
        holders,
        meta: Default::default(),
        live: 50,
        retired: false,
    };
    let frame = encode_frame(&located);
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode_locate_answer", |b| b.iter(|| encode_frame(&located)));
    group.bench_function("decode_locate_answer", |b| {
        b.iter(|| decode::<TrackerResponse>(&frame[4..]).expect("decodes"))
    });
    group.finish();
}

criterion_group!(benches, protocol);
criterion_main!(benches);
