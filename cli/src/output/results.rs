//! What the commands print besides status: a fetch's report, sync's events, the catalogue,
//! what a seed shares, a collection's files, who holds which chunks.

use serde::Serialize;
use swarm_engine::sync::SyncEvent;
use swarm_proto::collection::{Collection, Entry as CollectionEntry};
use swarm_proto::protocol::{CatalogueEntry, Holding};

use super::lines::{bytes, print_json, shown, shown_path, warning};

#[derive(Serialize)]
struct FetchJson<'a> {
    id: String,
    name: &'a str,
    path: &'a std::path::Path,
    size: u64,
    already_complete: bool,
    resumed_chunks: u32,
    received_bytes: u64,
    received_from: std::collections::BTreeMap<String, u64>,
    banned: Vec<String>,
    seconds: f64,
}

/// Prints a finished fetch as JSON.
pub fn fetch_report(report: &swarm_engine::FetchReport, as_event: bool) {
    let row = FetchJson {
        id: report.id.to_string(),
        name: &report.manifest.name,
        path: &report.path,
        size: report.manifest.size,
        already_complete: report.already_complete,
        resumed_chunks: report.resumed_chunks,
        received_bytes: report.bytes_received(),
        received_from: report.received.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        banned: report.banned.iter().map(|p| p.to_string()).collect(),
        seconds: report.elapsed.as_secs_f64(),
    };
    print_json(serde_json::to_value(&row).expect("plain data serializes"), as_event);
}

