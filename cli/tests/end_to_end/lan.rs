//! The README's flows on machines of small networks: network namespaces joined by veth pairs,
//! bridges and routers, each with its own home directory. `swarm seed ./videos` on one (its
//! tracker started in the process), and the printed `swarm fetch …` pasted as printed on
//! another, with no flag; the same through a tracker on a third machine that is gone by the
//! time the command is pasted, on one LAN and across a router; a holder on two networks
//! reached on the one the fetcher shares with it; and `swarm seed --url` of a web server on a
//! third machine, read once. Needs root (CI runs as root); says so and passes without it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Namespaces named `NAME-x` for each machine `x`, removed on drop.
pub(super) struct Lan {
    name: String,
    machines: Vec<&'static str>,
}

impl Lan {
    /// Machines `machines`, set up by the `ip` command lines `script` (in which `{n}` stands
    /// for the name, so that `{n}-a` is machine `a`), every loopback up.
    pub(super) fn build(name: &str, machines: &[&'static str], script: &[String]) -> Lan {
        // Routers masquerade and filter with iptables, which a fresh Debian lacks.
        if script.iter().any(|line| line.contains("iptables")) {
            install_if_missing("iptables", "iptables");
        }
        let lan = Lan {
            name: name.to_owned(),
            machines: machines.to_vec(),
        };
        lan.remove();
        let mut lines: Vec<String> = machines.iter().map(|m| format!("ip netns add {name}-{m}")).collect();
        lines.extend(machines.iter().map(|m| format!("ip -n {name}-{m} link set lo up")));
        lines.extend(script.iter().map(|line| line.replace("{n}", name)));
        for line in lines {
            let status = Command::new("sh").arg("-c").arg(&line).status().unwrap();
            assert!(status.success(), "{line}");
        }
        lan
    }

    /// `NAME-a` (10.79.0.1, its default route through b; and a bridge-like link at
    /// 172.31.0.1 listed first, as docker0 often is) and `NAME-b` (10.79.0.2) on one link, and
    /// with `tracker_machine` `NAME-t` (10.79.0.3) on the same LAN (B's end of each link is on
    /// a bridge).
    fn one_link(name: &str, tracker_machine: bool) -> Lan {
        let mut script = vec![
            link("a", "d0", "172.31.0.1/16", "a", "d1", ""),
            link("a", "ea", "10.79.0.1/24", "b", "eb", ""),
            "ip -n {n}-a route add default via 10.79.0.2".to_owned(),
        ];
        if tracker_machine {
            script.extend(bridge("b", "br", "10.79.0.2/24", &["eb"]));
            script.push(link("t", "et", "10.79.0.3/24", "b", "bt", ""));
            script.push("ip -n {n}-b link set {n}-bt master {n}-br".to_owned());
            script.push("ip -n {n}-t route add default via 10.79.0.2".to_owned());
            Lan::build(name, &["a", "b", "t"], &script)
        } else {
            script.push("ip -n {n}-b addr add 10.79.0.2/24 dev {n}-eb".to_owned());
            Lan::build(name, &["a", "b"], &script)
        }
    }

    /// [`Lan::one_link`] with IPv6 alone (unique local addresses, no IPv4 but loopback): `a`
    /// at fd7e:77::1 and `b` at fd7e:77::2 on a bridge on `b`, and `t` at fd7e:77::3 on it.
    fn ipv6_only(name: &str) -> Lan {
        let no_dad = |m: &str| format!("ip netns exec {{n}}-{m} sysctl -q -w net.ipv6.conf.default.accept_dad=0");
        let mut script: Vec<String> = ["a", "b", "t"].iter().map(|m| no_dad(m)).collect();
        script.push(link("a", "ea", "fd7e:77::1/64", "b", "eb", ""));
        script.extend(bridge("b", "br", "fd7e:77::2/64", &["eb"]));
        script.push(link("t", "et", "fd7e:77::3/64", "b", "bt", ""));
        script.push("ip -n {n}-b link set {n}-bt master {n}-br".to_owned());
        Lan::build(name, &["a", "b", "t"], &script)
    }

    /// Two subnets and a router `r` between them: `a` (10.82.1.2) and `t` (10.82.1.3) on a
    /// bridge on `r` (10.82.1.1), `b` (10.82.2.2) on a link to `r` (10.82.2.1); everyone's
    /// default route through `r`, which forwards.
    fn routed(name: &str) -> Lan {
        let mut script = vec![
            link("a", "ea", "10.82.1.2/24", "r", "ra", ""),
            link("t", "et", "10.82.1.3/24", "r", "rt", ""),
        ];
        script.extend(bridge("r", "br", "10.82.1.1/24", &["ra", "rt"]));
        script.extend([
            link("b", "eb", "10.82.2.2/24", "r", "rb", "10.82.2.1/24"),
            "ip netns exec {n}-r sysctl -q -w net.ipv4.ip_forward=1".to_owned(),
            "ip -n {n}-a route add default via 10.82.1.1".to_owned(),
            "ip -n {n}-t route add default via 10.82.1.1".to_owned(),
            "ip -n {n}-b route add default via 10.82.2.1".to_owned(),
        ]);
        Lan::build(name, &["a", "b", "r", "t"], &script)
    }

    /// Three links and no forwarding: `t`–`a` (10.81.1.1 and .2), `a`–`b` (10.81.2.2 and .3)
    /// and `t`–`b` (10.81.3.1 and .2). The tracker sees A only at an address B cannot reach.
    fn triangle(name: &str) -> Lan {
        let script = [
            link("t", "ta", "10.81.1.1/24", "a", "at", "10.81.1.2/24"),
            link("a", "ab", "10.81.2.2/24", "b", "ba", "10.81.2.3/24"),
            link("t", "tb", "10.81.3.1/24", "b", "bt", "10.81.3.2/24"),
        ];
        Lan::build(name, &["a", "b", "t"], &script)
    }

    /// The network's name: `{n}` in its `ip` command lines.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// A shell command line run in machine `which` (`a` or `b`), in `home` (its `HOME` and
    /// working directory), with `swarm` on its `PATH`.
    pub(super) fn machine(&self, which: &str, home: &Path, line: &str) -> Command {
        std::fs::create_dir_all(home).unwrap();
        // SWARM_TEST_BIN_DIR runs the same scenario with another build (a before and after).
        let bin_dir = std::env::var_os("SWARM_TEST_BIN_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(BIN).parent().unwrap().to_owned());
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &format!("{}-{which}", self.name), "sh", "-c", line])
            .current_dir(home)
            .env("HOME", home)
            .env(
                "PATH",
                format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()),
            )
            .env_remove("SWARM_TRACKER")
            .env_remove("SWARM_STATE");
        command
    }

    /// [`Lan::machine`]'s command line started in the background, its standard error kept
    /// in `log`.
    pub(super) fn start(&self, which: &str, home: &Path, line: &str, log: &Path) -> Proc {
        let mut command = self.machine(which, home, line);
        command.stderr(std::fs::File::create(log).unwrap());
        Proc::start(command)
    }

    /// Runs `line` on machine `which` in `home` (given a minute), prints how long it took as
    /// `what`, with what it said, checks that it succeeded, and returns what it printed.
    pub(super) fn run_ok(&self, which: &str, home: &Path, line: &str, what: &str) -> String {
        self.run_ok_saying(which, home, line, what).0
    }

    /// [`Lan::run_ok`], returning what it printed and what it said on stderr.
    pub(super) fn run_ok_saying(&self, which: &str, home: &Path, line: &str, what: &str) -> (String, String) {
        let started = Instant::now();
        let done = self
            .machine(which, home, &format!("timeout 60 {line}"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&done.stderr);
        let printed = String::from_utf8_lossy(&done.stdout);
        println!("{what} in {:.2?}: {said}{printed}", started.elapsed());
        assert!(done.status.success(), "{what}: {said}");
        (printed.into_owned(), said.into_owned())
    }

    fn remove(&self) {
        for which in &self.machines {
            // Deleting a namespace does not end what runs in it (a router's daemon, say).
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "ip netns pids {}-{which} 2>/dev/null | xargs -r kill -9",
                    self.name
                ))
                .status();
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{}-{which}", self.name)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The `ip` command line for a veth pair between machines `x` (its end `{n}-X_END`, at
/// `x_addr`) and `y` (`{n}-Y_END`, at `y_addr`), both ends up; an empty address leaves that end
/// without one.
pub(super) fn link(x: &str, x_end: &str, x_addr: &str, y: &str, y_end: &str, y_addr: &str) -> String {
    let mut line =
        format!("ip link add {{n}}-{x_end} netns {{n}}-{x} type veth peer name {{n}}-{y_end} netns {{n}}-{y}");
    for (machine, end, addr) in [(x, x_end, x_addr), (y, y_end, y_addr)] {
        if !addr.is_empty() {
            line += &format!(" && ip -n {{n}}-{machine} addr add {addr} dev {{n}}-{end}");
        }
        line += &format!(" && ip -n {{n}}-{machine} link set {{n}}-{end} up");
    }
    line
}

/// The `ip` command lines for a bridge `{n}-NAME` on machine `machine` at `addr`, over its
/// link ends `ports`.
pub(super) fn bridge(machine: &str, name: &str, addr: &str, ports: &[&str]) -> Vec<String> {
    let on = format!("ip -n {{n}}-{machine}");
    let mut lines = vec![
        format!("{on} link add {{n}}-{name} type bridge"),
        format!("{on} addr add {addr} dev {{n}}-{name}"),
        format!("{on} link set {{n}}-{name} up"),
    ];
    lines.extend(
        ports
            .iter()
            .map(|port| format!("{on} link set {{n}}-{port} master {{n}}-{name}")),
    );
    lines
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.remove();
    }
}

