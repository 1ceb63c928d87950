//! Tracker requests and answers as they arrive in a frame: whatever decodes must encode back
//! to a value that decodes the same, and any manifest in it is checked without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_proto::codec;
use swarm_proto::protocol::{TrackerRequest, TrackerResponse};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(request) = codec::decode::<TrackerRequest>(bytes) {
        assert_eq!(
            codec::decode::<TrackerRequest>(&codec::encode(&request)).as_ref(),
            Ok(&request)
        );
        if let TrackerRequest::Announce { manifest, chunks, .. } = &request {
            if manifest.validate().is_ok() {
                let _ = manifest.bytes_in(chunks);
            }
        }
    }
    if let Ok(response) = codec::decode::<TrackerResponse>(bytes) {
        assert_eq!(
            codec::decode::<TrackerResponse>(&codec::encode(&response)).as_ref(),
            Ok(&response)
        );
        if let TrackerResponse::Located {
            manifest: Some(manifest),
            ..
        } = &response
        {
            let _ = manifest.verify(&manifest.id());
        }
    }
});
