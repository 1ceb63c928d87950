//! A file's manifest from its holders, as BitTorrent's metadata exchange does: the tracker is
//! asked only who holds the file, and the manifest comes from the first holder whose copy
//! matches the id. A tracker's answer for a big file is then a few hundred bytes instead of
//! the whole manifest (307 KB for 10 GB at 1 MiB chunks), for every fetcher. A holder that
//! sends another manifest, or none, is passed over; when none sends one within a second (holders
//! of an older version, unreachable ones, or none live yet), the tracker is asked for it too.

use std::time::Duration;

use swarm_proto::protocol::{CloseCode, Holder, PeerRequest, PeerResponse, MAX_FRAME};
use swarm_proto::transport::{self, Transport};
use swarm_proto::{dial, FileId, Manifest, PeerId};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::session::Session;
use crate::tracker_client::Located;

/// Holders asked at once: the first answer wins, a slow or lying one costs no waiting.
const ASKED_AT_ONCE: usize = 3;
/// How long one holder has to connect and send the manifest.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How long the holders have alone before the tracker is asked for the manifest too (holders
/// it named may be unreachable from here).
const TRACKER_AFTER: Duration = Duration::from_secs(1);
/// How long a fetch that knows holders of its own waits for the tracker before it does
/// without.
pub const TRACKER_PATIENCE: Duration = Duration::from_secs(2);
/// The same, for a tracker that did not answer lately (the next file of a folder).
const SILENT_PATIENCE: Duration = Duration::from_millis(200);

/// The manifest of `file`, checked against the id, and up to `want` of its live holders.
///
/// The manifest is `saved` if that is one (a resumed download has it), else the first a holder
/// sends, else the tracker's. Holders `known` beforehand (a ticket's) are added to those the
/// tracker names; when the tracker does not answer within [`TRACKER_PATIENCE`], they are the
/// only ones, so that a ticket works with its tracker gone.
pub(crate) async fn locate_with_manifest(
    session: &Session,
    transport: &Transport,
    file: FileId,
    want: u16,
    saved: Option<Manifest>,
    known: &[Holder],
) -> Result<(Manifest, Located)> {
    let (mut located, tracker_answered) = holders_from_tracker_or_ticket(session, file, want, known).await?;
    // A saved or holder's copy is checked where it comes in; the tracker's, at the end.
    let mut checked = false;
    if located.manifest.is_none() {
        located.manifest = saved.filter(|manifest| manifest.verify(&file).is_ok());
        checked = located.manifest.is_some();
    }
    if located.manifest.is_none() && !tracker_answered {
        located.manifest = from_holders(transport, file, &located.holders).await;
        checked = true;
        if located.manifest.is_none() {
            return Err(Error::NotFound(format!(
                "{}: no holder the ticket names sent its manifest, and the tracker at {} does not answer; \
                 check that a holder is still running and reachable from here",
                file.short(),
                session.client().addr().host_port
            )));
        }
    }
    if located.manifest.is_none() {
        let holders = located.holders.clone();
        let from_peers = from_holders(transport, file, &holders);
        tokio::pin!(from_peers);
        let early = tokio::time::timeout(TRACKER_AFTER, &mut from_peers).await;
        let from_tracker = session.locate(file, true, want);
        let from_a_holder = match early {
            Ok(Some(manifest)) => Some(manifest),
            // Every holder failed, or there is none: only the tracker is left.
            Ok(None) => {
                located = from_tracker.await?;
                None
            }
            // The holders are slow (or unreachable): the tracker too, and the first wins.
            Err(_) => tokio::select! {
                Some(manifest) = &mut from_peers => Some(manifest),
                answer = from_tracker => {
                    located = answer?;
                    None
                }
            },
        };
        if let Some(manifest) = from_a_holder {
            (located.manifest, checked) = (Some(manifest), true);
        }
    }
    let manifest = located.manifest.take().ok_or_else(|| Error::Tracker {
        addr: session.client().addr().host_port.clone(),
        message: "answered a locate without the manifest asked for".into(),
    })?;
    // What a tracker sends (asked for or not) is checked as strictly as a holder's copy.
    if !checked {
        manifest.verify(&file).map_err(|source| Error::Manifest {
            file: Some(file),
            source,
        })?;
    }
    Ok((manifest, located))
}

