//! `swarm sync`, black box: three real sync processes on loopback converge, conflicts keep
//! both versions, modification times travel (an empty file's too), edits, new files and
//! deletions spread (what is deleted or replaced is kept in `.swarm/versions/`), a share keeps
//! unrelated seeds and other shares out, and a replaced version is no longer handed out.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::common::*;

/// Every file under `dir` but partial downloads and `.swarm/`, by name, with its content.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        // A folder may go between listing and reading too (one a sync emptied and removed).
        let Ok(entries) = std::fs::read_dir(&at) else { continue };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            if path == dir.join(".swarm") {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if !entry.file_name().to_string_lossy().ends_with(".swarm-part") {
                let name = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                // A file may be renamed away between listing and reading.
                if let Ok(data) = std::fs::read(&path) {
                    files.insert(name, data);
                }
            }
        }
    }
    files
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// Waits until every folder holds exactly the same files and `done` holds for them.
fn converge(dirs: &[&Path], limit: Duration, done: impl Fn(&BTreeMap<String, Vec<u8>>) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let snapshots: Vec<_> = dirs.iter().map(|d| snapshot(d)).collect();
        if snapshots.windows(2).all(|w| w[0] == w[1]) && done(&snapshots[0]) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "no convergence within {limit:?}:\n{:#?}",
            snapshots
                .iter()
                .map(|s| s.keys().cloned().collect::<Vec<_>>())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The old versions kept in `dir`'s `.swarm/versions/`, by content.
fn kept_versions(dir: &Path) -> Vec<Vec<u8>> {
    let mut kept = Vec::new();
    let mut stack = vec![dir.join(".swarm/versions")];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                kept.push(std::fs::read(&path).unwrap());
            }
        }
    }
    kept
}

