//! What scripts rely on, through the real binary: `fetch --json --progress` prints progress
//! as JSON lines and the result as the last; errors come as JSON on stdout under `--json`;
//! `--quiet` leaves stderr empty on success; Ctrl-C exits 130 and the fetch resumes.

use crate::common::*;

use std::process::{Command, Stdio};

/// A tracker and a seeder of one file of `len` bytes, capped at `rate`.
fn slow_swarm(tmp: &std::path::Path, len: usize, rate: &str) -> (Proc, Proc, String, String) {
    let share = tmp.join("share");
    write(share.join("video.bin"), &content(len, 9));
    let (tracker, addr) = start_tracker(tmp);
    let (seeder, seeded, _) = start_seeder(
        tmp,
        "seeder",
        &share,
        &["--tracker", &addr, "--max-upload-rate", rate],
        1,
    );
    let id = seeded[0].0.clone();
    (tracker, seeder, addr, id)
}

#[test]
fn json_progress_lines_then_the_result_and_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (_tracker, _seeder, addr, id) = slow_swarm(tmp.path(), 1_500_000, "500KB/s");
    let out = tmp.path().join("out");
    let state = tmp.path().join("fetcher");
    let fetched = run(&[
        "fetch",
        &id,
        "--tracker",
        &addr,
        "-o",
        s(&out),
        "--state",
        s(&state),
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--progress",
        "--quiet",
    ]);
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    assert!(
        fetched.stderr.is_empty(),
        "--quiet: {}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(fetched.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let (last, progress) = lines.split_last().unwrap();
    assert_eq!(last["event"], "done");
    assert_eq!(last["size"], 1_500_000);
    assert!(!progress.is_empty(), "a 3 s fetch reports progress");
    assert!(progress
        .iter()
        .all(|p| p["event"] == "progress" && p["total"] == 1_500_000));
    let done: Vec<u64> = progress.iter().map(|p| p["done"].as_u64().unwrap()).collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");

    // An error under --json is JSON on stdout too, with the exit code.
    let missing = run(&["fetch", "00000000", "--tracker", &addr, "--state", s(&state), "--json"]);
    assert_eq!(missing.status.code(), Some(3));
    let error: serde_json::Value = serde_json::from_slice(&missing.stdout).unwrap();
    assert_eq!(error["error"]["exit_code"], 3, "{error}");
    assert!(
        error["error"]["message"].as_str().unwrap().contains("00000000"),
        "{error}"
    );
    // --progress only goes with --json: a usage error.
    assert_eq!(run(&["fetch", &id, "--progress"]).status.code(), Some(2));
}

#[test]
fn ctrl_c_exits_130_and_the_same_command_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_tracker, _seeder, addr, id) = slow_swarm(tmp.path(), 3_000_000, "600KB/s");
    let out = tmp.path().join("out");
    let state = tmp.path().join("fetcher");
    let args = [
        "fetch",
        &id,
        "--tracker",
        &addr,
        "-o",
        s(&out),
        "--state",
        s(&state),
        "--listen",
        "127.0.0.1:0",
    ];
    let child = Command::new(BIN)
        .args(args)
        .env("SWARM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    signal(child.id(), "INT");
    let interrupted = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&interrupted.stderr);
    assert_eq!(interrupted.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("run the same command again to resume"), "{stderr}");
    assert!(!out.join("video.bin").exists());
    let resumed = run(&[&args[..], &["--json"]].concat());
    let report = json(&resumed);
    assert!(report["resumed_chunks"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(std::fs::read(out.join("video.bin")).unwrap(), content(3_000_000, 9));
}

/// Two fetches of one file into one folder at once (two scripts, two state directories): the
/// second is told another fetch is writing it, and after the first the same command finds the
/// file complete.
#[test]
fn a_second_fetch_into_the_same_folder_is_told_another_is_writing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (_tracker, _seeder, addr, id) = slow_swarm(tmp.path(), 1_500_000, "500KB/s");
    let out = tmp.path().join("out");
    let fetch = |state: &str| {
        let state = tmp.path().join(state);
        vec![
            "fetch".to_owned(),
            id.clone(),
            "--tracker".into(),
            addr.clone(),
            "-o".into(),
            s(&out).into(),
            "--state".into(),
            s(&state).into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ]
    };
    let first = Command::new(BIN)
        .args(fetch("first"))
        .env("SWARM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let partial = out.join(".video.bin.swarm-part");
    wait_until("the first fetch's partial file", || partial.exists());
    let second_args = fetch("second");
    let second_args: Vec<&str> = second_args.iter().map(String::as_str).collect();
    let second = run(&second_args);
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(5), "{said}");
    assert!(
        said.contains("another swarm fetch") && !said.contains("No such file"),
        "{said}"
    );

    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let again = run(&second_args);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already complete"));
}
