//! `swarm fetch`: a file or a folder by ticket, id or name.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use swarm_engine::collection::CollectionOptions;
use swarm_engine::fetch::TRACKER_PATIENCE;
use swarm_engine::known_trackers::KnownTrackers;
use swarm_engine::{DiskIo, FetchOptions, Node, Progress, Replace, Sources, Trackers};
use swarm_proto::collection::{Collection, Entry as CollectionEntry};
use swarm_proto::protocol::Holder;
use swarm_proto::ticket::Ticket;

use crate::args::FetchArgs;
use crate::output;

use super::setup::{
    default_state, leave, node_config, remember_tracker, serve_http, serve_metrics, shutdown_signal, telling_if_slow,
    EXIT_GRACE,
};

/// How long uploads in flight may finish when a fetch fails.
const ERROR_GRACE: Duration = Duration::from_secs(2);

/// How a fetch that did not fail ends.
enum Done {
    /// The command exits (uploads in flight get [`EXIT_GRACE`]).
    Exit,
    /// It seeds what it fetched (at this path) until Ctrl-C.
    Seed(std::path::PathBuf),
}

/// `swarm fetch`
pub async fn fetch(args: FetchArgs) -> Result<()> {
    // --timeout bounds the whole command, tracker requests before the download included.
    let deadline = args.timeout.map(|timeout| tokio::time::Instant::now() + timeout);
    serve_metrics(args.node.metrics, &args.node.secret_file, &args.node.http).await?;
    let (wanted, trackers, holders) = fetch_target(&args)?;
    let shown_trackers = trackers.to_string();
    let node = Node::start(node_config(&args.node, Some(trackers))?).await?;
    let done = fetch_with(&args, &node, deadline, &wanted, holders, &shown_trackers).await;
    end(&node, done).await
}

/// Shuts `node` down on every way out of a fetch.
async fn end(node: &Node, done: Result<Done>) -> Result<()> {
    match done {
        Ok(Done::Exit) => node.shutdown(EXIT_GRACE).await,
        Ok(Done::Seed(path)) => {
            crate::note!("seeding {} until Ctrl-C", output::shown_path(&path));
            shutdown_signal().await;
            leave(node).await;
        }
        Err(e) => {
            node.shutdown(ERROR_GRACE).await;
            return Err(e);
        }
    }
    Ok(())
}

/// Finds `wanted`, then fetches it: a folder, or a file.
async fn fetch_with(
    args: &FetchArgs,
    node: &Node,
    deadline: Option<tokio::time::Instant>,
    wanted: &str,
    holders: Vec<Holder>,
    shown_trackers: &str,
) -> Result<Done> {
    let resolve = telling_if_slow(shown_trackers, node.resolve(wanted));
    let id = by_deadline(deadline, "asking the tracker for the file", resolve).await?;
    // Only now: a tracker that never answered is not the one to ask next time.
    remember_tracker(&args.node, node.state_dir(), shown_trackers);
    if holders.is_empty() {
        register(node, deadline, shown_trackers).await?;
    } else {
        // With holders named in the ticket, the fetch does not wait for the tracker: it starts
        // with them, registers beside the download, and serves others once registered.
        tokio::spawn(join_beside_the_download(node.clone(), shown_trackers.to_owned()));
    }
    let progress = Arc::new(Progress::default());
    let mut options = FetchOptions {
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
        holders,
        ..FetchOptions::default()
    };
    let folder = tokio::select! {
        opened = by_deadline(deadline, "fetching the file's manifest", swarm_engine::collection::open(node, id, &mut options)) => opened,
        _ = shutdown_signal() => Err(swarm_engine::Error::Cancelled),
    }?;
    refuse_misuse(args, id, folder.is_some())?;
    if let Some(collection) = folder {
        // The web view and API (--http) watch a folder's fetch too.
        serve_http(&args.node, node, &args.output, false).await?;
        return fetch_folder(args, node, id, collection, options).await;
    }
    fetch_file(args, node, id, options, progress).await
}