/// A new share's keys, from `swarm secret share-key`: (read-write, read-only).
fn new_share() -> (String, String) {
    let output = run(&["secret", "share-key"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines().map(str::to_owned);
    let keys = (lines.next().unwrap(), lines.next().unwrap());
    assert!(
        keys.0.starts_with("swarmrw1") && keys.1.starts_with("swarmro1"),
        "{text}"
    );
    keys
}

fn start_sync(tmp: &Path, name: &str, key: &str, tracker: &str) -> Proc {
    start_sync_with(tmp, name, key, tracker, &[])
}

fn start_sync_with(tmp: &Path, name: &str, key: &str, tracker: &str, extra: &[&str]) -> Proc {
    let dir = tmp.join(name);
    let state = tmp.join(format!("state-{name}"));
    let mut args = vec![
        "sync",
        s(&dir),
        "--share",
        key,
        "--tracker",
        tracker,
        "--state",
        s(&state),
        "--listen",
        "127.0.0.1:0",
        "--chunk-size",
        "64KiB",
        "--interval",
        "200ms",
        "--settle",
        "500ms",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&args)
}

#[test]
fn three_sync_peers_converge_keep_conflicts_and_spread_new_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let now = SystemTime::now();
    let alpha = content(300_000, 1);
    write(a.join("alpha.bin"), &alpha);
    write(a.join("docs/readme.txt"), b"read me\n");
    write(b.join("beta.bin"), &content(150_000, 2));
    write(c.join("gamma.txt"), b"gamma\n");
    // An empty file is a file like any other: held, synced, its time kept.
    write(c.join("empty.flag"), b"");
    let empty_time = now - Duration::from_secs(7200);
    set_modified(&c.join("empty.flag"), empty_time);
    let alpha_time = now - Duration::from_secs(3600);
    set_modified(&a.join("alpha.bin"), alpha_time);
    // The same name with different content on a and b: b's is newer and must win.
    write(a.join("notes.txt"), b"notes as a wrote them\n");
    write(b.join("notes.txt"), b"notes as b wrote them, later\n");
    set_modified(&a.join("notes.txt"), now - Duration::from_secs(120));
    let winner_time = now - Duration::from_secs(60);
    set_modified(&b.join("notes.txt"), winner_time);

    let (_tracker, addr) = start_tracker(tmp.path());
    let (key, _) = new_share();
    let _peers: Vec<Proc> = ["a", "b", "c"]
        .iter()
        .map(|name| start_sync(tmp.path(), name, &key, &addr))
        .collect();
    let dirs = [a.as_path(), b.as_path(), c.as_path()];

    let took = converge(&dirs, Duration::from_secs(60), |files| files.len() == 7);
    eprintln!("three sync peers converged on 7 files in {took:.2?}");
    let files = snapshot(&a);
    assert_eq!(files["alpha.bin"], alpha);
    assert_eq!(files["docs/readme.txt"], b"read me\n");
    assert_eq!(files["notes.txt"], b"notes as b wrote them, later\n");
    let conflict: Vec<&String> = files.keys().filter(|n| n.contains(".sync-conflict-")).collect();
    assert_eq!(conflict.len(), 1, "{:?}", files.keys());
    assert!(
        conflict[0].starts_with("notes.sync-conflict-") && conflict[0].ends_with(".txt"),
        "{conflict:?}"
    );
    assert_eq!(
        files[conflict[0]], b"notes as a wrote them\n",
        "the losing edit is kept"
    );
    for dir in dirs {
        assert_eq!(modified(&dir.join("notes.txt")), winner_time, "in {}", dir.display());
        assert_eq!(modified(&dir.join("alpha.bin")), alpha_time, "in {}", dir.display());
        assert_eq!(modified(&dir.join("empty.flag")), empty_time, "in {}", dir.display());
    }

    // A new file on one peer appears on the other two.
    let started = Instant::now();
    write(c.join("late.txt"), b"added while syncing\n");
    converge(&dirs, Duration::from_secs(30), |files| files.contains_key("late.txt"));
    eprintln!(
        "a file added to c reached a and b {:.2?} after it was written",
        started.elapsed()
    );

    // An edit of a file that came from elsewhere replaces it everywhere, with no conflict copy.
    let edited = content(200_000, 9);
    std::fs::write(b.join("alpha.bin"), &edited).unwrap();
    let took = converge(&dirs, Duration::from_secs(30), |files| files["alpha.bin"] == edited);
    eprintln!("an edit on b reached a and c in {took:.2?}");
    assert_eq!(
        snapshot(&a).len(),
        8,
        "an update is not a conflict: {:?}",
        snapshot(&a).keys()
    );

    // The versions the edit replaced on a and c were kept.
    for dir in [&a, &c] {
        assert!(kept_versions(dir).contains(&alpha), "in {}", dir.display());
    }

    // A deletion spreads; the others keep what they had in .swarm/versions/.
    let started = Instant::now();
    std::fs::remove_file(a.join("gamma.txt")).unwrap();
    converge(&dirs, Duration::from_secs(30), |files| !files.contains_key("gamma.txt"));
    eprintln!("a deletion on a reached b and c in {:.2?}", started.elapsed());
    for dir in [&b, &c] {
        assert!(
            kept_versions(dir).contains(&b"gamma\n".to_vec()),
            "in {}",
            dir.display()
        );
    }
    // Deleting a folder's last file (and the folder) empties it away everywhere.
    std::fs::remove_dir_all(a.join("docs")).unwrap();
    converge(&dirs, Duration::from_secs(30), |files| {
        !files.contains_key("docs/readme.txt")
    });
    wait_until("the emptied folder gone on b and c", || {
        !b.join("docs").exists() && !c.join("docs").exists()
    });
    // And a file made again after its deletion comes back everywhere.
    write(b.join("gamma.txt"), b"gamma again\n");
    converge(&dirs, Duration::from_secs(30), |files| {
        files.get("gamma.txt").is_some_and(|g| g == b"gamma again\n")
    });
}

#[test]
fn a_share_keeps_out_other_shares_and_unrelated_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, other) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("other"));
    write(a.join("ours.txt"), b"ours\n");
    std::fs::create_dir_all(&b).unwrap();
    write(other.join("theirs.txt"), b"another share's\n");
    let seeded = tmp.path().join("seeded");
    write(seeded.join("unrelated.bin"), &content(50_000, 3));
    let (_tracker, addr) = start_tracker(tmp.path());
    let (key, _) = new_share();
    let _seed = Proc::spawn(&[
        "seed",
        s(&seeded),
        "--tracker",
        &addr,
        "--state",
        s(&tmp.path().join("state-seed")),
        "--listen",
        "127.0.0.1:0",
    ]);
    let _a = start_sync(tmp.path(), "a", &key, &addr);
    let _b = start_sync(tmp.path(), "b", &key, &addr);
    let _other = start_sync(tmp.path(), "other", &new_share().0, &addr);
    converge(&[a.as_path(), b.as_path()], Duration::from_secs(30), |files| {
        files.contains_key("ours.txt")
    });
    // Time for anything that should not come to come.
    std::thread::sleep(Duration::from_secs(3));
    let names = |dir: &Path| snapshot(dir).into_keys().collect::<Vec<_>>();
    assert_eq!(names(&a), ["ours.txt"]);
    assert_eq!(names(&b), ["ours.txt"]);
    assert_eq!(names(&other), ["theirs.txt"]);
}

