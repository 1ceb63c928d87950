//! Faults with the real binary and real processes: seeders killed (SIGKILL) one after another
//! mid-fetch; no live holder left (the fetch says so, waits for a new one, or gives up with
//! exit code 6 after --timeout); a peer that vanishes without leaving expires at the tracker
//! and is handed out again when it comes back.

use std::time::{Duration, Instant};

use crate::common::*;

const CHUNK: usize = 64 * 1024;

#[test]
fn a_fetch_finishes_while_its_seeders_are_killed_one_after_another() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    let data = content(192 * CHUNK, 6); // 12 MiB
    write(share.join("big.bin"), &data);
    let (_tracker, addr) = start_tracker(tmp.path());
    let seed_args = ["--tracker", addr.as_str(), "--max-upload-rate", "2MB/s"];
    let mut seeders = Vec::new();
    let mut id = String::new();
    for i in 0..3 {
        let (seeder, seeded, _) = start_seeder(tmp.path(), &format!("seeder{i}"), &share, &seed_args, 1);
        id = seeded[0].0.clone();
        seeders.push(seeder);
    }
    let out = tmp.path().join("out");
    let log = tmp.path().join("fetch.log");
    let started = Instant::now();
    let fetch = fetch_command(
        &id,
        &addr,
        &out,
        &tmp.path().join("fetcher"),
        &log,
        &["--timeout", "120s"],
    )
    .spawn()
    .unwrap();
    for seeder in seeders.iter_mut().take(2) {
        std::thread::sleep(Duration::from_millis(800));
        seeder.child.kill().unwrap(); // no leave: the tracker still lists it for a while
        seeder.child.wait().unwrap();
    }
    let done = fetch.wait_with_output().unwrap();
    let report = json(&done);
    assert_eq!(std::fs::read(out.join("big.bin")).unwrap(), data);
    let sources = report["received_from"].as_object().unwrap();
    println!(
        "12 MiB with 2 of 3 seeders killed at 0.8 s and 1.6 s: done in {:?}, bytes per peer {sources:?}",
        started.elapsed()
    );
    assert!(sources.len() >= 2, "more than one seeder was used: {sources:?}");
}

#[test]
fn with_no_live_holder_a_fetch_says_so_waits_for_one_and_gives_up_only_after_its_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    let data = content(64 * CHUNK, 8);
    write(share.join("lonely.bin"), &data);
    let (_tracker, addr) = start_tracker_with_timeout(tmp.path(), "2s");
    let (mut seeder, seeded, _) = start_seeder(tmp.path(), "seeder", &share, &["--tracker", &addr], 1);
    let id = seeded[0].0.clone();
    seeder.child.kill().unwrap();
    seeder.child.wait().unwrap();
    // The tracker drops the silent seeder after its 2 s timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    while json(&run(&["peers", &id, "--tracker", &addr, "--json"]))
        .as_array()
        .unwrap()
        .len()
        == 1
    {
        assert!(Instant::now() < deadline, "the killed seeder was never dropped");
        std::thread::sleep(Duration::from_millis(200));
    }

    // With --timeout: says what it waits for, then gives up with exit code 6.
    let log = tmp.path().join("gives-up.log");
    let out = tmp.path().join("out1");
    let state = tmp.path().join("fetcher1");
    let started = Instant::now();
    let gave_up = fetch_command(&id, &addr, &out, &state, &log, &["--timeout", "3s"])
        .output()
        .unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(gave_up.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("waiting for 64 chunks that no live peer holds"),
        "{stderr}"
    );
    assert!(stderr.contains("gave up after 3 s"), "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(3), "not before its timeout");
    assert!(!out.join("lonely.bin").exists());

    // Without a timeout it keeps waiting, and finishes once a holder comes back.
    let log = tmp.path().join("waits.log");
    let out = tmp.path().join("out2");
    let state = tmp.path().join("fetcher2");
    let waiting = fetch_command(&id, &addr, &out, &state, &log, &[]).spawn().unwrap();
    wait_for_text(&log, "that no live peer holds", Duration::from_secs(30));
    let (_back, _, _) = start_seeder(tmp.path(), "seeder", &share, &["--tracker", &addr], 1);
    let done = waiting.wait_with_output().unwrap();
    json(&done);
    assert_eq!(std::fs::read(out.join("lonely.bin")).unwrap(), data);
}

