//! One function per subcommand: turn arguments into engine configs, call the engine, print.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{RngCore, SeedableRng};
use swarm_engine::collection::CollectionOptions;
use swarm_engine::known_trackers::KnownTrackers;
use swarm_engine::launch::{Caps, LaunchEvent, LocalSwarm, Peer, TrackerChoice};
use swarm_engine::netutil::reachable_addr;
use swarm_engine::sync::folder_key::{folder_key, KeySource, KEY_FILE};
use swarm_engine::sync::SyncOptions;
use swarm_engine::{
    DiskIo, FetchOptions, Node, NodeConfig, Progress, Replace, SeededFile, Sources, TrackerClient, Trackers,
};
use swarm_proto::access::{Access, SwarmKey};
use swarm_proto::collection::{Collection, Entry as CollectionEntry};
use swarm_proto::share_key::{ShareKey, ShareTicket};
use swarm_proto::ticket::Ticket;
use swarm_tracker::{Tracker, TrackerConfig};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::args::{
    DemoArgs, FetchArgs, NodeArgs, PeerArgs, PeersArgs, QueryArgs, SearchArgs, SecretCommand, SeedArgs, StatusArgs,
    SyncArgs, TrackerArgs,
};
use crate::output;

/// How long a graceful exit waits for uploads in flight.
const EXIT_GRACE: Duration = Duration::from_secs(30);

/// The state directory used when --state is not given.
pub fn default_state(sub: &str) -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("swarm")
        .join(sub)
}

/// Who a node talks to: everyone, or the nodes that hold the secret in `file`.
fn access(file: &Option<PathBuf>) -> Result<Access> {
    Ok(match file {
        None => Access::Open,
        Some(path) => Access::Private(Arc::new(SwarmKey::from_file(path)?)),
    })
}

/// Most state directories tried beside the default one when it is in use.
const SPARE_STATES: u32 = 32;

/// A node's state directory: --state, or the default one. When the default is in use by
/// another swarm process on this machine (a `swarm seed` running while its printed fetch
/// command is pasted in another terminal), the first free one beside it (`node-2`, `node-3`,
/// ...), with a note on stderr; a directory given with --state is used or refused, never
/// swapped.
fn node_state(given: &Option<PathBuf>) -> PathBuf {
    if let Some(dir) = given {
        return dir.clone();
    }
    let default = default_state("node");
    let mut in_use = None;
    for n in 1..=SPARE_STATES {
        let dir = match n {
            1 => default.clone(),
            n => default.with_file_name(format!("node-{n}")),
        };
        if std::fs::create_dir_all(&dir).is_err() {
            return default;
        }
        match swarm_proto::dir_lock::DirLock::acquire(&dir) {
            Err(swarm_proto::dir_lock::LockError::Held { holder, .. }) => {
                in_use.get_or_insert(holder);
            }
            // Free (the lock goes with this handle; the node takes it again), or a failure
            // that the node reports with its path when it starts.
            _ => {
                if let Some(holder) = in_use {
                    crate::note!(
                        "note: {} is in use ({holder}); this node keeps its state in {}",
                        default.display(),
                        dir.display()
                    );
                }
                return dir;
            }
        }
    }
    default
}

fn node_config(args: &NodeArgs, tracker: Option<Trackers>) -> Result<NodeConfig> {
    Ok(NodeConfig {
        state_dir: node_state(&args.state),
        listen: args.listen,
        tracker,
        advertise: args.advertise,
        max_upload_rate: args.max_upload_rate,
        max_download_rate: args.max_download_rate,
        access: access(&args.secret_file)?,
    })
}

/// Records this process's metrics and serves them on `addr`, if given, with the HTTP port's
/// guard: in a private swarm (`secret_file`) or with `--http-token`, a scraper must send that
/// credential. A loopback address answers its own names only (as `--http` does); an address
/// other machines can reach was asked for on purpose and answers whatever name a scraper uses.
async fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
    secret_file: &Option<PathBuf>,
    http: &crate::args::HttpArgs,
) -> Result<()> {
    let Some(listen) = addr else { return Ok(()) };
    let metrics = swarm_engine::telemetry::install()?;
    let mut allow_hosts = http.allow_hosts.clone();
    if !listen.ip().is_loopback() {
        allow_hosts.push("*".into());
    }
    let options = swarm_engine::http::HttpOptions {
        listen,
        public: true,
        access: access(secret_file)?,
        token: http.token.clone(),
        allow_hosts,
    };
    let bound = swarm_engine::http::serve_metrics(metrics, options).await?;
    info!(addr = %bound, "metrics at http://{bound}/metrics");
    Ok(())
}

