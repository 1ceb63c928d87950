//! Shares a folder from a node with an embedded tracker and prints a ticket for each file;
//! serves until Ctrl-C.
//!
//! ```text
//! cargo run -p swarm-engine --example seed -- ./some-folder
//! ```

use std::time::Duration;

use swarm_engine::launch::{Peer, TrackerChoice};
use swarm_engine::{NodeConfig, Progress, Trackers, DEFAULT_CHUNK_SIZE};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = std::env::args().nth(1).ok_or("usage: seed FOLDER")?;
    let state = tempfile::tempdir()?;
    let config = NodeConfig {
        state_dir: state.path().to_owned(),
        ..NodeConfig::default()
    };
    let tracker = TrackerChoice::Embedded {
        listen: "[::]:0".parse()?,
    };
    let stop = CancellationToken::new();
    let peer = Peer::start(config, tracker, &stop, |_| {}).await?;
    let seeded = peer
        .node
        .seed_dir(folder.as_ref(), DEFAULT_CHUNK_SIZE, &Progress::default())
        .await?;
    let trackers: Trackers = peer.public_tracker.parse()?;
    for file in &seeded {
        let ticket = trackers.ticket_for(file.id, peer.ticket_holder().into_iter().collect());
        println!("{}  {ticket}", file.manifest.name);
    }
    tokio::signal::ctrl_c().await?;
    peer.stop(Duration::from_secs(2)).await;
    Ok(())
}
