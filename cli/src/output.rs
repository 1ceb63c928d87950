//! Printing: tables for people, JSON for scripts, progress bars on a terminal and plain log
//! lines otherwise.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use swarm_engine::status::{FileState, NodeStatus, Source};
use swarm_engine::sync::SyncEvent;
use swarm_engine::Progress;
use swarm_proto::collection::{Collection, Entry as CollectionEntry};
use swarm_proto::protocol::{CatalogueEntry, Holding};

/// Every progress bar on screen; log lines and notes are printed above them, never through.
static BARS: LazyLock<MultiProgress> = LazyLock::new(MultiProgress::new);
/// `--quiet`: no notes and no progress display.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns notes and progress displays off (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Prints a line for people on stderr (what is going on), unless `--quiet`; above any
/// progress bar, which is redrawn below it.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => { $crate::output::note_line(format_args!($($arg)*)) };
}

/// See [`note!`].
pub fn note_line(line: std::fmt::Arguments<'_>) {
    if !QUIET.load(Ordering::Relaxed) {
        // A closed stderr is no reason to stop, nor to panic.
        BARS.suspend(|| writeln!(std::io::stderr(), "{line}")).ok();
    }
}

/// Prints a line of results on stdout. A reader that stopped reading (`swarm ls | head -n 1`)
/// is not an error: what is left is not printed, and the command goes on (a seed keeps
/// seeding).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::out_line(format_args!($($arg)*)) };
}

/// Set once stdout's reader has gone.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// See [`out!`].
pub fn out_line(line: std::fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let written = BARS.suspend(|| writeln!(std::io::stdout().lock(), "{line}"));
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => STDOUT_GONE.store(true, Ordering::Relaxed),
        Err(e) => warning(format_args!("cannot print the result: {e}")),
        Ok(()) => {}
    }
}

/// Prints a warning on stderr, even with `--quiet`, above any progress bar.
pub fn warning(line: std::fmt::Arguments<'_>) {
    BARS.suspend(|| writeln!(std::io::stderr(), "warning: {line}")).ok();
}

/// Where log lines go: stderr, above the progress bars (see [`BARS`]). tracing writes each
/// event with one `write_all`, so a line is never split by a redraw.
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        BARS.suspend(|| std::io::stderr().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Human-readable bytes (binary units).
pub fn bytes(n: u64) -> String {
    swarm_engine::human(n)
}

/// `text` (a name or path that may come from the network) with anything that could repaint the
/// terminal or forge a line escaped.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    swarm_proto::name::printable(text)
}

/// `text` as one word of a POSIX shell command line, quoted if it needs to be (a path with a
/// space), so that a printed command runs as printed; `text` itself if it cannot be quoted.
pub fn shell_word(text: &str) -> std::borrow::Cow<'_, str> {
    shlex::try_quote(text).unwrap_or(std::borrow::Cow::Borrowed(text))
}

/// [`shown`] for a path.
pub fn shown_path(path: &std::path::Path) -> String {
    shown(&path.display().to_string()).into_owned()
}

/// Megabytes (10^6) per second over `elapsed`.
pub fn mb_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

#[derive(Serialize)]
struct NodeStatusJson<'a> {
    running: bool,
    files: Vec<StatusJson<'a>>,
    uploads: Vec<UploadJson<'a>>,
    skipped: Vec<SkippedJson<'a>>,
    /// Further nodes running on this machine (without --state: `node-2`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    other_nodes: Vec<OtherNodeJson<'a>>,
}

#[derive(Serialize)]
struct OtherNodeJson<'a> {
    state: &'a std::path::Path,
    #[serde(flatten)]
    status: NodeStatusJson<'a>,
}

#[derive(Serialize)]
struct SkippedJson<'a> {
    path: &'a std::path::Path,
    why: &'a str,
}

#[derive(Serialize)]
struct UploadJson<'a> {
    peer: String,
    addr: String,
    file: String,
    name: &'a str,
    bytes: u64,
    chunks: u32,
    bytes_per_second: u64,
    idle_seconds: f64,
    /// `direct`, `punched` or `relayed`.
    path: &'a str,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    id: String,
    name: &'a str,
    path: &'a std::path::Path,
    state: &'static str,
    size: u64,
    chunks: u32,
    chunks_held: u32,
    bytes_held: u64,
    running: bool,
}

fn state_word(state: FileState) -> &'static str {
    match state {
        FileState::Downloading => "downloading",
        FileState::Paused => "paused",
        FileState::Seeding => "seeding",
    }
}