/// Serves `node`'s web view and API if --http was given (or `always`, then on a free
/// loopback port), with fetches started there landing in `downloads`. Returns the address.
async fn serve_http(
    args: &NodeArgs,
    node: &Node,
    downloads: &Path,
    always: bool,
) -> Result<Option<std::net::SocketAddr>> {
    let listen = match (args.http.listen, always) {
        (Some(addr), _) => addr,
        (None, true) => std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        (None, false) => return Ok(None),
    };
    let options = swarm_engine::http::HttpOptions {
        listen,
        public: args.http.public,
        access: access(&args.secret_file)?,
        token: args.http.token.clone(),
        allow_hosts: args.http.allow_hosts.clone(),
    };
    let addr = swarm_engine::http::serve(node, options, downloads.to_owned()).await?;
    crate::note!("web view and API at http://{addr}/");
    Ok(Some(addr))
}

/// `swarm secret new FILE`
pub fn secret(command: SecretCommand) -> Result<()> {
    match command {
        SecretCommand::New { file } => {
            SwarmKey::create_file(&file)?;
            println!(
                "wrote a new swarm secret to {}; give it to every node of the swarm (--secret-file {} or SWARM_SECRET_FILE) and to nobody else",
                file.display(),
                file.display()
            );
            Ok(())
        }
        SecretCommand::ShareKey => {
            let key = ShareKey::ReadWrite(swarm_proto::share_key::WriteKey::generate());
            for key in [key.clone(), key.read_only()] {
                let ticket = ShareTicket {
                    key,
                    trackers: Vec::new(),
                };
                println!("{ticket}");
            }
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A token cancelled by the first Ctrl-C or SIGTERM.
fn cancel_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        cancel.cancel();
    });
    token
}

/// Shuts `node` down gracefully; a second signal cuts it short.
pub async fn leave(node: &Node) {
    crate::note!("leaving: telling the tracker and letting uploads in flight finish (Ctrl-C again to force)");
    tokio::select! {
        _ = node.shutdown(EXIT_GRACE) => {}
        _ = shutdown_signal() => crate::note!("forced exit"),
    }
}

/// `swarm tracker`
pub async fn tracker(args: TrackerArgs) -> Result<()> {
    serve_metrics(args.metrics, &args.secret_file, &args.http).await?;
    let tracker = Tracker::start(TrackerConfig {
        state_dir: args.state.unwrap_or_else(|| default_state("tracker")),
        listen: args.listen,
        peer_timeout: args.peer_timeout,
        budgets: swarm_tracker::Budgets {
            per_address: args.budget_per_address,
            total: args.budget,
            forget_after: args.forget_after,
        },
        audits: swarm_tracker::Audits {
            enabled: !args.no_audits,
            ..Default::default()
        },
        access: access(&args.secret_file)?,
        store: args
            .store
            .clone()
            .map_or(swarm_tracker::StoreConfig::Embedded, swarm_tracker::StoreConfig::Redis),
    })
    .await
    .map_err(swarm_engine::Error::from)?;
    let reachable = reachable_addr(tracker.local_addr());
    println!(
        "tracker {} listening on {}; peers use --tracker {}@{}",
        tracker.id(),
        tracker.local_addr(),
        tracker.id(),
        reachable
    );
    match &args.store {
        Some(url) => {
            info!(files = tracker.catalogue_size(), store = %url.rsplit('@').next().unwrap_or(url), "state shared through Redis")
        }
        None => info!(files = tracker.catalogue_size(), "catalogue loaded"),
    }
    if let Some(listen) = args.http.listen {
        let options = swarm_engine::http::HttpOptions {
            listen,
            public: args.http.public,
            access: access(&args.secret_file)?,
            token: args.http.token.clone(),
            allow_hosts: args.http.allow_hosts.clone(),
        };
        match swarm_engine::http::serve_tracker(tracker.view(), options, tracker.stopping()).await {
            Ok(addr) => crate::note!("web view of the swarm and API at http://{addr}/"),
            Err(e) => {
                tracker.stop().await;
                return Err(e.into());
            }
        }
    }
    shutdown_signal().await;
    tracker.stop().await;
    Ok(())
}

/// Says what happened while a peer started.
fn print_launch(event: LaunchEvent<'_>) {
    match event {
        LaunchEvent::EmbeddedTracker { id, addr, moved_from } => {
            if let Some((wanted, why)) = moved_from {
                crate::note!("cannot listen on {wanted} ({why}); the in-process tracker takes a free port instead");
            }
            crate::note!(
                "no --tracker given: started one in this process, id {} on {addr}",
                id.short()
            );
        }
        LaunchEvent::JoinedLocalTracker { id, addr } => crate::note!(
            "no --tracker given, and a tracker already runs on this machine at {addr} (id {}): joining it \
             instead of starting another swarm",
            id.short()
        ),
        LaunchEvent::NoAnswerYet { addr } => {
            crate::note!("no answer from the tracker at {addr} yet; still trying (Ctrl-C to give up)")
        }
        LaunchEvent::Waiting(e) => {
            crate::note!("the tracker is not answering ({e}); trying again every 2 s, Ctrl-C to give up")
        }
        LaunchEvent::Answered => crate::note!("the tracker answered"),
    }
}