/// The tracker's answer to a locate without the manifest, with the holders `known` beforehand
/// added, and whether the tracker answered; when it does not answer in time, the `known`
/// holders alone.
async fn holders_from_tracker_or_ticket(
    session: &Session,
    file: FileId,
    want: u16,
    known: &[Holder],
) -> Result<(Located, bool)> {
    if known.is_empty() {
        return Ok((session.locate(file, false, want).await?, true));
    }
    let was_silent = session.seems_silent();
    let patience = if was_silent { SILENT_PATIENCE } else { TRACKER_PATIENCE };
    let answer = tokio::time::timeout(patience, session.locate(file, false, want)).await;
    session.note_silence(!matches!(answer, Ok(Ok(_))));
    match answer {
        Ok(Ok(mut located)) => {
            let named: Vec<PeerId> = located.holders.iter().map(|h| h.peer).collect();
            located
                .holders
                .extend(known.iter().filter(|h| !named.contains(&h.peer)).cloned());
            return Ok((located, true));
        }
        // Said once, not for every file of a folder.
        Ok(Err(e)) if !was_silent => {
            warn!("the tracker did not answer ({e}); fetching from the holders the ticket names")
        }
        Err(_) if !was_silent => {
            let tracker = &session.client().addr().host_port;
            warn!("no answer from the tracker at {tracker} within {patience:?}; fetching from the holders the ticket names")
        }
        _ => {}
    }
    let alone = Located {
        manifest: None,
        holders: known.to_vec(),
        meta: Default::default(),
        live: known.len() as u32,
        retired: false,
    };
    Ok((alone, false))
}

/// The manifest of `file` from the first of `holders` that sends one matching the id.
async fn from_holders(transport: &Transport, file: FileId, holders: &[Holder]) -> Option<Manifest> {
    let mut waiting = holders.iter().cloned();
    let mut asking = JoinSet::new();
    loop {
        while asking.len() < ASKED_AT_ONCE {
            let Some(holder) = waiting.next() else { break };
            asking.spawn(ask(transport.clone(), file, holder));
        }
        // A task that panicked is one holder fewer, not the end of the asking.
        let Ok((holder, answer)) = asking.join_next().await? else {
            continue;
        };
        match answer {
            Ok(manifest) => {
                debug!(file = %file.short(), holder = %holder.peer.short(), "manifest from a holder");
                return Some(manifest);
            }
            Err(why) => debug!(file = %file.short(), holder = %holder.peer.short(), "no manifest: {why}"),
        }
    }
}

/// Asks `holder` for the manifest of `file`, and checks it.
async fn ask(transport: Transport, file: FileId, holder: Holder) -> (Holder, std::result::Result<Manifest, String>) {
    let exchange = async {
        let connection = dial::connect_first(&transport, &holder.addrs(), holder.peer)
            .await
            .map_err(|e| e.to_string())?
            .connection;
        let request = PeerRequest::GetManifest { file };
        let answer = transport::exchange::<_, PeerResponse>(&connection, &request, MAX_FRAME).await;
        connection.close(CloseCode::Done.code(), b"done");
        match answer.map_err(|e| e.to_string())?.0 {
            PeerResponse::Manifest(manifest) => match manifest.verify(&file) {
                Ok(()) => Ok(manifest),
                Err(e) => Err(format!("sent a manifest that does not match the id: {e}")),
            },
            PeerResponse::Error { message, .. } => Err(message),
            _ => Err("answered with something other than a manifest".into()),
        }
    };
    let answer = match tokio::time::timeout(ANSWER_WITHIN, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {ANSWER_WITHIN:?}")),
    };
    (holder, answer)
}
