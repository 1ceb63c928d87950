//! Crash safety of the real binary: `swarm fetch` killed with SIGKILL at random moments resumes
//! without fetching a verified chunk twice, and never shows a partial file under the final
//! name; a disk that fills up stops a fetch without losing its verified chunks; `--preallocate`
//! reserves the space up front.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use crate::common::*;

const CHUNK: usize = 64 * 1024;

/// A small xorshift generator seeded from the clock; the seed is printed so a failing run can
/// be replayed by hand.
struct Random(u64);

impl Random {
    fn from_clock() -> Random {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        println!("random seed {seed}");
        Random(seed)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(low + self.0 % (high - low))
    }
}

fn partial_path(out: &Path, name: &str) -> PathBuf {
    out.join(format!(".{name}.swarm-part"))
}

#[test]
fn a_fetch_killed_at_random_moments_resumes_without_fetching_a_chunk_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    // 384 chunks of 64 KiB served at 8 MB/s: about 3 s of fetching in all.
    let chunks = 384;
    let data = content(chunks * CHUNK, 9);
    write(share.join("big.bin"), &data);
    let (_tracker, addr) = start_tracker(tmp.path());
    let seed_args = ["--tracker", addr.as_str(), "--max-upload-rate", "8MB/s"];
    let (_seeder, seeded, _) = start_seeder(tmp.path(), "seeder", &share, &seed_args, 1);
    let id = seeded[0].0.clone();
    let (out, state) = (tmp.path().join("out"), tmp.path().join("fetcher"));
    let final_path = out.join("big.bin");

    let mut random = Random::from_clock();
    let mut before_last = Vec::new();
    // Per killed run: (chunks found on disk at its start, chunks it wrote).
    let mut resumed_at_start = Vec::new();
    for attempt in 0..4 {
        let log = tmp.path().join(format!("killed-{attempt}.log"));
        let mut child: Child = fetch_command(&id, &addr, &out, &state, &log, &[]).spawn().unwrap();
        if attempt == 0 {
            // While it runs, `swarm status` asks the running node and sees the download move.
            wait_for_text(&log, "chunk written", Duration::from_secs(30));
            let status = json(&run(&["status", "--state", s(&state), "--json"]));
            let row = &status["files"][0];
            assert_eq!(row["name"], "big.bin", "{status}");
            assert_eq!(row["state"], "downloading", "{status}");
            assert_eq!(status["running"], true, "{status}");
            let held = row["bytes_held"].as_u64().unwrap();
            assert!(held > 0 && held < data.len() as u64, "{status}");
        }
        std::thread::sleep(random.millis(300, 900));
        assert!(
            child.try_wait().unwrap().is_none(),
            "run {attempt} finished before it was killed"
        );
        child.kill().unwrap(); // SIGKILL: no chance to clean up or save anything
        child.wait().unwrap();
        assert!(!final_path.exists(), "a partial file appeared under the final name");
        let written = chunks_written(&log);
        if !written.is_empty() {
            assert!(partial_path(&out, "big.bin").exists());
        }
        println!("killed run {attempt}: {} chunks written", written.len());
        resumed_at_start.push((resumed_from_log(&log), written.len()));
        before_last.extend(written);
    }
    assert!(!before_last.is_empty(), "the killed runs made progress");
    // No node runs now: `swarm status` reads the saved state and shows the paused download.
    let status = json(&run(&["status", "--state", s(&state), "--json"]));
    assert_eq!(status["running"], false, "{status}");
    let status = &status["files"];
    assert_eq!(status[0]["name"], "big.bin", "{status}");
    assert_eq!(status[0]["state"], "paused");
    assert_eq!(status[0]["chunk_count"], chunks);

    let log = tmp.path().join("last.log");
    let last = fetch_command(&id, &addr, &out, &state, &log, &[]).output().unwrap();
    let report = json(&last);
    resumed_at_start.push((resumed_from_log(&log), 0));
    assert_eq!(std::fs::read(&final_path).unwrap(), data);
    assert!(!partial_path(&out, "big.bin").exists());

    // Counting what was received: no chunk twice, over all five runs.
    let fetched_last = chunks_written(&log);
    let all: Vec<u32> = before_last.iter().chain(&fetched_last).copied().collect();
    let distinct: HashSet<u32> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a verified chunk was fetched a second time");
    // Every chunk a killed run wrote was found again by the next run.
    for pair in resumed_at_start.windows(2) {
        assert!(
            pair[1].0 >= pair[0].0 + pair[0].1,
            "verified chunks were lost: {resumed_at_start:?}"
        );
    }
    let resumed = report["resumed_chunks"].as_u64().unwrap() as usize;
    assert!(resumed >= before_last.len());
    let received_last = report["received_bytes"].as_u64().unwrap() as usize;
    assert_eq!(received_last, fetched_last.len() * CHUNK);
    assert_eq!(
        received_last,
        data.len() - resumed * CHUNK,
        "the last run fetched only what was missing"
    );
    println!(
        "resumed {resumed} chunks, fetched {} in the last run; {} bytes received in all for a {} byte file",
        fetched_last.len(),
        all.len() * CHUNK + (resumed - before_last.len()) * CHUNK,
        data.len()
    );
}

