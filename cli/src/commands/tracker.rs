//! `swarm tracker` and `swarm relay`.

use anyhow::Result;
use swarm_engine::netutil::reachable_addr;
use swarm_engine::TrackerAddr;
use swarm_tracker::{RelayConfig, RelayElsewhere, RelayServer, Tracker};
use tracing::info;

use crate::args::{RelayArgs, TrackerArgs};

use super::setup::{access, default_state, http_options, serve_metrics, shutdown_signal};

/// `swarm tracker`
pub async fn tracker(args: TrackerArgs) -> Result<()> {
    serve_metrics(args.metrics, &args.secret_file, &args.http).await?;
    let relay_elsewhere = match &args.relay {
        Some(relay) => Some(relay_elsewhere(relay).await?),
        None => None,
    };
    let tracker = Tracker::start(crate::config::tracker_config(&args, relay_elsewhere)?)
        .await
        .map_err(swarm_engine::Error::from)?;
    let reachable = reachable_addr(tracker.local_addr());
    match &args.secret_file {
        None => crate::out!(
            "tracker {} listening on {}; peers use --tracker {}@{}",
            tracker.id(),
            tracker.local_addr(),
            tracker.id(),
            reachable
        ),
        // Said on the one line scripts read: nodes without the secret are turned away.
        Some(secret) => crate::out!(
            "private tracker {} listening on {}; peers use --tracker {}@{} --secret-file {}",
            tracker.id(),
            tracker.local_addr(),
            tracker.id(),
            reachable,
            crate::output::shell_word(&secret.display().to_string())
        ),
    }
    match &args.store {
        Some(url) => {
            info!(files = tracker.catalogue_size(), store = %url.rsplit('@').next().unwrap_or(url), "state shared through Redis")
        }
        None => info!(files = tracker.catalogue_size(), "catalogue loaded"),
    }
    if let Some(listen) = args.http.listen {
        let options = http_options(listen, &args.http, &args.secret_file)?;
        match swarm_engine::http::serve_tracker(tracker.view(), options, tracker.stopping()).await {
            Ok(addr) => crate::note!("web view of the swarm and API at http://{addr}/"),
            Err(e) => {
                tracker.stop().await;
                return Err(e.into());
            }
        }
    }
    shutdown_signal().await;
    tracker.stop().await;
    Ok(())
}

/// `--relay ID@HOST:PORT`, its host resolved.
async fn relay_elsewhere(relay: &TrackerAddr) -> Result<RelayElsewhere> {
    let Some(id) = relay.id else {
        return Err(crate::args::Usage(format!(
            "--relay {}: name the relay with its id, ID@HOST:PORT, as `swarm relay` prints it",
            relay.host_port
        ))
        .into());
    };
    let addr = tokio::net::lookup_host(&relay.host_port)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| anyhow::anyhow!("--relay {}: cannot resolve that host", relay.host_port))?;
    Ok(RelayElsewhere { id, addr })
}

/// `swarm relay`
pub async fn relay(args: RelayArgs) -> Result<()> {
    let trackers = args
        .trackers
        .iter()
        .map(|text| {
            let id = text.split('@').next().unwrap_or(text);
            id.parse::<swarm_engine::PeerId>()
                .map_err(|_| crate::args::Usage(format!("--for {text}: not a tracker id (64 hex digits)")))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let relay = RelayServer::start(RelayConfig {
        state_dir: args.state.unwrap_or_else(|| default_state("relay")),
        listen: args.listen,
        rate: std::num::NonZeroU32::new(args.rate.min(u64::from(u32::MAX)) as u32),
        trackers,
        access: access(&args.secret_file)?,
    })
    .map_err(swarm_engine::Error::from)?;
    crate::out!(
        "relay {} listening on {}; trackers use --relay {}@{}",
        relay.id(),
        relay.local_addr(),
        relay.id(),
        reachable_addr(relay.local_addr())
    );
    shutdown_signal().await;
    info!(bytes = relay.relayed(), "relay stopping");
    relay.stop().await;
    Ok(())
}