/// One node's status, as `swarm status` shows it.
pub struct NodeShown {
    /// Its state directory.
    pub state_dir: std::path::PathBuf,
    /// Whether it came from the running node or from saved state.
    pub source: Source,
    /// What it holds and serves.
    pub status: NodeStatus,
}

/// Prints the status of `nodes` (the first is the one asked for; the others are further nodes
/// running on this machine): files, then the peers each served lately, as tables or JSON.
pub fn status(nodes: &[NodeShown], json: bool) {
    let Some((first, others)) = nodes.split_first() else {
        return;
    };
    if json {
        let all = NodeStatusJson {
            other_nodes: others
                .iter()
                .map(|node| OtherNodeJson {
                    state: &node.state_dir,
                    status: node_json(node, Vec::new()),
                })
                .collect(),
            ..node_json(first, Vec::new())
        };
        crate::out!("{}", serde_json::to_string_pretty(&all).expect("plain data serializes"));
        return;
    }
    for (n, node) in nodes.iter().enumerate() {
        if n > 0 {
            crate::out!("");
        }
        node_table(node);
    }
}

fn node_json<'a>(node: &'a NodeShown, other_nodes: Vec<OtherNodeJson<'a>>) -> NodeStatusJson<'a> {
    let running = matches!(node.source, Source::RunningNode(_));
    let status = &node.status;
    let files = status
        .files
        .iter()
        .map(|f| StatusJson {
            id: f.id.to_string(),
            name: &f.name,
            path: &f.path,
            state: state_word(f.state),
            size: f.size,
            chunks: f.chunk_count,
            chunks_held: f.chunks_held,
            bytes_held: f.bytes_held,
            running,
        })
        .collect();
    let uploads = status
        .uploads
        .iter()
        .map(|u| UploadJson {
            peer: u.peer.to_string(),
            addr: u.addr.to_string(),
            file: u.file.to_string(),
            name: &u.name,
            bytes: u.bytes,
            chunks: u.chunks,
            bytes_per_second: u.rate,
            idle_seconds: u.idle_ms as f64 / 1000.0,
            path: &u.path,
        })
        .collect();
    let skipped = status
        .skipped
        .iter()
        .map(|s| SkippedJson {
            path: &s.path,
            why: &s.why,
        })
        .collect();
    NodeStatusJson {
        running,
        files,
        uploads,
        skipped,
        other_nodes,
    }
}

fn node_table(node: &NodeShown) {
    let (status, state_dir) = (&node.status, &node.state_dir);
    let running = matches!(node.source, Source::RunningNode(_));
    match node.source {
        Source::RunningNode(addr) => crate::out!("node running at {addr} (state {})", state_dir.display()),
        Source::SavedState => crate::out!("no node running on {}; saved state:", state_dir.display()),
    }
    if status.files.is_empty() {
        crate::out!("(no downloads and no seeded files)");
    } else {
        crate::out!(
            "{:<11}  {:>6}  {:>15}  {:>10}  {:<16}  NAME",
            "STATE",
            "DONE",
            "CHUNKS",
            "SIZE",
            "ID"
        );
        for file in &status.files {
            crate::out!(
                "{:<11}  {:>5.1}%  {:>15}  {:>10}  {:<16}  {}",
                state_word(file.state),
                file.percent(),
                format!("{}/{}", file.chunks_held, file.chunk_count),
                bytes(file.size),
                file.id.short(),
                shown(&file.name)
            );
        }
    }
    if !status.skipped.is_empty() {
        crate::out!("");
        crate::out!("SKIPPED (not shared)");
        for skipped in &status.skipped {
            crate::out!("{}: {}", shown_path(&skipped.path), skipped.why);
        }
    }
    if running {
        crate::out!("");
        if status.uploads.is_empty() {
            crate::out!("(no peer fetched from this node in the last 10 s)");
            return;
        }
        crate::out!("UPLOADS (peers served in the last 10 s)");
        crate::out!(
            "{:<16}  {:<21}  {:<8}  {:>10}  {:>11}  NAME",
            "PEER",
            "ADDRESS",
            "PATH",
            "SENT",
            "RATE"
        );
        for upload in &status.uploads {
            crate::out!(
                "{:<16}  {:<21}  {:<8}  {:>10}  {:>11}  {}",
                upload.peer.short(),
                upload.addr,
                upload.path,
                bytes(upload.bytes),
                format!("{:.1} MB/s", upload.rate as f64 / 1e6),
                shown(&upload.name)
            );
        }
    }
}

