//! `swarm registry`: a container registry's pull-through mirror whose blobs travel through the
//! swarm ([`swarm_engine::registry`]), on a node sharing the folder the blobs are kept in.

use std::time::Duration;

use anyhow::{Context, Result};
use swarm_engine::http::HttpOptions;
use swarm_engine::registry::{Mirror, MirrorOptions};
use swarm_proto::access::Access;

use super::setup::shutdown_signal;
use super::Sharing;
use crate::args::RegistryArgs;

/// `swarm registry`
pub async fn registry(mut args: RegistryArgs) -> Result<()> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => crate::config::folder_in_node_state(&mut args.peer.node.state, "registry"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let sharing = Sharing::start(&dir, &args.peer, false).await?;
    let served = serve(&sharing, &args, dir).await;
    if let Err(e) = served {
        sharing.stop().await;
        return Err(e);
    }
    shutdown_signal().await;
    sharing.stop().await;
    Ok(())
}

async fn serve(sharing: &Sharing, args: &RegistryArgs, dir: std::path::PathBuf) -> Result<()> {
    sharing.share_dir(&dir, Duration::ZERO, "").await?;
    let options = MirrorOptions {
        upstream: args.upstream.clone(),
        dir,
        chunk_size: sharing.chunk_size(),
    };
    let mirror = Mirror::new(sharing.node(), options)?;
    // The runtime pulling from the mirror speaks the distribution API, which has no place for
    // the private swarm's secret: the port's own guard is loopback (or --serve-public).
    let http = HttpOptions {
        listen: args.serve,
        public: args.serve_public,
        access: Access::Open,
        token: None,
        allow_hosts: Vec::new(),
    };
    let addr = swarm_engine::registry::serve(mirror, http).await?;
    crate::note!(
        "registry mirror of {} at http://{addr}/ (layers through the swarm); Ctrl-C to stop",
        args.upstream
    );
    crate::out!("{addr}");
    Ok(())
}
