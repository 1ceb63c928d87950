//! What several commands share: state directories, a node's config from its flags, the metrics
//! and HTTP ports, signals and a graceful exit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use swarm_engine::known_trackers::KnownTrackers;
use swarm_engine::{Node, NodeConfig, Trackers};
use swarm_proto::access::{Access, SwarmKey};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::args::NodeArgs;

/// How long a graceful exit waits for uploads in flight.
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(30);

/// The state directory used when --state is not given.
pub fn default_state(sub: &str) -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("swarm")
        .join(sub)
}

/// Who a node talks to: everyone, or the nodes that hold the secret in `file`.
pub(super) fn access(file: &Option<PathBuf>) -> Result<Access> {
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
pub(super) fn node_state(given: &Option<PathBuf>) -> PathBuf {
    if let Some(dir) = given {
        return dir.clone();
    }
    let default = default_state("node");
    let mut in_use = None;
    for dir in std::iter::once(default.clone()).chain(spare_state_dirs()) {
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

/// The state directories a node takes when the default one is busy: `node-2`, `node-3`, …
fn spare_state_dirs() -> impl Iterator<Item = PathBuf> {
    let default = default_state("node");
    (2..=SPARE_STATES).map(move |n| default.with_file_name(format!("node-{n}")))
}

/// Those of [`spare_state_dirs`] that exist.
pub(super) fn spare_states() -> Vec<PathBuf> {
    spare_state_dirs().filter(|dir| dir.is_dir()).collect()
}

pub(super) fn node_config(args: &NodeArgs, tracker: Option<Trackers>) -> Result<NodeConfig> {
    Ok(NodeConfig {
        state_dir: node_state(&args.state),
        listen: args.listen,
        tracker,
        advertise: args.advertise,
        max_upload_rate: args.max_upload_rate,
        max_download_rate: args.max_download_rate,
        access: access(&args.secret_file)?,
        lan_discovery: !args.no_lan,
        port_mapping: !args.no_port_mapping,
    })
}

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

/// The HTTP port's options from its flags, on `listen`.
pub(super) fn http_options(
    listen: std::net::SocketAddr,
    http: &crate::args::HttpArgs,
    secret_file: &Option<PathBuf>,
) -> Result<swarm_engine::http::HttpOptions> {
    Ok(swarm_engine::http::HttpOptions {
        listen,
        public: http.public,
        access: access(secret_file)?,
        token: http.token.clone(),
        allow_hosts: http.allow_hosts.clone(),
    })
}