#[test]
fn a_vanished_peer_expires_and_is_handed_out_again_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    write(share.join("f.bin"), &content(4 * CHUNK, 2));
    let (_tracker, addr) = start_tracker_with_timeout(tmp.path(), "2s");
    let (mut seeder, seeded, _) = start_seeder(tmp.path(), "seeder", &share, &["--tracker", &addr], 1);
    let id = seeded[0].0.clone();
    let holders = || json(&run(&["peers", &id, "--tracker", &addr, "--json"]));
    let before = holders();
    assert_eq!(before.as_array().unwrap().len(), 1);
    let peer = before[0]["peer"].clone();

    seeder.child.kill().unwrap();
    seeder.child.wait().unwrap();
    let killed = Instant::now();
    while !holders().as_array().unwrap().is_empty() {
        assert!(killed.elapsed() < Duration::from_secs(20), "never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("dropped {:?} after the kill (peer timeout 2 s)", killed.elapsed());

    let (_back, _, _) = start_seeder(tmp.path(), "seeder", &share, &["--tracker", &addr], 1);
    let after = holders();
    assert_eq!(after.as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after[0]["peer"], peer, "the same peer, known by its key");
}

/// A standalone tracker killed outright (SIGKILL) twice, a second after its holders told it
/// what they hold and then again right after its restart, names them at once when it comes
/// back: it saves who holds what within a second of any change.
#[test]
fn a_killed_tracker_names_its_holders_at_once_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_ports(1).remove(0);
    let state = tmp.path().join("tracker");
    let tracker_args = ["tracker", "--state", s(&state), "--listen", &port];
    let mut tracker = Proc::spawn(&tracker_args);
    tracker.line();
    let share = tmp.path().join("share");
    write(share.join("held.bin"), &content(4 * CHUNK, 3));
    let seeders: Vec<_> = (0..2)
        .map(|n| start_seeder(tmp.path(), &format!("seeder{n}"), &share, &["--tracker", &port], 1).0)
        .collect();
    let holders = |tracker_addr: &str| {
        let out = run(&[
            "peers",
            "held.bin",
            "--tracker",
            tracker_addr,
            "--state",
            s(&tmp.path().join("asker")),
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(holders(&port).contains("2 live holder(s)"), "{}", holders(&port));
    std::thread::sleep(Duration::from_millis(1500));
    for round in 0..2 {
        tracker.child.kill().unwrap();
        tracker.child.wait().unwrap();
        let started = Instant::now();
        tracker = Proc::spawn(&tracker_args);
        tracker.line();
        let listed = holders(&port);
        eprintln!("round {round}: restarted and listed in {:.2?}", started.elapsed());
        assert!(listed.contains("2 live holder(s)"), "round {round}: {listed}");
    }
    drop(seeders);
}

/// --timeout bounds the whole fetch, the tracker requests before the download included: a
/// tracker that takes the packets and never answers does not hold the command for the
/// minute and more each attempt would take.
#[test]
fn a_fetch_gives_up_after_its_timeout_while_the_tracker_is_silent() {
    let tmp = tempfile::tempdir().unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tracker = silent.local_addr().unwrap().to_string();
    let id = "ab".repeat(32);
    let started = Instant::now();
    let gave_up = run(&[
        "fetch",
        &id,
        "--tracker",
        &tracker,
        "--state",
        s(&tmp.path().join("fetcher")),
        "-o",
        s(&tmp.path().join("out")),
        "--timeout",
        "3s",
    ]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&gave_up.stderr);
    println!("gave up after {took:.1?}: {stderr}");
    assert_eq!(gave_up.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("--timeout") && stderr.contains("tracker"), "{stderr}");
    assert!(took < Duration::from_secs(30), "it took {took:?}");
}

/// A holder the tracker names at an address that reaches nothing from here is named in the
/// fetch's messages as unreachable, not as "no live peer holds".
#[test]
fn an_unreachable_holder_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    write(share.join("far.bin"), &content(3 * CHUNK, 3));
    let (_tracker, addr) = start_tracker(tmp.path());
    let nowhere = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let advertised = nowhere.local_addr().unwrap().to_string();
    let (_seeder, seeded, _) = start_seeder(
        tmp.path(),
        "seeder",
        &share,
        &["--tracker", &addr, "--advertise", &advertised],
        1,
    );
    let log = tmp.path().join("fetch.log");
    let waited = fetch_command(
        &seeded[0].0,
        &addr,
        &tmp.path().join("out"),
        &tmp.path().join("fetcher"),
        &log,
        &["--timeout", "12s"],
    )
    .output()
    .unwrap();
    let said = std::fs::read_to_string(&log).unwrap_or_default() + &String::from_utf8_lossy(&waited.stderr);
    assert_eq!(waited.status.code(), Some(6), "{said}");
    assert!(
        said.contains("unreachable from here") && said.contains(&advertised),
        "{said}"
    );
    assert!(said.contains("could not be reached from here"), "{said}");
}

/// A seeder whose tracker takes the packets and never answers says so within seconds, not
/// when the first try gives up (over half a minute later).
#[test]
fn a_silent_tracker_is_reported_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tracker = silent.local_addr().unwrap().to_string();
    let share = tmp.path().join("share");
    write(share.join("a.bin"), &content(1000, 1));
    let log = tmp.path().join("seed.log");
    let started = Instant::now();
    let _seeder = Proc::spawn_logged(
        &[
            "seed",
            s(&share),
            "--tracker",
            &tracker,
            "--state",
            s(&tmp.path().join("seeder")),
            "--listen",
            "127.0.0.1:0",
        ],
        &log,
    );
    let said = wait_for_text(&log, "yet; still trying", Duration::from_secs(20));
    println!("said after {:.1?}: {said}", started.elapsed());
    assert!(
        said.contains(&format!("no answer from the tracker at {tracker} yet")),
        "{said}"
    );
}

/// The ticket `swarm seed` prints beside a separate tracker names the seeder too: with that
/// tracker killed for good, the printed command still fetches the file, from the seeder.
#[test]
fn a_ticket_fetches_from_its_holder_when_its_tracker_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut tracker, addr) = start_tracker(tmp.path());
    let share = tmp.path().join("share");
    let data = content(6 * CHUNK + 11, 5);
    write(share.join("kept.bin"), &data);
    let (_seeder, _, commands) = start_seeder(tmp.path(), "seeder", &share, &["--tracker", &addr], 1);
    let ticket = printed_ticket(&commands[0]);
    assert_eq!(ticket.holders.len(), 1, "the seeder is named: {ticket:?}");
    tracker.child.kill().unwrap();
    tracker.child.wait().unwrap();

    let out = tmp.path().join("out");
    let started = Instant::now();
    let words: Vec<&str> = commands[0].split_whitespace().collect();
    let fetched = run(&[
        words[1],
        words[2],
        "-o",
        s(&out),
        "--state",
        s(&tmp.path().join("fetcher")),
    ]);
    let stderr = String::from_utf8_lossy(&fetched.stderr);
    eprintln!("fetched with the tracker gone in {:.2?}", started.elapsed());
    assert!(fetched.status.success(), "{stderr}");
    assert!(std::fs::read(out.join("kept.bin")).unwrap() == data);
}
