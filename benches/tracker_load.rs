//! Load generator for one real tracker process: N simulated fetchers of one file and M idle
//! peers, each with its own identity over real QUIC, doing what a node does at its cadence
//! (register, announce, locate, chunk reports as often as the tracker asks, re-locates every
//! 30 s, keepalives), spread over source addresses in 127.0.0.0/8 (at most 50 peers on one).
//! Prints the tracker's CPU and memory over the steady part of the run, and request latency.
//! With `--redis`, starts a redis-server on loopback and `--trackers N` trackers sharing it
//! (peers spread over them), and prints Redis's CPU too.
//!
//!     tracker-load --fetchers 1000 --size 1GB --idle 10000 --seconds 60
//!     tracker-load --fetchers 1000 --size 1GB --redis --trackers 3

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use swarm_benches::tracker_process::{start_tracker, usage};
use swarm_engine::tracker_client::{TrackerAddr, TrackerClient, Trackers};
use swarm_proto::hashing::global_from_chunks;
use swarm_proto::protocol::TrackerRequest;
use swarm_proto::transport::Transport;
use swarm_proto::{codec, Bitfield, Digest, Identity, Manifest};

/// Simulated peers sharing one source address (and endpoint): under the tracker's cap of 64
/// connections per address.
const PEERS_PER_ADDRESS: usize = 50;
/// How often a simulated fetcher asks for more neighbours, as the real one does.
const RELOCATE_EVERY: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(about = "Load one swarm tracker with simulated fetchers and idle peers")]
struct Args {
    /// The swarm binary that runs the tracker.
    #[arg(long, default_value = "target/release/swarm")]
    bin: PathBuf,
    /// Simulated fetchers of one file.
    #[arg(long, default_value_t = 1000)]
    fetchers: usize,
    /// Size of that file (1 MiB chunks).
    #[arg(long, default_value = "1GB", value_parser = parse_size)]
    size: u64,
    /// Idle peers, each holding one small file of its own, only keeping their session alive.
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// How long to run, after the ramp.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Peers start spread over this many seconds.
    #[arg(long, default_value_t = 20)]
    ramp: u64,
    /// Seconds a simulated download takes (its chunk reports are spread over it).
    #[arg(long, default_value_t = 120)]
    download: u64,
    /// The tracker's peer timeout (peers keep alive twice per timeout).
    #[arg(long, default_value = "180s")]
    peer_timeout: String,
    /// Run the trackers on a Redis of their own (redis-server on a free loopback port).
    #[arg(long)]
    redis: bool,
    /// Trackers sharing that Redis; each peer picks one at random.
    #[arg(long, default_value_t = 1)]
    trackers: usize,
    /// After joining, every peer sends keepalives back to back instead of at its cadence:
    /// how many changes per second the tracker(s) can take.
    #[arg(long)]
    flood: bool,
    /// Fetchers take the manifest from the tracker's first answer, as nodes did before they
    /// took it from holders (by default they ask the tracker for holders only, as a node whose
    /// holder sends the manifest does).
    #[arg(long)]
    manifest_from_tracker: bool,
    /// Fetchers hang up right after they join and dial again to locate, as nodes did before
    /// their session kept the join's connection until idle (one more handshake per join).
    #[arg(long)]
    hang_up_after_join: bool,
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| e.to_string())
}

/// Latencies of one kind of request.
#[derive(Default)]
struct Latencies {
    samples: Mutex<Vec<Duration>>,
    errors: AtomicU64,
    /// What the first failed request of this kind said, and how long it had taken.
    first_error: Mutex<Option<(String, Duration)>>,
    bytes: AtomicU64,
}

impl Latencies {
    fn record(&self, took: Duration) {
        self.samples.lock().expect("lock").push(took);
    }

    fn failed(&self, why: String, took: Duration) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().expect("lock").get_or_insert((why, took));
    }

    fn line(&self, kind: &str) -> String {
        let mut samples = self.samples.lock().expect("lock").clone();
        samples.sort();
        let at = |q: f64| samples.get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)));
        let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let mean_bytes = self.bytes.load(Ordering::Relaxed) as f64 / samples.len().max(1) as f64;
        format!(
            "{kind:<10} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>10.0} {:>7}",
            samples.len(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(samples.last()),
            mean_bytes,
            self.errors.load(Ordering::Relaxed)
        )
    }
}

