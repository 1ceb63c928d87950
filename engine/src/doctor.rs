//! `swarm doctor`: what makes a transfer fail or crawl on this machine, each found in a few
//! seconds and said with what to change: the tracker (does it answer, how fast, where it sees
//! this node), each holder of a file (reached directly, through its NAT, through the relay, or
//! not at all), the UDP buffers, the disk a fetch writes to, and how fast this machine hashes.

use std::path::Path;
use std::time::{Duration, Instant};

use swarm_proto::protocol::Holder;
use swarm_proto::FileId;

use crate::nat::Path as PeerPath;
use crate::node::Node;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to change.
    Good,
    /// Works, but slower or less reachable than it could be.
    Warn,
    /// Makes transfers fail.
    Fail,
}

/// One finding.
#[derive(Debug, Clone)]
pub struct Finding {
    /// How it came out.
    pub verdict: Verdict,
    /// What was checked (`tracker 10.0.0.5:7070`, `holder e0d18270`, `disk ./out`, …).
    pub what: String,
    /// What was found, and what to change if anything.
    pub said: String,
}

impl Finding {
    fn new(verdict: Verdict, what: impl Into<String>, said: impl Into<String>) -> Finding {
        Finding {
            verdict,
            what: what.into(),
            said: said.into(),
        }
    }
}

/// Most holders dialled.
const MOST_HOLDERS: usize = 8;
/// Longest wait for one holder (a relayed path takes a few seconds to be tried).
const HOLDER_PATIENCE: Duration = Duration::from_secs(12);
/// Bytes written, read back and hashed to measure the disk and the CPU.
const PROBE_BYTES: usize = 64 << 20;
/// UDP buffer a node asks for (see `swarm_proto::transport`): less makes fast links drop.
const UDP_BUFFER_WANTED: u64 = 8 << 20;

/// The tracker of `node`: whether it answers, its round trip, and where it sees this node.
pub async fn tracker(node: &Node) -> Finding {
    let addr = match node.tracker() {
        Ok(client) => client.addr().host_port.clone(),
        Err(e) => return Finding::new(Verdict::Fail, "tracker", e.to_string()),
    };
    let what = format!("tracker {addr}");
    let started = Instant::now();
    match tokio::time::timeout(Duration::from_secs(10), node.join_tracker()).await {
        Ok(Ok(registration)) => {
            let took = started.elapsed();
            let seen = registration.addr;
            let own = crate::netutil::own_addrs(node.local_addr());
            let nat = if crate::nat::behind_nat(seen, &own) {
                "; this node is behind a NAT (holders behind another NAT reach it through the tracker's \
                 introductions or relay)"
            } else {
                ""
            };
            Finding::new(
                Verdict::Good,
                what,
                format!("answered and registered this node in {took:.0?}; it sees this node at {seen}{nat}"),
            )
        }
        Ok(Err(e)) => Finding::new(Verdict::Fail, what, e.to_string()),
        Err(_) => Finding::new(
            Verdict::Fail,
            what,
            "no answer within 10 s: check the address, and that UDP to its port is let through",
        ),
    }
}

/// The holders of `file` (those of the ticket, `known`, and the tracker's): how each is
/// reached from here, at most `MOST_HOLDERS` (8).
pub async fn holders(node: &Node, file: FileId, known: &[Holder]) -> Vec<Finding> {
    let located = match node.locate(file, known).await {
        Ok((_, located)) => located.holders,
        Err(e) if known.is_empty() => {
            return vec![Finding::new(
                Verdict::Fail,
                format!("file {}", file.short()),
                e.to_string(),
            )]
        }
        Err(_) => known.to_vec(),
    };
    if located.is_empty() {
        return vec![Finding::new(
            Verdict::Fail,
            format!("file {}", file.short()),
            "no live peer holds it: start a seeder, or check that it still runs",
        )];
    }
    let Ok(session) = node.session() else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for holder in located.iter().filter(|h| h.peer != node.id()).take(MOST_HOLDERS) {
        let what = format!("holder {}", holder.peer.short());
        let addrs: Vec<_> = std::iter::once(holder.addr)
            .chain(holder.other_addrs.iter().copied())
            .collect();
        let started = Instant::now();
        let reached = crate::traversal::reach(node.transport(), session, holder.peer, &addrs);
        let finding = match tokio::time::timeout(HOLDER_PATIENCE, reached).await {
            Ok(Ok(reached)) => {
                let took = started.elapsed();
                reached
                    .connection
                    .close(swarm_proto::protocol::CloseCode::Done.code(), b"checked");
                match reached.path {
                    PeerPath::Direct => Finding::new(
                        Verdict::Good,
                        what,
                        format!("reached directly at {} in {took:.0?}", reached.addr),
                    ),
                    PeerPath::Punched => Finding::new(
                        Verdict::Good,
                        what,
                        format!(
                            "reached through its NAT at {} in {took:.0?} (the tracker introduced us)",
                            reached.addr
                        ),
                    ),
                    PeerPath::Relayed => Finding::new(
                        Verdict::Warn,
                        what,
                        format!(
                            "reached only through a relay ({took:.1?}): as fast as its relay rate \
                             allows. A port forwarded on either side's router (or UPnP) gives a direct path"
                        ),
                    ),
                }
            }
            Ok(Err(unreached)) => Finding::new(Verdict::Fail, what, format!("unreachable from here: {unreached}")),
            Err(_) => Finding::new(
                Verdict::Fail,
                what,
                format!("no path within {HOLDER_PATIENCE:?} at {}", list(&addrs)),
            ),
        };
        findings.push(finding);
    }
    findings
}

