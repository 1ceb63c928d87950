//! Helpers shared by the black-box tests of the `swarm` binary.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_swarm");

/// A child process that is killed when dropped, with its stdout read line by line.
pub struct Proc {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    /// Where its stderr goes, if to a file: shown when the process dies unexpectedly.
    pub log: Option<PathBuf>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_with(args, "warn", Stdio::inherit())
    }

    /// Starts `swarm ARGS` logging at info level into `log`.
    pub fn spawn_logged(args: &[&str], log: &Path) -> Proc {
        let mut proc = Proc::spawn_with(args, "info", File::create(log).unwrap().into());
        proc.log = Some(log.to_owned());
        proc
    }

    fn spawn_with(args: &[&str], level: &str, stderr: Stdio) -> Proc {
        let mut command = Command::new(BIN);
        command.args(args).env("SWARM_LOG", level).stderr(stderr);
        Proc::start(command)
    }

    /// Starts `command` (SWARM_TRACKER removed, stdout read line by line).
    pub fn start(mut command: Command) -> Proc {
        let mut child = command
            .env_remove("SWARM_TRACKER")
            .stdout(Stdio::piped())
            .spawn()
            .expect("swarm binary starts");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            log: None,
        }
    }

    /// The next line of stdout; panics, showing the log, if none comes within a minute.
    pub fn line(&self) -> String {
        match self.lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(error) => {
                let log = self.log.as_ref().map(std::fs::read_to_string);
                panic!("no line from swarm ({error}); its log: {log:?}")
            }
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("swarm did not exit after SIGTERM");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the signal `name` (`INT`, `TERM`) to process `pid`, with the shell's built-in kill
/// so that no procps package is needed.
pub fn signal(pid: u32, name: &str) {
    let sent = Command::new("sh")
        .args(["-c", &format!("kill -{name} {pid}")])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} {pid} failed");
}

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SWARM_TRACKER")
        .env("SWARM_LOG", "warn")
        .output()
        .expect("swarm binary runs")
}

pub fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("valid JSON on stdout")
}

pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(u32::from(seed)) as u8)
        .collect()
}

/// Starts `swarm tracker` and returns it with the pinned address peers should use.
pub fn start_tracker(dir: &Path) -> (Proc, String) {
    start_tracker_with_timeout(dir, "30s")
}

/// Starts `swarm tracker` that drops peers silent for `peer_timeout` (e.g. "3s").
pub fn start_tracker_with_timeout(dir: &Path, peer_timeout: &str) -> (Proc, String) {
    start_tracker_with(dir, &["--peer-timeout", peer_timeout])
}

/// Starts `swarm tracker` on loopback with its state in `dir/tracker` and `extra` arguments;
/// returns it and the `ID@HOST:PORT` it prints.
pub fn start_tracker_with(dir: &Path, extra: &[&str]) -> (Proc, String) {
    let state = dir.join("tracker");
    let mut args = vec!["tracker", "--state", s(&state), "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let tracker = Proc::spawn(&args);
    let line = tracker.line();
    let addr = line
        .split("--tracker ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected tracker banner: {line}"))
        .to_owned();
    (tracker, addr)
}

/// Starts `swarm seed --each` on `share` and returns it with the (id, name) of each file and
/// the printed fetch commands (the folder's own line is skipped).
pub fn start_seeder(
    dir: &Path,
    name: &str,
    share: &Path,
    extra: &[&str],
    files: usize,
) -> (Proc, Vec<(String, String)>, Vec<String>) {
    start_seeder_logged(dir, name, share, extra, files, None)
}

/// [`start_seeder`], logging at info level into `log` if given.
pub fn start_seeder_logged(
    dir: &Path,
    name: &str,
    share: &Path,
    extra: &[&str],
    files: usize,
    log: Option<&Path>,
) -> (Proc, Vec<(String, String)>, Vec<String>) {
    let state = dir.join(name);
    let mut args = seed_args(share, &state, extra);
    args.push("--each");
    let seeder = match log {
        Some(log) => Proc::spawn_logged(&args, log),
        None => Proc::spawn(&args),
    };
    let mut seeded = Vec::new();
    let mut commands = Vec::new();
    while seeded.len() < files {
        let line = seeder.line();
        if line.trim_end().ends_with(" file(s))") {
            let _folder_command = seeder.line();
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        seeded.push((fields[0].to_owned(), fields.last().unwrap().to_string()));
        commands.push(seeder.line().trim().to_owned());
    }
    (seeder, seeded, commands)
}

/// The arguments of `swarm seed SHARE` on loopback with 64 KiB chunks, its state in `state`,
/// and `extra`.
pub fn seed_args<'a>(share: &'a Path, state: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "seed",
        s(share),
        "--state",
        s(state),
        "--listen",
        "127.0.0.1:0",
        "--chunk-size",
        "64KiB",
    ];
    args.extend_from_slice(extra);
    args
}

