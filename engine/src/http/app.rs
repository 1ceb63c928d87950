//! What every handler of a node's HTTP port shares, and how errors are answered.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::tally::Tally;
use crate::error::Error;
use crate::node::Node;

/// What every handler of a node's port shares.
#[derive(Clone)]
pub(super) struct App {
    pub(super) node: Node,
    pub(super) downloads_dir: Arc<PathBuf>,
    pub(super) tally: Arc<Tally>,
    pub(super) readers: super::limits::ReaderBudget,
}

/// An error answer: the status, and `{"error": message}`.
pub(super) fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The status an engine error is answered with.
pub(super) fn error_status(error: &Error) -> StatusCode {
    match error.kind() {
        crate::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        crate::ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        crate::ErrorKind::Integrity | crate::ErrorKind::Other => StatusCode::BAD_GATEWAY,
        crate::ErrorKind::Io => StatusCode::INTERNAL_SERVER_ERROR,
        crate::ErrorKind::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
    }
}
