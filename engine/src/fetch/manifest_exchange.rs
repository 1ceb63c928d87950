//! A file's manifest from its holders, as BitTorrent's metadata exchange does: the tracker is
//! asked only who holds the file, and the manifest comes from the first holder whose copy
//! matches the id. A tracker's answer for a big file is then a few hundred bytes instead of
//! the whole manifest (307 KB for 10 GB at 1 MiB chunks), for every fetcher. A holder that
//! sends another manifest, or none, is passed over; when none sends one within a second (holders
//! of an older version, unreachable ones, or none live yet), the tracker is asked for it too.

use std::time::Duration;

use swarm_proto::protocol::{CloseCode, Holder, PeerRequest, PeerResponse, MAX_FRAME};
use swarm_proto::transport::{self, Transport};
use swarm_proto::{FileId, Manifest};
use tokio::task::JoinSet;
use tracing::debug;

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

/// The manifest of `file`, checked against the id (`saved` if it is one, as a resumed download
/// has; else from the holders if one sends it, from the tracker otherwise), and up to `want`
/// of its live holders.
pub(crate) async fn locate_with_manifest(
    session: &Session,
    transport: &Transport,
    file: FileId,
    want: u16,
    saved: Option<Manifest>,
) -> Result<(Manifest, Located)> {
    let mut located = session.locate(file, false, want).await?;
    if located.manifest.is_none() {
        located.manifest = saved.filter(|manifest| manifest.verify(&file).is_ok());
    }
    if located.manifest.is_none() {
        let holders = located.holders.clone();
        let from_peers = from_holders(transport, file, &holders);
        tokio::pin!(from_peers);
        let early = tokio::time::timeout(TRACKER_AFTER, &mut from_peers).await;
        let from_tracker = session.locate(file, true, want);
        match early {
            Ok(Some(manifest)) => located.manifest = Some(manifest),
            // Every holder failed, or there is none: only the tracker is left.
            Ok(None) => located = from_tracker.await?,
            // The holders are slow (or unreachable): the tracker too, and the first wins.
            Err(_) => tokio::select! {
                Some(manifest) = &mut from_peers => located.manifest = Some(manifest),
                answer = from_tracker => located = answer?,
            },
        }
    }
    let manifest = located.manifest.take().ok_or_else(|| Error::Tracker {
        addr: session.client().addr().host_port.clone(),
        message: "answered a locate without the manifest asked for".into(),
    })?;
    // What a tracker sends (asked for or not) is checked as strictly as a holder's copy.
    manifest.verify(&file).map_err(|source| Error::Manifest {
        file: Some(file),
        source,
    })?;
    Ok((manifest, located))
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
        let (holder, answer) = asking.join_next().await?.ok()?;
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
        let (connection, _) = transport
            .connect(holder.addr, Some(holder.peer))
            .await
            .map_err(|e| e.to_string())?;
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