#[derive(Default)]
struct Stats {
    register: Latencies,
    announce: Latencies,
    locate: Latencies,
    relocate: Latencies,
    have: Latencies,
    keepalive: Latencies,
}

/// A consistent manifest of `size` bytes nobody has (the tracker is not spot-checking).
fn synthetic(name: &str, size: u64, chunk_size: u32) -> Manifest {
    let count = size.div_ceil(u64::from(chunk_size)) as u32;
    let chunks: Vec<Digest> = (0..count)
        .map(|c| Digest(*blake3::hash(format!("{name}/{c}").as_bytes()).as_bytes()))
        .collect();
    let hash = if count == 1 {
        chunks[0]
    } else {
        global_from_chunks(size, chunk_size, &chunks).expect("two or more chunks")
    };
    Manifest {
        name: name.to_owned(),
        hash,
        size,
        chunk_size,
        chunk_count: count,
        chunks,
    }
}

/// A request unanswered this long counts as failed.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

async fn timed<T>(into: &Latencies, work: impl std::future::Future<Output = swarm_engine::Result<T>>) -> Option<T> {
    let started = Instant::now();
    match tokio::time::timeout(REQUEST_LIMIT, work).await {
        Ok(Ok(value)) => {
            into.record(started.elapsed());
            Some(value)
        }
        Ok(Err(e)) => {
            into.failed(e.to_string(), started.elapsed());
            None
        }
        Err(_) => {
            into.failed("no answer".into(), started.elapsed());
            None
        }
    }
}

/// How the simulated fetchers behave, from the command line.
#[derive(Clone, Copy)]
struct Habits {
    flooding: bool,
    manifest_from_tracker: bool,
    hang_up_after_join: bool,
}

/// One simulated fetcher: joins, locates (with the manifest if `manifest_from_tracker`), then
/// reports its download's chunks and asks for neighbours again at the real node's cadence,
/// until `end`.
async fn fetcher(
    client: TrackerClient,
    manifest: Arc<Manifest>,
    download: Duration,
    stats: Arc<Stats>,
    end: Instant,
    habits: Habits,
) {
    let Habits {
        flooding,
        manifest_from_tracker,
        hang_up_after_join,
    } = habits;
    let Some(registration) = timed(&stats.register, client.register(None, lan_addrs())).await else {
        return;
    };
    let empty = Bitfield::new(manifest.chunk_count);
    // As a node's download does: by id, the tracker having the manifest already.
    timed(&stats.announce, client.join(manifest.id(), &empty, Default::default())).await;
    // A node's session hangs up unless asked something soon; its fetch locates at once, on the
    // same connection.
    if hang_up_after_join {
        client.hang_up().await;
    }
    let client = Arc::new(client);
    hang_up_when_idle(&client);
    let id = manifest.id();
    let locate = |with_manifest: bool| TrackerRequest::Locate {
        file: id,
        manifest: with_manifest,
        want: 40,
    };
    let located = timed(&stats.locate, client.request(&locate(manifest_from_tracker))).await;
    if let Some(answer) = located {
        stats
            .locate
            .bytes
            .fetch_add(codec::encode(&answer).len() as u64, Ordering::Relaxed);
    }
    if flooding {
        return flood(&client, &stats, end).await;
    }
    let started = Instant::now();
    let report_every = Duration::from_secs(u64::from(registration.report_secs.max(1)));
    let keepalive_every = registration.keepalive_every();
    let (mut next_report, mut next_relocate, mut next_keepalive) = (
        started + report_every,
        started + RELOCATE_EVERY,
        started + keepalive_every,
    );
    let mut reported = 0u32;
    loop {
        let next = next_report.min(next_relocate).min(next_keepalive);
        if next >= end {
            return;
        }
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        if now >= next_report {
            next_report += report_every;
            let done = ((now - started).as_secs_f64() / download.as_secs_f64()).min(1.0);
            let target = (f64::from(manifest.chunk_count) * done) as u32;
            if target > reported {
                let batch: Vec<u32> = (reported..target).collect();
                reported = target;
                timed(&stats.have, client.have(id, batch)).await;
            }
        }
        if now >= next_relocate {
            next_relocate += RELOCATE_EVERY;
            if let Some(answer) = timed(&stats.relocate, client.request(&locate(false))).await {
                stats
                    .relocate
                    .bytes
                    .fetch_add(codec::encode(&answer).len() as u64, Ordering::Relaxed);
            }
        }
        if now >= next_keepalive {
            next_keepalive += keepalive_every;
            timed(&stats.keepalive, client.keepalive()).await;
        }
    }
}