/// What `process` printed from `start` on, in the first line where it does.
pub(super) fn printed_from(process: &Proc, start: &str) -> String {
    loop {
        let line = process.line();
        if let Some(at) = line.find(start) {
            return line[at..].trim().to_owned();
        }
    }
}

/// A fresh network of the shape `shape` makes, named after `prefix` and this process, or
/// `None` (said) without root.
pub(super) fn lan_if_root(prefix: &str, shape: impl FnOnce(&str) -> Lan) -> Option<Lan> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        eprintln!("skipped: network namespaces need root");
        return None;
    }
    Some(shape(&format!("{prefix}{}", std::process::id() % 100_000)))
}

#[test]
fn the_printed_command_works_on_another_machine_of_the_lan() {
    let Some(lan) = lan_if_root("swl", |n| Lan::one_link(n, false)) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (home_a, home_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let film = content(3 << 20, 4);
    write(home_a.join("videos/film.mkv"), &film);
    write(home_a.join("videos/notes.txt"), b"for the other machine");

    let mut seeder = lan.start("a", &home_a, "exec swarm seed ./videos", &tmp.path().join("seed.log"));
    let printed = printed_from(&seeder, "swarm fetch ");
    println!("printed on A: {printed}");

    let (_, fetch_said) = lan.run_ok_saying("b", &home_b, &printed, "B fetched");
    assert_eq!(std::fs::read(home_b.join("videos/film.mkv")).unwrap(), film);
    assert_eq!(
        std::fs::read(home_b.join("videos/notes.txt")).unwrap(),
        b"for the other machine"
    );
    assert!(
        seeder.child.try_wait().unwrap().is_none(),
        "the seeder is still running"
    );
    // Results on the terminal, no log: neither side printed a time-stamped line.
    let seed_said = std::fs::read_to_string(tmp.path().join("seed.log")).unwrap();
    for said in [&seed_said, &fetch_said] {
        assert!(!said.lines().any(is_log_line), "a log line among the results:\n{said}");
    }
}

/// Whether `line` starts with a time stamp (`2026-12-06T03:04:05…`), as a log line does.
fn is_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 19 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

/// The README's sync flow on two machines: `swarm sync ./shared` on A (its tracker started in
/// the process), the read-write join command it prints pasted on B with B's folder for DIR;
/// A's file reaches B, and B's new file reaches A.
#[test]
fn a_folder_synced_on_two_machines_as_printed() {
    let Some(lan) = lan_if_root("sws", |n| Lan::one_link(n, false)) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (home_a, home_b) = (tmp.path().join("a"), tmp.path().join("b"));
    write(home_a.join("shared/report.txt"), b"written on A");

    let sync_a = lan.start("a", &home_a, "exec swarm sync ./shared", &tmp.path().join("a.log"));
    let join = printed_from(&sync_a, "swarm sync DIR --share swarmrw1");
    println!("printed on A: {join}");
    let join = join.replace("DIR", "./shared");
    let _sync_b = lan.start("b", &home_b, &format!("exec {join}"), &tmp.path().join("b.log"));

    let said = || {
        let log = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap_or_default();
        format!("A said:\n{}\nB said:\n{}", log("a.log"), log("b.log"))
    };
    arrives(
        &home_b.join("shared/report.txt"),
        b"written on A",
        "A's file on B",
        said,
    );
    write(home_b.join("shared/from-b.txt"), b"written on B");
    arrives(
        &home_a.join("shared/from-b.txt"),
        b"written on B",
        "B's file on A",
        said,
    );
}

/// Waits (a minute at most, else fails with what `said`) until `path` holds `data`; prints
/// how long that took as `what`.
fn arrives(path: &Path, data: &[u8], what: &str, said: impl Fn() -> String) {
    let started = Instant::now();
    while std::fs::read(path).map_or(true, |got| got != data) {
        assert!(started.elapsed() < Duration::from_secs(60), "no {what}\n{}", said());
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("{what} after {:.2?}", started.elapsed());
}

/// The README's separate-tracker flow with its tracker gone: `swarm tracker` on T, `swarm seed
/// ./videos --tracker …` on A as T printed it, T switched off, then the command A printed,
/// pasted on B as printed: the ticket names A, so B fetches from A.
fn fetch_with_the_tracker_gone(lan: &Lan) {
    let tmp = tempfile::tempdir().unwrap();
    let (home_a, home_b, home_t) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("t"));
    let film = content(3 << 20, 6);
    write(home_a.join("videos/film.mkv"), &film);

    let mut tracker = lan.start("t", &home_t, "exec swarm tracker", &tmp.path().join("tracker.log"));
    let tracker_flag = printed_from(&tracker, "--tracker ");
    println!("printed on T: {tracker_flag}");

    let seed = format!("exec swarm seed ./videos {tracker_flag}");
    let mut seeder = lan.start("a", &home_a, &seed, &tmp.path().join("seed.log"));
    let printed = printed_from(&seeder, "swarm fetch ");
    println!("printed on A: {printed}");
    tracker.child.kill().unwrap();
    tracker.child.wait().unwrap();

    lan.run_ok("b", &home_b, &printed, "B fetched with T gone");
    assert_eq!(std::fs::read(home_b.join("videos/film.mkv")).unwrap(), film);
    assert!(
        seeder.child.try_wait().unwrap().is_none(),
        "the seeder is still running"
    );
}

#[test]
fn the_printed_command_works_with_its_tracker_gone() {
    let Some(lan) = lan_if_root("swt", |n| Lan::one_link(n, true)) else {
        return;
    };
    fetch_with_the_tracker_gone(&lan);
}

#[test]
fn the_printed_command_works_across_a_router_with_its_tracker_gone() {
    let Some(lan) = lan_if_root("swr", Lan::routed) else {
        return;
    };
    fetch_with_the_tracker_gone(&lan);
}

/// A holder on two networks that the tracker sees on the one the fetcher cannot reach: the
/// tracker hands out its address on the network the fetcher shares with it first, and B
/// fetches by name through the tracker.
#[test]
fn a_holder_on_two_networks_is_reached_on_the_one_the_fetcher_shares() {
    let Some(lan) = lan_if_root("swm", Lan::triangle) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (home_a, home_b, home_t) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("t"));
    let film = content(2 << 20, 7);
    write(home_a.join("videos/film.mkv"), &film);

    let _tracker = lan.start("t", &home_t, "exec swarm tracker", &tmp.path().join("tracker.log"));
    let tracker_flag = printed_from(&_tracker, "--tracker ");
    let tracker_id = tracker_flag["--tracker ".len()..].split('@').next().unwrap().to_owned();
    let seed = format!("exec swarm seed ./videos --tracker {tracker_id}@10.81.1.1:7070");
    let _seeder = lan.start("a", &home_a, &seed, &tmp.path().join("seed.log"));
    printed_from(&_seeder, "swarm fetch ");

    let fetch = format!("swarm fetch videos --tracker {tracker_id}@10.81.3.1:7070");
    lan.run_ok("b", &home_b, &fetch, "B fetched");
    assert_eq!(std::fs::read(home_b.join("videos/film.mkv")).unwrap(), film);
}

