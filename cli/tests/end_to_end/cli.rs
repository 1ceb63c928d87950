//! Black-box tests of the real `swarm` binary on loopback: tracker, seed, ls, search, peers,
//! fetch, `--json`, exit codes, the in-process tracker, and graceful leave.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::*;

#[test]
fn tracker_seed_ls_search_peers_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    let movie = content(20 * 65536 + 77, 3);
    write(share.join("films/movie.bin"), &movie);
    write(share.join("notes.txt"), b"swarm notes");
    let (tracker, addr) = start_tracker(tmp.path());
    let (seeder, seeded, commands) = start_seeder(tmp.path(), "seeder", &share, &["--tracker", &addr], 2);
    let ticket = printed_ticket(&commands[0]);
    assert_eq!(ticket.file.to_string(), seeded[0].0);
    let named: Vec<String> = ticket
        .trackers
        .iter()
        .map(|t| format!("{}@{}", t.id.unwrap(), t.host_port))
        .collect();
    assert_eq!(named, vec![addr.clone()]);

    let listed = json(&run(&[
        "ls",
        "--tracker",
        &addr,
        "--state",
        s(&tmp.path().join("q")),
        "--json",
    ]));
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    // The folder's collection is listed beside its files.
    assert_eq!(names, vec!["films/movie.bin", "notes.txt", "share.swarm-collection"]);
    assert_eq!(listed[0]["holders"], 1);
    assert_eq!(listed[0]["size"], movie.len());

    // A reader that stops reading early is no error: no panic, exit 0, nothing on stderr.
    for reader in ["head -n 1", "true"] {
        let piped = std::process::Command::new("bash")
            .args([
                "-c",
                &format!("set -o pipefail; '{BIN}' ls --tracker {addr} | {reader}"),
            ])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&piped.stderr);
        assert_eq!(piped.status.code(), Some(0), "swarm ls | {reader}: {said}");
        assert!(said.is_empty(), "swarm ls | {reader}: {said}");
    }

    let table = run(&["ls", "--tracker", &addr]);
    assert!(table.status.success());
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("films/movie.bin") && table.contains("HOLDERS"),
        "{table}"
    );

    let found = json(&run(&["search", "MOVIE", "--tracker", &addr, "--json"]));
    assert_eq!(found.as_array().unwrap().len(), 1);
    let movie_id = found[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        run(&["search", "nothing-like-this", "--tracker", &addr]).status.code(),
        Some(3)
    );

    let holders = json(&run(&["peers", &movie_id[..10], "--tracker", &addr, "--json"]));
    assert_eq!(holders.as_array().unwrap().len(), 1);
    assert_eq!(holders[0]["complete"], true);

    // Fetch by a 12-digit prefix.
    let out = tmp.path().join("out");
    let fetched = run(&[
        "fetch",
        &movie_id[..12],
        "--tracker",
        &addr,
        "-o",
        s(&out),
        "--state",
        s(&tmp.path().join("fetcher")),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    assert_eq!(std::fs::read(out.join("films/movie.bin")).unwrap(), movie);
    assert!(String::from_utf8_lossy(&fetched.stdout).contains("verified"));

    // Unknown ids exit with "not found"; a bad prefix too.
    let missing = run(&[
        "fetch",
        "0000000000",
        "--tracker",
        &addr,
        "-o",
        s(&out),
        "--state",
        s(&tmp.path().join("f2")),
    ]);
    assert_eq!(
        missing.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has an id starting with"));

    // `swarm status` asks the running seeder (its sled state is locked by it).
    let status = json(&run(&["status", "--state", s(&tmp.path().join("seeder")), "--json"]));
    assert_eq!(status["running"], true, "{status}");
    let rows = status["files"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "two files and the folder's collection: {status}");
    assert!(rows.iter().all(|r| r["state"] == "seeding"), "{status}");
    assert_eq!(rows[0]["bytes_held"], movie.len());
    // The fetch a moment ago is among its uploads (the tracker's spot check may be too).
    let uploads = status["uploads"].as_array().unwrap();
    assert!(
        uploads.iter().any(|u| u["bytes"] == movie.len()
            && u["name"] == "films/movie.bin"
            && u["bytes_per_second"].as_u64() > Some(0)),
        "{status}"
    );
    let table = String::from_utf8(run(&["status", "--state", s(&tmp.path().join("seeder"))]).stdout).unwrap();
    assert!(table.contains("node running at") && table.contains("100.0%"), "{table}");
    assert!(
        table.contains("UPLOADS") && table.contains("films/movie.bin"),
        "{table}"
    );

    // A graceful exit tells the tracker at once.
    assert!(seeder.terminate().success());
    let after = json(&run(&["ls", "--tracker", &addr, "--json"]));
    assert_eq!(after[0]["holders"], 0, "the seeder left: {after}");
    assert!(tracker.terminate().success());
}

/// A second `swarm seed` on the machine, its tracker port taken by the first one's tracker,
/// joins that tracker (and says so) instead of starting a separate swarm: a fetch through
/// either seeder's printed ticket finds both seeders' files.
#[test]
fn a_second_seed_on_the_machine_joins_the_running_tracker() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_ports(1).remove(0);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    write(one.join("first.bin"), &content(70_000, 1));
    write(two.join("second.bin"), &content(80_000, 2));
    let listen = ["--tracker-listen", port.as_str()];
    let (_first, seeded_one, commands_one) = start_seeder(tmp.path(), "first", &one, &listen, 1);
    let log = tmp.path().join("second.log");
    let (_second, seeded_two, commands_two) = start_seeder_logged(tmp.path(), "second", &two, &listen, 1, Some(&log));
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("already runs on this machine") && said.contains("joining it"),
        "{said}"
    );
    let (ticket_one, ticket_two) = (printed_ticket(&commands_one[0]), printed_ticket(&commands_two[0]));
    assert_eq!(ticket_one.trackers, ticket_two.trackers, "one swarm, one tracker");
    let listed = run(&[
        "ls",
        "--tracker",
        &port,
        "--json",
        "--state",
        s(&tmp.path().join("asker")),
    ]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&seeded_one[0].0) && listed.contains(&seeded_two[0].0),
        "{listed}"
    );
}