/// Hangs up unless `client` was asked something soon after it joined, as a node's session does.
fn hang_up_when_idle(client: &Arc<TrackerClient>) {
    let client = client.clone();
    tokio::spawn(async move {
        let quiet = swarm_engine::tracker_client::HANG_UP_AFTER_JOIN;
        tokio::time::sleep(quiet).await;
        client.hang_up_if_idle(quiet).await;
    });
}

/// Keepalives back to back until `end` (`--flood`).
async fn flood(client: &TrackerClient, stats: &Stats, end: Instant) {
    while Instant::now() < end {
        timed(&stats.keepalive, client.request(&TrackerRequest::Keepalive)).await;
    }
}

/// The addresses a simulated peer registers beside the one the tracker sees, as a real node
/// lists its interfaces': one made-up LAN address.
fn lan_addrs() -> Vec<std::net::SocketAddr> {
    vec![std::net::SocketAddr::from(([192, 168, 1, 20], 7071))]
}

/// One idle peer: joins, announces a small file of its own, then only keeps its session alive.
async fn idle(client: TrackerClient, n: usize, stats: Arc<Stats>, end: Instant, flooding: bool) {
    let Some(registration) = timed(&stats.register, client.register(None, lan_addrs())).await else {
        return;
    };
    let mine = synthetic(&format!("idle/{n}.txt"), 3000, 64 * 1024);
    let all = Bitfield::full(mine.chunk_count);
    timed(&stats.announce, client.announce(&mine, &all, Default::default())).await;
    if flooding {
        return flood(&client, &stats, end).await;
    }
    // As a node's session does once it has joined.
    let client = Arc::new(client);
    hang_up_when_idle(&client);
    let every = registration.keepalive_every();
    loop {
        let next = Instant::now() + every;
        if next >= end {
            return;
        }
        tokio::time::sleep_until(next.into()).await;
        timed(&stats.keepalive, client.keepalive()).await;
    }
}

fn main() {
    let args = Args::parse();
    raise_file_limit();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(args));
}

/// Each source address is a socket: thousands of them need more than the usual 1,024 files.
fn raise_file_limit() {
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(65_536),
            maximum: Some(65_536),
        },
    );
}

/// A redis-server on a free loopback port, saving nothing, and its URL.
fn start_redis(dir: &std::path::Path) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("bound")
        .port();
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
        .current_dir(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e} (apt-get install redis-server)"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, format!("redis://127.0.0.1:{port}/0"))
}

