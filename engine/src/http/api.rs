//! The JSON API: what the node does now, the catalogue, a file's chunk map, and fetches
//! started and cancelled from outside.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use swarm_proto::collection::Collection;
use swarm_proto::protocol::Holding;
use swarm_proto::ticket::Ticket;
use swarm_proto::{Bitfield, FileId, Manifest, PeerId};

use super::app::{error_status, problem, App};
use crate::collection::{self, CollectionOptions};
use crate::fetch::FetchOptions;
use crate::progress::Progress;
use crate::view::{DownloadView, FileView, FolderView, SourceView, UploadView};

/// `GET /api/status`: the node, the folders and files it downloads and its uploads with
/// rates, the files it holds, and the fetches started here that ended.
pub(super) async fn status(State(app): State<App>) -> Response {
    let node = &app.node;
    let files = match node.status() {
        Ok(files) => files,
        Err(e) => return problem(error_status(&e), e.to_string()),
    };
    let now = Instant::now();
    let running = node.downloads().list();
    let folders = node.downloads().folders();
    let ids = running.iter().map(|d| d.id).chain(folders.iter().map(|f| f.id));
    app.tally.keep_rates_of(&ids.collect::<Vec<_>>());
    let folders: Vec<FolderView> = folders
        .iter()
        .map(|f| {
            let done = f.progress.done();
            FolderView {
                id: f.id.to_string(),
                name: f.name.clone(),
                files: f.files,
                files_done: f.files_done(),
                done,
                total: f.progress.total(),
                bytes_per_second: app.tally.rate(f.id, None, done, now),
                elapsed_seconds: f.started.elapsed().as_secs_f64(),
            }
        })
        .collect();
    let downloads: Vec<DownloadView> = running
        .iter()
        .map(|d| {
            let done = d.progress.done();
            let sources = d
                .progress
                .sources()
                .iter()
                .map(|source| SourceView {
                    peer: source.peer.to_string(),
                    bytes: source.bytes,
                    bytes_per_second: app.tally.rate(d.id, Some(source.peer), source.bytes, now),
                    path: source.path,
                })
                .collect();
            DownloadView {
                id: d.id.to_string(),
                name: d.name.clone(),
                done,
                total: d.progress.total(),
                peers: d.progress.peers(),
                bytes_per_second: app.tally.rate(d.id, None, done, now),
                elapsed_seconds: d.started.elapsed().as_secs_f64(),
                sources,
            }
        })
        .collect();
    let uploads: Vec<UploadView> = node.uploads().iter().map(UploadView::from).collect();
    let files: Vec<FileView> = files.iter().map(FileView::from).collect();
    let ended = app.tally.ended();
    Json(json!({
        "node": {
            "id": node.id().to_string(),
            "addr": node.local_addr().to_string(),
            "tracker": node.tracker().map(|t| t.addr().to_string()).ok(),
            "uploads_in_flight": node.uploads_in_flight(),
        },
        "folders": folders,
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
        Ok(entries) => Json(entries.iter().map(entry_json).collect::<Vec<Value>>()).into_response(),
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
        None => match node.locate(id, &[]).await {
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

/// `POST /api/fetches`: starts fetching a file, or a folder, into the node's download
/// directory; its progress is in `/api/status` (`folders` and `downloads`, then `finished`).
pub(super) async fn start_fetch(State(app): State<App>, Json(request): Json<FetchRequest>) -> Response {
    // A ticket names its trackers too; the node asks its own, and dials the holders it names.
    let (wanted, holders) = match request.id.trim().parse::<Ticket>() {
        Ok(ticket) => (ticket.file.to_string(), crate::fetch::holders_of(&ticket)),
        Err(e) if Ticket::looks_like(request.id.trim()) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
        Err(_) => (request.id.trim().to_owned(), Vec::new()),
    };
    let id = match app.node.resolve(&wanted).await {
        Ok(id) => id,
        Err(e) => return problem(error_status(&e), e.to_string()),
    };
    let downloads = app.node.downloads();
    if downloads.get(&id).is_some() || downloads.fetching_folder(&id) {
        return problem(StatusCode::CONFLICT, format!("{} is being fetched already", id.short()));
    }
    let mut each = FetchOptions {
        out_dir: app.downloads_dir.to_path_buf(),
        progress: Arc::new(Progress::default()),
        holders,
        ..FetchOptions::default()
    };
    let folder = match collection::open(&app.node, id, &mut each).await {
        Ok(folder) => folder,
        Err(e) => return problem(error_status(&e), e.to_string()),
    };
    let answer = json!({
        "id": id.to_string(),
        "folder": folder.as_ref().map(|f| f.name.clone()),
        "progress": "/api/status",
        "file": folder.is_none().then(|| format!("/files/{id}")),
    });
    match folder {
        Some(folder) => spawn_folder_fetch(&app, id, folder, each),
        None => spawn_file_fetch(&app, id, each),
    }
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

/// Fetches file `id` in the background; its end is told in `/api/status`.
fn spawn_file_fetch(app: &App, id: FileId, options: FetchOptions) {
    let fetching = app.node.fetch(id, options);
    let tally = app.tally.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let result = fetching.await;
        if let Err(e) = &result {
            tracing::warn!(file = %id.short(), "a fetch started over HTTP failed: {e}");
        }
        tally.record(id, &id.short(), &result, started);
    });
}

/// Fetches every file of `folder` (collection `id`) in the background, several at once; its
/// end is told in `/api/status`.
fn spawn_folder_fetch(app: &App, id: FileId, folder: Collection, each: FetchOptions) {
    let (node, tally) = (app.node.clone(), app.tally.clone());
    let options = CollectionOptions {
        out_dir: app.downloads_dir.to_path_buf(),
        parallel: collection::DEFAULT_PARALLEL,
        progress: Arc::new(Progress::default()),
        each,
    };
    tokio::spawn(async move {
        let started = Instant::now();
        let result = collection::fetch(&node, id, &folder, folder.entries.clone(), options).await;
        if let Some(e) = result.as_ref().err() {
            tracing::warn!(file = %id.short(), "a folder fetch started over HTTP failed: {e}");
        }
        tally.record_folder(id, &folder.name, &result, started);
    });
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

/// The file `text` in a path names: a whole id, or a unique prefix of 8 or more hex digits
/// among the files held or downloading here, or else in the tracker's catalogue. A name is
/// not looked up (a path is what any link can make the node ask, and the answer would carry
/// the link's text back), and what is not an id is not repeated in the refusal.
pub(super) async fn resolve(app: &App, text: &str) -> std::result::Result<FileId, Response> {
    if let Ok(id) = text.parse::<FileId>() {
        return Ok(id);
    }
    if !swarm_proto::ids::is_id_prefix(text) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "not a file id: give its 64 hex digits, or 8 or more of them (names are listed at /api/catalogue)",
        ));
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

/// A catalogue entry as the API shows it.
pub(super) fn entry_json(entry: &swarm_proto::protocol::CatalogueEntry) -> Value {
    json!({
        "id": entry.file.to_string(),
        "name": entry.name,
        "size": entry.size,
        "chunk_count": entry.chunk_count,
        "holders": entry.holders,
        "available": entry.available,
    })
}

/// A chunk set as a string of `0` and `1`.
fn bits(chunks: &Bitfield) -> String {
    (0..chunks.len())
        .map(|c| if chunks.get(c) { '1' } else { '0' })
        .collect()
}
