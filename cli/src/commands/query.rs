//! `swarm ls`, `swarm search`, `swarm peers` and `swarm status`: questions to a tracker or to the
//! node running here.

use anyhow::Result;
use swarm_engine::known_trackers::KnownTrackers;
use swarm_engine::{TrackerClient, Trackers};
use swarm_proto::ticket::Ticket;

use crate::args::{PeersArgs, QueryArgs, SearchArgs, StatusArgs};
use crate::output;

use super::setup::{access, default_state, spare_states, telling_if_slow};

/// A client for `ls`, `search` and `peers`: of the trackers given, else of the ticket's, else
/// of those last used from the state directory.
struct Query {
    client: TrackerClient,
    trackers: Trackers,
    known: KnownTrackers,
    /// The trackers given with --tracker, remembered as the last used once they answered (a
    /// mistyped one is not).
    given: Option<String>,
}

impl Query {
    fn new(args: &QueryArgs, ticket: Option<&Ticket>) -> Result<Query> {
        let state = args.state.clone().unwrap_or_else(|| default_state("node"));
        let known = KnownTrackers::in_dir(&state);
        let given = Trackers::new(args.tracker.clone());
        let trackers = match (&given, ticket) {
            (Some(given), _) => given.clone(),
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
        let client = TrackerClient::ephemeral(trackers.clone(), Some(known.clone()), access(&args.secret_file)?)?;
        Ok(Query {
            client,
            trackers,
            known,
            given: given.map(|given| given.to_string()),
        })
    }

    /// The trackers asked, as a person names them.
    fn shown(&self) -> String {
        self.trackers.to_string()
    }

    /// The trackers answered: those given are the ones to ask next time.
    fn answered(&self) {
        if let Some(given) = &self.given {
            if let Err(e) = self.known.remember_last_used(given) {
                tracing::debug!("could not remember the tracker: {e}");
            }
        }
    }
}

/// `swarm status`
pub async fn status(args: StatusArgs) -> Result<()> {
    let given = args.state.is_some();
    let state = args.state.unwrap_or_else(|| default_state("node"));
    let (source, status) = swarm_engine::status::of_state_dir(&state).await?;
    let mut nodes = vec![output::NodeShown {
        state_dir: state,
        source,
        status,
    }];
    if !given {
        // Nodes started beside a busy default state (`node-2`, …) are shown too, if running.
        for dir in spare_states() {
            if let Ok((source @ swarm_engine::status::Source::RunningNode(_), status)) =
                swarm_engine::status::of_state_dir(&dir).await
            {
                nodes.push(output::NodeShown {
                    state_dir: dir,
                    source,
                    status,
                });
            }
        }
    }
    output::status(&nodes, args.json);
    Ok(())
}

/// `swarm ls`
pub async fn ls(args: QueryArgs) -> Result<()> {
    let query = Query::new(&args, None)?;
    let entries = telling_if_slow(&query.shown(), query.client.list()).await?;
    query.answered();
    output::catalogue(&entries, args.json);
    Ok(())
}

/// `swarm search`
pub async fn search(args: SearchArgs) -> Result<()> {
    let query = Query::new(&args.query, None)?;
    let entries = telling_if_slow(&query.shown(), query.client.search(&args.name, args.exact)).await?;
    query.answered();
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
    let query = Query::new(&args.query, ticket.as_ref())?;
    let client = &query.client;
    let id = match &ticket {
        Some(ticket) => ticket.file,
        None => telling_if_slow(&query.shown(), client.resolve(&args.id)).await?,
    };
    let located = telling_if_slow(&query.shown(), client.locate(id, true, 0)).await?;
    query.answered();
    let manifest = located
        .manifest
        .ok_or_else(|| anyhow::anyhow!("the tracker answered without the manifest asked for"))?;
    manifest
        .verify(&id)
        .map_err(|source| swarm_engine::Error::Manifest { file: Some(id), source })?;
    let holdings = client.holdings(id).await?;
    output::holders(&manifest.name, manifest.chunk_count, &holdings, args.query.json);
    Ok(())
}
