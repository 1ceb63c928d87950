//! Durability on real loopback sockets: a seeder whose files change under it, re-seeding from
//! the saved manifests, and a tracker restarted in the middle of a fetch.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_engine::{Error, FetchOptions, FileId, Identity, Node, PeerFilter, PeerId, Progress, Sources};
use swarm_proto::protocol::{PeerRequest, PeerResponse, MAX_FRAME};
use swarm_proto::transport::{self, Transport};
use swarm_tracker::{Tracker, TrackerConfig};

use crate::common::*;

/// The chunks `peer` holds of `file` according to the tracker (None: not listed as a holder).
async fn held_by(asker: &Node, file: FileId, peer: PeerId) -> Option<Vec<u32>> {
    asker
        .holdings(file)
        .await
        .ok()?
        .into_iter()
        .find(|h| h.peer == peer)
        .map(|h| h.chunks.iter().collect())
}

/// Polls until the tracker lists `peer`'s chunks of `file` as `expected`, or panics.
async fn wait_for_holding(asker: &Node, file: FileId, peer: PeerId, expected: Option<Vec<u32>>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = held_by(asker, file, peer).await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tracker still lists {now:?} for {}, expected {expected:?}",
            file.short()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_never_serves_changed_bytes_and_withdraws_what_it_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let a = content(40 * CHUNK as usize, 11);
    let b = content(20 * CHUNK as usize + 99, 12);
    let (share1, share2) = (tmp.path().join("share1"), tmp.path().join("share2"));
    for share in [&share1, &share2] {
        write(share, "a.bin", &a);
        write(share, "b.bin", &b);
    }
    let changing = start_node(tmp.path(), "changing", pinned(&tracker), None).await;
    let seeded = changing.seed_dir(&share1, CHUNK, &Progress::default()).await.unwrap();
    let (a_id, b_id) = (seeded[0].id, seeded[1].id);
    // An honest, slower seeder with the original files.
    let honest = start_node(tmp.path(), "honest", pinned(&tracker), Some(8_000_000)).await;
    honest.seed_dir(&share2, CHUNK, &Progress::default()).await.unwrap();
    let me = changing.id();

    // Chunk 5 of a.bin changes in place, same size: the seeder does not know yet.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(share1.join("a.bin"))
        .unwrap();
    file.write_all_at(b"edited by hand", 5 * u64::from(CHUNK) + 100)
        .unwrap();
    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
    // Asked of the changing seeder alone, the changed chunk cannot come: the seeder finds
    // out as it reads it and withdraws it.
    let out = tmp.path().join("out1");
    let only_changing = || FetchOptions {
        sources: Sources::Only(PeerFilter::IdPrefix(me.to_string())),
        timeout: Some(Duration::from_secs(3)),
        ..options(&out)
    };
    let partial = fetcher.fetch(a_id, only_changing()).await;
    assert!(matches!(partial, Err(Error::Timeout(_))), "{partial:?}");
    let expected: Vec<u32> = (0..40).filter(|&c| c != 5).collect();
    wait_for_holding(&fetcher, a_id, me, Some(expected)).await;
    fetcher.fetch(a_id, options(&out)).await.unwrap();
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), a);

    // b.bin is cut short in the middle of chunk 5: chunks 5.. are gone.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(share1.join("b.bin"))
        .unwrap();
    file.set_len(5 * u64::from(CHUNK) + 10).unwrap();
    let out = tmp.path().join("out2");
    let partial = fetcher.fetch(b_id, only_changing()).await;
    assert!(matches!(partial, Err(Error::Timeout(_))), "{partial:?}");
    wait_for_holding(&fetcher, b_id, me, Some((0..5).collect())).await;
    fetcher.fetch(b_id, options(&out)).await.unwrap();
    assert_eq!(std::fs::read(out.join("b.bin")).unwrap(), b);

    // a.bin is deleted: nothing of it is left to serve, so the file is withdrawn.
    std::fs::remove_file(share1.join("a.bin")).unwrap();
    let second = start_node(tmp.path(), "second", pinned(&tracker), None).await;
    let out = tmp.path().join("out3");
    second.fetch(a_id, options(&out)).await.unwrap();
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), a);
    wait_for_holding(&second, a_id, me, None).await;
    assert!(changing.status().unwrap().iter().all(|f| f.id != a_id));
}

