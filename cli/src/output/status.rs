//! `swarm status`: a node's files, what its scans skipped and whom it served, as tables or as
//! the JSON view the HTTP API shares (`swarm_engine::view`).

use serde::Serialize;
use swarm_engine::status::{NodeStatus, Source};
use swarm_engine::view::{FileView, SkippedView, UploadView};

use super::lines::{bytes, shown, shown_path};

/// `swarm status --json`: the node asked for, and further nodes running on this machine.
#[derive(Serialize)]
struct NodeStatusJson<'a> {
    /// A running node answered (else this is its saved state).
    running: bool,
    files: Vec<FileView>,
    uploads: Vec<UploadView>,
    skipped: Vec<SkippedView>,
    /// Further nodes running on this machine (without --state: `node-2`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    other_nodes: Vec<OtherNodeJson<'a>>,
}

#[derive(Serialize)]
struct OtherNodeJson<'a> {
    state: &'a std::path::Path,
    #[serde(flatten)]
    status: NodeStatusJson<'a>,
}

/// One node's status, as `swarm status` shows it.
pub struct NodeShown {
    /// Its state directory.
    pub state_dir: std::path::PathBuf,
    /// Whether it came from the running node or from saved state.
    pub source: Source,
    /// What it holds and serves.
    pub status: NodeStatus,
}

/// Prints the status of `nodes` (the first is the one asked for; the others are further nodes
/// running on this machine): files, then the peers each served lately, as tables or JSON.
pub fn status(nodes: &[NodeShown], json: bool) {
    let Some((first, others)) = nodes.split_first() else {
        return;
    };
    if json {
        let all = NodeStatusJson {
            other_nodes: others
                .iter()
                .map(|node| OtherNodeJson {
                    state: &node.state_dir,
                    status: node_json(node, Vec::new()),
                })
                .collect(),
            ..node_json(first, Vec::new())
        };
        crate::out!("{}", serde_json::to_string_pretty(&all).expect("plain data serializes"));
        return;
    }
    for (n, node) in nodes.iter().enumerate() {
        if n > 0 {
            crate::out!("");
        }
        node_table(node);
    }
}

fn node_json<'a>(node: &'a NodeShown, other_nodes: Vec<OtherNodeJson<'a>>) -> NodeStatusJson<'a> {
    let status = &node.status;
    NodeStatusJson {
        running: matches!(node.source, Source::RunningNode(_)),
        files: status.files.iter().map(FileView::from).collect(),
        uploads: status.uploads.iter().map(UploadView::from).collect(),
        skipped: status.skipped.iter().map(SkippedView::from).collect(),
        other_nodes,
    }
}

fn node_table(node: &NodeShown) {
    let (status, state_dir) = (&node.status, &node.state_dir);
    let running = matches!(node.source, Source::RunningNode(_));
    match node.source {
        Source::RunningNode(addr) => crate::out!("node running at {addr} (state {})", state_dir.display()),
        Source::SavedState => crate::out!("no node running on {}; saved state:", state_dir.display()),
    }
    if status.files.is_empty() {
        crate::out!("(no downloads and no seeded files)");
    } else {
        crate::out!(
            "{:<11}  {:>6}  {:>15}  {:>10}  {:<16}  NAME",
            "STATE",
            "DONE",
            "CHUNKS",
            "SIZE",
            "ID"
        );
        for file in &status.files {
            crate::out!(
                "{:<11}  {:>5.1}%  {:>15}  {:>10}  {:<16}  {}",
                swarm_engine::view::state_word(file.state),
                file.percent(),
                format!("{}/{}", file.chunks_held, file.chunk_count),
                bytes(file.size),
                file.id.short(),
                shown(&file.name)
            );
        }
    }
    if !status.skipped.is_empty() {
        crate::out!("");
        crate::out!("SKIPPED (not shared)");
        for skipped in &status.skipped {
            crate::out!("{}: {}", shown_path(&skipped.path), skipped.why);
        }
    }
    if running {
        crate::out!("");
        if status.uploads.is_empty() {
            crate::out!("(no peer fetched from this node in the last 10 s)");
            return;
        }
        crate::out!("UPLOADS (peers served in the last 10 s)");
        crate::out!(
            "{:<16}  {:<21}  {:<8}  {:>10}  {:>11}  NAME",
            "PEER",
            "ADDRESS",
            "PATH",
            "SENT",
            "RATE"
        );
        for upload in &status.uploads {
            // A check comes with a one-time key, which says nothing to a person.
            let peer = if upload.spot_check {
                "tracker's check".to_owned()
            } else {
                upload.peer.short()
            };
            crate::out!(
                "{:<16}  {:<21}  {:<8}  {:>10}  {:>11}  {}",
                peer,
                upload.addr,
                upload.path,
                bytes(upload.bytes),
                format!("{:.1} MB/s", upload.rate as f64 / 1e6),
                shown(&upload.name)
            );
        }
    }
}
