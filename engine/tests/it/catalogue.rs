//! The catalogue is paged: a tracker with more entries than one page holds (25,000, names
//! sorting past any page size) is listed whole, in order, by `list` and `search`.

use std::sync::Arc;

use swarm_engine::tracker_client::TrackerClient;
use swarm_engine::{Bitfield, FileMeta, Identity, Manifest};
use swarm_proto::hashing;
use swarm_proto::protocol::MAX_CATALOGUE;
use swarm_proto::transport::Transport;

use crate::common::*;

/// The manifest of a one-chunk file called `name` (content: the name).
fn tiny(name: String) -> Manifest {
    let chunk_size = CHUNK;
    let chunks = vec![hashing::chunk_hash(0, chunk_size, name.as_bytes())];
    let size = name.len() as u64;
    Manifest {
        // One chunk: the global hash is the content's own hash.
        hash: blake3::hash(name.as_bytes()).into(),
        name,
        size,
        chunk_size,
        chunk_count: 1,
        chunks,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catalogue_of_many_pages_is_listed_whole_and_in_order() {
    const FILES: usize = 25_000;
    const ANNOUNCERS: usize = 10;
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_credulous_tracker(tmp.path()).await;
    let mut tasks = Vec::new();
    for a in 0..ANNOUNCERS {
        let addr = pinned(&tracker);
        tasks.push(tokio::spawn(async move {
            let transport = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
            let client = TrackerClient::new(transport, addr, None);
            client.register(None, Vec::new()).await.unwrap();
            for i in (a..FILES).step_by(ANNOUNCERS) {
                let manifest = tiny(format!("dir/file-{i:05}.txt"));
                client
                    .announce(&manifest, &Bitfield::full(1), FileMeta::default())
                    .await
                    .unwrap();
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    const { assert!(FILES > 2 * MAX_CATALOGUE) };
    let listed = clients[0].list().await.unwrap();
    let names: Vec<String> = listed.iter().map(|e| e.name.clone()).collect();
    let expected: Vec<String> = (0..FILES).map(|i| format!("dir/file-{i:05}.txt")).collect();
    assert_eq!(names.len(), FILES);
    assert_eq!(names, expected);
    let found = clients[1].search("FILE-2", false).await.unwrap();
    // file-20000 to file-24999, case ignored.
    assert_eq!(found.len(), 5_000);
}