/// A node sharing a folder, with its tracker started in-process if none was given.
pub struct Sharing {
    /// The node and its tracker.
    pub peer: Peer,
    chunk_size: u32,
}

impl Sharing {
    /// Starts sharing `path`: a folder, or a single file if `file_ok`.
    pub async fn start(path: &Path, args: &PeerArgs, file_ok: bool) -> Result<Sharing> {
        let shown = path.display();
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!(
                    "{shown} does not exist: give the folder{} to share",
                    if file_ok { " or file" } else { "" }
                )
            }
            Err(e) => bail!("cannot read {shown}: {e}"),
            Ok(m) if m.is_dir() || (m.is_file() && file_ok) => {}
            Ok(m) if m.is_file() => {
                bail!("{shown} is a file: give the folder to keep in step (`swarm seed` shares one file)")
            }
            Ok(_) => bail!("{shown} is neither a folder nor a regular file"),
        }
        let chunk_size = u32::try_from(args.chunk_size).unwrap_or(u32::MAX);
        swarm_proto::manifest::check_chunk_size(chunk_size)?;
        let tracker = match Trackers::new(args.tracker.clone()) {
            Some(trackers) => TrackerChoice::Remote(trackers),
            None => TrackerChoice::Embedded {
                listen: args.tracker_listen,
            },
        };
        let stop = cancel_on_signal();
        serve_metrics(args.node.metrics, &args.node.secret_file, &args.node.http).await?;
        let peer = Peer::start(node_config(&args.node, None)?, tracker, &stop, print_launch).await?;
        crate::note!("node {} listening on {}", peer.node.id(), peer.node.local_addr());
        remember_tracker(&args.node, peer.node.state_dir(), &peer.public_tracker);
        info!(addr = %peer.registration.addr, "registered with the tracker");
        let downloads_dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            _ if !path.is_file() => path,
            Some(parent) => parent,
            None => Path::new("."),
        };
        if let Err(e) = serve_http(&args.node, &peer.node, downloads_dir, false).await {
            peer.stop(Duration::ZERO).await;
            return Err(e);
        }
        Ok(Sharing { peer, chunk_size })
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.peer.node
    }

    /// Hashes (what needs hashing) and shares every file in `dir` not modified for `settle`,
    /// with a progress bar and a summary line that ends with `then`.
    pub async fn share_dir(&self, dir: &Path, settle: Duration, then: &str) -> Result<Vec<SeededFile>> {
        let progress = Arc::new(Progress::default());
        let display = output::show_progress("hashing", progress.clone(), false);
        let started = Instant::now();
        let scan = self.node().scan_dir(dir, self.chunk_size, settle, &progress).await;
        display.finish().await;
        let scan = scan?;
        if !scan.skipped.is_empty() {
            let listed: Vec<String> = scan
                .skipped
                .iter()
                .take(20)
                .map(|s| format!("\n  {}: {}", output::shown_path(&s.path), s.why))
                .collect();
            let more = scan.skipped.len().saturating_sub(listed.len());
            output::warning(format_args!(
                "{} path(s) cannot be shared and are left out; everything else is shared:{}{}",
                scan.skipped.len(),
                listed.concat(),
                if more > 0 {
                    format!("\n  … and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        let seeded = scan.files;
        let total: u64 = seeded.iter().map(|f| f.manifest.size).sum();
        let hashed: u64 = seeded.iter().filter(|f| f.hashed).map(|f| f.manifest.size).sum();
        let unchanged = seeded.iter().filter(|f| !f.hashed).count();
        let mut how = Vec::new();
        if unchanged > 0 {
            how.push(format!("{unchanged} unchanged since the last run, not re-hashed"));
        }
        if hashed > 0 {
            how.push(format!(
                "{} hashed at {:.0} MB/s",
                output::bytes(hashed),
                output::mb_per_sec(hashed, started.elapsed())
            ));
        }
        crate::note!(
            "sharing {} file(s), {}{}{then}",
            seeded.len(),
            output::bytes(total),
            if how.is_empty() {
                String::new()
            } else {
                format!(" ({})", how.join("; "))
            }
        );
        Ok(seeded)
    }

    /// Leaves the tracker gracefully and stops the in-process tracker, if any.
    pub async fn stop(self) {
        crate::note!("leaving: telling the tracker and letting uploads in flight finish (Ctrl-C again to force)");
        tokio::select! {
            _ = self.peer.stop(EXIT_GRACE) => {}
            _ = shutdown_signal() => crate::note!("forced exit"),
        }
    }
}

/// `swarm seed`
pub async fn seed(args: SeedArgs) -> Result<()> {
    let path = &args.share.dir;
    let sharing = Sharing::start(path, &args.share.peer, true).await?;
    let files = sharing.share_dir(path, Duration::ZERO, "; Ctrl-C to stop").await?;
    let folder = if path.is_dir() {
        let name = folder_name(path)?;
        let shared = swarm_engine::collection::share(sharing.node(), &name, &files, sharing.chunk_size).await?;
        Some(shared)
    } else {
        None
    };
    let tracker = &sharing.peer.public_tracker;
    if args.json {
        let trackers = tracker.parse::<Trackers>().ok();
        let ticket = |id| trackers.as_ref().map(|t| t.ticket_for(id).to_string());
        output::seeded_json(folder.as_ref(), &files, ticket);
    } else {
        match &folder {
            Some(shared) => {
                let c = &shared.collection;
                println!(
                    "{}  {:>10}  {}/ ({} file(s))",
                    shared.id,
                    output::bytes(c.size()),
                    output::shown(&c.name),
                    c.entries.len()
                );
                println!("    {}", fetch_command(shared.id, tracker));
                if args.each {
                    files.iter().for_each(|f| print_seeded(f, tracker));
                }
            }
            None => files.iter().for_each(|f| print_seeded(f, tracker)),
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    shutdown_signal().await;
    sharing.stop().await;
    Ok(())
}

/// The name a shared folder goes by: its own name (of its absolute path).
fn folder_name(dir: &Path) -> Result<String> {
    let absolute = dir
        .canonicalize()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let name = absolute.file_name().map(|n| n.to_string_lossy().into_owned());
    Ok(name.unwrap_or_else(|| "root".to_owned()))
}

/// `swarm sync`
pub async fn sync(mut args: SyncArgs) -> Result<()> {
    let given = args.share_key.take();
    if args.share.peer.tracker.is_empty() {
        // A key printed by another member names the trackers that keep the share.
        if let Some(trackers) = given.as_ref().and_then(|t| Trackers::named(&t.trackers)) {
            args.share.peer.tracker = trackers.list().to_vec();
        }
    }
    let sharing = Sharing::start(&args.share.dir, &args.share.peer, false).await?;
    let (key, source) = match folder_key(&args.share.dir, given.map(|t| t.key)) {
        Ok(found) => found,
        Err(e) => {
            sharing.stop().await;
            return Err(e.into());
        }
    };
    // Files still being written are left to the sync loop, which shares them once still.
    sharing
        .share_dir(&args.share.dir, args.settle, "; Ctrl-C to stop")
        .await?;
    print_share_keys(&args, &key, source, &sharing.peer.public_tracker);
    let defaults = SyncOptions::new(args.share.dir.clone(), key);
    let options = SyncOptions {
        chunk_size: sharing.chunk_size,
        interval: args.interval,
        rescan: args.rescan,
        settle: args.settle,
        keep_versions: args.keep_versions,
        ..defaults
    };
    let (events, mut printed) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let node = sharing.node().clone();
    let mut syncing = tokio::spawn({
        let stop = stop.clone();
        async move { swarm_engine::sync::run(&node, options, events, stop).await }
    });
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let outcome = loop {
        tokio::select! {
            _ = &mut signal => break Ok(()),
            Some(event) = printed.recv() => output::sync_event(&event, args.json),
            done = &mut syncing => break done.map_err(anyhow::Error::from).and_then(|r| r.map_err(Into::into)),
        }
    };
    stop.cancel();
    sharing.stop().await;
    outcome
}

/// Prints which share a folder syncs and the commands that join it from other machines
/// (read-write only where this node has the read-write key).
fn print_share_keys(args: &SyncArgs, key: &ShareKey, source: KeySource, tracker: &str) {
    let trackers = tracker.parse::<Trackers>().ok();
    let join = |key: ShareKey| {
        let ticket = ShareTicket {
            key,
            trackers: trackers.as_ref().map(Trackers::for_ticket).unwrap_or_default(),
        };
        match trackers {
            Some(_) => format!("swarm sync DIR --share {ticket}"),
            None => format!("swarm sync DIR --share {ticket} --tracker {tracker}"),
        }
    };
    let dir = args.share.dir.display();
    let id = key.id();
    let how = match source {
        KeySource::Made => format!("a new share; its key is kept in {dir}/{KEY_FILE}"),
        KeySource::Kept => format!("its key is kept in {dir}/{KEY_FILE}"),
        KeySource::Given => "joined; the key is kept in the folder from now on".into(),
        KeySource::Upgraded => "this folder now has the read-write key".into(),
    };
    let read_write = key.writer().is_some();
    if args.json {
        let mut value = serde_json::json!({
            "event": "share",
            "share": id.to_string(),
            "writable": read_write,
            "read_only_key": join(key.read_only()),
        });
        if read_write {
            value["read_write_key"] = join(key.clone()).into();
        }
        println!("{value}");
        return;
    }
    if read_write {
        println!("syncing {dir} as share {}, read-write ({how})", id.short());
        println!("other machines join with, read-write (may add, change and delete every file: only for machines you trust):");
        println!("    {}", join(key.clone()));
        println!("or read-only (follow the share; their own edits stay on their machine):");
    } else {
        println!(
            "syncing {dir} as share {}, read-only ({how}): changes made here stay here",
            id.short()
        );
        println!("other machines follow it, read-only, with:");
    }
    println!("    {}", join(key.read_only()));
}

fn print_seeded(file: &SeededFile, tracker: &str) {
    println!(
        "{}  {:>10}  {}",
        file.id,
        output::bytes(file.manifest.size),
        output::shown(&file.manifest.name)
    );
    println!("    {}", fetch_command(file.id, tracker));
}

/// The command that fetches `id`: with its ticket, or with --tracker if the tracker's address
/// cannot go in one.
fn fetch_command(id: swarm_engine::FileId, tracker: &str) -> String {
    match tracker.parse::<Trackers>() {
        Ok(trackers) => format!("swarm fetch {}", trackers.ticket_for(id)),
        Err(_) => format!("swarm fetch {id} --tracker {tracker}"),
    }
}

/// `work`, given up once `deadline` (from --timeout) passes, saying what it was `doing`.
async fn by_deadline<T>(
    deadline: Option<tokio::time::Instant>,
    doing: &str,
    work: impl std::future::Future<Output = swarm_engine::Result<T>>,
) -> swarm_engine::Result<T> {
    let Some(deadline) = deadline else { return work.await };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(result) => result,
        Err(_) => Err(swarm_engine::Error::Timeout(format!(
            "gave up after --timeout while {doing}; check that the tracker is running and reachable"
        ))),
    }
}

/// `swarm fetch`
pub async fn fetch(args: FetchArgs) -> Result<()> {
    // --timeout bounds the whole command, tracker requests before the download included.
    let deadline = args.timeout.map(|timeout| tokio::time::Instant::now() + timeout);
    serve_metrics(args.node.metrics, &args.node.secret_file, &args.node.http).await?;
    let (wanted, trackers) = fetch_target(&args)?;
    let shown_trackers = trackers.to_string();
    let node = Node::start(node_config(&args.node, Some(trackers))?).await?;
    remember_tracker(&args.node, node.state_dir(), &shown_trackers);
    let id = match by_deadline(deadline, "asking the tracker for the file", node.resolve(&wanted)).await {
        Ok(id) => id,
        Err(e) => {
            node.shutdown(Duration::ZERO).await;
            return Err(e.into());
        }
    };
    let registration = by_deadline(deadline, "registering with the tracker", node.join_tracker()).await;
    if deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
        node.shutdown(Duration::ZERO).await;
        return Err(registration
            .err()
            .unwrap_or_else(|| swarm_engine::Error::Timeout("gave up after --timeout".into()))
            .into());
    }
    if let Err(e) = &registration {
        output::warning(format_args!(
            "could not register with the tracker ({e}); fetching without serving others"
        ));
    }
    let progress = Arc::new(Progress::default());
    let options = FetchOptions {
        out_dir: args.output.clone(),
        sources: args.from.clone().map_or(Sources::All, Sources::Only),
        replace: if args.force { Replace::Always } else { Replace::Never },
        timeout: deadline.map(|deadline| deadline.saturating_duration_since(tokio::time::Instant::now())),
        preallocate: args.preallocate,
        disk_io: if args.buffered_io {
            DiskIo::Buffered
        } else {
            DiskIo::Direct
        },
        progress: progress.clone(),
        ..FetchOptions::default()
    };
    let folder = tokio::select! {
        opened = by_deadline(deadline, "fetching the file's manifest", swarm_engine::collection::open(&node, id, &options)) => opened,
        _ = shutdown_signal() => Err(swarm_engine::Error::Cancelled),
    };
    let folder = match folder {
        Ok(folder) => folder,
        Err(e) => {
            node.shutdown(Duration::ZERO).await;
            return Err(e.into());
        }
    };
    let misuse = match &folder {
        Some(_) if args.stream => Some(
            "--stream serves one file: fetch the folder with --list to see its files' ids, then stream one".to_owned(),
        ),
        None if args.list || !args.only.is_empty() => Some(format!(
            "{id} is a single file: --list and --only choose among the files of a folder"
        )),
        _ => None,
    };
    if let Some(message) = misuse {
        node.shutdown(Duration::ZERO).await;
        return Err(crate::args::Usage(message).into());
    }
    if let Some(collection) = folder {
        // The web view and API (--http) watch a folder's fetch too.
        if let Err(e) = serve_http(&args.node, &node, &args.output, false).await {
            node.shutdown(Duration::ZERO).await;
            return Err(e);
        }
        let result = fetch_folder(&args, &node, id, collection, options).await;
        if result.is_err() {
            node.shutdown(Duration::from_secs(2)).await;
        }
        return result;
    }
    match serve_http(&args.node, &node, &args.output, args.stream).await {
        Ok(Some(addr)) if args.stream => {
            use std::io::Write;
            println!("http://{addr}/files/{id}");
            let _ = std::io::stdout().flush();
        }
        Ok(_) => {}
        Err(e) => {
            node.shutdown(Duration::ZERO).await;
            return Err(e);
        }
    }
    let display = if args.progress {
        output::json_progress(&id.to_string(), progress)
    } else {
        output::show_progress(&format!("fetching {}", id.short()), progress, true)
    };
    let result = tokio::select! {
        result = node.fetch(id, options) => result.map_err(anyhow::Error::from),
        _ = shutdown_signal() => Err(anyhow::Error::from(swarm_engine::Error::Cancelled)
            .context("interrupted; run the same command again to resume")),
    };
    display.finish().await;
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            node.shutdown(Duration::from_secs(2)).await;
            return Err(e);
        }
    };
    if args.json {
        output::fetch_report(&report, args.progress);
    } else if report.already_complete {
        println!(
            "{} already complete ({})",
            output::shown_path(&report.path),
            output::bytes(report.manifest.size)
        );
    } else {
        let received = report.bytes_received();
        println!(
            "{}  {} in {:.2} s ({:.1} MB/s) from {} peer(s), verified{}",
            output::shown_path(&report.path),
            output::bytes(report.manifest.size),
            report.elapsed.as_secs_f64(),
            output::mb_per_sec(received, report.elapsed),
            report.received.len(),
            if report.resumed_chunks > 0 {
                format!(", {} chunks resumed", report.resumed_chunks)
            } else {
                String::new()
            }
        );
        for peer in &report.banned {
            output::warning(format_args!(
                "peer {peer} sent corrupt data and was banned for this download"
            ));
        }
    }
    if args.seed || args.stream {
        crate::note!("seeding {} until Ctrl-C", output::shown_path(&report.path));
        shutdown_signal().await;
        leave(&node).await;
    } else {
        node.shutdown(EXIT_GRACE).await;
    }
    Ok(())
}

/// `swarm fetch` of a folder: list it, or fetch the chosen files.
async fn fetch_folder(
    args: &FetchArgs,
    node: &Node,
    id: swarm_engine::FileId,
    collection: Collection,
    each: FetchOptions,
) -> Result<()> {
    let chosen = choose(&collection, &args.only)?;
    if args.list {
        output::collection(id, &collection, &chosen, args.json);
        node.shutdown(Duration::ZERO).await;
        return Ok(());
    }
    if chosen.is_empty() && !args.only.is_empty() {
        return Err(swarm_engine::Error::NotFound(format!(
            "no file of {}/ matches --only {}; `swarm fetch {} --list` shows its files",
            output::shown(&collection.name),
            args.only.join(","),
            args.id
        ))
        .into());
    }
    let progress = Arc::new(Progress::default());
    let options = CollectionOptions {
        out_dir: args.output.clone(),
        parallel: args.parallel,
        progress: progress.clone(),
        each,
    };
    let label = format!("fetching {}/", output::shown(&collection.name));
    let display = if args.progress {
        output::json_progress(&collection.name, progress)
    } else {
        output::show_progress(&label, progress, true)
    };
    let result = tokio::select! {
        result = swarm_engine::collection::fetch(node, &collection, chosen.clone(), options) => result.map_err(anyhow::Error::from),
        _ = shutdown_signal() => Err(anyhow::Error::from(swarm_engine::Error::Cancelled)),
    };
    display.finish().await;
    let report = result.map_err(|e| e.context("interrupted; run the same command again to resume"))?;
    if args.json {
        output::collection_report(id, &report, args.progress);
    } else {
        let size: u64 = report.done.iter().map(|(e, _)| e.size).sum();
        let received = report.bytes_received();
        let complete = report
            .done
            .iter()
            .filter(|(_, r)| r.as_ref().is_some_and(|r| r.already_complete))
            .count();
        let peers: std::collections::HashSet<_> = report
            .done
            .iter()
            .flat_map(|(_, r)| r)
            .flat_map(|r| r.received.keys())
            .collect();
        println!(
            "{}  {} file(s), {} in {:.2} s ({:.1} MB/s) from {} peer(s), verified{}",
            output::shown_path(&report.root),
            report.done.len(),
            output::bytes(size),
            report.elapsed.as_secs_f64(),
            output::mb_per_sec(received, report.elapsed),
            peers.len(),
            if complete > 0 {
                format!(", {complete} already complete")
            } else {
                String::new()
            }
        );
    }
    if let Some((first, error)) = report.failed.into_iter().next() {
        let failed = chosen.len() - report.done.len();
        return Err(anyhow::Error::from(error).context(format!(
            "{failed} of {} file(s) of {}/ failed, {} among them; run the same command again to retry them",
            chosen.len(),
            output::shown(&collection.name),
            output::shown(&first.path)
        )));
    }
    if args.seed {
        crate::note!("seeding {} until Ctrl-C", output::shown_path(&report.root));
        shutdown_signal().await;
        leave(node).await;
    } else {
        node.shutdown(EXIT_GRACE).await;
    }
    Ok(())
}

/// The entries of `collection` that `--only` picks (all of them without it).
fn choose(collection: &Collection, only: &[String]) -> Result<Vec<CollectionEntry>> {
    if only.is_empty() {
        return Ok(collection.entries.clone());
    }
    let mut globs = globset::GlobSetBuilder::new();
    for pattern in only {
        let mut add = |pattern: &str| -> Result<()> {
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| crate::args::Usage(format!("--only {pattern}: {e}")))?;
            globs.add(glob);
            Ok(())
        };
        add(pattern)?;
        if !pattern.contains('/') {
            add(&format!("**/{pattern}"))?;
        }
    }
    let globs = globs.build()?;
    Ok(collection
        .entries
        .iter()
        .filter(|e| globs.is_match(&e.path))
        .cloned()
        .collect())
}

/// What `swarm fetch` was asked for (an id, prefix or name) and the trackers to ask:
/// --tracker if given, else the ticket's, else the last used from the state directory.
fn fetch_target(args: &FetchArgs) -> Result<(String, Trackers)> {
    let ticket = if Ticket::looks_like(&args.id) {
        Some(args.id.parse::<Ticket>()?)
    } else {
        None
    };
    let wanted = ticket.as_ref().map_or_else(|| args.id.clone(), |t| t.file.to_string());
    let trackers = match (Trackers::new(args.tracker.clone()), &ticket) {
        (Some(given), _) => given,
        (None, Some(ticket)) => Trackers::of_ticket(ticket),
        (None, None) => {
            let state = args.node.state.clone().unwrap_or_else(|| default_state("node"));
            match KnownTrackers::in_dir(&state).last_used().map(|t| t.parse::<Trackers>()) {
                Some(Ok(last)) => last,
                _ => {
                    return Err(crate::args::Usage(
                        "no tracker given: name one with --tracker HOST:PORT, or fetch by the ticket `swarm seed` \
                         printed (swarm1...), which names its trackers"
                            .into(),
                    )
                    .into())
                }
            }
        }
    };
    Ok((wanted, trackers))
}

/// A client for `ls`, `search` and `peers`: of the trackers given, else of the ticket's, else
/// of those last used from the state directory.
fn query_client(args: &QueryArgs, ticket: Option<&Ticket>) -> Result<TrackerClient> {
    let state = args.state.clone().unwrap_or_else(|| default_state("node"));
    let known = KnownTrackers::in_dir(&state);
    let trackers = match (Trackers::new(args.tracker.clone()), ticket) {
        (Some(given), _) => {
            let _ = known.remember_last_used(&given.to_string());
            given
        }
        (None, Some(ticket)) => Trackers::of_ticket(ticket),
        (None, None) => match known.last_used().map(|text| text.parse::<Trackers>()) {
            Some(Ok(last)) => last,
            _ => {
                return Err(crate::args::Usage(format!(
                    "no tracker given, and none used before from {}: name one with --tracker HOST:PORT",
                    state.display()
                ))
                .into())
            }
        },
    };
    Ok(TrackerClient::ephemeral(
        trackers,
        Some(known),
        access(&args.secret_file)?,
    )?)
}

/// Remembers `trackers` as the last used by the node on `state` (and on the default state
/// when none was named), for later queries without --tracker.
fn remember_tracker(args: &NodeArgs, state: &Path, trackers: &str) {
    let mut dirs = vec![state.to_owned()];
    if args.state.is_none() {
        dirs.push(default_state("node"));
    }
    for dir in dirs {
        if let Err(e) = KnownTrackers::in_dir(&dir).remember_last_used(trackers) {
            tracing::debug!("could not remember the tracker: {e}");
        }
    }
}

/// `swarm status`
pub async fn status(args: StatusArgs) -> Result<()> {
    let state = args.state.unwrap_or_else(|| default_state("node"));
    let (source, status) = swarm_engine::status::of_state_dir(&state).await?;
    output::status(&state, source, &status, args.json);
    Ok(())
}

/// `swarm ls`
pub async fn ls(args: QueryArgs) -> Result<()> {
    let entries = query_client(&args, None)?.list().await?;
    output::catalogue(&entries, args.json);
    Ok(())
}

/// `swarm search`
pub async fn search(args: SearchArgs) -> Result<()> {
    let entries = query_client(&args.query, None)?.search(&args.name, args.exact).await?;
    if entries.is_empty() && !args.query.json {
        return Err(swarm_engine::Error::NotFound(format!("no file name matches `{}`", args.name)).into());
    }
    output::catalogue(&entries, args.query.json);
    Ok(())
}

/// `swarm peers`
pub async fn peers(args: PeersArgs) -> Result<()> {
    let ticket = if Ticket::looks_like(&args.id) {
        Some(args.id.parse::<Ticket>()?)
    } else {
        None
    };
    let client = query_client(&args.query, ticket.as_ref())?;
    let id = match &ticket {
        Some(ticket) => ticket.file,
        None => client.resolve(&args.id).await?,
    };
    let manifest = client
        .locate(id, true, 0)
        .await?
        .manifest
        .ok_or_else(|| anyhow::anyhow!("the tracker answered without the manifest asked for"))?;
    manifest
        .verify(&id)
        .map_err(|source| swarm_engine::Error::Manifest { file: Some(id), source })?;
    let holdings = client.holdings(id).await?;
    output::holders(&manifest.name, manifest.chunk_count, &holdings, args.query.json);
    Ok(())
}

/// `swarm demo`: everything in one process on loopback.
pub async fn demo(args: DemoArgs) -> Result<()> {
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };
    // Ctrl-C ends the demo here, so that its temporary directory is removed on the way out.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::select! {
        outcome = run_demo(&args, &dir, stop.clone()) => outcome,
        _ = shutdown_signal() => {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            Err(anyhow::Error::from(swarm_engine::Error::Cancelled)
                .context("demo interrupted; its temporary files are removed"))
        }
    }
}

