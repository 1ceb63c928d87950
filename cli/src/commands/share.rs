//! `swarm seed` and `swarm sync`: a folder shared by a node (with its tracker in-process when
//! none is given), and the commands and keys they print.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use swarm_engine::launch::{LaunchEvent, Peer, TrackerChoice};
use swarm_engine::sync::folder_key::{folder_key, KeySource, KEY_FILE};
use swarm_engine::sync::SyncOptions;
use swarm_engine::{Node, Origin, Progress, SeededFile, Trackers};
use swarm_proto::share_key::{ShareKey, ShareTicket};
use swarm_proto::ticket::TicketHolder;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::args::{PeerArgs, SeedArgs, SyncArgs};
use crate::output;

use super::setup::{
    cancel_on_signal, node_config, remember_tracker, serve_http, serve_metrics, shutdown_signal, EXIT_GRACE,
};

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

    /// The chunk size asked for.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
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
        let hashed: u64 = seeded
            .iter()
            .filter(|f| f.origin == Origin::Hashed)
            .map(|f| f.manifest.size)
            .sum();
        let unchanged = seeded.iter().filter(|f| f.origin != Origin::Hashed).count();
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
pub async fn seed(mut args: SeedArgs) -> Result<()> {
    let path = match &args.dir {
        Some(dir) => dir.clone(),
        None => crate::config::folder_in_node_state(&mut args.peer.node.state, "origins"),
    };
    if !args.urls.is_empty() {
        std::fs::create_dir_all(&path).with_context(|| format!("cannot make {}", path.display()))?;
    }
    let path = &path;
    let sharing = Sharing::start(path, &args.peer, true).await?;
    for url in &args.urls {
        let read = read_from_origin(&sharing, url, path).await;
        if let Err(e) = read {
            sharing.stop().await;
            return Err(e);
        }
    }
    let files = sharing.share_dir(path, Duration::ZERO, "; Ctrl-C to stop").await?;
    // The origins' own folder (no PATH given) is no folder of the user's: its files are
    // told one by one.
    let folder = if path.is_dir() && args.dir.is_some() {
        let name = folder_name(path)?;
        let shared = swarm_engine::collection::share(sharing.node(), &name, &files, sharing.chunk_size).await?;
        Some(shared)
    } else {
        None
    };
    let tracker = &sharing.peer.public_tracker;
    let holder = sharing.peer.ticket_holder();
    let secret = args.peer.node.secret_file.as_deref();
    let fetch_command = |id| fetch_command(id, tracker, holder.clone(), secret);
    if args.json {
        let trackers = tracker.parse::<Trackers>().ok();
        let ticket = |id| {
            trackers
                .as_ref()
                .map(|t| t.ticket_for(id, holder.clone().into_iter().collect()).to_string())
        };
        output::seeded_json(folder.as_ref(), &files, ticket);
    } else {
        match &folder {
            Some(shared) => {
                let c = &shared.collection;
                crate::out!(
                    "{}  {:>10}  {}/ ({} file(s))",
                    shared.id,
                    output::bytes(c.size()),
                    output::shown(&c.name),
                    c.entries.len()
                );
                crate::out!("    {}", fetch_command(shared.id));
                if args.each {
                    files.iter().for_each(|f| print_seeded(f, fetch_command(f.id)));
                }
            }
            None => files.iter().for_each(|f| print_seeded(f, fetch_command(f.id))),
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    shutdown_signal().await;
    sharing.stop().await;
    Ok(())
}

/// Reads `url` into `dir` from its origin (with a progress bar), saying what it did.
async fn read_from_origin(sharing: &Sharing, url: &str, dir: &Path) -> Result<()> {
    let progress = Arc::new(swarm_engine::Progress::default());
    let display = output::show_progress(&format!("reading {url}"), progress.clone(), false);
    let read = tokio::select! {
        read = swarm_engine::origin::read_from_origin(sharing.node(), url, dir, sharing.chunk_size, &progress) => read,
        _ = shutdown_signal() => Err(swarm_engine::Error::Cancelled),
    };
    display.finish().await;
    let read = read?;
    if read.unchanged {
        crate::note!("{}: unchanged at its origin, kept", output::shown_path(&read.path));
    } else {
        crate::note!(
            "read {} from {url} into {}",
            output::bytes(read.bytes_read),
            output::shown_path(&read.path)
        );
    }
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
    let dir = &args.share.dir;
    if given.is_some() && !dir.exists() {
        // Joining a share on a new machine: the folder is made, as a clone makes its directory.
        std::fs::create_dir_all(dir).with_context(|| format!("cannot make the folder {}", dir.display()))?;
        crate::note!("made the folder {} to sync the share into", dir.display());
    }
    let sharing = Sharing::start(dir, &args.share.peer, false).await?;
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
        crate::out!("{value}");
        return;
    }
    if read_write {
        crate::out!("syncing {dir} as share {}, read-write ({how})", id.short());
        crate::out!("other machines join with, read-write (may add, change and delete every file: only for machines you trust):");
        crate::out!("    {}", join(key.clone()));
        crate::out!("or read-only (follow the share; their own edits stay on their machine):");
    } else {
        crate::out!(
            "syncing {dir} as share {}, read-only ({how}): changes made here stay here",
            id.short()
        );
        crate::out!("other machines follow it, read-only, with:");
    }
    crate::out!("    {}", join(key.read_only()));
}

fn print_seeded(file: &SeededFile, fetch_command: String) {
    crate::out!(
        "{}  {:>10}  {}",
        file.id,
        output::bytes(file.manifest.size),
        output::shown(&file.manifest.name)
    );
    crate::out!("    {fetch_command}");
}

/// The command that fetches `id`: with its ticket (naming `holder` too, if given), or with
/// --tracker if the tracker's address cannot go in one; in a private swarm with the secret's
/// file, which the other machine needs a copy of (the secret never goes in a ticket).
fn fetch_command(
    id: swarm_engine::FileId,
    tracker: &str,
    holder: Option<TicketHolder>,
    secret: Option<&std::path::Path>,
) -> String {
    let mut command = match tracker.parse::<Trackers>() {
        Ok(trackers) => format!("swarm fetch {}", trackers.ticket_for(id, holder.into_iter().collect())),
        Err(_) => format!("swarm fetch {id} --tracker {tracker}"),
    };
    if let Some(secret) = secret {
        command += &format!(" --secret-file {}", output::shell_word(&secret.display().to_string()));
    }
    command
}
