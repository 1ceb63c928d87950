//! One bad file does not break sharing: beside 100 readable files, an unreadable file, an
//! unreadable folder and a symbolic link are left out and named once; the 100 are shared, by
//! `seed` and by a running `sync`. The binary runs as an unprivileged user (root reads
//! everything), through `setpriv`.

use crate::common::*;

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// `swarm ARGS` as uid/gid 65534 when the tests run as root, else as is.
fn unprivileged(tmp: &Path, args: &[&str], log: &Path) -> Proc {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let mut command = if root {
        install_if_missing("setpriv", "util-linux");
        // The binary and everything it touches must be reachable by that user.
        let bin = tmp.join("swarm");
        std::fs::copy(BIN, &bin).unwrap();
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin);
        command
    } else {
        Command::new(BIN)
    };
    command
        .args(args)
        .env("SWARM_LOG", "warn")
        .stderr(File::create(log).unwrap());
    Proc::start(command)
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn unreadable_files_are_named_once_and_the_rest_is_shared() {
    let tmp = tempfile::tempdir().unwrap();
    set_mode(tmp.path(), 0o777);
    let share = tmp.path().join("share");
    for i in 0..100 {
        write(share.join(format!("ok/{i:03}.txt")), format!("file {i}").as_bytes());
    }
    write(share.join("secret.bin"), b"nobody may read this");
    write(share.join("locked/inside.txt"), b"nor this");
    std::os::unix::fs::symlink(share.join("ok/000.txt"), share.join("link.txt")).unwrap();
    for dir in ["", "ok"] {
        set_mode(&share.join(dir), 0o777);
    }
    for i in 0..100 {
        set_mode(&share.join(format!("ok/{i:03}.txt")), 0o644);
    }
    set_mode(&share.join("secret.bin"), 0o000);
    set_mode(&share.join("locked"), 0o000);

    let log = tmp.path().join("seed.log");
    let state = tmp.path().join("seeder");
    let args = [
        "seed",
        s(&share),
        "--json",
        "--state",
        s(&state),
        "--listen",
        "127.0.0.1:0",
    ];
    let seeder = unprivileged(
        tmp.path(),
        &[&args[..], &["--tracker-listen", "127.0.0.1:0"]].concat(),
        &log,
    );
    let mut text = String::new();
    loop {
        let line = seeder.line();
        text.push_str(&line);
        if line == "}" {
            break;
        }
    }
    let shared: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shared["files"].as_array().unwrap().len(), 100, "{shared}");
    assert_eq!(shared["collection"]["files"], 100);
    drop(seeder);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("3 path(s) cannot be shared"), "{stderr}");
    for (name, why) in [
        ("secret.bin", "permission denied"),
        ("locked", "permission denied"),
        ("link.txt", "symbolic link"),
    ] {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
        assert_eq!(lines.len(), 1, "{name} named once: {stderr}");
        assert!(lines[0].contains(why), "{stderr}");
    }
    assert!(!stderr.contains("os error"), "no repeated OS text: {stderr}");

    // A running sync names each once, however often it rescans, and shares the rest.
    let log = tmp.path().join("sync.log");
    let sync_state = tmp.path().join("syncer");
    let args = [
        "sync",
        s(&share),
        "--json",
        "--state",
        s(&sync_state),
        "--listen",
        "127.0.0.1:0",
        "--tracker-listen",
        "127.0.0.1:0",
        "--rescan",
        "1s",
    ];
    let syncer = unprivileged(tmp.path(), &args, &log);
    let mut skipped = Vec::new();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while std::time::Instant::now() < until {
        if let Ok(line) = syncer.lines.recv_timeout(std::time::Duration::from_millis(200)) {
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            if event["event"] == "skipped" {
                skipped.push(event["path"].as_str().unwrap().rsplit('/').next().unwrap().to_owned());
            }
        }
    }
    skipped.sort();
    assert_eq!(skipped, ["link.txt", "locked", "secret.bin"]);
    let status = json(&run(&["status", "--state", s(&sync_state), "--json"]));
    assert_eq!(status["files"].as_array().unwrap().len(), 100, "{status}");
    // The running node lists what it skips, and why.
    let listed: Vec<(String, String)> = status["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["path"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
            (name, s["why"].as_str().unwrap().to_owned())
        })
        .collect();
    let names: Vec<&str> = listed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["link.txt", "locked", "secret.bin"], "{status}");
    assert!(listed[1].1.contains("permission denied"), "{status}");
    drop(syncer);
}