async fn run_demo(args: &DemoArgs, dir: &Path, stop: Arc<std::sync::atomic::AtomicBool>) -> Result<()> {
    let chunk_size = u32::try_from(args.chunk_size).unwrap_or(u32::MAX);
    swarm_proto::manifest::check_chunk_size(chunk_size)?;
    let share = dir.join("share");
    let data = share.join("demo.bin");
    crate::note!(
        "generating {} of random data in {}",
        output::bytes(args.size),
        data.display()
    );
    let size = args.size;
    let path = data.clone();
    tokio::task::spawn_blocking(move || generate(&path, size, &stop))
        .await?
        .with_context(|| format!("writing {}", data.display()))?;

    let mut swarm = LocalSwarm::start(dir, Duration::from_secs(180)).await?;
    let seeders = args.seeders.max(1);
    let mut nodes = Vec::new();
    let first = swarm.node("seeder0", Caps::default()).await?;
    let started = Instant::now();
    let file = first
        .seed_dir(&share, chunk_size, &Progress::default())
        .await?
        .remove(0);
    let hash_time = started.elapsed();
    nodes.push(first);
    for i in 1..seeders {
        let node = swarm.node(&format!("seeder{i}"), Caps::default()).await?;
        node.hold_complete((*file.manifest).clone(), file.path.clone(), file.meta)
            .await?;
        nodes.push(node);
    }
    crate::note!(
        "hashed at {:.0} MB/s; {seeders} seeder(s) share {} as {}",
        output::mb_per_sec(args.size, hash_time),
        file.manifest.name,
        file.id.short()
    );

    let fetcher = swarm.node("fetcher", Caps::default()).await?;
    let progress = Arc::new(Progress::default());
    let display = output::show_progress("fetching", progress.clone(), true);
    let options = FetchOptions {
        out_dir: dir.join("fetched"),
        progress,
        ..FetchOptions::default()
    };
    let report = fetcher.fetch(file.id, options).await;
    display.finish().await;
    let report = report?;
    println!(
        "fetched {} from {} seeder(s) in {:.2} s: {:.0} MB/s, every chunk and the whole file verified",
        output::bytes(report.manifest.size),
        report.received.len(),
        report.elapsed.as_secs_f64(),
        output::mb_per_sec(report.bytes_received(), report.elapsed)
    );
    for (i, node) in nodes.iter().enumerate() {
        let got = report.received.get(&node.id()).copied().unwrap_or(0);
        println!("  seeder{i} {}: {}", node.id().short(), output::bytes(got));
    }
    swarm.stop().await;
    Ok(())
}

/// Writes `size` pseudo-random bytes to `path`.
fn generate(path: &Path, size: u64, stop: &std::sync::atomic::AtomicBool) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().expect("a file path has a parent"))?;
    let mut out = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path)?);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);
    let mut block = vec![0u8; 4 << 20];
    let mut left = size;
    while left > 0 {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = left.min(block.len() as u64) as usize;
        rng.fill_bytes(&mut block[..n]);
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()
}