/// How many verified chunks a run found on disk when it started (0 if it logged nothing).
fn resumed_from_log(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|line| line.contains("resuming with"))
        .find_map(|line| line.split_whitespace().find_map(|w| w.strip_prefix("chunks=")))
        .map_or(0, |n| n.parse().unwrap())
}

/// A tmpfs of a fixed size mounted for one test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts it, or returns None when not running as root (CI runs as root).
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", s(dir)])
            .status()
            .unwrap();
        if mounted.success() {
            return Some(SmallDisk(dir.to_owned()));
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let root = status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        assert!(!root, "mounting a tmpfs failed although running as root");
        None
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Writes to `path` until the disk is full.
fn fill_disk(path: &Path) {
    use std::io::Write;
    let mut file = File::create(path).unwrap();
    let block = vec![7u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.flush();
}

/// Waits until `path` has at least `bytes` allocated on disk.
fn wait_allocated(path: &Path, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0) < bytes {
        assert!(
            Instant::now() < deadline,
            "{} never reached {bytes} bytes",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_full_disk_stops_a_fetch_without_losing_chunks_and_preallocate_reserves_space() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&tmp.path().join("small"), "8m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let small = disk.0.clone();
    let share = tmp.path().join("share");
    let data = content(96 * CHUNK, 4); // 6 MiB
    write(share.join("data.bin"), &data);
    let (_tracker, addr) = start_tracker(tmp.path());
    let seed_args = ["--tracker", addr.as_str(), "--max-upload-rate", "4MB/s"];
    let (_seeder, seeded, _) = start_seeder(tmp.path(), "seeder", &share, &seed_args, 1);
    let id = seeded[0].0.clone();
    let state = tmp.path().join("fetcher");
    let (final_path, partial) = (small.join("data.bin"), partial_path(&small, "data.bin"));
    let filler = small.join("filler");
    let log = tmp.path().join("fetch.log");
    let stderr = |log: &Path| std::fs::read_to_string(log).unwrap();

    // 1. Too little room from the start: refused at once, naming the path and the space needed.
    std::fs::write(&filler, vec![0u8; 4 << 20]).unwrap();
    let refused = fetch_command(&id, &addr, &small, &state, &log, &[]).output().unwrap();
    assert_eq!(refused.status.code(), Some(5), "{}", stderr(&log));
    let message = stderr(&log);
    assert!(
        message.contains("not enough space for")
            && message.contains(s(&partial))
            && message.contains("6.0 MiB more needed"),
        "{message}"
    );
    assert!(!final_path.exists() && !partial.exists(), "nothing left behind");

    // 2. The disk fills up during the fetch: it stops, keeps what it verified, and completes
    //    once space is freed.
    std::fs::remove_file(&filler).unwrap();
    let child = fetch_command(&id, &addr, &small, &state, &log, &[]).spawn().unwrap();
    wait_allocated(&partial, 1 << 20);
    fill_disk(&filler);
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(stopped.status.code(), Some(5), "{}", stderr(&log));
    let message = stderr(&log);
    assert!(
        message.contains("not enough space for") && message.contains(s(&partial)),
        "{message}"
    );
    assert!(partial.exists() && !final_path.exists());
    let kept = chunks_written(&log).len();
    std::fs::remove_file(&filler).unwrap();
    let resumed = fetch_command(&id, &addr, &small, &state, &log, &[]).output().unwrap();
    let report = json(&resumed);
    assert_eq!(report["resumed_chunks"].as_u64().unwrap() as usize, kept);
    assert!(kept > 0);
    assert_eq!(std::fs::read(&final_path).unwrap(), data);

    // 3. --preallocate reserves the whole file first: filling the disk right after the start
    //    does not stop it.
    std::fs::remove_file(&final_path).unwrap();
    let child = fetch_command(&id, &addr, &small, &state, &log, &["--preallocate"])
        .spawn()
        .unwrap();
    wait_allocated(&partial, data.len() as u64);
    fill_disk(&filler);
    let done = child.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", stderr(&log));
    assert_eq!(std::fs::read(&final_path).unwrap(), data);
}
