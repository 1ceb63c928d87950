//! The README's flows on machines of one LAN: network namespaces joined by veth pairs (and a
//! bridge on B for a third machine), each with its own home directory. `swarm seed ./videos`
//! on one (its tracker started in the process), and the printed `swarm fetch …` pasted as
//! printed on the other, with no flag; and the same through a tracker on a third machine that
//! is gone by the time the command is pasted. Needs root (CI runs as root); says so and passes
//! without it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

mod common;
use common::*;

/// Namespaces `NAME-a` (10.79.0.1, its default route through b; and a bridge-like link at
/// 172.31.0.1 listed first, as docker0 often is) and `NAME-b` (10.79.0.2) on one link, and
/// with `tracker_machine` `NAME-t` (10.79.0.3) on the same LAN (B's end of each link is on a
/// bridge), removed on drop.
struct Lan {
    name: String,
}

impl Lan {
    fn new(name: &str, tracker_machine: bool) -> Lan {
        let lan = Lan { name: name.to_owned() };
        lan.remove();
        let (a, b, t) = (format!("{name}-a"), format!("{name}-b"), format!("{name}-t"));
        let mut script = vec![
            format!("ip netns add {a}"),
            format!("ip netns add {b}"),
            // A container bridge on A listed before its LAN link, as docker0 often is.
            format!("ip link add {name}-d0 netns {a} type veth peer name {name}-d1 netns {a}"),
            format!("ip -n {a} addr add 172.31.0.1/16 dev {name}-d0"),
            format!("ip -n {a} link set {name}-d0 up"),
            format!("ip link add {name}-ea netns {a} type veth peer name {name}-eb netns {b}"),
            format!("ip -n {a} addr add 10.79.0.1/24 dev {name}-ea"),
            format!("ip -n {a} link set {name}-ea up"),
            format!("ip -n {b} link set {name}-eb up"),
            format!("ip -n {a} link set lo up"),
            format!("ip -n {b} link set lo up"),
            format!("ip -n {a} route add default via 10.79.0.2"),
        ];
        if tracker_machine {
            script.extend([
                format!("ip netns add {t}"),
                format!("ip -n {b} link add {name}-br type bridge"),
                format!("ip -n {b} link set {name}-eb master {name}-br"),
                format!("ip link add {name}-et netns {t} type veth peer name {name}-bt netns {b}"),
                format!("ip -n {b} link set {name}-bt master {name}-br"),
                format!("ip -n {b} addr add 10.79.0.2/24 dev {name}-br"),
                format!("ip -n {b} link set {name}-bt up"),
                format!("ip -n {b} link set {name}-br up"),
                format!("ip -n {t} addr add 10.79.0.3/24 dev {name}-et"),
                format!("ip -n {t} link set {name}-et up"),
                format!("ip -n {t} link set lo up"),
                format!("ip -n {t} route add default via 10.79.0.2"),
            ]);
        } else {
            script.push(format!("ip -n {b} addr add 10.79.0.2/24 dev {name}-eb"));
        }
        for line in script {
            let status = Command::new("sh").arg("-c").arg(&line).status().unwrap();
            assert!(status.success(), "{line}");
        }
        lan
    }

    /// A shell command line run in machine `which` (`a` or `b`), in `home` (its `HOME` and
    /// working directory), with `swarm` on its `PATH`.
    fn machine(&self, which: &str, home: &Path, line: &str) -> Command {
        std::fs::create_dir_all(home).unwrap();
        let bin_dir = Path::new(BIN).parent().unwrap();
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
    fn start(&self, which: &str, home: &Path, line: &str, log: &Path) -> Proc {
        let mut command = self.machine(which, home, line);
        command.stderr(std::fs::File::create(log).unwrap());
        Proc::start(command)
    }

    fn remove(&self) {
        for which in ["a", "b", "t"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{}-{which}", self.name)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.remove();
    }
}

/// What `process` printed from `start` on, in the first line where it does.
fn printed_from(process: &Proc, start: &str) -> String {
    loop {
        let line = process.line();
        if let Some(at) = line.find(start) {
            return line[at..].trim().to_owned();
        }
    }
}

/// A fresh LAN named after `prefix` and this process, or `None` (said) without root.
fn lan_if_root(prefix: &str, tracker_machine: bool) -> Option<Lan> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        eprintln!("skipped: network namespaces need root");
        return None;
    }
    Some(Lan::new(
        &format!("{prefix}{}", std::process::id() % 100_000),
        tracker_machine,
    ))
}

#[test]
fn the_printed_command_works_on_another_machine_of_the_lan() {
    let Some(lan) = lan_if_root("swl", false) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (home_a, home_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let film = content(3 << 20, 4);
    write(home_a.join("videos/film.mkv"), &film);
    write(home_a.join("videos/notes.txt"), b"for the other machine");

    let mut seeder = lan.start("a", &home_a, "exec swarm seed ./videos", &tmp.path().join("seed.log"));
    let printed = printed_from(&seeder, "swarm fetch ");
    println!("printed on A: {printed}");

    let started = Instant::now();
    let fetched = lan
        .machine("b", &home_b, &format!("timeout 60 {printed}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&fetched.stderr);
    println!(
        "B fetched in {:.2?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&fetched.stdout)
    );
    assert!(fetched.status.success(), "{stderr}");
    assert_eq!(std::fs::read(home_b.join("videos/film.mkv")).unwrap(), film);
    assert_eq!(
        std::fs::read(home_b.join("videos/notes.txt")).unwrap(),
        b"for the other machine"
    );
    assert!(
        seeder.child.try_wait().unwrap().is_none(),
        "the seeder is still running"
    );
}

/// The README's separate-tracker flow with its tracker gone: `swarm tracker` on T, `swarm seed
/// ./videos --tracker …` on A as T printed it, T switched off, then the command A printed,
/// pasted on B as printed: the ticket names A, so B fetches from A.
#[test]
fn the_printed_command_works_with_its_tracker_gone() {
    let Some(lan) = lan_if_root("swt", true) else { return };
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

    let started = Instant::now();
    let fetched = lan
        .machine("b", &home_b, &format!("timeout 60 {printed}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&fetched.stderr);
    println!("B fetched with T gone in {:.2?}: {stderr}", started.elapsed());
    assert!(fetched.status.success(), "{stderr}");
    assert!(
        stderr.contains("fetching from the holders the ticket names"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(home_b.join("videos/film.mkv")).unwrap(), film);
    assert!(
        seeder.child.try_wait().unwrap().is_none(),
        "the seeder is still running"
    );
}
