//! What one peer sends another: requests, answers and availability frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_proto::codec;
use swarm_proto::protocol::{Availability, PeerRequest, PeerResponse};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(request) = codec::decode::<PeerRequest>(bytes) {
        assert_eq!(
            codec::decode::<PeerRequest>(&codec::encode(&request)).as_ref(),
            Ok(&request)
        );
        if let PeerRequest::Watch { have, .. } = &request {
            let _ = (have.is_well_formed(), have.count(), have.iter().count());
        }
    }
    if let Ok(response) = codec::decode::<PeerResponse>(bytes) {
        assert_eq!(
            codec::decode::<PeerResponse>(&codec::encode(&response)).as_ref(),
            Ok(&response)
        );
    }
    let _ = codec::decode::<Availability>(bytes);
});
