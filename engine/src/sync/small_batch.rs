//! New small files of a share fetched many per request ([`crate::small_files`]): a folder of
//! thousands of tiny files syncs at the speed of its metadata, not at a connection per file.

use std::path::PathBuf;
use std::sync::Arc;

use swarm_proto::collection::Entry;
use swarm_proto::protocol::Holder;
use tracing::warn;

use super::download::{fetch_options, Download};
use super::plan::Planned;
use crate::fetch::Replace;
use crate::node::Node;
use crate::out_dir::Dir;
use crate::small_files::{self, Wanted};
use crate::tracker_client::Located;

/// Can `planned` come in a batch: a new file (nothing to replace), small, with its holders
/// located?
pub(super) fn fits(planned: &Planned, located: &Located) -> bool {
    planned.mine.is_none() && small_files::is_small(planned.size) && !located.holders.is_empty()
}

/// Fetches `batch` into `dir`: many per request from the holders located for them, the rest
/// one by one. One finished download per file.
pub(super) async fn fetch(node: Node, dir: PathBuf, batch: Vec<(Planned, Located)>) -> Vec<Download> {
    let mut holders: Vec<Holder> = Vec::new();
    for (_, located) in &batch {
        for holder in &located.holders {
            if !holders.iter().any(|h| h.peer == holder.peer) {
                holders.push(holder.clone());
            }
        }
    }
    let mut located: std::collections::HashMap<_, _> = batch.iter().map(|(p, l)| (p.file, l.clone())).collect();
    let mut planned: std::collections::HashMap<_, _> = batch.into_iter().map(|(p, _)| (p.file, p)).collect();
    let wanted = planned.values().map(|p| Wanted {
        entry: Entry {
            path: p.name.clone(),
            file: p.file,
            size: p.size,
            mode: 0,
            modified_ns: p.meta.modified_ns,
        },
        meta: p.meta,
        set_mode: false,
        progress: Arc::default(),
    });
    let wanted: Vec<Wanted> = wanted.collect();
    let outcome = match Dir::open_root(&dir) {
        Ok(root) => small_files::fetch(&node, &Arc::new(root), holders, wanted).await,
        Err(_) => small_files::Outcome {
            done: Vec::new(),
            left: wanted,
        },
    };
    let mut downloads = Vec::with_capacity(planned.len());
    for (wanted, report) in outcome.done {
        if let Err(e) = node.remember_fetched(&report).await {
            warn!("{e}");
        }
        downloads.push(Download {
            name: wanted.entry.path,
            file: wanted.entry.file,
            result: Ok(report),
        });
    }
    for wanted in outcome.left {
        let Some(planned) = planned.remove(&wanted.entry.file) else {
            continue;
        };
        let options = fetch_options(&dir, &planned, Replace::Never, located.remove(&planned.file));
        let result = node.fetch(planned.file, options).await;
        if let Ok(report) = &result {
            if let Err(e) = node.remember_fetched(report).await {
                warn!("{e}");
            }
        }
        downloads.push(Download {
            name: planned.name,
            file: planned.file,
            result,
        });
    }
    downloads
}
