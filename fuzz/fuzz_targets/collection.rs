//! A collection file as fetched (a folder's listing): decoding it checks every name, and
//! whatever decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_proto::collection::Collection;
use swarm_proto::name;

fuzz_target!(|bytes: &[u8]| {
    let Ok(collection) = Collection::decode(bytes) else {
        return;
    };
    for entry in &collection.entries {
        assert!(name::validate_name(&entry.path).is_ok(), "{:?}", entry.path);
    }
    let _ = collection.size();
    assert_eq!(
        Collection::decode(&collection.encode()).ok().as_ref(),
        Some(&collection)
    );
});
