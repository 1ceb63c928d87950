//! Share changes and listings as a tracker sends them: checking them never panics, a change
//! that passes is one the share's key signed, and a node's mirror only moves forward.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_engine::sync::mirror::ShareMirror;
use swarm_proto::codec;
use swarm_proto::share::{check_change, SharePage};
use swarm_proto::share_key::{SignedChange, WriteKey};

const NOW: u64 = 1_800_000_000_000_000_000;

fuzz_target!(|bytes: &[u8]| {
    let key = WriteKey::from_seed([7; 32]).unwrap();
    let share = key.id();
    if let Ok(signed) = codec::decode::<SignedChange>(bytes) {
        if check_change(&share, &signed, NOW).is_ok() {
            assert!(signed.verify(&share));
        }
        // The same change signed by the key always passes, unless its name or time is bad.
        let resigned = key.sign(signed.change.clone());
        let _ = check_change(&share, &resigned, NOW);
    }
    if let Ok(page) = codec::decode::<SharePage>(bytes) {
        let mut mirror = ShareMirror::new(share);
        let merged = mirror.apply(page.clone(), NOW);
        assert!(merged.changed <= page.entries.len());
        let (_, missing) = mirror.restart(page, NOW);
        assert!(missing.iter().all(|c| c.verify(&share)));
    }
});
