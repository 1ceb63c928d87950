//! Fetches the file a ticket names into a folder, from every holder at once, verified.
//!
//! ```text
//! cargo run -p swarm-engine --example fetch_ticket -- swarm3... ./downloads
//! ```

use std::time::Duration;

use swarm_engine::fetch::holders_of;
use swarm_engine::{FetchOptions, Node, NodeConfig, Trackers};
use swarm_proto::ticket::Ticket;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(ticket), Some(out_dir)) = (args.next(), args.next()) else {
        return Err("usage: fetch_ticket TICKET FOLDER".into());
    };
    let ticket: Ticket = ticket.parse()?;
    let state = tempfile::tempdir()?;
    let node = Node::start(NodeConfig {
        state_dir: state.path().to_owned(),
        tracker: Some(Trackers::of_ticket(&ticket)),
        ..NodeConfig::default()
    })
    .await?;
    // Registering lets the node serve what it fetches; the fetch does not need it.
    if let Err(e) = node.join_tracker().await {
        eprintln!("not registered with the tracker ({e}); fetching all the same");
    }
    let options = FetchOptions {
        out_dir: out_dir.into(),
        holders: holders_of(&ticket),
        ..FetchOptions::default()
    };
    let report = node.fetch(ticket.file, options).await;
    node.shutdown(Duration::from_secs(1)).await;
    let report = report?;
    println!("{}: {} bytes, verified", report.path.display(), report.manifest.size);
    Ok(())
}
