//! `swarm ls`, `swarm search`, `swarm peers` and `swarm status`: questions to a tracker or to the
//! node running here.

use anyhow::Result;
use swarm_engine::known_trackers::KnownTrackers;
use swarm_engine::{TrackerClient, Trackers};
use swarm_proto::ticket::Ticket;

use crate::args::{PeersArgs, QueryArgs, SearchArgs, StatusArgs};
use crate::output;

use super::setup::{access, default_state};

/// A client for `ls`, `search` and `peers`: of the trackers given, else of the ticket's, else
/// of those last used from the state directory.
fn query_client(args: &QueryArgs, ticket: Option<&Ticket>) -> Result<TrackerClient> {
    let state = args.state.clone().unwrap_or_else(|| default_state("node"));
    let known = KnownTrackers::in_dir(&state);
    let trackers = match (Trackers::new(args.tracker.clone()), ticket) {
        (Some(given), _) => {
            let _ = known.remember_last_used(&given.to_string());
            given
        }
        (None, Some(ticket)) => Trackers::of_ticket(ticket),
        (None, None) => match known.last_used().map(|text| text.parse::<Trackers>()) {
            Some(Ok(last)) => last,
            _ => {
                return Err(crate::args::Usage(format!(
                    "no tracker given, and none used before from {}: name one with --tracker HOST:PORT",
                    state.display()
                ))
                .into())
            }
        },
    };
    Ok(TrackerClient::ephemeral(
        trackers,
        Some(known),
        access(&args.secret_file)?,
    )?)
}

/// `swarm status`
pub async fn status(args: StatusArgs) -> Result<()> {
    let state = args.state.unwrap_or_else(|| default_state("node"));
    let (source, status) = swarm_engine::status::of_state_dir(&state).await?;
    output::status(&state, source, &status, args.json);
    Ok(())
}

/// `swarm ls`
pub async fn ls(args: QueryArgs) -> Result<()> {
    let entries = query_client(&args, None)?.list().await?;
    output::catalogue(&entries, args.json);
    Ok(())
}

/// `swarm search`
pub async fn search(args: SearchArgs) -> Result<()> {
    let entries = query_client(&args.query, None)?.search(&args.name, args.exact).await?;
    if entries.is_empty() && !args.query.json {
        return Err(swarm_engine::Error::NotFound(format!("no file name matches `{}`", args.name)).into());
    }
    output::catalogue(&entries, args.query.json);
    Ok(())
}

/// `swarm peers`
pub async fn peers(args: PeersArgs) -> Result<()> {
    let ticket = if Ticket::looks_like(&args.id) {
        Some(args.id.parse::<Ticket>()?)
    } else {
        None
    };
    let client = query_client(&args.query, ticket.as_ref())?;
    let id = match &ticket {
        Some(ticket) => ticket.file,
        None => client.resolve(&args.id).await?,
    };
    let manifest = client
        .locate(id, true, 0)
        .await?
        .manifest
        .ok_or_else(|| anyhow::anyhow!("the tracker answered without the manifest asked for"))?;
    manifest
        .verify(&id)
        .map_err(|source| swarm_engine::Error::Manifest { file: Some(id), source })?;
    let holdings = client.holdings(id).await?;
    output::holders(&manifest.name, manifest.chunk_count, &holdings, args.query.json);
    Ok(())
}
