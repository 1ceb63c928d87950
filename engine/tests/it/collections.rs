//! Collections through the engine API on loopback: a folder shared and fetched whole, and
//! collections made by hand by a hostile seeder: unsafe paths, sizes that lie, one file id
//! under two paths. A collection is checked before anything is written, and nothing lands
//! outside `OUT/NAME`.

use std::path::Path;
use std::sync::Arc;

use swarm_engine::collection::{self, CollectionOptions};
use swarm_engine::{Error, FileId, Node, Progress};
use swarm_proto::collection::{Collection, Entry};

use crate::common::*;

/// Seeds `share` from a new node and returns it with each file's (name, id).
async fn seed(
    tmp: &Path,
    name: &str,
    share: &Path,
    tracker: swarm_engine::TrackerAddr,
) -> (Node, Vec<(String, FileId)>) {
    let node = start_node(tmp, name, tracker, None).await;
    let files = node.seed_dir(share, CHUNK, &Progress::default()).await.unwrap();
    let ids = files.iter().map(|f| (f.manifest.name.clone(), f.id)).collect();
    (node, ids)
}

fn fetch_options(out: &Path) -> CollectionOptions {
    CollectionOptions {
        out_dir: out.to_owned(),
        parallel: 4,
        each: options(out),
        progress: Arc::default(),
    }
}

