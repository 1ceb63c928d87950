//! `GET /files/ID`: a file held or downloading here, with range requests, so that a player
//! can start and seek before the last chunk lands.
//!
//! Each chunk is read from disk and checked against the manifest before any of its bytes are
//! sent ([`Held::read_chunk`]): only verified bytes leave. A chunk not yet on disk is asked
//! of the download ahead of the rest (with a few after it, for a reader going on), and the
//! answer waits for it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;

use super::app::{problem, App};
use crate::chunk_io::BufferPool;
use crate::downloads::Downloads;
use crate::held::{Held, ReadError};

/// Bytes asked for ahead of a reader, from the chunk it waits for: enough to keep a fast
/// download's pipeline full of chunks the reader will want next.
const READ_AHEAD_BYTES: u64 = 16 * 1024 * 1024;
/// Fewest chunks asked for ahead of a reader, however large.
const MIN_READ_AHEAD: u32 = 4;
/// How long an answer waits for a download to reach the point of having a file on disk
/// (its manifest located, its partial file made).
const START_WAIT: Duration = Duration::from_secs(30);
/// How long an answer waits for a download that is neither held nor running yet.
const START_GRACE: Duration = Duration::from_secs(2);
/// How often a reader waiting for a chunk asks for it again (the download may have missed it).
const ASK_AGAIN: Duration = Duration::from_secs(2);

/// `GET /files/ID` (and `HEAD`): the whole file, or the one range asked for.
pub(super) async fn file(State(app): State<App>, Path(text): Path<String>, headers: HeaderMap) -> Response {
    let id = match super::api::resolve(&app, &text).await {
        Ok(id) => id,
        Err(refusal) => return refusal,
    };
    let downloads = app.node.downloads().clone();
    let Some(held) = held_soon(&app, id).await else {
        return problem(
            StatusCode::NOT_FOUND,
            format!(
                "{} is neither held nor downloading here: start it with POST /api/fetches {{\"id\": \"{id}\"}}",
                id.short()
            ),
        );
    };
    let Some(room) = app.readers.reserve(held.manifest.chunk_size) else {
        let mut refusal = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many readers at once (their buffers may take {} MiB in all); try again shortly",
                super::limits::READER_MEMORY >> 20
            ),
        );
        refusal
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return refusal;
    };
    let size = held.manifest.size;
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = match asked.map(|text| http_range_header::parse_range_header(text).and_then(|r| r.validate(size))) {
        None => None,
        Some(Ok(ranges)) if ranges.len() == 1 => Some(ranges[0].clone()),
        // Several ranges: the whole file is a valid answer, and players never ask for more.
        Some(Ok(_)) => None,
        Some(Err(_)) => {
            let mut refusal = problem(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!(
                    "the range `{}` does not fit a file of {size} bytes",
                    asked.unwrap_or("")
                ),
            );
            refusal
                .headers_mut()
                .insert(header::CONTENT_RANGE, value(format!("bytes */{size}")));
            return refusal;
        }
    };
    let (status, start, end) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, *r.start(), *r.end() + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut answer = Body::from_stream(verified_bytes(downloads, held.clone(), start, end, room)).into_response();
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    let mime = mime_guess::from_path(&held.manifest.name).first_or_octet_stream();
    headers.insert(header::CONTENT_TYPE, value(mime.to_string()));
    headers.insert(header::CONTENT_LENGTH, value((end - start).to_string()));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, value(format!("\"{id}\"")));
    if range.is_some() {
        headers.insert(
            header::CONTENT_RANGE,
            value(format!("bytes {start}-{}/{size}", end.saturating_sub(1))),
        );
    }
    answer
}

/// The file `id` as the node holds it, waiting a little while a download of it is starting
/// (or, for [`START_GRACE`], about to start: `fetch --stream` prints its address just before
/// the download registers).
async fn held_soon(app: &App, id: swarm_proto::FileId) -> Option<Arc<Held>> {
    let asked = tokio::time::Instant::now();
    let deadline = asked + START_WAIT;
    loop {
        if let Some(held) = app.node.store().get(&id) {
            return Some(held);
        }
        let starting = asked.elapsed() < START_GRACE;
        if (app.node.downloads().get(&id).is_none() && !starting) || tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bytes `start..end` of `held`, chunk by chunk, each verified as it is read, holding
/// `room` in the readers' budget until the answer ends.
fn verified_bytes(
    downloads: Downloads,
    held: Arc<Held>,
    start: u64,
    end: u64,
    room: tokio::sync::OwnedSemaphorePermit,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    let buffers = BufferPool::new(1);
    let room = Arc::new(room);
    stream::try_unfold(start, move |at| {
        let (downloads, held, buffers, _room) = (downloads.clone(), held.clone(), buffers.clone(), room.clone());
        async move {
            if at >= end {
                return Ok(None);
            }
            let chunk_size = u64::from(held.manifest.chunk_size);
            let index = (at / chunk_size) as u32;
            wait_for(&downloads, &held, index).await?;
            let data = read(&held, index, &buffers).await?;
            let chunk_start = u64::from(index) * chunk_size;
            let from = (at - chunk_start) as usize;
            let to = (end.min(chunk_start + data.len() as u64) - chunk_start) as usize;
            Ok(Some((data.slice(from..to), chunk_start + to as u64)))
        }
    })
}

/// Waits until chunk `index` of `held` is verified on disk, asking the download for it first.
async fn wait_for(downloads: &Downloads, held: &Held, index: u32) -> io::Result<()> {
    let mut changes = held.subscribe();
    loop {
        if held.has(index) {
            return Ok(());
        }
        let ahead = (READ_AHEAD_BYTES / u64::from(held.manifest.chunk_size)) as u32;
        let ahead = ahead.clamp(MIN_READ_AHEAD, crate::scheduler::MAX_URGENT as u32);
        if !downloads.hurry(&held.id, index..index.saturating_add(ahead)) {
            return Err(io::Error::other(format!(
                "chunk {index} of {} is not on disk and no download of it runs",
                held.manifest.name
            )));
        }
        // Woken by any chunk landing; asks again now and then in case the ask was dropped.
        let _ = tokio::time::timeout(ASK_AGAIN, changes.changed()).await;
    }
}

/// Reads chunk `index` and checks it against the manifest. The partial file is renamed into
/// place when the download ends: a read that misses the file then tries again.
async fn read(held: &Arc<Held>, index: u32, buffers: &Arc<BufferPool>) -> io::Result<Bytes> {
    for _ in 0..20 {
        let (reading, buffers) = (held.clone(), buffers.clone());
        match tokio::task::spawn_blocking(move || reading.read_chunk(index, &buffers)).await {
            Ok(Ok(data)) => return Ok(Bytes::from_owner(data)),
            Ok(Err(ReadError::Io { source, .. })) if source.kind() == io::ErrorKind::NotFound => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(e)) => return Err(io::Error::other(e.to_string())),
            Err(join) => return Err(io::Error::other(join.to_string())),
        }
    }
    Err(io::Error::other(format!(
        "{} moved away while it was read",
        held.manifest.name
    )))
}

fn value(text: String) -> HeaderValue {
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
