//! What a node reads back from its own state database: download and seeded-file records.
//! A record that decodes is checked before use; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_engine::db::{decode_download, decode_seeded};
use swarm_proto::FileId;

fuzz_target!(|bytes: &[u8]| {
    if let Some(record) = decode_download(&FileId([0; 32]), bytes) {
        assert_eq!(record.chunks.len(), record.manifest.chunk_count);
    }
    if let Some(record) = decode_seeded(bytes) {
        assert!(record.manifest.validate().is_ok());
    }
});