/// A change the file's stamp does not show (its bytes edited and its modification time put
/// back between two runs, which re-seeding trusts) is served once at most: the fetcher rejects
/// the chunk and tells the seeder, which checks it, stops serving it and tells the tracker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_chunk_is_checked_by_its_seeder_and_withdrawn() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let a = content(40 * CHUNK as usize, 21);
    let (share1, share2) = (tmp.path().join("share1"), tmp.path().join("share2"));
    let path = write(&share1, "a.bin", &a);
    write(&share2, "a.bin", &a);
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let set_mtime = |mtime| {
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_modified(mtime).unwrap();
        file
    };
    set_mtime(long_ago);
    let node = start_node(tmp.path(), "changing", pinned(&tracker), None).await;
    let a_id = node.seed_dir(&share1, CHUNK, &Progress::default()).await.unwrap()[0].id;
    node.shutdown(Duration::from_secs(1)).await;
    drop(node);

    // Edited while the seeder was down, with the old modification time put back; then left
    // alone long enough for the new version to count as settled.
    let file = set_mtime(long_ago);
    file.write_all_at(b"edited, mtime restored", 5 * u64::from(CHUNK) + 7)
        .unwrap();
    set_mtime(long_ago);
    tokio::time::sleep(swarm_engine::trust::SETTLE + Duration::from_millis(200)).await;
    let changing = start_node(tmp.path(), "changing", pinned(&tracker), None).await;
    let seeded = changing.seed_dir(&share1, CHUNK, &Progress::default()).await.unwrap();
    assert!(
        seeded[0].origin != swarm_engine::Origin::Hashed,
        "the saved manifest was trusted, as designed"
    );
    let me = changing.id();

    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
    let out = tmp.path().join("out");
    let only_changing = FetchOptions {
        sources: Sources::Only(PeerFilter::IdPrefix(me.to_string())),
        timeout: Some(Duration::from_secs(3)),
        ..options(&out)
    };
    let partial = fetcher.fetch(a_id, only_changing).await;
    assert!(matches!(partial, Err(Error::Timeout(_))), "{partial:?}");
    let expected: Vec<u32> = (0..40).filter(|&c| c != 5).collect();
    wait_for_holding(&fetcher, a_id, me, Some(expected)).await;

    // Asked directly: an intact chunk is found intact, the withdrawn one is not.
    let client = Transport::bind(Arc::new(Identity::generate().unwrap()), "127.0.0.1:0".parse().unwrap()).unwrap();
    let (connection, _) = client.connect(changing.local_addr(), Some(me)).await.unwrap();
    for (index, intact) in [(4, true), (5, false)] {
        let request = PeerRequest::Rejected { file: a_id, index };
        let (answer, _): (PeerResponse, _) = transport::exchange(&connection, &request, MAX_FRAME).await.unwrap();
        assert_eq!(answer, PeerResponse::Checked { intact }, "chunk {index}");
    }

    let honest = start_node(tmp.path(), "honest", pinned(&tracker), None).await;
    honest.seed_dir(&share2, CHUNK, &Progress::default()).await.unwrap();
    fetcher.fetch(a_id, options(&out)).await.unwrap();
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), a);
}