/// Prints one thing `swarm sync` did on stdout: a line for people, or a JSON object per line.
pub fn sync_event(event: &SyncEvent, json: bool) {
    if json {
        let value = match event {
            SyncEvent::Scanned { files, hashed } => {
                serde_json::json!({ "event": "scanned", "files": files, "hashed": hashed })
            }
            SyncEvent::Fetched(report) => serde_json::json!({
                "event": "fetched",
                "name": report.manifest.name,
                "id": report.id.to_string(),
                "size": report.manifest.size,
                "seconds": report.elapsed.as_secs_f64(),
                "received_from": report.received.iter().map(|(p, n)| (p.to_string(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
            }),
            SyncEvent::Conflict { name, kept_as } => {
                serde_json::json!({ "event": "conflict", "name": name, "kept_as": kept_as })
            }
            SyncEvent::Failed { name, error } => {
                serde_json::json!({ "event": "failed", "name": name, "error": error.to_string() })
            }
            SyncEvent::Skipped(skipped) => {
                serde_json::json!({ "event": "skipped", "path": skipped.path, "why": skipped.why })
            }
            SyncEvent::Removed { name, kept_as } => {
                serde_json::json!({ "event": "removed", "name": name, "kept_as": kept_as })
            }
            SyncEvent::Deleted { name } => serde_json::json!({ "event": "deleted", "name": name }),
            SyncEvent::LocalOnly { name, deleted } => {
                serde_json::json!({ "event": "local_only", "name": name, "deleted": deleted })
            }
            SyncEvent::Refused { count, why } => {
                serde_json::json!({ "event": "refused", "count": count, "why": why })
            }
        };
        crate::out!("{value}");
        return;
    }
    match event {
        SyncEvent::Scanned { files, hashed } => crate::out!("shared  {hashed} new or changed file(s); {files} in all"),
        SyncEvent::Fetched(report) => crate::out!(
            "fetched {}  {}  from {} peer(s) in {:.1}s",
            shown(&report.manifest.name),
            bytes(report.manifest.size),
            report.received.len(),
            report.elapsed.as_secs_f64()
        ),
        SyncEvent::Conflict { name, kept_as } => {
            crate::out!(
                "conflict {}: a newer version exists elsewhere; the local one is kept as {}",
                shown(name),
                shown(kept_as)
            )
        }
        SyncEvent::Failed { name, error } => crate::out!(
            "failed  {}: {} (will try again)",
            shown(name),
            shown(&error.to_string())
        ),
        SyncEvent::Skipped(skipped) => crate::out!("skipped {}: {}", shown_path(&skipped.path), skipped.why),
        SyncEvent::Removed { name, kept_as } => crate::out!(
            "removed {}: deleted elsewhere; kept as {} for now",
            shown(name),
            shown(kept_as)
        ),
        SyncEvent::Deleted { name } => crate::out!(
            "deleted {}: deleted here, and so on every node of the share",
            shown(name)
        ),
        SyncEvent::LocalOnly { name, deleted } => crate::out!(
            "local   {}: {} here; this node has the read-only key, so the change stays here",
            shown(name),
            if *deleted { "deleted" } else { "changed" }
        ),
        SyncEvent::Refused { count, why } => warning(format_args!(
            "ignored {count} share change(s) from the tracker that are not the share's: {why}"
        )),
    }
}

#[derive(Serialize)]
struct EntryJson<'a> {
    id: String,
    name: &'a str,
    size: u64,
    chunks: u32,
    holders: u32,
    available_chunks: u32,
}

/// Prints catalogue entries as a table or JSON.
pub fn catalogue(entries: &[CatalogueEntry], json: bool) {
    if json {
        let rows: Vec<EntryJson> = entries
            .iter()
            .map(|e| EntryJson {
                id: e.file.to_string(),
                name: &e.name,
                size: e.size,
                chunks: e.chunk_count,
                holders: e.holders,
                available_chunks: e.available,
            })
            .collect();
        crate::out!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("plain data serializes")
        );
        return;
    }
    if entries.is_empty() {
        crate::out!("(no files)");
        return;
    }
    crate::out!(
        "{:<16}  {:>10}  {:>8}  {:>7}  {:>9}  NAME",
        "ID",
        "SIZE",
        "CHUNKS",
        "HOLDERS",
        "AVAILABLE"
    );
    for e in entries {
        let available = if e.chunk_count == 0 {
            100.0
        } else {
            100.0 * f64::from(e.available) / f64::from(e.chunk_count)
        };
        crate::out!(
            "{:<16}  {:>10}  {:>8}  {:>7}  {:>8.0}%  {}",
            &e.file.to_string()[..16],
            bytes(e.size),
            e.chunk_count,
            e.holders,
            available,
            shown(&e.name)
        );
    }
}

/// Prints what `swarm seed --json` shares: the folder's collection (null for a single file)
/// and every file, each with its ticket (null when the tracker's address cannot go in one).
pub fn seeded_json(
    folder: Option<&swarm_engine::collection::SharedCollection>,
    files: &[swarm_engine::SeededFile],
    ticket: impl Fn(swarm_engine::FileId) -> Option<String>,
) {
    let collection = folder.map(|shared| {
        serde_json::json!({
            "id": shared.id.to_string(),
            "name": shared.collection.name,
            "files": shared.collection.entries.len(),
            "size": shared.collection.size(),
            "ticket": ticket(shared.id),
        })
    });
    let files: Vec<_> = files
        .iter()
        .map(|f| {
            serde_json::json!({
                "id": f.id.to_string(),
                "name": f.manifest.name,
                "size": f.manifest.size,
                "ticket": ticket(f.id),
            })
        })
        .collect();
    let value = serde_json::json!({ "collection": collection, "files": files });
    crate::out!(
        "{}",
        serde_json::to_string_pretty(&value).expect("plain data serializes")
    );
}

/// Prints the files of a collection (those `--only` chose): a table, or JSON.
pub fn collection(id: swarm_engine::FileId, collection: &Collection, chosen: &[CollectionEntry], json: bool) {
    if json {
        let files: Vec<_> = chosen
            .iter()
            .map(|e| serde_json::json!({ "path": e.path, "id": e.file.to_string(), "size": e.size, "mode": e.mode }))
            .collect();
        let value = serde_json::json!({
            "id": id.to_string(),
            "name": collection.name,
            "files": files,
        });
        crate::out!(
            "{}",
            serde_json::to_string_pretty(&value).expect("plain data serializes")
        );
        return;
    }
    crate::out!("{:<16}  {:>10}  {:>4}  PATH", "ID", "SIZE", "MODE");
    for e in chosen {
        crate::out!(
            "{:<16}  {:>10}  {:>4o}  {}/{}",
            &e.file.to_string()[..16],
            bytes(e.size),
            e.mode,
            shown(&collection.name),
            shown(&e.path)
        );
    }
    let size: u64 = chosen.iter().map(|e| e.size).sum();
    crate::out!(
        "{} of {} file(s), {} of {}",
        chosen.len(),
        collection.entries.len(),
        bytes(size),
        bytes(collection.size())
    );
}

/// Prints what fetching a collection did, as JSON.
pub fn collection_report(
    id: swarm_engine::FileId,
    report: &swarm_engine::collection::CollectionReport,
    as_event: bool,
) {
    let files: Vec<_> = report
        .done
        .iter()
        .map(|(e, fetched)| {
            serde_json::json!({
                "path": e.path,
                "id": e.file.to_string(),
                "size": e.size,
                "already_complete": fetched.as_ref().is_none_or(|r| r.already_complete),
                "received_bytes": fetched.as_ref().map_or(0, |r| r.bytes_received()),
            })
        })
        .collect();
    let failed: Vec<_> = report
        .failed
        .iter()
        .map(|(e, error)| serde_json::json!({ "path": e.path, "id": e.file.to_string(), "error": error.to_string() }))
        .collect();
    let value = serde_json::json!({
        "id": id.to_string(),
        "path": report.root,
        "files": files,
        "failed": failed,
        "received_bytes": report.bytes_received(),
        "seconds": report.elapsed.as_secs_f64(),
    });
    print_json(value, as_event);
}

#[derive(Serialize)]
struct HolderJson {
    peer: String,
    addr: String,
    chunks: u32,
    complete: bool,
}

/// Prints who holds which chunks.
pub fn holders(name: &str, chunk_count: u32, holders: &[Holding], json: bool) {
    if json {
        let rows: Vec<HolderJson> = holders
            .iter()
            .map(|h| HolderJson {
                peer: h.peer.to_string(),
                addr: h.addr.to_string(),
                chunks: h.chunks.count(),
                complete: h.chunks.is_complete(),
            })
            .collect();
        crate::out!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("plain data serializes")
        );
        return;
    }
    crate::out!(
        "{}: {} live holder(s), {chunk_count} chunks",
        shown(name),
        holders.len()
    );
    if holders.is_empty() {
        return;
    }
    crate::out!("{:<16}  {:<22}  {:>13}  HOLDS", "PEER", "ADDRESS", "CHUNKS");
    for h in holders {
        let pct = if chunk_count == 0 {
            100.0
        } else {
            100.0 * f64::from(h.chunks.count()) / f64::from(chunk_count)
        };
        crate::out!(
            "{:<16}  {:<22}  {:>13}  {:.0}%",
            &h.peer.to_string()[..16],
            h.addr,
            format!("{}/{}", h.chunks.count(), chunk_count),
            pct
        );
    }
}