/// A ticket whose tracker and seeder are both gone still fetches from a holder the ticket does
/// not name, on the same LAN: B fetched with `--seed` and stays; T's machine then pastes the
/// command A printed and finds B by asking the local network.
fn fetch_from_a_holder_the_ticket_does_not_name(lan: &Lan) {
    let tmp = tempfile::tempdir().unwrap();
    let home = |name: &str| tmp.path().join(name);
    let film = content(2 << 20, 8);
    write(home("a").join("videos/film.mkv"), &film);

    let mut tracker = lan.start("t", &home("t"), "exec swarm tracker", &home("tracker.log"));
    let tracker_flag = printed_from(&tracker, "--tracker ");
    println!("printed on T: {tracker_flag}");
    let seed = format!("exec swarm seed ./videos {tracker_flag}");
    let mut seeder = lan.start("a", &home("a"), &seed, &home("seed.log"));
    let printed = printed_from(&seeder, "swarm fetch ");
    let keeper = lan.start("b", &home("b"), &format!("exec {printed} --seed"), &home("keeper.log"));
    printed_from(&keeper, "verified");
    for gone in [&mut tracker, &mut seeder] {
        gone.child.kill().unwrap();
        gone.child.wait().unwrap();
    }

    lan.run_ok("t", &home("c"), &printed, "fetched from B with A and T gone");
    assert_eq!(std::fs::read(home("c").join("videos/film.mkv")).unwrap(), film);
}

