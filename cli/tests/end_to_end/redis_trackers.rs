//! Several trackers sharing one Redis (`swarm tracker --store redis://…`), driven through the
//! real binary and a real redis-server on loopback that the test starts and stops itself.
//! `.ci/run` installs redis-server when it is missing.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A redis-server on a free loopback port, with nothing saved to disk: a restart loses all.
struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        Redis::start_with(dir, &[])
    }

    /// A redis-server with `extra` arguments.
    fn start_with(dir: &Path, extra: &[&str]) -> Redis {
        install_if_missing("redis-server", "redis-server");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Redis::start_on(dir, port, extra)
    }

    fn start_on(dir: &Path, port: u16, extra: &[&str]) -> Redis {
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .current_dir(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server; .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server and starts an empty one on the same port.
    fn restart_empty(mut self) -> Redis {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Redis::start_on(&self.dir.clone(), self.port, &[])
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tracker on `redis`, its log in `dir/NAME.log`; returns it, its pinned address and its
/// plain `HOST:PORT`.
fn start_shared_tracker(dir: &Path, name: &str, redis: &Redis) -> (Proc, String, String) {
    start_shared_tracker_with(dir, name, redis, &[])
}

/// [`start_shared_tracker`] with `extra` arguments.
fn start_shared_tracker_with(dir: &Path, name: &str, redis: &Redis, extra: &[&str]) -> (Proc, String, String) {
    start_tracker_on_store(dir, name, &redis.url(), extra, &[])
}

/// A tracker on the store at `url`, with `extra` arguments and `env` variables.
fn start_tracker_on_store(
    dir: &Path,
    name: &str,
    url: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Proc, String, String) {
    let state = dir.join(name);
    let mut args = vec![
        "tracker",
        "--state",
        s(&state),
        "--listen",
        "127.0.0.1:0",
        "--peer-timeout",
        "20s",
    ];
    args.extend_from_slice(&["--store", url]);
    args.extend_from_slice(extra);
    let log = dir.join(format!("{name}.log"));
    let mut command = Command::new(BIN);
    command
        .args(&args)
        .envs(env.iter().copied())
        .env("SWARM_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap());
    let mut tracker = Proc::start(command);
    tracker.log = Some(log);
    let line = tracker.line();
    let pinned = line
        .split("--tracker ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("tracker banner")
        .to_owned();
    let plain = pinned.split('@').nth(1).unwrap().to_owned();
    (tracker, pinned, plain)
}

fn listing(tracker: &str, state: &Path) -> String {
    let out = run(&["ls", "--tracker", tracker, "--state", s(state)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn kill(proc: &mut Proc) {
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
}

#[test]
fn three_trackers_on_one_redis_answer_alike_and_survive_a_tracker_and_a_redis_restart() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(&dir.path().join("redis"));
    let mut trackers: Vec<(Proc, String, String)> = (0..3)
        .map(|i| start_shared_tracker(dir.path(), &format!("t{i}"), &redis))
        .collect();
    let all: Vec<String> = trackers.iter().map(|t| t.1.clone()).collect();
    let all_list = all.join(",");

    // Three seeders, each naming the trackers in another order (each picks one at random and
    // turns to the next when it stops answering).
    let mut seeders = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let share = dir.path().join(format!("share{i}"));
        let size = if i == 0 { 6 << 20 } else { 256 << 10 };
        write(share.join(format!("file{i}.bin")), &content(size, i as u8 + 1));
        let order: Vec<String> = (0..3).map(|k| all[(i + k) % 3].clone()).collect();
        let tracker_arg = order.join(",");
        // The first seeder is capped so that a fetch from it is still running when a
        // tracker dies.
        let extra: Vec<&str> = if i == 0 {
            vec!["--tracker", &tracker_arg, "--max-upload-rate", "2MB/s"]
        } else {
            vec!["--tracker", &tracker_arg]
        };
        let (seeder, seeded, commands) = start_seeder(dir.path(), &format!("seeder{i}"), &share, &extra, 1);
        let named: Vec<String> = printed_ticket(&commands[0])
            .trackers
            .iter()
            .map(|t| format!("{}@{}", t.id.unwrap(), t.host_port))
            .collect();
        assert_eq!(named.join(","), tracker_arg, "the printed ticket names every tracker");
        ids.push(seeded[0].0.clone());
        seeders.push(seeder);
    }

    // Every tracker lists the same three files.
    let query_state = dir.path().join("query");
    let first = listing(&trackers[0].1, &query_state);
    for id in &ids {
        assert!(first.contains(&id[..16]), "{id} missing from\n{first}");
    }
    for tracker in &trackers[1..] {
        assert_eq!(listing(&tracker.1, &query_state), first, "trackers disagree");
    }

    // A fetch through all three (unpinned, so its log names the tracker it uses); the tracker
    // it uses is killed mid-fetch.
    let plain: Vec<String> = trackers.iter().map(|t| t.2.clone()).collect();
    let out = dir.path().join("out");
    let log = dir.path().join("fetch.log");
    let started = Instant::now();
    let mut fetch = fetch_command(&ids[0], &plain.join(","), &out, &dir.path().join("f0"), &log, &[])
        .env(
            "SWARM_LOG",
            "warn,swarm_engine::fetch=trace,swarm_engine::tracker_client=info",
        )
        .spawn()
        .unwrap();
    let text = wait_for_text(&log, "trusting tracker on first use", Duration::from_secs(20));
    let used = plain
        .iter()
        .position(|p| text.contains(&format!("addr={p}")))
        .expect("the log names the tracker used");
    wait_for_text(&log, "chunk written", Duration::from_secs(20));
    kill(&mut trackers[used].0);
    let killed_wall = std::time::SystemTime::now();
    let killed_at = started.elapsed();
    let status = fetch.wait().unwrap();
    let took = started.elapsed();
    assert!(
        status.success(),
        "fetch failed:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(std::fs::read(out.join("file0.bin")).unwrap(), content(6 << 20, 1));
    let fetch_log = std::fs::read_to_string(&log).unwrap();
    let turned = fetch_log
        .lines()
        .find(|l| l.contains("turning to the next"))
        .unwrap_or_else(|| panic!("the fetch never turned from the dead tracker:\n{fetch_log}"));
    let turned_at = turned
        .split_whitespace()
        .next()
        .and_then(|stamp| humantime::parse_rfc3339(stamp).ok())
        .expect("a timestamp on the log line");
    eprintln!(
        "the fetcher turned to the next tracker {:.2?} after the kill",
        turned_at.duration_since(killed_wall).unwrap_or_default()
    );
    eprintln!(
        "fetch of 6 MiB at a 2 MB/s cap: tracker {used} killed at {killed_at:.2?}, done at {took:.2?} (the cap alone needs about 3.1 s)"
    );

    // A new fetch through the survivors starts at once, and so does one that names the dead
    // tracker too (it turns to the next).
    let survivors: Vec<String> = (0..3).filter(|&i| i != used).map(|i| all[i].clone()).collect();
    for (n, trackers_arg) in [survivors.join(","), all_list.clone()].into_iter().enumerate() {
        let started = Instant::now();
        let out = dir.path().join(format!("out-after-{n}"));
        let log = dir.path().join(format!("after-{n}.log"));
        let status = fetch_command(
            &ids[1],
            &trackers_arg,
            &out,
            &dir.path().join(format!("fa{n}")),
            &log,
            &[],
        )
        .status()
        .unwrap();
        assert!(status.success(), "{}", std::fs::read_to_string(&log).unwrap());
        assert_eq!(std::fs::read(out.join("file1.bin")).unwrap(), content(256 << 10, 2));
        eprintln!("fetch after the kill through {trackers_arg}: {:.2?}", started.elapsed());
    }

    // Redis restarts empty: the trackers write the state back from memory, so a tracker that
    // starts afterwards knows every file, and changes are accepted again.
    let redis = redis.restart_empty();
    let deadline = Instant::now() + Duration::from_secs(30);
    let written_back = || {
        (0..3).filter(|&i| i != used).any(|i| {
            std::fs::read_to_string(dir.path().join(format!("t{i}.log")))
                .unwrap()
                .contains("wrote it back from memory")
        })
    };
    while !written_back() {
        assert!(
            Instant::now() < deadline,
            "no tracker wrote the state back to the new Redis"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_late, late_addr, _) = start_shared_tracker(dir.path(), "late", &redis);
    let late = listing(&late_addr, &query_state);
    for id in &ids {
        assert!(
            late.contains(&id[..16]),
            "{id} missing after the Redis restart:\n{late}"
        );
    }
    let share = dir.path().join("share-late");
    write(share.join("late.bin"), &content(100_000, 9));
    let (_seeder, seeded, _) = start_seeder(
        dir.path(),
        "seeder-late",
        &share,
        &["--tracker", &survivors.join(",")],
        1,
    );
    let after = listing(&late_addr, &query_state);
    assert!(
        after.contains(&seeded[0].0[..16]),
        "a new file after the restart:\n{after}"
    );
    // Nothing on disk was lost.
    for i in 0..3 {
        assert!(dir.path().join(format!("share{i}/file{i}.bin")).exists());
    }
    drop(seeders);
}

/// Announces `count` junk manifests of 2 MiB from one address, turn by turn to each tracker of
/// `trackers` (pinned addresses), after registering at the first; returns (kept, refused).
fn announce_junk(trackers: &[String], count: u32) -> (u32, u32) {
    use std::sync::Arc;
    use swarm_proto::protocol::{ErrorCode, TrackerRequest, TrackerResponse, MAX_FRAME};
    use swarm_proto::transport::{self, Transport};
    use swarm_proto::{Bitfield, Identity, PeerId};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let me = Transport::bind(Arc::new(Identity::generate().unwrap()), "127.0.0.1:0".parse().unwrap()).unwrap();
        let mut connections = Vec::new();
        for tracker in trackers {
            let (id, host_port) = tracker.split_once('@').unwrap();
            let id: PeerId = id.parse().unwrap();
            let (connection, _) = me.connect(host_port.parse().unwrap(), Some(id)).await.unwrap();
            connections.push(connection);
        }
        let ask = |at: usize, request: TrackerRequest| {
            let connection = connections[at].clone();
            async move {
                transport::exchange::<_, TrackerResponse>(&connection, &request, MAX_FRAME)
                    .await
                    .unwrap()
                    .0
            }
        };
        let registered = ask(
            0,
            TrackerRequest::Register {
                advertise: None,
                addrs: vec![],
            },
        )
        .await;
        assert!(
            matches!(registered, TrackerResponse::Registered { .. }),
            "{registered:?}"
        );
        let (mut kept, mut refused) = (0, 0);
        for n in 0..count {
            let request = TrackerRequest::Announce {
                manifest: junk(n),
                chunks: Bitfield::new(JUNK_CHUNKS),
                meta: Default::default(),
            };
            match ask(n as usize % connections.len(), request).await {
                TrackerResponse::Ok => kept += 1,
                TrackerResponse::Error {
                    code: ErrorCode::Limit, ..
                } => refused += 1,
                other => panic!("unexpected answer {other:?}"),
            }
        }
        (kept, refused)
    })
}

#[test]
fn a_budget_per_address_holds_across_trackers_on_one_redis() {
    let dir = tempfile::tempdir().unwrap();
    let budget = ["--budget-per-address", "16MiB", "--no-audits"];
    let (_alone, alone_addr) = start_tracker_with(dir.path(), &budget);
    let (kept_alone, refused_alone) = announce_junk(&[alone_addr], 16);

    let redis = Redis::start(&dir.path().join("redis"));
    let (_a, a, _) = start_shared_tracker_with(dir.path(), "a", &redis, &budget);
    let (_b, b, _) = start_shared_tracker_with(dir.path(), "b", &redis, &budget);
    let (kept_shared, refused_shared) = announce_junk(&[a.clone(), b.clone()], 16);
    // Refused announcements are refused before they reach the log: of another 40 (2 MiB
    // manifests, 80 MiB against 16 MiB), those refused add nothing to the stream; what grows
    // it is the ones kept, the new client's registration and the trackers' expiry rounds.
    let redis_cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &redis.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let length = || redis_cli(&["XLEN", "swarm:log"]).parse::<u64>().unwrap();
    let before = length();
    let (kept_more, refused_more) = announce_junk(&[a, b], 40);
    let grown = length() - before;
    eprintln!("40 more announcements: {kept_more} kept, {refused_more} refused; the log grew by {grown} entries");
    assert!(refused_more >= 30, "{refused_more}");
    assert!(
        grown <= u64::from(kept_more) + 5,
        "refused announcements reached the log: {grown} entries for {kept_more} kept"
    );
    eprintln!(
        "16 manifests of 2 MiB from one address against 16 MiB: one tracker kept {kept_alone} ({refused_alone} refused); \
         two trackers on one Redis, asked in turn, kept {kept_shared} ({refused_shared} refused)"
    );
    assert!(refused_alone > 0, "the budget was reached");
    assert_eq!(
        kept_shared, kept_alone,
        "a budget is per address wherever the request lands"
    );
}

/// A Redis that wants a password, reached in the clear (`redis://:PASSWORD@…`) and over TLS
/// (`rediss://`, its certificate trusted through SSL_CERT_FILE): two trackers share their
/// state through it, one each way; a wrong password stops a tracker at start, saying why.
#[test]
fn trackers_reach_a_redis_with_a_password_and_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let (cert, key) = (tmp.path().join("redis.crt"), tmp.path().join("redis.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let tls_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let password = "p4ss+w0rd/&=";
    let redis = Redis::start_with(
        &tmp.path().join("redis"),
        &[
            "--requirepass",
            password,
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            s(&cert),
            "--tls-key-file",
            s(&key),
            "--tls-ca-cert-file",
            s(&cert),
            "--tls-auth-clients",
            "no",
        ],
    );
    let encoded = "p4ss%2Bw0rd%2F%26%3D";
    let plain_url = format!("redis://:{encoded}@127.0.0.1:{}/0", redis.port);
    let tls_url = format!("rediss://:{encoded}@127.0.0.1:{tls_port}/0");
    let (_clear, clear_addr, _) = start_tracker_on_store(tmp.path(), "clear", &plain_url, &[], &[]);
    let (_tls, tls_addr, _) = start_tracker_on_store(tmp.path(), "tls", &tls_url, &[], &[("SSL_CERT_FILE", s(&cert))]);
    let share = tmp.path().join("share");
    write(share.join("over-tls.bin"), &content(20_000, 1));
    let (_seeder, _, _) = start_seeder(tmp.path(), "seeder", &share, &["--tracker", &clear_addr], 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listing(&tls_addr, &tmp.path().join("asker")).contains("over-tls.bin") {
        assert!(
            Instant::now() < deadline,
            "the TLS tracker never saw the file the other announced"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let wrong = format!("redis://:not-it@127.0.0.1:{}/0", redis.port);
    let out = run(&[
        "tracker",
        "--state",
        s(&tmp.path().join("wrong")),
        "--listen",
        "127.0.0.1:0",
        "--store",
        &wrong,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("refused the password"), "{stderr}");
    assert!(
        !stderr.contains("not-it"),
        "the password stays out of messages: {stderr}"
    );
}

/// Entries a stranger writes into the stream by hand (garbage, and an id far in the future)
/// are skipped or applied at the present time, and after the Redis comes back empty the
/// trackers follow the new stream: changes are taken again at once, not after the far
/// future.
#[test]
fn a_hand_written_stream_entry_stalls_no_tracker() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = Redis::start(&tmp.path().join("redis"));
    let (_t1, addr1, _) = start_shared_tracker(tmp.path(), "t1", &redis);
    let (_t2, addr2, _) = start_shared_tracker(tmp.path(), "t2", &redis);
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &redis.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cli(&["XADD", "swarm:log", "*", "c", "garbage"]);
    cli(&["XADD", "swarm:log", "99999999999999-0", "c", "swl\x01junk"]);
    let announce = |name: &str, tracker: &str| {
        let share = tmp.path().join(name);
        write(share.join(format!("{name}.bin")), &content(5_000, 2));
        start_seeder(
            tmp.path(),
            &format!("seeder-{name}"),
            &share,
            &["--tracker", tracker],
            1,
        )
        .0
    };
    let listed_within = |tracker: &str, name: &str, limit: Duration| {
        let started = Instant::now();
        while !listing(tracker, &tmp.path().join("asker")).contains(name) {
            assert!(
                started.elapsed() < limit,
                "{name} not listed at {tracker} within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        started.elapsed()
    };
    let _a = announce("after-junk", &addr1);
    listed_within(&addr2, "after-junk", Duration::from_secs(20));

    let redis = redis.restart_empty();
    let _b = announce("after-restart", &addr2);
    let took = listed_within(&addr1, "after-restart", Duration::from_secs(30));
    eprintln!("after Redis came back empty, a change reached the other tracker in {took:.2?}");
    drop(redis);
}