/// Gives the file at `path` the modification time `time`.
pub fn set_modified(path: &Path, time: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

/// `n` distinct free loopback TCP addresses: each is held until all are picked, so no two
/// are the same (another process may still take one before it is used).
pub fn free_ports(n: usize) -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().to_string())
        .collect()
}

pub fn write(path: PathBuf, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// `swarm fetch ... --json` whose log, with one trace line per chunk written, goes to `log`.
pub fn fetch_command(id: &str, addr: &str, out: &Path, state: &Path, log: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["fetch", id, "--tracker", addr, "-o", s(out), "--state", s(state)])
        .args(["--listen", "127.0.0.1:0", "--json"])
        .args(extra)
        .env_remove("SWARM_TRACKER")
        .env("SWARM_LOG", "warn,swarm_engine::fetch=trace")
        .stdout(Stdio::piped())
        .stderr(File::create(log).unwrap());
    command
}

/// The chunks that a fetch's log says were verified and written.
pub fn chunks_written(log: &Path) -> Vec<u32> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|line| line.contains("chunk written"))
        .map(|line| {
            let field = line.split_whitespace().find_map(|w| w.strip_prefix("chunk=")).unwrap();
            field.parse().unwrap()
        })
        .collect()
}

/// Waits until `path` contains `text`, or panics after `limit`.
/// Waits (up to a minute, else fails saying `what`) until `done`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn wait_for_text(path: &Path, text: &str, limit: Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now.contains(text) {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{text}` never appeared in {}:\n{now}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Chunks of a [`junk`] manifest: 65,536 hashes, a 2 MiB manifest.
pub const JUNK_CHUNKS: u32 = 65_536;

/// A manifest of a 4 GiB file no one has, consistent in every way a tracker can check: what a
/// hostile announcer makes for free.
pub fn junk(n: u32) -> swarm_proto::Manifest {
    const CHUNK_SIZE: u32 = 64 * 1024;
    let chunks: Vec<swarm_proto::Digest> = (0..JUNK_CHUNKS)
        .map(|c| swarm_proto::Digest(*blake3::hash(&[n.to_le_bytes(), c.to_le_bytes()].concat()).as_bytes()))
        .collect();
    let size = u64::from(JUNK_CHUNKS) * u64::from(CHUNK_SIZE);
    swarm_proto::Manifest {
        name: format!("junk/{n}.bin"),
        hash: swarm_proto::hashing::global_from_chunks(size, CHUNK_SIZE, &chunks).unwrap(),
        size,
        chunk_size: CHUNK_SIZE,
        chunk_count: JUNK_CHUNKS,
        chunks,
    }
}

/// The ticket in a `swarm fetch TICKET` line that `swarm seed` printed.
pub fn printed_ticket(command: &str) -> swarm_proto::ticket::Ticket {
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(&words[..2], &["swarm", "fetch"], "{command}");
    assert_eq!(words.len(), 3, "one ticket and nothing else: {command}");
    words[2].parse().unwrap_or_else(|e| panic!("{command}: {e}"))
}

/// Installs Debian's `package` when `program` is not on the PATH (as `.ci/run` does), so
/// that `cargo test` as root on a fresh Debian machine needs nothing else; fails saying what
/// to install otherwise.
pub fn install_if_missing(program: &str, package: &str) {
    let found = || {
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found() {
        return;
    }
    let _ = Command::new("apt-get")
        .args([
            "-o",
            "DPkg::Lock::Timeout=300",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            package,
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status();
    assert!(
        found(),
        "this test needs {program}: apt-get install {package} (as root)"
    );
}