#[derive(Serialize)]
struct FetchJson<'a> {
    id: String,
    name: &'a str,
    path: &'a std::path::Path,
    size: u64,
    already_complete: bool,
    resumed_chunks: u32,
    received_bytes: u64,
    received_from: std::collections::BTreeMap<String, u64>,
    banned: Vec<String>,
    seconds: f64,
}

/// Prints a finished fetch as JSON.
pub fn fetch_report(report: &swarm_engine::FetchReport, as_event: bool) {
    let row = FetchJson {
        id: report.id.to_string(),
        name: &report.manifest.name,
        path: &report.path,
        size: report.manifest.size,
        already_complete: report.already_complete,
        resumed_chunks: report.resumed_chunks,
        received_bytes: report.bytes_received(),
        received_from: report.received.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        banned: report.banned.iter().map(|p| p.to_string()).collect(),
        seconds: report.elapsed.as_secs_f64(),
    };
    print_json(serde_json::to_value(&row).expect("plain data serializes"), as_event);
}

/// Prints one thing `swarm sync` did on stdout: a line for people, or a JSON object per line.
pub fn sync_event(event: &SyncEvent, json: bool) {
    if json {
        let value = match event {
            SyncEvent::Scanned { files, hashed } => {
                serde_json::json!({ "event": "scanned", "files": files, "hashed": hashed })
            }
            SyncEvent::Fetched(report) => serde_json::json!({
                "event": "fetched",
                "name": report.manifest.name,
                "id": report.id.to_string(),
                "size": report.manifest.size,
                "seconds": report.elapsed.as_secs_f64(),
                "received_from": report.received.iter().map(|(p, n)| (p.to_string(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
            }),
            SyncEvent::Conflict { name, kept_as } => {
                serde_json::json!({ "event": "conflict", "name": name, "kept_as": kept_as })
            }
            SyncEvent::Failed { name, error } => {
                serde_json::json!({ "event": "failed", "name": name, "error": error.to_string() })
            }
            SyncEvent::Skipped(skipped) => {
                serde_json::json!({ "event": "skipped", "path": skipped.path, "why": skipped.why })
            }
            SyncEvent::Removed { name, kept_as } => {
                serde_json::json!({ "event": "removed", "name": name, "kept_as": kept_as })
            }
            SyncEvent::Deleted { name } => serde_json::json!({ "event": "deleted", "name": name }),
            SyncEvent::LocalOnly { name, deleted } => {
                serde_json::json!({ "event": "local_only", "name": name, "deleted": deleted })
            }
            SyncEvent::Refused { count, why } => {
                serde_json::json!({ "event": "refused", "count": count, "why": why })
            }
        };
        crate::out!("{value}");
        return;
    }
    match event {
        SyncEvent::Scanned { files, hashed } => crate::out!("shared  {hashed} new or changed file(s); {files} in all"),
        SyncEvent::Fetched(report) => crate::out!(
            "fetched {}  {}  from {} peer(s) in {:.1}s",
            shown(&report.manifest.name),
            bytes(report.manifest.size),
            report.received.len(),
            report.elapsed.as_secs_f64()
        ),
        SyncEvent::Conflict { name, kept_as } => {
            crate::out!(
                "conflict {}: a newer version exists elsewhere; the local one is kept as {}",
                shown(name),
                shown(kept_as)
            )
        }
        SyncEvent::Failed { name, error } => crate::out!(
            "failed  {}: {} (will try again)",
            shown(name),
            shown(&error.to_string())
        ),
        SyncEvent::Skipped(skipped) => crate::out!("skipped {}: {}", shown_path(&skipped.path), skipped.why),
        SyncEvent::Removed { name, kept_as } => crate::out!(
            "removed {}: deleted elsewhere; kept as {} for now",
            shown(name),
            shown(kept_as)
        ),
        SyncEvent::Deleted { name } => crate::out!(
            "deleted {}: deleted here, and so on every node of the share",
            shown(name)
        ),
        SyncEvent::LocalOnly { name, deleted } => crate::out!(
            "local   {}: {} here; this node has the read-only key, so the change stays here",
            shown(name),
            if *deleted { "deleted" } else { "changed" }
        ),
        SyncEvent::Refused { count, why } => warning(format_args!(
            "ignored {count} share change(s) from the tracker that are not the share's: {why}"
        )),
    }
}

#[derive(Serialize)]
struct EntryJson<'a> {
    id: String,
    name: &'a str,
    size: u64,
    chunks: u32,
    holders: u32,
    available_chunks: u32,
}

/// Prints catalogue entries as a table or JSON.
pub fn catalogue(entries: &[CatalogueEntry], json: bool) {
    if json {
        let rows: Vec<EntryJson> = entries
            .iter()
            .map(|e| EntryJson {
                id: e.file.to_string(),
                name: &e.name,
                size: e.size,
                chunks: e.chunk_count,
                holders: e.holders,
                available_chunks: e.available,
            })
            .collect();
        crate::out!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("plain data serializes")
        );
        return;
    }
    if entries.is_empty() {
        crate::out!("(no files)");
        return;
    }
    crate::out!(
        "{:<16}  {:>10}  {:>8}  {:>7}  {:>9}  NAME",
        "ID",
        "SIZE",
        "CHUNKS",
        "HOLDERS",
        "AVAILABLE"
    );
    for e in entries {
        let available = if e.chunk_count == 0 {
            100.0
        } else {
            100.0 * f64::from(e.available) / f64::from(e.chunk_count)
        };
        crate::out!(
            "{:<16}  {:>10}  {:>8}  {:>7}  {:>8.0}%  {}",
            &e.file.to_string()[..16],
            bytes(e.size),
            e.chunk_count,
            e.holders,
            available,
            shown(&e.name)
        );
    }
}

/// Prints what `swarm seed --json` shares: the folder's collection (null for a single file)
/// and every file, each with its ticket (null when the tracker's address cannot go in one).
pub fn seeded_json(
    folder: Option<&swarm_engine::collection::SharedCollection>,
    files: &[swarm_engine::SeededFile],
    ticket: impl Fn(swarm_engine::FileId) -> Option<String>,
) {
    let collection = folder.map(|shared| {
        serde_json::json!({
            "id": shared.id.to_string(),
            "name": shared.collection.name,
            "files": shared.collection.entries.len(),
            "size": shared.collection.size(),
            "ticket": ticket(shared.id),
        })
    });
    let files: Vec<_> = files
        .iter()
        .map(|f| {
            serde_json::json!({
                "id": f.id.to_string(),
                "name": f.manifest.name,
                "size": f.manifest.size,
                "ticket": ticket(f.id),
            })
        })
        .collect();
    let value = serde_json::json!({ "collection": collection, "files": files });
    crate::out!(
        "{}",
        serde_json::to_string_pretty(&value).expect("plain data serializes")
    );
}

/// Prints the files of a collection (those `--only` chose): a table, or JSON.
pub fn collection(id: swarm_engine::FileId, collection: &Collection, chosen: &[CollectionEntry], json: bool) {
    if json {
        let files: Vec<_> = chosen
            .iter()
            .map(|e| serde_json::json!({ "path": e.path, "id": e.file.to_string(), "size": e.size, "mode": e.mode }))
            .collect();
        let value = serde_json::json!({
            "id": id.to_string(),
            "name": collection.name,
            "files": files,
        });
        crate::out!(
            "{}",
            serde_json::to_string_pretty(&value).expect("plain data serializes")
        );
        return;
    }
    crate::out!("{:<16}  {:>10}  {:>4}  PATH", "ID", "SIZE", "MODE");
    for e in chosen {
        crate::out!(
            "{:<16}  {:>10}  {:>4o}  {}/{}",
            &e.file.to_string()[..16],
            bytes(e.size),
            e.mode,
            shown(&collection.name),
            shown(&e.path)
        );
    }
    let size: u64 = chosen.iter().map(|e| e.size).sum();
    crate::out!(
        "{} of {} file(s), {} of {}",
        chosen.len(),
        collection.entries.len(),
        bytes(size),
        bytes(collection.size())
    );
}

/// Prints what fetching a collection did, as JSON.
pub fn collection_report(
    id: swarm_engine::FileId,
    report: &swarm_engine::collection::CollectionReport,
    as_event: bool,
) {
    let files: Vec<_> = report
        .done
        .iter()
        .map(|(e, fetched)| {
            serde_json::json!({
                "path": e.path,
                "id": e.file.to_string(),
                "size": e.size,
                "already_complete": fetched.as_ref().is_none_or(|r| r.already_complete),
                "received_bytes": fetched.as_ref().map_or(0, |r| r.bytes_received()),
            })
        })
        .collect();
    let failed: Vec<_> = report
        .failed
        .iter()
        .map(|(e, error)| serde_json::json!({ "path": e.path, "id": e.file.to_string(), "error": error.to_string() }))
        .collect();
    let value = serde_json::json!({
        "id": id.to_string(),
        "path": report.root,
        "files": files,
        "failed": failed,
        "received_bytes": report.bytes_received(),
        "seconds": report.elapsed.as_secs_f64(),
    });
    print_json(value, as_event);
}

#[derive(Serialize)]
struct HolderJson {
    peer: String,
    addr: String,
    chunks: u32,
    complete: bool,
}

/// Prints who holds which chunks.
pub fn holders(name: &str, chunk_count: u32, holders: &[Holding], json: bool) {
    if json {
        let rows: Vec<HolderJson> = holders
            .iter()
            .map(|h| HolderJson {
                peer: h.peer.to_string(),
                addr: h.addr.to_string(),
                chunks: h.chunks.count(),
                complete: h.chunks.is_complete(),
            })
            .collect();
        crate::out!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("plain data serializes")
        );
        return;
    }
    crate::out!(
        "{}: {} live holder(s), {chunk_count} chunks",
        shown(name),
        holders.len()
    );
    if holders.is_empty() {
        return;
    }
    crate::out!("{:<16}  {:<22}  {:>13}  HOLDS", "PEER", "ADDRESS", "CHUNKS");
    for h in holders {
        let pct = if chunk_count == 0 {
            100.0
        } else {
            100.0 * f64::from(h.chunks.count()) / f64::from(chunk_count)
        };
        crate::out!(
            "{:<16}  {:<22}  {:>13}  {:.0}%",
            &h.peer.to_string()[..16],
            h.addr,
            format!("{}/{}", h.chunks.count(), chunk_count),
            pct
        );
    }
}