#[test]
fn seed_alone_starts_its_own_tracker() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    let data = content(3 * 65536 + 1, 5);
    write(share.join("data.bin"), &data);
    let (seeder, seeded, commands) =
        start_seeder(tmp.path(), "seeder", &share, &["--tracker-listen", "127.0.0.1:0"], 1);
    // The printed command is the whole recipe: run it as printed, plus an output directory.
    let words: Vec<&str> = commands[0].split_whitespace().collect();
    assert_eq!(printed_ticket(&commands[0]).file.to_string(), seeded[0].0);
    let out = tmp.path().join("out");
    let mut args: Vec<&str> = words[1..].to_vec();
    let state = tmp.path().join("fetcher");
    args.extend(["-o", s(&out), "--state", s(&state), "--listen", "127.0.0.1:0"]);
    let fetched = run(&args);
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), data);

    // Fetching again finds the file complete; different content is not overwritten.
    let again = run(&args);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already complete"));
    std::fs::write(out.join("data.bin"), b"something else").unwrap();
    let refused = run(&args);
    assert_eq!(
        refused.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    args.push("--force");
    assert!(run(&args).status.success());
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), data);
    drop(seeder);
}

#[test]
fn the_printed_fetch_works_beside_a_seed_on_the_default_state() {
    // Both on the default state directory, as a new user runs them in two terminals.
    let tmp = tempfile::tempdir().unwrap();
    let data_home = tmp.path().join("data");
    let share = tmp.path().join("share");
    write(share.join("notes.txt"), b"the same machine");
    let seed_on_the_default_state = || {
        let mut seed = std::process::Command::new(BIN);
        seed.args([
            "seed",
            s(&share),
            "--tracker-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("XDG_DATA_HOME", &data_home)
        .env("SWARM_LOG", "warn");
        Proc::start(seed)
    };
    let seeder = seed_on_the_default_state();
    let _ = seeder.line();
    let printed = seeder.line();
    let words: Vec<&str> = printed.split_whitespace().collect();
    let out = tmp.path().join("out");
    let fetched = std::process::Command::new(BIN)
        .args(&words[1..])
        .args(["-o", s(&out), "--listen", "127.0.0.1:0"])
        .env_remove("SWARM_TRACKER")
        .env("XDG_DATA_HOME", &data_home)
        .env("SWARM_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&fetched.stderr);
    assert!(fetched.status.success(), "{stderr}");
    assert_eq!(std::fs::read(out.join("share/notes.txt")).unwrap(), b"the same machine");
    assert!(stderr.contains("is in use") && stderr.contains("node-2"), "{stderr}");
    // Queries need no --tracker: the last one used is remembered, and names work where ids do.
    let bare = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .env_remove("SWARM_TRACKER")
            .env("XDG_DATA_HOME", &data_home)
            .env("SWARM_LOG", "warn")
            .output()
            .unwrap()
    };
    let listed = json(&bare(&["ls", "--json"]));
    assert_eq!(
        listed.as_array().unwrap().len(),
        2,
        "notes.txt and the folder's collection: {listed}"
    );
    let holders = json(&bare(&["peers", "notes.txt", "--json"]));
    assert_eq!(
        holders.as_array().unwrap().len(),
        1,
        "the seeder (the fetcher left): {holders}"
    );
    let by_name = tmp.path().join("by-name");
    let fetched = bare(&["fetch", "share", "-o", s(&by_name), "--listen", "127.0.0.1:0"]);
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    assert_eq!(
        std::fs::read(by_name.join("share/notes.txt")).unwrap(),
        b"the same machine"
    );
    let unknown = bare(&["peers", "no-such-name", "--json"]);
    assert_eq!(
        unknown.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    // A state directory named with --state is never swapped for another.
    let state = data_home.join("swarm/node");
    let refused = run(&[&words[1..], &["-o", s(&out), "--state", s(&state)]].concat());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("in use by another swarm process") && stderr.contains("--state"),
        "{stderr}"
    );
    // A second node on the machine keeps its state in node-2; `swarm status` shows both.
    let second = seed_on_the_default_state();
    let _ = second.line();
    let shown = bare(&["status"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(shown.matches("node running at").count(), 2, "{shown}");
    assert!(shown.contains("node-2"), "{shown}");
    let shown = json(&bare(&["status", "--json"]));
    assert_eq!(shown["other_nodes"].as_array().map(Vec::len), Some(1), "{shown}");
    drop(second);
}

#[test]
fn usage_errors_and_help() {
    let help = run(&["--help"]);
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(
        text.contains("Exit codes") && text.contains("integrity failure"),
        "{text}"
    );
    assert_eq!(run(&["fetch"]).status.code(), Some(2));
    // No tracker and no ticket; a ticket cut short: usage errors that say what to do.
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let untracked = run(&["fetch", "9a3c41d2", "--state", s(&state)]);
    assert_eq!(untracked.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&untracked.stderr).contains("--tracker HOST:PORT, or fetch by the ticket"));
    let cut = run(&["fetch", "swarm1aebagbafaydqqcik", "--state", s(&state)]);
    assert_eq!(cut.status.code(), Some(2), "{}", String::from_utf8_lossy(&cut.stderr));
    assert!(String::from_utf8_lossy(&cut.stderr).contains("ticket is damaged"));
    assert_eq!(run(&["ls", "--tracker", "no-port"]).status.code(), Some(2));
    let missing = run(&["seed", "/definitely/not/here", "--tracker", "127.0.0.1:9"]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    // Queries without --tracker on a state that never used one: a usage error.
    let untracked = run(&["ls", "--state", s(&state)]);
    assert_eq!(untracked.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&untracked.stderr).contains("none used before"));

    // Completions and the man page come from the same definitions.
    let bash = run(&["completions", "bash"]);
    let script = String::from_utf8(bash.stdout).unwrap();
    assert!(
        bash.status.success() && script.contains("complete -F _swarm"),
        "{script}"
    );
    assert!(
        script.contains("--only") && script.contains("--tracker"),
        "flags are completed"
    );
    let man = String::from_utf8(run(&["man"]).stdout).unwrap();
    assert!(
        man.starts_with(".ie") || man.contains(".TH swarm"),
        "{}",
        &man[..200.min(man.len())]
    );
    let version = String::from_utf8(run(&["--version"]).stdout).unwrap();
    assert!(version.starts_with("swarm 0.") && version.contains('('), "{version}");
}

#[test]
fn demo_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = run(&[
        "demo",
        "--size",
        "8MiB",
        "--seeders",
        "3",
        "--chunk-size",
        "256KiB",
        "--dir",
        s(tmp.path()),
    ]);
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let text = String::from_utf8(demo.stdout).unwrap();
    assert!(text.contains("verified") && text.contains("MB/s"), "{text}");
    assert_eq!(
        std::fs::read(tmp.path().join("fetched/demo.bin")).unwrap(),
        std::fs::read(tmp.path().join("share/demo.bin")).unwrap()
    );
}

#[test]
fn an_interrupted_demo_exits_130_and_leaves_no_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(BIN)
        .args(["demo", "--size", "4GiB"])
        .env("TMPDIR", tmp.path())
        .env("SWARM_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the data is being written, then Ctrl-C.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_dir(tmp.path()).unwrap().next().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A tracker pinned with the wrong id will not change its mind: `swarm seed` stops at once
/// (no retrying), with exit code 4 and the id the tracker proved.
#[test]
fn a_wrongly_pinned_tracker_stops_seed_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    write(share.join("a.txt"), b"a");
    let (_tracker, addr) = start_tracker(tmp.path());
    let (real_id, host_port) = addr.split_once('@').unwrap();
    let wrong = format!("{}@{host_port}", "ab".repeat(32));
    let started = std::time::Instant::now();
    let output = run(&[
        "seed",
        s(&share),
        "--tracker",
        &wrong,
        "--state",
        s(&tmp.path().join("state")),
        "--listen",
        "127.0.0.1:0",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains(real_id), "the id the tracker proved is named: {stderr}");
    assert!(!stderr.contains("trying again"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "stopped at once"
    );
}

#[test]
fn a_folder_is_one_ticket_fetched_whole_or_in_part_and_a_file_is_seeded_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("holiday");
    let photo = content(5 * 65536 + 3, 7);
    write(share.join("day1/beach.jpg"), &photo);
    write(share.join("day2/hills.jpg"), &content(70_000, 8));
    write(share.join("notes.txt"), b"sunny");
    // Exactly as a new user runs it: no --each, one line for the folder and its command.
    let seeder = Proc::spawn(&[
        "seed",
        s(&share),
        "--state",
        s(&tmp.path().join("seeder")),
        "--listen",
        "127.0.0.1:0",
        "--tracker-listen",
        "127.0.0.1:0",
        "--chunk-size",
        "64KiB",
    ]);
    let folder = seeder.line();
    assert!(folder.ends_with("holiday/ (3 file(s))"), "{folder}");
    let printed = seeder.line();
    printed_ticket(&printed);
    let words: Vec<&str> = printed.split_whitespace().collect();
    let fetch = |out: &std::path::Path, state: &str, extra: &[&str]| {
        let mut args: Vec<&str> = words[1..].to_vec();
        args.extend(["-o", s(out), "--state"]);
        let state = tmp.path().join(state);
        args.push(s(&state));
        args.extend(["--listen", "127.0.0.1:0"]);
        args.extend_from_slice(extra);
        run(&args)
    };

    // A ticket works where an id does, naming its trackers.
    let holders = json(&run(&[
        "peers",
        words[2],
        "--json",
        "--state",
        s(&tmp.path().join("q")),
    ]));
    assert_eq!(holders.as_array().unwrap().len(), 1, "{holders}");

    // --list shows the files and fetches nothing.
    let out = tmp.path().join("out");
    let listed = json(&fetch(&out, "fetcher", &["--list", "--json"]));
    let paths: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["day1/beach.jpg", "day2/hills.jpg", "notes.txt"]);
    assert!(!out.exists());

    // --only: a pattern without `/` matches names at any depth.
    let some = fetch(&out, "fetcher", &["--only", "*.jpg", "--only", "day2/*"]);
    assert!(some.status.success(), "{}", String::from_utf8_lossy(&some.stderr));
    assert_eq!(std::fs::read(out.join("holiday/day1/beach.jpg")).unwrap(), photo);
    assert!(out.join("holiday/day2/hills.jpg").exists() && !out.join("holiday/notes.txt").exists());
    let none = fetch(&out, "fetcher", &["--only", "*.mp4"]);
    assert_eq!(none.status.code(), Some(3), "{}", String::from_utf8_lossy(&none.stderr));

    // The whole folder, on another state directory; the two files there are found complete.
    let whole = fetch(&out, "other", &["--json"]);
    let report = json(&whole);
    assert_eq!(report["files"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(std::fs::read(out.join("holiday/notes.txt")).unwrap(), b"sunny");
    let complete: Vec<bool> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["already_complete"].as_bool().unwrap())
        .collect();
    assert_eq!(complete, [true, true, false]);

    // --list and --only are for folders; a single file seeded alone says so.
    let single = Proc::spawn(&[
        "seed",
        s(&share.join("notes.txt")),
        "--state",
        s(&tmp.path().join("single")),
        "--listen",
        "127.0.0.1:0",
        "--tracker-listen",
        "127.0.0.1:0",
    ]);
    let line = single.line();
    assert!(line.ends_with("notes.txt"), "{line}");
    let command = single.line();
    let words: Vec<&str> = command.split_whitespace().collect();
    let single_out = tmp.path().join("single-out");
    let single_state = tmp.path().join("f3");
    let args = [
        &words[1..],
        &[
            "-o",
            s(&single_out),
            "--state",
            s(&single_state),
            "--listen",
            "127.0.0.1:0",
        ],
    ]
    .concat();
    let fetched = run(&args);
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    assert_eq!(std::fs::read(single_out.join("notes.txt")).unwrap(), b"sunny");
    let misuse = run(&[&args[..], &["--list"]].concat());
    assert_eq!(
        misuse.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&misuse.stderr)
    );
    assert!(String::from_utf8_lossy(&misuse.stderr).contains("single file"));
    drop((seeder, single));
}

/// A tracker that does not answer is said within seconds, not after the whole wait, and a
/// mistyped one is not remembered for later bare queries: the last tracker that answered is.
#[test]
fn a_silent_tracker_is_said_at_once_and_not_remembered() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("q");
    let (_tracker, addr) = start_tracker(tmp.path());
    let listed = run(&["ls", "--tracker", &addr, "--state", s(&state)]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));

    // A socket that takes datagrams and never answers, as a host whose firewall drops them.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let mut asking = Command::new(BIN)
        .args(["ls", "--tracker", &silent_addr, "--state", s(&state)])
        .env_remove("SWARM_TRACKER")
        .env_remove("SWARM_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(asking.stderr.take().unwrap()).lines();
    let first = said.next().unwrap().unwrap();
    println!("after {:.2?}: {first}", started.elapsed());
    assert!(
        first.contains(&format!(
            "no answer from the tracker at {silent_addr} yet; still trying"
        )),
        "{first}"
    );
    asking.kill().unwrap();
    asking.wait().unwrap();

    let again = run(&["ls", "--state", s(&state)]);
    assert!(
        again.status.success(),
        "the tracker that answered is asked: {}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// `swarm man DIR` writes a page for every subcommand, and every page swarm(1) refers to is
/// among them.
#[test]
fn man_pages_for_every_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let written = run(&["man", s(&dir)]);
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let main = std::fs::read_to_string(dir.join("swarm.1")).unwrap();
    let referred: Vec<&str> = main
        .split("swarm\\-")
        .skip(1)
        .filter_map(|rest| rest.split_once("(1)").map(|(name, _)| name))
        .collect();
    assert!(referred.len() >= 10, "{referred:?}");
    for name in referred {
        assert!(
            dir.join(format!("swarm-{name}.1")).exists(),
            "swarm-{name}(1) is referred to"
        );
    }
    let fetch = std::fs::read_to_string(dir.join("swarm-fetch.1")).unwrap();
    assert!(fetch.contains("\\-\\-only"), "the fetch page lists its flags");
}

/// `swarm doctor TICKET`: the tracker, the holder, UDP buffers, the disk and the CPU, each on a
/// line; with the holder gone, a failed check and exit status 1.
#[test]
fn doctor_says_what_is_reachable_and_what_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    write(share.join("data.bin"), &content(200_000, 4));
    let (_tracker, addr) = start_tracker(tmp.path());
    let (seeder, _, printed) = start_seeder(tmp.path(), "seeder", &share, &["--tracker", &addr], 1);
    let ticket = printed[0].split_whitespace().nth(2).unwrap().to_owned();
    let doctor = |state: &str| {
        run(&[
            "doctor",
            &ticket,
            "-o",
            s(&tmp.path().join("out")),
            "--state",
            s(&tmp.path().join(state)),
            "--listen",
            "127.0.0.1:0",
        ])
    };
    let checked = doctor("d1");
    let said = String::from_utf8_lossy(&checked.stdout);
    println!("{said}");
    assert!(
        checked.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    for line in ["ok    tracker", "reached directly", "UDP buffers", "disk at", "CPU:"] {
        assert!(said.contains(line), "{line}: {said}");
    }

    drop(seeder);
    let checked = doctor("d2");
    let said = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(1), "{said}");
    assert!(said.contains("FAIL"), "{said}");
}