#[test]
fn a_ticket_fetches_from_a_holder_on_the_lan_when_its_tracker_and_seeder_are_gone() {
    let Some(lan) = lan_if_root("swd", |n| Lan::one_link(n, true)) else {
        return;
    };
    fetch_from_a_holder_the_ticket_does_not_name(&lan);
}

/// The README's flow on a LAN of IPv6 alone: the seed's own tracker and its printed command,
/// then a holder found by asking the link (the IPv6 group) with the tracker and seeder gone.
#[test]
fn the_printed_command_works_on_a_lan_of_ipv6_alone() {
    let Some(lan) = lan_if_root("sw6", Lan::ipv6_only) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (home_a, home_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let film = content(2 << 20, 9);
    write(home_a.join("videos/film.mkv"), &film);
    let mut seeder = lan.start("a", &home_a, "exec swarm seed ./videos", &tmp.path().join("seed.log"));
    let printed = printed_from(&seeder, "swarm fetch ");
    println!("printed on A: {printed}");
    lan.run_ok("b", &home_b, &printed, "B fetched over IPv6");
    assert_eq!(std::fs::read(home_b.join("videos/film.mkv")).unwrap(), film);
    seeder.child.kill().unwrap();
    seeder.child.wait().unwrap();

    fetch_from_a_holder_the_ticket_does_not_name(&lan);
}

#[test]
fn a_file_from_a_web_server_on_the_lan_is_seeded_and_fetched_as_printed() {
    let Some(lan) = lan_if_root("swo", |n| Lan::one_link(n, true)) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (home_a, home_b, home_t) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("t"));
    let image = content(2 << 20, 12);
    write(home_t.join("www/disk.img"), &image);
    // The origin: a web server on machine t, logging each request.
    let origin_log = tmp.path().join("origin.log");
    let _origin = lan.start(
        "t",
        &home_t.join("www"),
        "exec python3 -m http.server 8000 --bind 10.79.0.3",
        &origin_log,
    );
    let reach = "python3 -c \"import socket; socket.create_connection(('10.79.0.3', 8000), 1)\" 2>/dev/null";
    wait_until("the origin to answer from machine a", || {
        lan.machine("a", &home_a, reach).status().is_ok_and(|s| s.success())
    });

    let seeder = lan.start(
        "a",
        &home_a,
        "exec swarm seed --url http://10.79.0.3:8000/disk.img",
        &tmp.path().join("seed.log"),
    );
    let printed = printed_from(&seeder, "swarm fetch ");
    println!("printed on A: {printed}");
    lan.run_ok("b", &home_b, &printed, "B fetched");
    assert_eq!(std::fs::read(home_b.join("disk.img")).unwrap(), image);
    let reads = std::fs::read_to_string(&origin_log).unwrap();
    assert_eq!(reads.matches("\"GET /disk.img HTTP/1.1\" 200").count(), 1, "{reads}");
}