/// Shows `progress` until the returned guard is dropped: a bar on a terminal, a log line
/// every few seconds otherwise.
pub fn show_progress(label: &str, progress: Arc<Progress>, with_peers: bool) -> ProgressGuard {
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    let label = label.to_owned();
    let task = tokio::spawn(async move {
        if QUIET.load(Ordering::Relaxed) {
            return;
        }
        let terminal = std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = BARS.add(ProgressBar::new(progress.total()));
            let template = if with_peers {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {decimal_bytes_per_sec} ETA {eta} {prefix}"
            } else {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {decimal_bytes_per_sec} ETA {eta}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(label.clone());
            bar
        });
        let started = Instant::now();
        let mut last_log = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(if terminal { 100 } else { 1000 }));
        loop {
            let stopping = tokio::select! {
                _ = token.cancelled() => true,
                _ = ticker.tick() => false,
            };
            let (done, total) = (progress.done(), progress.total());
            match &bar {
                Some(bar) => {
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_prefix(format!("{} peer(s)", progress.peers()));
                }
                None if last_log.elapsed() >= Duration::from_secs(5) || (stopping && done > 0) => {
                    last_log = Instant::now();
                    note!(
                        "{label}: {} of {} ({:.1} MB/s){}",
                        bytes(done),
                        bytes(total),
                        mb_per_sec(done, started.elapsed()),
                        if with_peers {
                            format!(", {} peer(s)", progress.peers())
                        } else {
                            String::new()
                        }
                    );
                }
                None => {}
            }
            if stopping {
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                    BARS.remove(&bar);
                }
                return;
            }
        }
    });
    ProgressGuard { stop, task: Some(task) }
}