fn list(addrs: &[std::net::SocketAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The system's UDP buffer limits, against what a node asks for.
pub fn udp_buffers() -> Finding {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
    };
    match (read("rmem_max"), read("wmem_max")) {
        (Some(receive), Some(send)) if receive >= UDP_BUFFER_WANTED && send >= UDP_BUFFER_WANTED => Finding::new(
            Verdict::Good,
            "UDP buffers",
            format!("up to {} KiB each way", receive.min(send) / 1024),
        ),
        // Root may go beyond the limits, and a node does (see swarm_proto::transport).
        (Some(receive), Some(send)) if rustix::process::geteuid().is_root() => Finding::new(
            Verdict::Good,
            "UDP buffers",
            format!(
                "the system's limits are {} KiB and {} KiB, but a node running as root raises its own to {} KiB",
                receive / 1024,
                send / 1024,
                UDP_BUFFER_WANTED / 1024
            ),
        ),
        (Some(receive), Some(send)) => Finding::new(
            Verdict::Warn,
            "UDP buffers",
            format!(
                "at most {} KiB to receive and {} KiB to send, under the {} KiB a node asks for: fast transfers \
                 drop datagrams and slow down. Raise them: sysctl -w net.core.rmem_max={UDP_BUFFER_WANTED} \
                 net.core.wmem_max={UDP_BUFFER_WANTED}",
                receive / 1024,
                send / 1024,
                UDP_BUFFER_WANTED / 1024
            ),
        ),
        _ => Finding::new(
            Verdict::Good,
            "UDP buffers",
            "cannot be read on this system; not checked",
        ),
    }
}

/// The disk at `dir` (free space, and how fast it takes a write made durable) and this
/// machine's hashing speed (the written bytes read back and hashed on every core).
pub async fn disk_and_cpu(dir: &Path) -> Vec<Finding> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || probe_disk_and_cpu(&dir))
        .await
        .unwrap_or_else(|e| vec![Finding::new(Verdict::Warn, "disk", format!("not checked: {e}"))])
}

fn probe_disk_and_cpu(dir: &Path) -> Vec<Finding> {
    use std::io::Write;
    let what = format!("disk at {}", dir.display());
    let probe = dir.join(format!(".swarm-doctor-{}", std::process::id()));
    let written = (|| -> std::io::Result<(Duration, std::fs::File)> {
        std::fs::create_dir_all(dir)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&probe)?;
        let block = vec![0x5a_u8; 1 << 20];
        let started = Instant::now();
        for _ in 0..PROBE_BYTES / block.len() {
            file.write_all(&block)?;
        }
        file.sync_all()?;
        Ok((started.elapsed(), file))
    })();
    let mut findings = Vec::new();
    match written {
        Ok((took, file)) => {
            let rate = PROBE_BYTES as f64 / took.as_secs_f64() / 1e6;
            let free = crate::fetch::output::free_space(&file);
            let free_text = free.map_or("free space unknown".to_owned(), |f| format!("{} free", crate::human(f)));
            let verdict = if rate < 50.0 { Verdict::Warn } else { Verdict::Good };
            let advice = if verdict == Verdict::Warn {
                ": slower than a fast network; fetch onto a faster disk (-o) if you can"
            } else {
                ""
            };
            findings.push(Finding::new(
                verdict,
                what,
                format!("{free_text}; takes writes at {rate:.0} MB/s (64 MiB, synced){advice}"),
            ));
            let started = Instant::now();
            let hashed = swarm_proto::hashing::hash_open_file(&file, 1 << 20);
            let took = started.elapsed();
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            findings.push(match hashed {
                Ok(_) => Finding::new(
                    Verdict::Good,
                    "CPU",
                    format!(
                        "{cores} core(s); verifies at {:.0} MB/s (BLAKE3 on every core)",
                        PROBE_BYTES as f64 / took.as_secs_f64() / 1e6
                    ),
                ),
                Err(e) => Finding::new(Verdict::Warn, "CPU", format!("not measured: {e}")),
            });
        }
        Err(e) => findings.push(Finding::new(
            Verdict::Fail,
            what,
            format!("cannot write there: {e}; a fetch into it would fail. Choose another -o"),
        )),
    }
    let _ = std::fs::remove_file(&probe);
    findings
}
