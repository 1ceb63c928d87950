//! What the load generators share: a real tracker as a child process, and what it uses.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use swarm_engine::tracker_client::TrackerAddr;

/// CPU seconds and resident MiB of process `pid`.
pub fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (ticks / 100.0, rss_kib / 1024.0)
}

/// `swarm tracker` (from `bin`, with `extra` arguments) as a child process on a free loopback
/// port, and how peers name it.
pub fn start_tracker(bin: &Path, state: &Path, extra: &[&str]) -> (Child, TrackerAddr) {
    let mut child = Command::new(bin)
        .args(["tracker", "--listen", "127.0.0.1:0", "--state"])
        .arg(state)
        .args(extra)
        .env(
            "SWARM_LOG",
            std::env::var("SWARM_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (cargo build --release first)", bin.display()));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("the tracker prints its address");
    let addr = line.split("--tracker ").nth(1).expect("tracker banner").trim();
    let (id, _) = addr.split_once('@').expect("pinned");
    let port = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("address");
    let host_port = port.trim().to_owned();
    (
        child,
        TrackerAddr {
            host_port,
            id: Some(id.parse().expect("tracker id")),
        },
    )
}