#[test]
fn an_edit_withdraws_the_old_version_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let first = content(100_000, 5);
    write(a.join("report.bin"), &first);
    std::fs::create_dir_all(&b).unwrap();
    let (_tracker, addr) = start_tracker(tmp.path());
    let (key, _) = new_share();
    let _a = start_sync(tmp.path(), "a", &key, &addr);
    let _b = start_sync(tmp.path(), "b", &key, &addr);
    let dirs = [a.as_path(), b.as_path()];
    converge(&dirs, Duration::from_secs(30), |files| files.contains_key("report.bin"));
    let old = swarm_proto::Manifest::from_file(&a.join("report.bin"), "report.bin", 64 * 1024)
        .unwrap()
        .id();

    let second = content(120_000, 6);
    std::fs::write(a.join("report.bin"), &second).unwrap();
    converge(&dirs, Duration::from_secs(30), |files| files["report.bin"] == second);
    // Both nodes withdrew the old version (a when it saw the edit, b when it replaced its
    // copy): fetching it fails at once instead of waiting for a holder.
    let started = Instant::now();
    let out = tmp.path().join("out");
    let deadline = Instant::now() + Duration::from_secs(10);
    let output = loop {
        let state = tmp.path().join("state-fetch");
        let output = run(&[
            "fetch",
            &old.to_string(),
            "--tracker",
            &addr,
            "-o",
            s(&out),
            "--state",
            s(&state),
            "--timeout",
            "60s",
        ]);
        if !output.status.success() || Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no longer held"), "{stderr}");
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    eprintln!("fetching the replaced version failed in {:.2?}", started.elapsed());
}

/// A file edited in place on one node while another downloads it: the download of the old
/// version (which nobody serves any more) stops as soon as the new version is listed, and
/// the new one is fetched; before, the name stayed taken until the old download gave up,
/// over two minutes later.
#[test]
fn a_file_edited_while_another_node_fetches_it_arrives_in_its_new_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let size = 8 << 20;
    write(a.join("film.bin"), &content(size, 1));
    std::fs::create_dir_all(&b).unwrap();
    let (_tracker, addr) = start_tracker(tmp.path());
    let (key, _) = new_share();
    let _a = start_sync_with(tmp.path(), "a", &key, &addr, &["--max-upload-rate", "1MB/s"]);
    let _b = start_sync(tmp.path(), "b", &key, &addr);
    // b is fetching the first version when a's file changes in place (its first chunk).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&b)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("film.bin"))
    {
        assert!(Instant::now() < deadline, "b never began to fetch");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut edited = content(size, 1);
    edited[..64 * 1024].copy_from_slice(&content(64 * 1024, 2));
    {
        use std::io::{Seek, Write};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(a.join("film.bin"))
            .unwrap();
        file.seek(std::io::SeekFrom::Start(0)).unwrap();
        file.write_all(&edited[..64 * 1024]).unwrap();
    }
    let took = converge(&[a.as_path(), b.as_path()], Duration::from_secs(60), |files| {
        files.get("film.bin") == Some(&edited)
    });
    eprintln!("the edited version arrived {took:.1?} after the edit");
}