fn seed_names(seeded: &[swarm_engine::SeededFile]) -> Vec<(String, bool)> {
    seeded
        .iter()
        .map(|f| (f.manifest.name.clone(), f.origin == swarm_engine::Origin::Hashed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseeding_skips_unchanged_files_and_withdraws_changed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let share = tmp.path().join("share");
    write(&share, "keep.bin", &content(300_000, 1));
    write(&share, "edit.bin", &content(200_000, 2));
    write(&share, "gone.bin", &content(100_000, 3));
    let node = start_node(tmp.path(), "seeder", pinned(&tracker), None).await;
    let first = node.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap();
    assert_eq!(
        seed_names(&first),
        [
            ("edit.bin".into(), true),
            ("gone.bin".into(), true),
            ("keep.bin".into(), true)
        ]
    );

    // Nothing changed: nothing is hashed, the ids are the same.
    let progress = Progress::default();
    let again = node.seed_dir(&share, CHUNK, &progress).await.unwrap();
    assert!(
        again.iter().all(|f| f.origin != swarm_engine::Origin::Hashed),
        "{:?}",
        seed_names(&again)
    );
    assert_eq!(
        again.iter().map(|f| f.id).collect::<Vec<_>>(),
        first.iter().map(|f| f.id).collect::<Vec<_>>()
    );
    assert_eq!(progress.total(), 0, "no byte was read for hashing");

    // One file grows, one is deleted.
    let edited = std::fs::OpenOptions::new()
        .write(true)
        .open(share.join("edit.bin"))
        .unwrap();
    edited.write_all_at(b"more", 200_000).unwrap();
    std::fs::remove_file(share.join("gone.bin")).unwrap();
    let third = node.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap();
    assert_eq!(
        seed_names(&third),
        [("edit.bin".into(), true), ("keep.bin".into(), false)]
    );
    assert_ne!(third[0].id, first[0].id);
    let me = node.id();
    let asker = start_node(tmp.path(), "asker", pinned(&tracker), None).await;
    assert_eq!(
        held_by(&asker, first[0].id, me).await,
        None,
        "old id of edit.bin withdrawn"
    );
    assert_eq!(held_by(&asker, first[1].id, me).await, None, "gone.bin withdrawn");
    assert!(held_by(&asker, third[0].id, me).await.is_some());

    // A new process with the same state directory does not hash anything either.
    node.shutdown(Duration::from_secs(1)).await;
    drop(node);
    let restarted = start_node(tmp.path(), "seeder", pinned(&tracker), None).await;
    let fourth = restarted.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap();
    assert_eq!(
        seed_names(&fourth),
        [("edit.bin".into(), false), ("keep.bin".into(), false)]
    );
}

/// A tracker with its own state directory under `dir`, so that it can be restarted.
async fn start_restartable(dir: &std::path::Path, peer_timeout: Duration) -> (TrackerConfig, Tracker) {
    let config = TrackerConfig {
        state_dir: dir.join("tracker"),
        listen: loopback(),
        peer_timeout,
        ..TrackerConfig::default()
    };
    let tracker = Tracker::start(config.clone()).await.unwrap();
    (config, tracker)
}

/// Stops `tracker` (if not stopped yet) and starts it again on the same state and port.
async fn restart(tracker: Tracker, config: TrackerConfig, addr: &swarm_engine::TrackerAddr) -> Tracker {
    tracker.stop().await;
    drop(tracker);
    Tracker::start(TrackerConfig {
        listen: addr.host_port.parse().unwrap(),
        ..config
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_tracker_recovers_and_a_fetch_in_flight_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, tracker) = start_restartable(tmp.path(), Duration::from_secs(3)).await;
    let addr = pinned(&tracker);
    let data = content(48 * CHUNK as usize, 21);
    let share = tmp.path().join("share");
    write(&share, "movie.bin", &data);
    // 1 MB/s: the fetch of 3 MiB is still running when the tracker goes away.
    let seeder = start_node(tmp.path(), "seeder", addr.clone(), Some(1_000_000)).await;
    let id = seeder.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap()[0].id;
    let fetcher = start_node(tmp.path(), "fetcher", addr.clone(), None).await;
    let out = tmp.path().join("out");
    let fetch = {
        let (fetcher, out) = (fetcher.clone(), out.clone());
        tokio::spawn(async move { fetcher.fetch(id, options(&out)).await })
    };

    tokio::time::sleep(Duration::from_millis(800)).await;
    tracker.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = restart(tracker, config, &addr).await;
    let back = Instant::now();
    assert_eq!(restarted.catalogue_size(), 1, "the catalogue comes back from sled");

    let report = fetch.await.unwrap().unwrap();
    assert_eq!(std::fs::read(out.join("movie.bin")).unwrap(), data);
    assert_eq!(report.bytes_received(), data.len() as u64);
    // The seeder re-registers on its own (keepalive every peer_timeout / 3 = 1 s).
    wait_for_holding(&fetcher, id, seeder.id(), Some((0..48).collect())).await;
    println!("seeder listed again {:?} after the tracker came back", back.elapsed());
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_tracker_answers_with_its_holders_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    // Keepalives every minute: without the saved holders, the tracker would not know the
    // seeder for up to a minute after a restart.
    let (config, tracker) = start_restartable(tmp.path(), Duration::from_secs(180)).await;
    let addr = pinned(&tracker);
    let share = tmp.path().join("share");
    write(&share, "one.bin", &content(5 * CHUNK as usize, 31));
    let seeder = start_node(tmp.path(), "seeder", addr.clone(), None).await;
    let one = seeder.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap()[0].id;
    let asker = start_node(tmp.path(), "asker", addr.clone(), None).await;

    let restarted = restart(tracker, config, &addr).await;
    let back = Instant::now();
    assert_eq!(held_by(&asker, one, seeder.id()).await, Some((0..5).collect()));
    println!("holder listed {:?} after the tracker came back", back.elapsed());

    // The seeder's next request is answered "not registered": it registers again and
    // announces everything, so what it held before and what it adds are both listed.
    write(&share, "two.bin", &content(3 * CHUNK as usize, 32));
    let seeded = seeder.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap();
    let two = seeded.iter().find(|f| f.manifest.name == "two.bin").unwrap().id;
    wait_for_holding(&asker, two, seeder.id(), Some((0..3).collect())).await;
    wait_for_holding(&asker, one, seeder.id(), Some((0..5).collect())).await;
    let out = tmp.path().join("out");
    asker.fetch(one, options(&out)).await.unwrap();
    restarted.stop().await;
}

/// Waits until the hidden partial file of `name` exists under `dir` (the fetch is under way).
async fn wait_for_partial(dir: &std::path::Path, name: &str) {
    let partial = dir.join(format!(".{name}.swarm-part"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !partial.exists() {
        assert!(Instant::now() < deadline, "the fetch never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_replaces_only_what_it_was_allowed_to() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    // Capped, so that there is time to write beside the download.
    let seeder = start_node(tmp.path(), "seeder", pinned(&tracker), Some(2_000_000)).await;
    let data = content(1_500_000, 7);
    let share = tmp.path().join("share");
    write(&share, "f.bin", &data);
    let seeded = seeder.seed_dir(&share, 65536, &Progress::default()).await.unwrap();
    let id = seeded[0].id;
    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;

    // A file that appears at the name while the fetch runs is never replaced.
    let out = tmp.path().join("out");
    let task = {
        let (fetcher, out) = (fetcher.clone(), out.clone());
        tokio::spawn(async move { fetcher.fetch(id, options(&out)).await })
    };
    wait_for_partial(&out, "f.bin").await;
    std::fs::write(out.join("f.bin"), b"written by someone else").unwrap();
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, swarm_engine::Error::Exists(_)), "{err}");
    assert_eq!(std::fs::read(out.join("f.bin")).unwrap(), b"written by someone else");
    assert!(out.join(".f.bin.swarm-part").exists(), "the verified download is kept");

    // Allowed to replace exactly that version: it is replaced, and gets the seeder's mtime.
    let stamp = swarm_engine::db::FileStamp::of(&std::fs::metadata(out.join("f.bin")).unwrap());
    let allowed = swarm_engine::FetchOptions {
        replace: swarm_engine::Replace::IfUnchanged(stamp),
        ..options(&out)
    };
    fetcher.fetch(id, allowed).await.unwrap();
    assert_eq!(std::fs::read(out.join("f.bin")).unwrap(), data);
    let modified = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    assert_eq!(modified(&out.join("f.bin")), modified(&share.join("f.bin")));

    // Allowed to replace one version, but it is edited meanwhile: the edit stays.
    let other = tmp.path().join("other");
    write(&other, "f.bin", b"old version");
    let stamp = swarm_engine::db::FileStamp::of(&std::fs::metadata(other.join("f.bin")).unwrap());
    let task = {
        let (fetcher, other) = (fetcher.clone(), other.clone());
        let allowed = swarm_engine::FetchOptions {
            replace: swarm_engine::Replace::IfUnchanged(stamp),
            ..options(&other)
        };
        tokio::spawn(async move { fetcher.fetch(id, allowed).await })
    };
    wait_for_partial(&other, "f.bin").await;
    std::fs::write(other.join("f.bin"), b"edited while it downloaded").unwrap();
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, swarm_engine::Error::Exists(_)), "{err}");
    assert_eq!(
        std::fs::read(other.join("f.bin")).unwrap(),
        b"edited while it downloaded"
    );
}
