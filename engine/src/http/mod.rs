//! The HTTP port (`--http HOST:PORT`) of a node ([`serve`]: a JSON API, a live web page, and
//! files readable while they download) or of a tracker ([`serve_tracker`]: the whole swarm),
//! and the metrics port of either (`--metrics`, [`serve_metrics`]: Prometheus's text).
//!
//! - `api`: a node's status (downloads with their sources, uploads per peer with rates, files
//!   held), the tracker's catalogue, a file's chunk map, and starting or cancelling a fetch.
//! - `stream`: `GET /files/ID` with range requests; a range not yet on disk is fetched first,
//!   and only bytes verified against the manifest are ever sent.
//! - `swarm_api`: a tracker's JSON: every file and live peer, and any file's chunk map.
//! - `app`, `tally`: what a node's handlers share, and what its port remembers between
//!   requests (fetches that ended, download rates).
//! - `page.html`: the web view of both, one page with no build step, shipped in the binary.
//!
//! The ports listen on loopback unless the user asks for more ([`HttpOptions::public`]), and
//! answer their user only (`guard`): requests addressed to another host name (DNS rebinding),
//! changes asked by another site's page, and requests without the private swarm's secret or
//! the user's `--http-token` are refused before any handler runs. What it may cost is bounded
//! (`limits`): connections at once, idle connections, and the readers' chunk buffers.

mod api;
mod app;
mod guard;
mod limits;
mod stream;
mod swarm_api;
mod tally;

pub use limits::{IDLE_TIMEOUT, MAX_CONNECTIONS, READER_MEMORY};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::response::Html;
use axum::routing::{delete, get};
use axum::Router;
use swarm_proto::access::Access;
use tracing::warn;

use crate::error::{Error, Result};
use crate::node::Node;
use app::App;
use guard::Guard;

/// How an HTTP port is set up.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Allow an address other machines can reach (by default only loopback is accepted).
    pub public: bool,
    /// The swarm's access: in a private swarm, requests must carry its secret.
    pub access: Access,
    /// A token every request must carry (`--http-token`), in place of the private swarm's
    /// secret if both are set.
    pub token: Option<String>,
    /// Host names the port answers to besides IP addresses and `localhost`.
    pub allow_hosts: Vec<String>,
}

/// Binds a node's HTTP port and serves it until the node shuts down; fetches started through
/// it write into `downloads_dir`. Returns the bound address.
pub async fn serve(node: &Node, options: HttpOptions, downloads_dir: PathBuf) -> Result<SocketAddr> {
    let listener = bind(&options, "HTTP port").await?;
    let bound = local_addr(&listener, &options)?;
    let app = App {
        node: node.clone(),
        downloads_dir: Arc::new(downloads_dir),
        tally: Arc::default(),
        readers: Default::default(),
    };
    let router = Router::new()
        .route("/", get(|| page("node")))
        .route("/api/status", get(api::status))
        .route("/api/catalogue", get(api::catalogue))
        .route("/api/files/{id}", get(api::chunk_map))
        .route("/api/fetches", axum::routing::post(api::start_fetch))
        .route("/api/fetches/{id}", delete(api::cancel_fetch))
        .route("/files/{id}", get(stream::file))
        .with_state(app);
    run(listener, router, &options, node.stopping());
    Ok(bound)
}

/// Binds a tracker's HTTP port (the whole swarm: files, peers, chunk maps) and serves it until
/// `stop` fires. Returns the bound address.
pub async fn serve_tracker(
    tracker: swarm_tracker::TrackerView,
    options: HttpOptions,
    stop: tokio_util::sync::CancellationToken,
) -> Result<SocketAddr> {
    let listener = bind(&options, "HTTP port").await?;
    let bound = local_addr(&listener, &options)?;
    let router = Router::new()
        .route("/", get(|| page("tracker")))
        .route("/api/swarm", get(swarm_api::swarm))
        .route("/api/files/{id}", get(swarm_api::chunk_map))
        .with_state(tracker);
    run(listener, router, &options, stop);
    Ok(bound)
}

/// Binds a metrics port and serves what `metrics` records at `/metrics`, behind the same guard
/// and limits as the HTTP port (in a private swarm, a scraper sends the secret as a bearer
/// token), for the rest of the process. Returns the bound address.
#[cfg(feature = "metrics")]
pub async fn serve_metrics(
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    options: HttpOptions,
) -> Result<SocketAddr> {
    let listener = bind(&options, "metrics port").await?;
    let bound = local_addr(&listener, &options)?;
    let router = Router::new().route("/metrics", get(move || std::future::ready(metrics.render())));
    run(listener, router, &options, tokio_util::sync::CancellationToken::new());
    Ok(bound)
}

/// Binds the `port` (named in messages), refusing one other machines can reach unless asked.
pub(crate) async fn bind(options: &HttpOptions, port: &str) -> Result<tokio::net::TcpListener> {
    let addr = options.listen;
    if !options.public && !addr.ip().is_loopback() {
        return Err(Error::Http(format!(
            "{addr} can be reached from other machines: bind the {port} to 127.0.0.1 (or [::1]), \
             or pass --http-public to serve it there on purpose"
        )));
    }
    if options.public && matches!(options.access, Access::Open) && options.token.is_none() {
        warn!(%addr, "the {port} is open to anyone who reaches it (no private swarm secret or token to require)");
    }
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::Http(format!(
            "could not listen on {addr} for the {port}: {e}; pick another address"
        ))
    })
}

pub(crate) fn local_addr(listener: &tokio::net::TcpListener, options: &HttpOptions) -> Result<SocketAddr> {
    listener
        .local_addr()
        .map_err(|e| Error::Http(format!("could not listen on {}: {e}", options.listen)))
}

/// Serves `router` on `listener`, behind the guard and within the limits, until `stop` fires.
pub(crate) fn run(
    listener: tokio::net::TcpListener,
    router: Router,
    options: &HttpOptions,
    stop: tokio_util::sync::CancellationToken,
) {
    let guard = Guard::new(options.access.clone(), options.token.clone(), &options.allow_hosts);
    let router = router.layer(axum::middleware::from_fn_with_state(guard, guard::check));
    tokio::spawn(async move {
        let served = axum::serve(limits::Bounded::new(listener), router).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = served.await {
            warn!("the HTTP port stopped: {e}");
        }
    });
}

/// The web view, for a node or a tracker (the page shows the parts that fit: its `<body>` says
/// which; the style sheet's selectors that name both kinds stay as they are).
async fn page(kind: &'static str) -> Html<String> {
    Html(include_str!("page.html").replace("<body data-kind=\"node\">", &format!("<body data-kind=\"{kind}\">")))
}