#[test]
fn a_file_being_written_is_shared_only_once_it_is_still() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (_tracker, addr) = start_tracker(tmp.path());
    let (key, _) = new_share();
    let _writer_side = start_sync(tmp.path(), "a", &key, &addr);
    let reader_side = start_sync(tmp.path(), "b", &key, &addr);

    // Appends every 150 ms for about 1.5 s: never still for the 500 ms --settle meanwhile.
    let path = a.join("growing.log");
    let mut whole = Vec::new();
    for i in 0..10 {
        let piece = content(10_000, i);
        whole.extend_from_slice(&piece);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, &piece).unwrap();
        drop(file);
        std::thread::sleep(Duration::from_millis(150));
    }
    let dirs = [a.as_path(), b.as_path()];
    converge(&dirs, Duration::from_secs(30), |files| {
        files.contains_key("growing.log")
    });
    assert_eq!(std::fs::read(b.join("growing.log")).unwrap(), whole);
    // b fetched it once, whole: no half-written version was ever shared.
    std::thread::sleep(Duration::from_secs(1));
    let fetched: Vec<String> = reader_side
        .lines
        .try_iter()
        .filter(|line| line.starts_with("fetched growing.log"))
        .collect();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
}

/// How many files `dir` holds (partial downloads and `.swarm/` left out).
fn count_files(dir: &Path) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path == dir.join(".swarm") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if !entry.file_name().to_string_lossy().ends_with(".swarm-part") {
                count += 1;
            }
        }
    }
    count
}

