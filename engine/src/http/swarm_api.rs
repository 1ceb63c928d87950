//! A tracker's JSON API: the whole swarm (every file with its holders, every live peer) and
//! any file's chunk map. Read from the tracker's state under its lock, briefly.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use swarm_proto::FileId;
use swarm_tracker::TrackerView;

use super::app::problem;

/// Most peers listed: the page is for people, and a swarm of thousands is summed up.
const PEERS_LISTED: usize = 1000;

/// `GET /api/swarm`: the tracker, its catalogue (with holders and chunks available) and its
/// live peers.
pub(super) async fn swarm(State(tracker): State<TrackerView>) -> Response {
    let now = Instant::now();
    let (files, peers, peer_count, usage) = tracker.read(|state| {
        (
            state.list(),
            state.peers(PEERS_LISTED, now),
            state.peer_count(),
            state.usage().total(),
        )
    });
    let files: Vec<Value> = files.iter().map(super::api::entry_json).collect();
    let peers: Vec<Value> = peers
        .iter()
        .map(|p| {
            json!({
                "peer": p.peer.to_string(),
                "addr": p.addr.to_string(),
                "files": p.files,
                "silent_secs": p.silent.as_secs_f64(),
            })
        })
        .collect();
    Json(json!({
        "tracker": {
            "id": tracker.id().to_string(),
            "addr": tracker.addr().to_string(),
            "peers": peer_count,
            "files": files.len(),
            "budget_used": usage,
        },
        "files": files,
        "peers": peers,
    }))
    .into_response()
}

/// `GET /api/files/ID`: which chunks each holder of a file has, as the tracker last heard.
pub(super) async fn chunk_map(State(tracker): State<TrackerView>, Path(text): Path<String>) -> Response {
    let found = tracker.read(|state| match text.parse::<FileId>() {
        Ok(id) => Ok(id),
        Err(_) => match state.resolve(&text)[..] {
            [(id, _)] if text.len() >= 8 => Ok(id),
            [] => Err(format!("no file in the catalogue has the id `{text}`")),
            _ => Err(format!(
                "`{text}` is not a whole id nor a unique prefix of 8+ hex digits"
            )),
        },
    });
    let id = match found {
        Ok(id) => id,
        Err(message) => return problem(StatusCode::NOT_FOUND, message),
    };
    let map = tracker.read(|state| Some((state.manifest(&id)?, state.holdings(&id)?)));
    match map {
        Some((manifest, holdings)) => Json(super::api::map_json(&manifest, &holdings, None, None)).into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("{} is not in the catalogue", id.short())),
    }
}