/// Registers with the tracker before a fetch with no holders of its own: within --timeout,
/// else the fetch goes on without serving others.
async fn register(node: &Node, deadline: Option<tokio::time::Instant>, shown_trackers: &str) -> Result<()> {
    let joining = telling_if_slow(shown_trackers, node.join_tracker());
    let registration = by_deadline(deadline, "registering with the tracker", joining).await;
    if deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
        return Err(registration
            .err()
            .unwrap_or_else(|| swarm_engine::Error::Timeout("gave up after --timeout".into()))
            .into());
    }
    match registration {
        // A private swarm's tracker will not locate holders either: said once, as the error.
        Err(e) if e.is_not_admitted() => Err(e.into()),
        Err(e) => {
            output::warning(format_args!(
                "could not register with the tracker ({e}); fetching without serving others until it answers"
            ));
            // The fetch asks the silent tracker again for holders; once it answers, so should
            // a second join, which announces the download too.
            let node = node.clone();
            tokio::spawn(async move {
                if node.join_tracker().await.is_ok() {
                    crate::note!("registered with the tracker: serving others too");
                }
            });
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

/// Refuses options that do not fit what `id` turned out to be (a folder or a file).
fn refuse_misuse(args: &FetchArgs, id: swarm_engine::FileId, is_folder: bool) -> Result<()> {
    let misuse = match is_folder {
        true if args.stream => Some(
            "--stream serves one file: fetch the folder with --list to see its files' ids, then stream one".to_owned(),
        ),
        false if args.list || !args.only.is_empty() => Some(format!(
            "{id} is a single file: --list and --only choose among the files of a folder"
        )),
        _ => None,
    };
    match misuse {
        Some(message) => Err(crate::args::Usage(message).into()),
        None => Ok(()),
    }
}

/// `swarm fetch` of one file: fetches it (streaming it over HTTP with --stream) and says how it
/// went.
async fn fetch_file(
    args: &FetchArgs,
    node: &Node,
    id: swarm_engine::FileId,
    options: FetchOptions,
    progress: Arc<Progress>,
) -> Result<Done> {
    if let Some(addr) = serve_http(&args.node, node, &args.output, args.stream).await? {
        if args.stream {
            use std::io::Write;
            crate::out!("http://{addr}/files/{id}");
            let _ = std::io::stdout().flush();
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
    let report = result?;
    if args.json {
        output::fetch_report(&report, args.progress);
    } else if report.already_complete {
        crate::out!(
            "{} already complete ({})",
            output::shown_path(&report.path),
            output::bytes(report.manifest.size)
        );
    } else {
        say_fetched(&report);
    }
    Ok(if args.seed || args.stream {
        Done::Seed(report.path)
    } else {
        Done::Exit
    })
}

/// What a fetch did, for people: where, how much, how fast, from how many peers.
fn say_fetched(report: &swarm_engine::FetchReport) {
    let received = report.bytes_received();
    crate::out!(
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

/// Registers `node` with its tracker while a download from a ticket's holders runs; says so if
/// the tracker refuses, or is silent for [`TRACKER_PATIENCE`] (and keeps trying).
async fn join_beside_the_download(node: Node, shown_trackers: String) {
    let join = node.join_tracker();
    tokio::pin!(join);
    match tokio::time::timeout(TRACKER_PATIENCE, &mut join).await {
        Ok(Ok(_)) | Ok(Err(swarm_engine::Error::Cancelled)) => {}
        Ok(Err(e)) => output::warning(format_args!(
            "could not register with the tracker ({e}); fetching from the holders the ticket names, without \
             serving others"
        )),
        Err(_) => {
            output::warning(format_args!(
                "no answer from the tracker at {shown_trackers} within {TRACKER_PATIENCE:?}; fetching from the \
                 holders the ticket names, and still trying the tracker"
            ));
            if join.await.is_ok() {
                crate::note!("registered with the tracker at {shown_trackers}: serving others too");
            }
        }
    }
}

/// `swarm fetch` of a folder: list it, or fetch the chosen files.
async fn fetch_folder(
    args: &FetchArgs,
    node: &Node,
    id: swarm_engine::FileId,
    collection: Collection,
    each: FetchOptions,
) -> Result<Done> {
    let chosen = choose(&collection, &args.only)?;
    if args.list {
        output::collection(id, &collection, &chosen, args.json);
        return Ok(Done::Exit);
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
        result = swarm_engine::collection::fetch(node, id, &collection, chosen.clone(), options) => result.map_err(anyhow::Error::from),
        _ = shutdown_signal() => Err(anyhow::Error::from(swarm_engine::Error::Cancelled)),
    };
    display.finish().await;
    let report = result.map_err(|e| {
        // Only an interruption is one; any other failure names its own cause (a folder that
        // cannot be written, a tracker gone) in its first words.
        if matches!(
            e.downcast_ref::<swarm_engine::Error>(),
            Some(swarm_engine::Error::Cancelled)
        ) {
            e.context("interrupted; run the same command again to resume")
        } else {
            e
        }
    })?;
    if args.json {
        output::collection_report(id, &report, args.progress);
    } else {
        say_fetched_folder(&report);
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
    Ok(if args.seed { Done::Seed(report.root) } else { Done::Exit })
}

/// What fetching a folder did, for people.
fn say_fetched_folder(report: &swarm_engine::collection::CollectionReport) {
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
    crate::out!(
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

/// What `swarm fetch` was asked for (an id, prefix or name), the trackers to ask (--tracker if
/// given, else the ticket's, else the last used from the state directory), and the holders
/// the ticket names, each address as a holder of its own.
fn fetch_target(args: &FetchArgs) -> Result<(String, Trackers, Vec<Holder>)> {
    target_of(&args.id, &args.tracker, &args.node.state)
}

/// What `id` (a ticket, an id or a name) asks for, the trackers to ask (`tracker` if given, else
/// the ticket's, else those last used from `state`), and the holders the ticket names.
pub(super) fn target_of(
    id: &str,
    tracker: &[swarm_engine::TrackerAddr],
    state: &Option<std::path::PathBuf>,
) -> Result<(String, Trackers, Vec<Holder>)> {
    let ticket = if Ticket::looks_like(id) {
        Some(id.parse::<Ticket>()?)
    } else {
        None
    };
    let wanted = ticket.as_ref().map_or_else(|| id.to_owned(), |t| t.file.to_string());
    let trackers = match (Trackers::new(tracker.to_vec()), &ticket) {
        (Some(given), _) => given,
        (None, Some(ticket)) => Trackers::of_ticket(ticket),
        (None, None) => {
            let state = state.clone().unwrap_or_else(|| default_state("node"));
            match KnownTrackers::in_dir(&state).last_used().map(|t| t.parse::<Trackers>()) {
                Some(Ok(last)) => last,
                _ => {
                    return Err(crate::args::Usage(
                        "no tracker given: name one with --tracker HOST:PORT, or fetch by the ticket `swarm seed` \
                         printed (swarm3...), which names its trackers"
                            .into(),
                    )
                    .into())
                }
            }
        }
    };
    let holders = ticket.as_ref().map(swarm_engine::fetch::holders_of).unwrap_or_default();
    Ok((wanted, trackers, holders))
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