/// `swarm fetch ID` of a plain file, as the CLI does it: `collection::open` finds no folder,
/// then the file is fetched. Its holder is dialled once: the fetch starts from what `open`
/// located, on the connection that brought the manifest (three dials before: `open`'s, the
/// fetch's own locate, its worker).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plain_files_fetch_dials_its_holder_once() {
    let tmp = tempfile::tempdir().unwrap();
    // No spot checks: the tracker's would be dials of the seeder too.
    let tracker = start_credulous_tracker(tmp.path()).await;
    let share = tmp.path().join("share");
    let data = content(5 * CHUNK as usize + 3, 7);
    write(&share, "plain.bin", &data);
    let (seeder, files) = seed(tmp.path(), "seeder", &share, pinned(&tracker)).await;
    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
    let out = tmp.path().join("out");

    let before = seeder.handshakes_accepted();
    let mut each = options(&out);
    assert!(collection::open(&fetcher, files[0].1, &mut each)
        .await
        .unwrap()
        .is_none());
    assert!(each.located.is_some(), "open leaves what it located to the fetch");
    fetcher.fetch(files[0].1, each).await.unwrap();
    let dials = seeder.handshakes_accepted() - before;
    assert_eq!(std::fs::read(out.join("plain.bin")).unwrap(), data);
    assert_eq!(dials, 1, "the seeder was dialled {dials} times for one fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_folder_is_fetched_whole_with_modes_and_times() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let share = tmp.path().join("album");
    let big = content(7 * CHUNK as usize + 5, 1);
    write(&share, "a.bin", &big);
    write(&share, "deep/er/b.bin", &content(1000, 2));
    write(&share, "empty", b"");
    let script = write(&share, "run.sh", b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
    std::fs::File::options()
        .write(true)
        .open(share.join("a.bin"))
        .unwrap()
        .set_modified(old)
        .unwrap();

    let seeder = start_node(tmp.path(), "seeder", pinned(&tracker), None).await;
    let files = seeder.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap();
    let shared = collection::share(&seeder, "album", &files, CHUNK).await.unwrap();
    assert_eq!(shared.collection.entries.len(), 4);

    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
    let out = tmp.path().join("out");
    let opened = collection::open(&fetcher, shared.id, &mut options(&out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(opened, *shared.collection);
    // A plain file's id opens no collection.
    assert!(collection::open(&fetcher, files[0].id, &mut options(&out))
        .await
        .unwrap()
        .is_none());

    let progress = Arc::new(Progress::default());
    let report = collection::fetch(
        &fetcher,
        shared.id,
        &opened,
        opened.entries.clone(),
        CollectionOptions {
            progress: progress.clone(),
            ..fetch_options(&out)
        },
    )
    .await
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.done.len(), 4);
    assert_eq!((progress.done(), progress.total()), (opened.size(), opened.size()));
    let root = out.join("album");
    assert_eq!(std::fs::read(root.join("a.bin")).unwrap(), big);
    assert_eq!(std::fs::read(root.join("deep/er/b.bin")).unwrap(), content(1000, 2));
    assert_eq!(std::fs::metadata(root.join("empty")).unwrap().len(), 0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(root.join("run.sh")).unwrap().permissions().mode() & 0o777,
        0o750
    );
    assert_eq!(std::fs::metadata(root.join("a.bin")).unwrap().modified().unwrap(), old);

    // Again: everything is found complete, nothing is received.
    let again = collection::fetch(
        &fetcher,
        shared.id,
        &opened,
        opened.entries.clone(),
        fetch_options(&out),
    )
    .await
    .unwrap();
    assert!(again.failed.is_empty());
    assert_eq!(again.bytes_received(), 0);
}

/// A hostile seeder shares `bytes` as the collection NAME.swarm-collection; returns its id.
async fn hostile(tmp: &Path, tracker: &swarm_tracker::Tracker, bytes: &[u8]) -> (Node, FileId) {
    let dir = tmp.join("hostile");
    write(&dir, "evil.swarm-collection", bytes);
    let (node, ids) = seed(tmp, "hostile-seeder", &dir, pinned(tracker)).await;
    (node, ids[0].1)
}

fn entry(path: &str, file: FileId, size: u64) -> Entry {
    Entry {
        path: path.into(),
        file,
        size,
        mode: 0o644,
        modified_ns: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_collection_with_an_unsafe_path_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let share = tmp.path().join("share");
    write(&share, "x.bin", &content(100, 3));
    let (_seeder, ids) = seed(tmp.path(), "seeder", &share, pinned(&tracker)).await;
    // Encoded as is, without the checks `Collection::new` makes.
    let evil = Collection {
        name: "evil".into(),
        entries: vec![entry("../../escaped.bin", ids[0].1, 100)],
    };
    let (_hostile, id) = hostile(tmp.path(), &tracker, &evil.encode()).await;
    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
    let out = tmp.path().join("out");
    let refused = collection::open(&fetcher, id, &mut options(&out)).await;
    assert!(matches!(refused, Err(Error::Collection { .. })), "{refused:?}");
    assert_eq!(refused.unwrap_err().kind(), swarm_engine::ErrorKind::Integrity);
    assert!(!tmp.path().join("escaped.bin").exists() && !out.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lying_size_fails_that_file_only_and_one_id_may_fill_two_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let share = tmp.path().join("share");
    write(&share, "one.bin", &content(3 * CHUNK as usize, 4));
    write(&share, "two.bin", &content(5000, 5));
    let (_seeder, ids) = seed(tmp.path(), "seeder", &share, pinned(&tracker)).await;
    let (one, two) = (ids[0].1, ids[1].1);
    let crafted = Collection::new(
        "crafted".into(),
        vec![
            entry("a/one.bin", one, 3 * u64::from(CHUNK)),
            entry("b/same-as-one.bin", one, 3 * u64::from(CHUNK)),
            entry("lies.bin", two, 1),
        ],
    )
    .unwrap();
    let (_hostile, id) = hostile(tmp.path(), &tracker, &crafted.encode()).await;
    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
    let out = tmp.path().join("out");
    let opened = collection::open(&fetcher, id, &mut options(&out))
        .await
        .unwrap()
        .unwrap();
    let report = collection::fetch(&fetcher, id, &opened, opened.entries.clone(), fetch_options(&out))
        .await
        .unwrap();
    let root = out.join("crafted");
    // Saved under the collection's paths, not the manifests' names.
    assert_eq!(
        std::fs::read(root.join("a/one.bin")).unwrap(),
        content(3 * CHUNK as usize, 4)
    );
    assert_eq!(
        std::fs::read(root.join("b/same-as-one.bin")).unwrap(),
        content(3 * CHUNK as usize, 4)
    );
    assert!(!root.join("one.bin").exists());
    assert_eq!(report.done.len(), 2);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0.path, "lies.bin");
    assert!(
        matches!(report.failed[0].1, Error::Integrity(_)),
        "{:?}",
        report.failed[0].1
    );
}

/// A holder of the folder that serves the collection honestly and lies in every answer for
/// small files: the real manifests, garbage bytes. Counts the requests for small files.
async fn lying_small_files_holder(
    tracker: &swarm_tracker::Tracker,
    collection: &Collection,
    manifests: Vec<swarm_engine::Manifest>,
    asked: Arc<std::sync::atomic::AtomicUsize>,
) {
    use swarm_engine::{Bitfield, Identity, Manifest};
    use swarm_proto::protocol::{self, PeerRequest, PeerResponse};
    use swarm_proto::transport::{send_frame, Transport};
    let bytes = collection.encode();
    let scratch = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(scratch.path(), &bytes).unwrap();
    let folder = Manifest::from_file(scratch.path(), &collection.file_name(), CHUNK).unwrap();
    let transport = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
    let client = swarm_engine::tracker_client::TrackerClient::new(transport.clone(), pinned(tracker), None);
    client.register(None, Vec::new()).await.unwrap();
    let all = Bitfield::full(folder.chunk_count);
    client.announce(&folder, &all, Default::default()).await.unwrap();
    let manifests: std::collections::HashMap<FileId, Manifest> = manifests.into_iter().map(|m| (m.id(), m)).collect();
    let (endpoint, shared) = (transport.endpoint().clone(), Arc::new((folder, bytes, manifests)));
    tokio::spawn(async move {
        let _client = client; // keeps the tracker session open
        while let Some(incoming) = endpoint.accept().await {
            let (shared, asked) = (shared.clone(), asked.clone());
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else { return };
                let (folder, bytes, manifests) = &*shared;
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    match protocol::read_frame(&mut recv, 64 * 1024).await {
                        Ok(PeerRequest::GetManifest { .. }) => {
                            let _ = send_frame(&mut send, &PeerResponse::Manifest(folder.clone())).await;
                        }
                        Ok(PeerRequest::Watch { .. }) => {
                            let all = PeerResponse::Have(Bitfield::full(folder.chunk_count));
                            let _ = send_frame(&mut send, &all).await;
                            tokio::spawn(async move {
                                let _ = recv.read_to_end(usize::MAX).await;
                                drop(send);
                            });
                            continue;
                        }
                        Ok(PeerRequest::GetChunk { index, .. }) => {
                            let start = folder.chunk_offset(index) as usize;
                            let chunk = &bytes[start..start + folder.chunk_len(index) as usize];
                            let _ = send_frame(
                                &mut send,
                                &PeerResponse::Chunk {
                                    len: chunk.len() as u32,
                                },
                            )
                            .await;
                            let _ = send.write_all(chunk).await;
                        }
                        Ok(PeerRequest::GetSmallFiles { files }) => {
                            asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            for file in files {
                                let manifest = manifests[&file].clone();
                                let len = manifest.size as u32;
                                let _ = send_frame(&mut send, &PeerResponse::Manifest(manifest)).await;
                                let _ = send_frame(&mut send, &PeerResponse::Chunk { len }).await;
                                let _ = send.write_all(&vec![0xEE; len as usize]).await;
                            }
                        }
                        _ => return,
                    }
                    let _ = send.finish();
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn small_files_come_many_per_request_and_a_holder_that_lies_in_them_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_credulous_tracker(tmp.path()).await;
    let share = tmp.path().join("many");
    let small = |i: usize| content(1 + i * 7, i as u64);
    for i in 0..1000 {
        write(&share, &format!("d{}/f{i}.txt", i % 7), &small(i));
    }
    write(&share, "big.bin", &content(3 * CHUNK as usize, 9));
    let seeder = start_node(tmp.path(), "seeder", pinned(&tracker), None).await;
    let files = seeder.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap();
    let shared = collection::share(&seeder, "many", &files, CHUNK).await.unwrap();
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let manifests = files.iter().map(|f| (*f.manifest).clone()).collect();
    lying_small_files_holder(&tracker, &shared.collection, manifests, asked.clone()).await;

    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
    let out = tmp.path().join("out");
    let opened = collection::open(&fetcher, shared.id, &mut options(&out))
        .await
        .unwrap()
        .unwrap();
    let progress = Arc::new(Progress::default());
    let options = CollectionOptions {
        progress: progress.clone(),
        ..fetch_options(&out)
    };
    let report = collection::fetch(&fetcher, shared.id, &opened, opened.entries.clone(), options)
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.done.len(), 1001);
    assert_eq!((progress.done(), progress.total()), (opened.size(), opened.size()));
    // The liar was asked for batches, and not again once it lied: eight batches in all, half
    // of them its turn, four at once at first (two of them its own) before its first answer.
    let asked = asked.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=3).contains(&asked), "the lying holder was asked {asked} times");
    let root = out.join("many");
    for i in 0..1000 {
        assert_eq!(
            std::fs::read(root.join(format!("d{}/f{i}.txt", i % 7))).unwrap(),
            small(i)
        );
    }
    assert_eq!(
        std::fs::read(root.join("big.bin")).unwrap(),
        content(3 * CHUNK as usize, 9)
    );
    let leftovers: Vec<_> = walk(&root).into_iter().filter(|p| p.contains(".swarm-part")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Again, with one file gone: it alone is written; the others are found complete.
    std::fs::remove_file(root.join("d3/f10.txt")).unwrap();
    let again = collection::fetch(
        &fetcher,
        shared.id,
        &opened,
        opened.entries.clone(),
        fetch_options(&out),
    )
    .await
    .unwrap();
    assert!(again.failed.is_empty(), "{:?}", again.failed);
    let fresh = again
        .done
        .iter()
        .filter(|(_, r)| r.as_ref().is_some_and(|r| !r.already_complete));
    let fresh: Vec<&str> = fresh.map(|(entry, _)| entry.path.as_str()).collect();
    assert_eq!(fresh, ["d3/f10.txt"]);
    assert_eq!(again.bytes_received(), small(10).len() as u64);
    assert_eq!(std::fs::read(root.join("d3/f10.txt")).unwrap(), small(10));
}

/// The names of everything under `dir`.
fn walk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    found
}