async fn run(args: Args) {
    let state = tempfile::tempdir().expect("temp dir");
    assert!(
        args.trackers == 1 || args.redis,
        "several trackers need --redis to share a state"
    );
    let mut redis = args.redis.then(|| start_redis(state.path()));
    let store = redis.as_ref().map(|(_, url)| url.clone());
    let mut trackers: Vec<(Child, TrackerAddr)> = (0..args.trackers)
        .map(|i| {
            let dir = state.path().join(format!("tracker{i}"));
            let mut extra = vec!["--no-audits", "--peer-timeout", &args.peer_timeout];
            if let Some(url) = &store {
                extra.extend(["--store", url]);
            }
            start_tracker(&args.bin, &dir, &extra)
        })
        .collect();
    let pids: Vec<u32> = trackers.iter().map(|(child, _)| child.id()).collect();
    let redis_pid = redis.as_ref().map(|(child, _)| child.id());
    let addr = Trackers::new(trackers.iter().map(|(_, addr)| addr.clone()).collect()).expect("one tracker or more");
    let cpu = |pids: &[u32]| pids.iter().map(|&pid| usage(pid).0).sum::<f64>();
    let rss = |pids: &[u32]| pids.iter().map(|&pid| usage(pid).1).sum::<f64>();
    let manifest = Arc::new(synthetic("load/big.bin", args.size, 1 << 20));
    let stats = Arc::new(Stats::default());
    let peers = args.fetchers + args.idle;
    let addresses = peers.div_ceil(PEERS_PER_ADDRESS);
    let mut endpoints = Vec::new();
    for a in 0..addresses {
        let ip = Ipv4Addr::new(127, 1, (a / 250) as u8, (a % 250 + 1) as u8);
        let socket = SocketAddr::new(IpAddr::V4(ip), 0);
        let transport = Transport::bind(Arc::new(Identity::generate().expect("key")), socket).expect("bind");
        endpoints.push(transport);
    }
    let ramp = Duration::from_secs(args.ramp);
    let start = Instant::now();
    let end = start + ramp + Duration::from_secs(args.seconds);
    println!(
        "{} tracker(s) at {addr}{}; {} fetchers of {} MB ({} chunks) and {} idle peers over {addresses} addresses",
        pids.len(),
        if store.is_some() { " on one Redis" } else { "" },
        args.fetchers,
        args.size / 1_000_000,
        manifest.chunk_count,
        args.idle
    );
    // The seeder: holds the whole file.
    let seeder = TrackerClient::new(
        endpoints[0].with_identity(Arc::new(Identity::generate().expect("key"))),
        addr.clone(),
        None,
    );
    seeder.register(None, lan_addrs()).await.expect("seeder registers");
    seeder
        .announce(&manifest, &Bitfield::full(manifest.chunk_count), Default::default())
        .await
        .expect("seeder announces");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..peers {
        let transport = endpoints[n / PEERS_PER_ADDRESS].with_identity(Arc::new(Identity::generate().expect("key")));
        let client = TrackerClient::new(transport, addr.clone(), None);
        let (stats, manifest) = (stats.clone(), manifest.clone());
        let delay = ramp.mul_f64(rand::random::<f64>());
        let download = Duration::from_secs(args.download);
        let is_fetcher = n < args.fetchers;
        let habits = Habits {
            flooding: args.flood,
            manifest_from_tracker: args.manifest_from_tracker,
            hang_up_after_join: args.hang_up_after_join,
        };
        tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            if is_fetcher {
                fetcher(client, manifest, download, stats, end, habits).await;
            } else {
                idle(client, n, stats, end, habits.flooding).await;
            }
        });
    }
    tokio::time::sleep_until((start + ramp).into()).await;
    let cpu_before = cpu(&pids);
    let redis_before = redis_pid.map(|pid| usage(pid).0);
    let steady_from = Instant::now();
    while tasks.join_next().await.is_some() {}
    let steady = steady_from.elapsed().as_secs_f64();
    let total_secs = start.elapsed().as_secs_f64();
    println!(
        "trackers after the ramp: {:.1}% of one core, {:.0} MiB resident (all trackers together)",
        100.0 * (cpu(&pids) - cpu_before) / steady,
        rss(&pids)
    );
    if let (Some(pid), Some(before)) = (redis_pid, redis_before) {
        let (after, resident) = usage(pid);
        println!(
            "redis after the ramp: {:.1}% of one core, {resident:.0} MiB resident",
            100.0 * (after - before) / steady
        );
    }
    println!(
        "{:<10} {:>8} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "request", "count", "p50 ms", "p99 ms", "max ms", "bytes", "errors"
    );
    let kinds = [
        ("register", &stats.register),
        ("announce", &stats.announce),
        ("locate", &stats.locate),
        ("relocate", &stats.relocate),
        ("have", &stats.have),
        ("keepalive", &stats.keepalive),
    ];
    for (kind, latencies) in kinds {
        println!("{}", latencies.line(kind));
    }
    let answered: usize = kinds.iter().map(|(_, l)| l.samples.lock().expect("lock").len()).sum();
    let located_bytes = stats.locate.bytes.load(Ordering::Relaxed) + stats.relocate.bytes.load(Ordering::Relaxed);
    println!(
        "tracker egress in locate answers: {:.1} MB in all (manifests from the {})",
        located_bytes as f64 / 1e6,
        if args.manifest_from_tracker {
            "tracker"
        } else {
            "holders"
        }
    );
    println!(
        "requests answered: {answered}, {:.0} per second over the whole run",
        answered as f64 / total_secs
    );
    for (child, _) in &mut trackers {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some((child, _)) = &mut redis {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(endpoints);
    // A run in which requests failed, or no fetcher located the file, measured nothing.
    let errors: u64 = kinds.iter().map(|(_, l)| l.errors.load(Ordering::Relaxed)).sum();
    let located = stats.locate.samples.lock().expect("lock").len();
    if errors > 0 || (args.fetchers > 0 && located == 0) {
        eprintln!("tracker-load: FAILED: {errors} requests failed, {located} locates answered");
        for (kind, latencies) in &kinds {
            if let Some((why, took)) = latencies.first_error.lock().expect("lock").as_ref() {
                eprintln!("  first {kind} that failed, after {:.1} s: {why}", took.as_secs_f64());
            }
        }
        std::process::exit(1);
    }
}