/// Two sync nodes converge on many tiny files: 25,000 by default (`SWARM_SYNC_FILES`), far
/// past a share page (5,000) and a catalogue page. The time is printed.
#[test]
fn two_sync_nodes_converge_on_thousands_of_files() {
    let count: usize = std::env::var("SWARM_SYNC_FILES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(25_000);
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for i in 0..count {
        write(
            a.join(format!("d{:03}/file-{i:06}.txt", i / 1000)),
            format!("file {i}\n").as_bytes(),
        );
    }
    std::fs::create_dir_all(&b).unwrap();
    let (_tracker, addr) = start_tracker(tmp.path());
    let (key, _) = new_share();
    let started = Instant::now();
    let _a = start_sync(tmp.path(), "a", &key, &addr);
    let _b = start_sync(tmp.path(), "b", &key, &addr);
    let limit = Duration::from_secs(900);
    loop {
        let have = count_files(&b);
        if have == count {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "b has {have} of {count} files after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let took = started.elapsed();
    eprintln!(
        "two sync nodes converged on {count} files in {took:.2?} ({:.0} files/s, hashing included)",
        count as f64 / took.as_secs_f64()
    );
    assert_eq!(snapshot(&a), snapshot(&b));
}

/// What the two writers of [`only_the_share_key_changes_a_share`] hold, for comparison.
fn writers_hold(dirs: &[&Path], expected: &BTreeMap<String, Vec<u8>>) -> bool {
    dirs.iter().all(|dir| snapshot(dir) == *expected)
}

/// Nobody without the read-write key changes the writers' folders: not a node syncing with
/// the read-only key (an outsider who learnt the share is no different), whose edit, new file
/// and deletion stay on its own disk; not a client sending the tracker changes signed by
/// another key, a delete-all stamped far in the future, or replays of changes the share's
/// key did sign (an old version, an old deletion). Even the share's key cannot stamp a
/// change far in the future.
#[test]
fn only_the_share_key_changes_a_share() {
    use swarm_engine::{TrackerClient, Trackers};
    use swarm_proto::access::Access;
    use swarm_proto::share::{ShareChange, ShareState};
    use swarm_proto::share_key::{ShareTicket, WriteKey};

    let tmp = tempfile::tempdir().unwrap();
    let (a, b, reader) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("reader"));
    let now = SystemTime::now();
    write(a.join("plan.txt"), b"the plan, version 1\n");
    set_modified(&a.join("plan.txt"), now - Duration::from_secs(600));
    write(a.join("gone.txt"), b"deleted soon\n");
    write(b.join("budget.txt"), b"budget\n");
    let (_tracker, addr) = start_tracker(tmp.path());
    let (rw, ro) = new_share();
    let _a = start_sync(tmp.path(), "a", &rw, &addr);
    let _b = start_sync(tmp.path(), "b", &rw, &addr);
    let writers = [a.as_path(), b.as_path()];
    converge(&writers, Duration::from_secs(30), |files| files.len() == 3);

    // A writer edits plan.txt and deletes gone.txt: version 2, and a tombstone.
    std::fs::write(a.join("plan.txt"), b"the plan, version 2\n").unwrap();
    std::fs::remove_file(a.join("gone.txt")).unwrap();
    converge(&writers, Duration::from_secs(30), |files| {
        files["plan.txt"] == b"the plan, version 2\n" && !files.contains_key("gone.txt")
    });
    let expected = snapshot(&a);
    // The reader's copy of plan.txt is newer than the writers': it would win in a share that
    // trusted whoever knows its name.
    write(reader.join("plan.txt"), b"the reader's plan, newer\n");

    // The read-only member: its newer plan.txt stays local, budget.txt comes, and its
    // deletion of budget.txt stays local too.
    let reader_node = start_sync(tmp.path(), "reader", &ro, &addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reader.join("budget.txt").exists() {
        assert!(Instant::now() < deadline, "the read-only member never got budget.txt");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_file(reader.join("budget.txt")).unwrap();
    write(reader.join("extra.txt"), b"the reader's own file\n");
    let said: Vec<String> = {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut said = Vec::new();
        while said.len() < 3 && Instant::now() < deadline {
            if let Ok(line) = reader_node.lines.recv_timeout(Duration::from_millis(200)) {
                if line.starts_with("local ") {
                    said.push(line);
                }
            }
        }
        said
    };
    assert_eq!(said.len(), 3, "the read-only node says what stays local: {said:?}");

    // Crafted updates, sent straight to the tracker by a registered client.
    let share = ro.parse::<ShareTicket>().unwrap().key.id();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = TrackerClient::ephemeral(addr.parse::<Trackers>().unwrap(), None, Access::Open).unwrap();
        client.register(None, Vec::new()).await.unwrap();
        let page = client.share_changes(&share, 0).await.unwrap();
        let plan = page.entries.iter().find(|e| e.name == "plan.txt").unwrap().clone();
        let ShareState::Present { file: plan_id, .. } = plan.state else {
            panic!("plan.txt is listed: {plan:?}")
        };
        let outsider = WriteKey::generate();
        let delete_all: Vec<_> = page
            .entries
            .iter()
            .filter_map(|e| match e.state {
                ShareState::Present { file, .. } => Some(ShareChange::Delete {
                    name: e.name.clone(),
                    was: file,
                    deleted_ns: u64::MAX,
                }),
                ShareState::Deleted { .. } => None,
            })
            .collect();
        assert_eq!(delete_all.len(), 2);
        let forged: Vec<_> = delete_all.iter().cloned().map(|c| outsider.sign(c)).collect();
        let refused = client.share_update(&share, forged).await.unwrap_err().to_string();
        assert!(refused.contains("not signed by the key"), "{refused}");
        // The share's own signature moved onto another change.
        let mut moved = plan.signed();
        moved.change = ShareChange::Delete {
            name: "plan.txt".into(),
            was: plan_id,
            deleted_ns: u64::MAX / 2,
        };
        assert!(client.share_update(&share, vec![moved]).await.is_err());
        // A writer's own change stamped far in the future (a tombstone that would win for
        // ever): refused too.
        let writer = rw.parse::<ShareTicket>().unwrap().key.writer().unwrap().clone();
        let future = writer.sign(ShareChange::Delete {
            name: "plan.txt".into(),
            was: plan_id,
            deleted_ns: u64::MAX,
        });
        let refused = client.share_update(&share, vec![future]).await.unwrap_err().to_string();
        assert!(refused.contains("future"), "{refused}");
        // Replays of what the share's key signed: every entry the tracker ever listed.
        let replays: Vec<_> = page.entries.iter().map(|e| e.signed()).collect();
        client.share_update(&share, replays).await.unwrap();
        let after = client.share_changes(&share, 0).await.unwrap();
        assert_eq!(after.version, page.version, "replays changed nothing at the tracker");
    });

    // Time for anything wrong to spread, then: the writers' folders are as they were, and
    // nothing of theirs was put away.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        writers_hold(&writers, &expected),
        "a writer's folder changed:\n{:#?}",
        writers
            .iter()
            .map(|d| snapshot(d).into_keys().collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    for dir in writers {
        let kept = kept_versions(dir);
        assert!(
            kept.iter()
                .all(|k| k == b"the plan, version 1\n" || k == b"deleted soon\n"),
            "only the writers' own changes put files away in {}",
            dir.display()
        );
    }
    let mine = snapshot(&reader);
    assert_eq!(
        mine["plan.txt"], b"the reader's plan, newer\n",
        "the reader keeps its edit"
    );
    assert!(!mine.contains_key("budget.txt"), "the reader's deletion stays");
}
