//! A manifest as a tracker or a peer hands it over: validating it, computing its id and every
//! chunk's place never panics, and a valid one's numbers add up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_proto::{codec, Bitfield, Manifest};

fuzz_target!(|bytes: &[u8]| {
    let Ok(manifest) = codec::decode::<Manifest>(bytes) else {
        return;
    };
    let id = manifest.id();
    if manifest.verify(&id).is_err() {
        return;
    }
    let mut total = 0u64;
    for index in 0..manifest.chunk_count {
        assert!(manifest.chunk_offset(index) < manifest.size.max(1));
        total += u64::from(manifest.chunk_len(index));
    }
    assert_eq!(total, manifest.size);
    assert_eq!(manifest.bytes_in(&Bitfield::full(manifest.chunk_count)), manifest.size);
    let _ = manifest.chunk_matches(0, &bytes[..bytes.len().min(64)]);
});
