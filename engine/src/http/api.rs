//! The JSON API: what the node does now, the catalogue, a file's chunk map, and fetches
//! started and cancelled from outside.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use swarm_proto::protocol::Holding;
use swarm_proto::{Bitfield, FileId, Manifest, PeerId};

use super::{error_status, problem, App};
use crate::fetch::FetchOptions;
use crate::progress::Progress;
use crate::Result;

/// Fetches started through the API that ended, newest last.
const FINISHED_KEPT: usize = 32;

/// The ends of the fetches started through the API, and the download rates last measured.
#[derive(Default)]
pub(super) struct Finished {
    ended: Mutex<VecDeque<Value>>,
    rates: Mutex<HashMap<(FileId, Option<PeerId>), Rate>>,
}

/// A download's rate, measured over the last 2 to 4 s of status requests: chunks land in
/// lumps, and a shorter window makes the figure jump.
struct Rate {
    older: (Instant, u64),
    newer: (Instant, u64),
}

/// The shortest span a rate is measured over, once the download has run that long.
const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

impl Finished {
    fn record(&self, id: FileId, name: &str, result: &Result<crate::FetchReport>, started: Instant) {
        let mut entry = json!({
            "id": id.to_string(),
            "name": name,
            "ok": result.is_ok(),
            "elapsed_secs": started.elapsed().as_secs_f64(),
        });
        match result {
            Ok(report) => {
                entry["name"] = json!(report.manifest.name);
                entry["path"] = json!(report.path.display().to_string());
                entry["size"] = json!(report.manifest.size);
            }
            Err(e) => entry["error"] = json!(e.to_string()),
        }
        let mut ended = self.ended.lock().expect("finished lock poisoned");
        ended.push_back(entry);
        while ended.len() > FINISHED_KEPT {
            ended.pop_front();
        }
    }

    /// The rate of download `id` (from `peer`, or from all) now that `done` bytes are done,
    /// over the last [`RATE_WINDOW`] to twice that.
    fn rate(&self, id: FileId, peer: Option<PeerId>, done: u64, now: Instant) -> f64 {
        let mut rates = self.rates.lock().expect("rates lock poisoned");
        let rate = rates.entry((id, peer)).or_insert(Rate {
            older: (now, done),
            newer: (now, done),
        });
        if now.saturating_duration_since(rate.newer.0) >= RATE_WINDOW {
            rate.older = rate.newer;
            rate.newer = (now, done);
        }
        let (at, then) = rate.older;
        let seconds = now.saturating_duration_since(at).as_secs_f64();
        if seconds < 0.2 {
            return 0.0;
        }
        done.saturating_sub(then) as f64 / seconds
    }
}

/// `GET /api/status`: the node, its downloads and uploads with rates, the files it holds,
/// and the fetches started here that ended.
pub(super) async fn status(State(app): State<App>) -> Response {
    let node = &app.node;
    let files = match node.status() {
        Ok(files) => files,
        Err(e) => return problem(error_status(&e), e.to_string()),
    };
    let now = Instant::now();
    let running = node.downloads().list();
    app.finished
        .rates
        .lock()
        .expect("rates lock poisoned")
        .retain(|(id, _), _| running.iter().any(|d| d.id == *id));
    let downloads: Vec<Value> = running
        .iter()
        .map(|d| {
            let done = d.progress.done();
            let sources: Vec<Value> = d
                .progress
                .sources()
                .iter()
                .map(|&(peer, bytes)| {
                    json!({
                        "peer": peer.to_string(),
                        "bytes": bytes,
                        "rate": app.finished.rate(d.id, Some(peer), bytes, now),
                    })
                })
                .collect();
            json!({
                "id": d.id.to_string(),
                "name": d.name,
                "done": done,
                "total": d.progress.total(),
                "peers": d.progress.peers(),
                "rate": app.finished.rate(d.id, None, done, now),
                "elapsed_secs": d.started.elapsed().as_secs_f64(),
                "sources": sources,
            })
        })
        .collect();
    let uploads: Vec<Value> = node
        .uploads()
        .iter()
        .map(|u| {
            json!({
                "peer": u.peer.to_string(),
                "addr": u.addr.to_string(),
                "file": u.file.to_string(),
                "name": u.name,
                "bytes": u.bytes,
                "chunks": u.chunks,
                "rate": u.rate,
                "idle_secs": u.idle_ms as f64 / 1000.0,
            })
        })
        .collect();
    let files: Vec<Value> = files
        .iter()
        .map(|f| {
            json!({
                "id": f.id.to_string(),
                "name": f.name,
                "path": f.path.display().to_string(),
                "size": f.size,
                "chunk_count": f.chunk_count,
                "chunks_held": f.chunks_held,
                "bytes_held": f.bytes_held,
                "state": format!("{:?}", f.state).to_lowercase(),
            })
        })
        .collect();
    let ended: Vec<Value> = app
        .finished
        .ended
        .lock()
        .expect("finished lock poisoned")
        .iter()
        .cloned()
        .collect();
    Json(json!({
        "node": {
            "id": node.id().to_string(),
            "addr": node.local_addr().to_string(),
            "tracker": node.tracker().map(|t| t.addr().to_string()).ok(),
            "uploads_in_flight": node.uploads_in_flight(),
        },
        "downloads": downloads,
        "uploads": uploads,
        "files": files,
        "finished": ended,
    }))
    .into_response()
}