/// Prints `progress` as a JSON line on stdout every second until the guard is finished (for
/// `fetch --json --progress`): `{"event":"progress","name":..,"done":..,"total":..,
/// "bytes_per_second":..,"peers":..}`, from the moment the total is known.
pub fn json_progress(name: &str, progress: Arc<Progress>) -> ProgressGuard {
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let mut last = (Instant::now(), progress.done());
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // Nothing to say until the file is known (its manifest located).
            if progress.total() == 0 {
                continue;
            }
            let now = (Instant::now(), progress.done());
            let rate = now.1.saturating_sub(last.1) as f64 / now.0.duration_since(last.0).as_secs_f64().max(1e-3);
            last = now;
            let line = serde_json::json!({
                "event": "progress",
                "name": name,
                "done": now.1,
                "total": progress.total(),
                "bytes_per_second": rate.round() as u64,
                "peers": progress.peers(),
            });
            crate::out!("{line}");
        }
    });
    ProgressGuard { stop, task: Some(task) }
}

/// Prints a result as JSON: pretty, or as one `"event": "done"` line after progress lines.
fn print_json(mut value: serde_json::Value, as_event: bool) {
    if as_event {
        if let Some(object) = value.as_object_mut() {
            object.insert("event".into(), "done".into());
        }
        crate::out!("{value}");
    } else {
        crate::out!(
            "{}",
            serde_json::to_string_pretty(&value).expect("plain data serializes")
        );
    }
}

/// Stops a progress display.
pub struct ProgressGuard {
    stop: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressGuard {
    /// Stops the display and waits for it to clear.
    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
