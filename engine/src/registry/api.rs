//! The pull side of the OCI distribution API, as a registry mirror serves it: `GET /v2/`,
//! `GET`/`HEAD /v2/NAME/manifests/REFERENCE` and `GET`/`HEAD /v2/NAME/blobs/DIGEST`. Pushes and
//! listings are not served (a mirror pulls).
//!
//! It listens behind the node's HTTP guard and limits ([`crate::http`]): on loopback unless
//! asked otherwise, as a container runtime on the same host reaches it.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, MethodFilter};
use axum::Router;
use tracing::{debug, warn};

use super::names::BlobDigest;
use super::Mirror;
use crate::error::{Error, ErrorKind, Result};
use crate::http::HttpOptions;

/// The header every answer of a registry carries.
const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");
/// Bytes read from a blob's file at a time while it is sent.
const SEND_BUFFER: usize = 256 * 1024;

/// Binds `options.listen` and serves `mirror` there until its node shuts down. Returns the
/// bound address.
pub async fn serve(mirror: Mirror, options: HttpOptions) -> Result<SocketAddr> {
    let listener = crate::http::bind(&options, "registry port").await?;
    let bound = crate::http::local_addr(&listener, &options)?;
    let stop = mirror.inner.node.stopping();
    let router = Router::new()
        .route("/v2/", get(version_check))
        .route("/v2", get(version_check))
        .route("/v2/{*rest}", on(MethodFilter::GET.or(MethodFilter::HEAD), pull))
        .with_state(mirror);
    crate::http::run(listener, router, &options, stop);
    Ok(bound)
}

async fn version_check() -> Response {
    ([API_VERSION], axum::Json(serde_json::json!({}))).into_response()
}

/// `NAME/manifests/REFERENCE` or `NAME/blobs/DIGEST`.
async fn pull(State(mirror): State<Mirror>, Path(rest): Path<String>, method: Method, headers: HeaderMap) -> Response {
    let head = method == Method::HEAD;
    if let Some((repository, reference)) = rest.rsplit_once("/manifests/") {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        return match mirror.manifest(repository, reference, accept).await {
            Ok(manifest) => {
                let headers = [
                    (header::CONTENT_TYPE, text(&manifest.media_type)),
                    (header::CONTENT_LENGTH, HeaderValue::from(manifest.body.len())),
                    (
                        header::HeaderName::from_static("docker-content-digest"),
                        text(&manifest.digest.to_string()),
                    ),
                ];
                let body = if head { Body::empty() } else { Body::from(manifest.body) };
                (headers, [API_VERSION], body).into_response()
            }
            Err(e) => refusal("MANIFEST_UNKNOWN", &e),
        };
    }
    let Some((repository, digest)) = rest.rsplit_once("/blobs/") else {
        return problem(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            "a mirror serves /v2/NAME/manifests/REF and /v2/NAME/blobs/DIGEST only".into(),
        );
    };
    let digest = match digest.parse::<BlobDigest>() {
        Ok(digest) => digest,
        Err(why) => return problem(StatusCode::BAD_REQUEST, "DIGEST_INVALID", why),
    };
    if let Err(why) = super::names::check_repository(repository) {
        return problem(StatusCode::NOT_FOUND, "NAME_INVALID", why);
    }
    if head {
        return match mirror.blob_size(repository, digest).await {
            Ok(size) => blob_headers(digest, size, Body::empty()),
            Err(e) => refusal("BLOB_UNKNOWN", &e),
        };
    }
    match mirror.blob(repository, digest).await {
        Ok(blob) => {
            debug!(%digest, source = blob.source.label(), "blob handed out");
            match tokio::fs::File::open(&blob.path).await {
                Ok(file) => blob_headers(digest, blob.size, Body::from_stream(sent(file, blob.size))),
                Err(e) => refusal("BLOB_UNKNOWN", &Error::io(&blob.path, e)),
            }
        }
        Err(e) => refusal("BLOB_UNKNOWN", &e),
    }
}

/// The first `size` bytes of `file`, read a buffer at a time (a blob checked before is not
/// grown or cut while it is sent: the mirror's folder is its own).
fn sent(file: tokio::fs::File, size: u64) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures_util::stream::try_unfold((file, size), |(mut file, left)| async move {
        use tokio::io::AsyncReadExt;
        if left == 0 {
            return Ok(None);
        }
        let mut buffer = vec![0u8; SEND_BUFFER.min(usize::try_from(left).unwrap_or(SEND_BUFFER))];
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the blob's file shrank",
            ));
        }
        buffer.truncate(read);
        Ok(Some((bytes::Bytes::from(buffer), (file, left - read as u64))))
    })
}

fn blob_headers(digest: BlobDigest, size: u64, body: Body) -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ),
        (header::CONTENT_LENGTH, HeaderValue::from(size)),
        (
            header::HeaderName::from_static("docker-content-digest"),
            text(&digest.to_string()),
        ),
    ];
    (headers, [API_VERSION], body).into_response()
}

fn text(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// `error` as the distribution API's error body, with `code` when nothing was found.
fn refusal(code: &'static str, error: &Error) -> Response {
    let status = match error.kind() {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        _ => {
            warn!("registry request failed: {error}");
            StatusCode::BAD_GATEWAY
        }
    };
    let code = if status == StatusCode::NOT_FOUND {
        code
    } else {
        "UNAVAILABLE"
    };
    problem(status, code, error.to_string())
}

fn problem(status: StatusCode, code: &'static str, message: String) -> Response {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] });
    (status, [API_VERSION], axum::Json(body)).into_response()
}