/// `GET /api/catalogue`: the tracker's catalogue.
pub(super) async fn catalogue(State(app): State<App>) -> Response {
    match app.node.list().await {
        Ok(entries) => Json(
            entries
                .iter()
                .map(|e| {
                    json!({
                        "id": e.file.to_string(),
                        "name": e.name,
                        "size": e.size,
                        "chunk_count": e.chunk_count,
                        "holders": e.holders,
                        "available": e.available,
                    })
                })
                .collect::<Vec<Value>>(),
        )
        .into_response(),
        Err(e) => problem(error_status(&e), e.to_string()),
    }
}

/// `GET /api/files/ID`: which chunks each holder has (as the tracker last heard, this node's
/// own from its disk), and how many holders each chunk has. Chunk sets are strings of `0`
/// and `1`, one character per chunk.
pub(super) async fn chunk_map(State(app): State<App>, Path(text): Path<String>) -> Response {
    let node = &app.node;
    let id = match resolve(&app, &text).await {
        Ok(id) => id,
        Err(refusal) => return refusal,
    };
    let held = node.store().get(&id);
    let manifest = match &held {
        Some(held) => held.manifest.clone(),
        None => match node.locate(id).await {
            Ok((manifest, _)) => Arc::new(manifest),
            Err(e) => return problem(error_status(&e), e.to_string()),
        },
    };
    let mine = held
        .map(|h| h.chunks())
        .unwrap_or_else(|| Bitfield::new(manifest.chunk_count));
    let (holdings, holders_error) = match node.holdings(id).await {
        Ok(holdings) => (holdings, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    Json(map_json(&manifest, &holdings, Some((node.id(), &mine)), holders_error)).into_response()
}

/// A file's chunk map: each holder's chunks (but `me`'s, given apart) as strings of `0` and
/// `1`, and how many holders each chunk has.
pub(super) fn map_json(
    manifest: &Manifest,
    holdings: &[Holding],
    me: Option<(PeerId, &Bitfield)>,
    holders_error: Option<String>,
) -> Value {
    let mut availability = vec![0u32; manifest.chunk_count as usize];
    let mut holders = Vec::new();
    let others = holdings
        .iter()
        .filter(|h| me.is_none_or(|(me, _)| h.peer != me) && h.chunks.len() == manifest.chunk_count);
    for holding in others {
        holding.chunks.iter().for_each(|c| availability[c as usize] += 1);
        holders.push(json!({
            "peer": holding.peer.to_string(),
            "addr": holding.addr.to_string(),
            "chunks": bits(&holding.chunks),
            "held": holding.chunks.count(),
        }));
    }
    json!({
        "id": manifest.id().to_string(),
        "name": manifest.name,
        "size": manifest.size,
        "chunk_size": manifest.chunk_size,
        "chunk_count": manifest.chunk_count,
        "mine": me.map(|(_, mine)| bits(mine)),
        "holders": holders,
        "availability": availability,
        "holders_error": holders_error,
    })
}

/// `POST /api/fetches` with `{"id": ID}`: what to fetch.
#[derive(Debug, Deserialize)]
pub(super) struct FetchRequest {
    /// File id, a unique prefix of 8+ hex digits, or a ticket.
    id: String,
}

/// `POST /api/fetches`: starts fetching a file into the node's download directory; its
/// progress is in `/api/status` (`downloads`, then `finished`).
pub(super) async fn start_fetch(State(app): State<App>, Json(request): Json<FetchRequest>) -> Response {
    // A ticket names its trackers too; the node asks its own.
    let wanted = match request.id.parse::<swarm_proto::ticket::Ticket>() {
        Ok(ticket) => ticket.file.to_string(),
        Err(_) => request.id.clone(),
    };
    let id = match app.node.resolve(&wanted).await {
        Ok(id) => id,
        Err(e) => return problem(error_status(&e), e.to_string()),
    };
    if app.node.downloads().get(&id).is_some() {
        return problem(StatusCode::CONFLICT, format!("{} is being fetched already", id.short()));
    }
    let options = FetchOptions {
        out_dir: app.downloads_dir.to_path_buf(),
        progress: Arc::new(Progress::default()),
        ..FetchOptions::default()
    };
    let fetching = app.node.fetch(id, options);
    let finished = app.finished.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let result = fetching.await;
        if let Err(e) = &result {
            tracing::warn!(file = %id.short(), "a fetch started over HTTP failed: {e}");
        }
        finished.record(id, &id.short(), &result, started);
    });
    let answer = json!({ "id": id.to_string(), "progress": "/api/status", "file": format!("/files/{id}") });
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

/// `DELETE /api/fetches/ID`: cancels a download (its verified chunks are kept).
pub(super) async fn cancel_fetch(State(app): State<App>, Path(text): Path<String>) -> Response {
    let id = match resolve(&app, &text).await {
        Ok(id) => id,
        Err(refusal) => return refusal,
    };
    match app.node.downloads().get(&id) {
        Some(download) => {
            download.cancel();
            (
                StatusCode::ACCEPTED,
                Json(json!({ "id": id.to_string(), "cancelled": true })),
            )
                .into_response()
        }
        None => problem(
            StatusCode::NOT_FOUND,
            format!("no download of {} is running here", id.short()),
        ),
    }
}

/// The file `text` names: a whole id, or a unique prefix among the files held or downloading
/// here, or else in the tracker's catalogue.
pub(super) async fn resolve(app: &App, text: &str) -> std::result::Result<FileId, Response> {
    if let Ok(id) = text.parse::<FileId>() {
        return Ok(id);
    }
    let local: Vec<FileId> = app
        .node
        .store()
        .all()
        .iter()
        .map(|h| h.id)
        .filter(|id| text.len() >= 8 && id.to_string().starts_with(&text.to_ascii_lowercase()))
        .collect();
    if let [id] = local[..] {
        return Ok(id);
    }
    app.node
        .resolve(text)
        .await
        .map_err(|e| problem(error_status(&e), e.to_string()))
}

/// A chunk set as a string of `0` and `1`.
fn bits(chunks: &Bitfield) -> String {
    (0..chunks.len())
        .map(|c| if chunks.get(c) { '1' } else { '0' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_are_measured_over_two_to_four_seconds() {
        let finished = Finished::default();
        let id = FileId([7; 32]);
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(finished.rate(id, None, 0, at(0)), 0.0);
        // 1 MB a second, arriving in lumps of 0.5 MB.
        assert_eq!(finished.rate(id, None, 1_000_000, at(1000)), 1_000_000.0);
        assert_eq!(finished.rate(id, None, 2_000_000, at(2000)), 1_000_000.0);
        let lumpy = finished.rate(id, None, 2_500_000, at(3000));
        assert!((lumpy - 833_333.3).abs() < 1.0, "window 0 to 3 s: {lumpy}");
        let steady = finished.rate(id, None, 4_000_000, at(4000));
        assert_eq!(steady, 1_000_000.0, "window 2 to 4 s");
        assert_eq!(
            finished.rate(id, Some(PeerId([1; 32])), 5, at(4000)),
            0.0,
            "each peer apart"
        );
    }
}
