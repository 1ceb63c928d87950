//! What several commands share: state directories, a node's config from its flags, the metrics
//! and HTTP ports, signals and a graceful exit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use swarm_engine::known_trackers::KnownTrackers;
use swarm_engine::Node;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::args::NodeArgs;
use crate::config::metrics_options;
pub(super) use crate::config::{access, default_state, http_options, node_config, spare_states};

/// How long a graceful exit waits for uploads in flight.
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(30);

/// Records this process's metrics and serves them on `addr`, if given, with the HTTP port's
/// guard: in a private swarm (`secret_file`) or with `--http-token`, a scraper must send that
/// credential. A loopback address answers its own names only (as `--http` does); an address
/// other machines can reach was asked for on purpose and answers whatever name a scraper uses.
pub(super) async fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
    secret_file: &Option<PathBuf>,
    http: &crate::args::HttpArgs,
) -> Result<()> {
    let Some(listen) = addr else { return Ok(()) };
    let options = metrics_options(listen, secret_file, http)?;
    let metrics = swarm_engine::telemetry::install()?;
    let bound = swarm_engine::http::serve_metrics(metrics, options).await?;
    info!(addr = %bound, "metrics at http://{bound}/metrics");
    Ok(())
}

/// Serves `node`'s web view and API if --http was given (or `always`, then on a free
/// loopback port), with fetches started there landing in `downloads`. Returns the address.
pub(super) async fn serve_http(
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
    let options = http_options(listen, &args.http, &args.secret_file)?;
    let addr = swarm_engine::http::serve(node, options, downloads.to_owned()).await?;
    crate::note!("web view and API at http://{addr}/");
    Ok(Some(addr))
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
pub(super) fn cancel_on_signal() -> CancellationToken {
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

/// How long a tracker has to answer before the user is told that it has not yet.
pub(super) const TRACKER_PATIENCE_NOTE: Duration = Duration::from_secs(2);

/// Awaits `work`, which waits for the tracker(s) `trackers`, saying once if they have not
/// answered within [`TRACKER_PATIENCE_NOTE`]: a silent tracker is not a silent terminal.
pub(super) async fn telling_if_slow<T>(trackers: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => return done,
        _ = tokio::time::sleep(TRACKER_PATIENCE_NOTE) => {
            crate::note!("no answer from the tracker at {trackers} yet; still trying (Ctrl-C to give up)");
        }
    }
    work.await
}

/// Remembers `trackers` as the last used by the node on `state` (and on the default state
/// when none was named), for later queries without --tracker.
pub(super) fn remember_tracker(args: &NodeArgs, state: &Path, trackers: &str) {
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
