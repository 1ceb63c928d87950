//! The HTTP port (`--http HOST:PORT`) of a node ([`serve`]: a JSON API, a live web page, and
//! files readable while they download) or of a tracker ([`serve_tracker`]: the whole swarm).
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
//! The port listens on loopback unless the user asks for more ([`HttpOptions::public`]). In a
//! private swarm every request must carry the swarm's secret, as `Authorization: Bearer
//! SECRET` or as `?token=SECRET` (for players and the browser, which cannot set headers on a
//! link).

mod api;
mod app;
mod stream;
mod swarm_api;
mod tally;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, Response};
use axum::routing::{delete, get};
use axum::Router;
use swarm_proto::access::Access;
use tracing::warn;

use crate::error::{Error, Result};
use crate::node::Node;
use app::{problem, App};

/// How an HTTP port is set up.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Allow an address other machines can reach (by default only loopback is accepted).
    pub public: bool,
    /// The swarm's access: in a private swarm, requests must carry its secret.
    pub access: Access,
}

/// Binds a node's HTTP port and serves it until the node shuts down; fetches started through
/// it write into `downloads_dir`. Returns the bound address.
pub async fn serve(node: &Node, options: HttpOptions, downloads_dir: PathBuf) -> Result<SocketAddr> {
    let listener = bind(&options).await?;
    let bound = local_addr(&listener, &options)?;
    let app = App {
        node: node.clone(),
        downloads_dir: Arc::new(downloads_dir),
        tally: Arc::default(),
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
    run(listener, router, options.access, node.stopping());
    Ok(bound)
}

/// Binds a tracker's HTTP port (the whole swarm: files, peers, chunk maps) and serves it until
/// `stop` fires. Returns the bound address.
pub async fn serve_tracker(
    tracker: swarm_tracker::TrackerView,
    options: HttpOptions,
    stop: tokio_util::sync::CancellationToken,
) -> Result<SocketAddr> {
    let listener = bind(&options).await?;
    let bound = local_addr(&listener, &options)?;
    let router = Router::new()
        .route("/", get(|| page("tracker")))
        .route("/api/swarm", get(swarm_api::swarm))
        .route("/api/files/{id}", get(swarm_api::chunk_map))
        .with_state(tracker);
    run(listener, router, options.access, stop);
    Ok(bound)
}

/// Binds the port, refusing one other machines can reach unless asked.
async fn bind(options: &HttpOptions) -> Result<tokio::net::TcpListener> {
    let addr = options.listen;
    if !options.public && !addr.ip().is_loopback() {
        return Err(Error::Http(format!(
            "{addr} can be reached from other machines: bind the HTTP port to 127.0.0.1 (or [::1]), \
             or pass --http-public to serve it there on purpose"
        )));
    }
    if options.public && matches!(options.access, Access::Open) {
        warn!(%addr, "the HTTP port is open to anyone who reaches it (no private swarm secret to require)");
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Http(format!("could not listen on {addr}: {e}; pick another --http address")))
}

fn local_addr(listener: &tokio::net::TcpListener, options: &HttpOptions) -> Result<SocketAddr> {
    listener
        .local_addr()
        .map_err(|e| Error::Http(format!("could not listen on {}: {e}", options.listen)))
}

/// Serves `router` on `listener`, behind the secret check, until `stop` fires.
fn run(listener: tokio::net::TcpListener, router: Router, access: Access, stop: tokio_util::sync::CancellationToken) {
    let router = router.layer(axum::middleware::from_fn_with_state(access, require_secret));
    tokio::spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = served.await {
            warn!("the HTTP port stopped: {e}");
        }
    });
}

/// The web view, for a node or a tracker (the page shows the parts that fit).
async fn page(kind: &'static str) -> Html<String> {
    Html(include_str!("page.html").replace("data-kind=\"node\"", &format!("data-kind=\"{kind}\"")))
}

/// In a private swarm, refuses requests that do not carry the secret.
async fn require_secret(State(access): State<Access>, request: Request, next: Next) -> Response {
    let Access::Private(key) = &access else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = request.uri().query().unwrap_or("");
    let in_query = query.split('&').find_map(|pair| pair.strip_prefix("token="));
    if bearer.or(in_query).is_some_and(|token| key.is_secret(token)) {
        return next.run(request).await;
    }
    let mut refusal = problem(
        StatusCode::UNAUTHORIZED,
        "this node is in a private swarm: send its secret as `Authorization: Bearer SECRET` \
         (or ?token=SECRET), SECRET being the text of its --secret-file",
    );
    refusal
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    refusal
}
