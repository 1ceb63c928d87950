//! A file's manifest from its holders, as BitTorrent's metadata exchange does: the tracker is
//! asked only who holds the file, and the manifest comes from the first holder whose copy
//! matches the id. A tracker's answer for a big file is then a few hundred bytes instead of
//! the whole manifest (307 KB for 10 GB at 1 MiB chunks), for every fetcher. A holder that
//! sends another manifest, or none, is passed over; when none sends one within a second (holders
//! of an older version, unreachable ones, or none live yet), the tracker is asked for it too.

use std::time::Duration;

use swarm_proto::protocol::{CloseCode, Holder, PeerRequest, PeerResponse, MAX_FRAME};
use swarm_proto::transport::{self, Transport};
use swarm_proto::{FileId, Manifest, PeerId};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::lan_discovery::LanDiscovery;
use crate::session::Session;
use crate::tracker_client::Located;
use crate::traversal;

/// Holders asked at once: the first answer wins, a slow or lying one costs no waiting.
const ASKED_AT_ONCE: usize = 3;
/// How long one holder has to connect and send the manifest.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How long the holders have alone before the tracker is asked for the manifest too (holders
/// it named may be unreachable from here).
const TRACKER_AFTER: Duration = Duration::from_secs(1);
/// How long a fetch that knows holders of its own waits for the tracker before it does
/// without, while those holders have not sent the manifest.
pub const TRACKER_PATIENCE: Duration = Duration::from_secs(2);
/// How long the tracker has once a holder of the fetch's own sent the manifest, or at all
/// when it did not answer lately (the next file of a folder): the download starts with the
/// holders known, and the tracker's are added as it asks again.
const SHORT_PATIENCE: Duration = Duration::from_millis(200);

/// How long the tracker has alone before the local network is asked too (when it is on).
const LAN_AFTER: Duration = Duration::from_millis(300);
/// How long the local network has to answer (a query returns a moment after the first answer;
/// this long only when none comes).
const LAN_WAIT: Duration = Duration::from_secs(1);

/// The manifest of `file`, checked against the id, and up to `want` of its live holders.
///
/// The manifest is `saved` if that is one (a resumed download has it), else the first a holder
/// sends, else the tracker's. Holders `known` beforehand (a ticket's) are asked at once, beside
/// the tracker, and added to those it names; when the tracker does not answer in time (see
/// [`TRACKER_PATIENCE`]), they are the only ones, so that a ticket works with its tracker gone.
/// Without such holders, a tracker that is slow or fails has the local network (`lan`) asked
/// too, and those that answer are taken as known.
pub(crate) async fn locate_with_manifest(
    session: &Session,
    transport: &Transport,
    lan: Option<&LanDiscovery>,
    file: FileId,
    want: u16,
    saved: Option<Manifest>,
    known: &[Holder],
) -> Result<(Manifest, Located)> {
    let saved = saved.filter(|manifest| manifest.verify(&file).is_ok());
    let mut known = known.to_vec();
    let mut lan = lan;
    if known.is_empty() {
        match tracker_or_link(session, lan, file, want).await? {
            Found::ByTracker(located) => return with_manifest(session, transport, file, want, saved, located).await,
            // Those found are the known ones: the link need not be asked again.
            Found::OnTheLink(found) => (known, lan) = (found, None),
        }
    }
    let known = known.as_slice();
    let was_silent = session.seems_silent();
    let patience = patience(was_silent);
    let Race {
        answer,
        manifest,
        found,
        waited,
    } = race(session, transport, lan, file, want, known, saved, was_silent).await;
    let known: Vec<Holder> = known.iter().cloned().chain(found).collect();
    let tracker_addr = &session.client().addr().host_port;
    match answer {
        Some(Ok(mut located)) => {
            session.note_silence(false);
            let named: Vec<PeerId> = located.holders.iter().map(|h| h.peer).collect();
            located
                .holders
                .extend(known.iter().filter(|h| !named.contains(&h.peer)).cloned());
            if let Some(manifest) = manifest {
                return Ok((manifest, located));
            }
            // None the ticket names sent it: as without them, the tracker's holders then the tracker.
            return with_manifest(session, transport, file, want, None, located).await;
        }
        Some(Err(e)) => {
            session.note_silence(true);
            if manifest.is_none() {
                // What the tracker said is the likelier cause (a private swarm, say): said
                // once, in the error.
                return Err(Error::NotFound(format!(
                    "{}: no holder the ticket names or the local network knows sent its manifest, and the \
                     tracker could not help: {e}",
                    file.short(),
                )));
            }
            // Said once, not for every file of a folder.
            if !was_silent {
                warn!("the tracker could not help ({e}); fetching from the holders known without it");
            }
        }
        None if waited => {
            if !was_silent {
                warn!("no answer from the tracker at {tracker_addr} within {patience:?}; fetching from the holders known without it");
            }
            session.note_silence(true);
        }
        None => {
            // Slow, if not gone: the next file does not wait for it either.
            debug!("starting with the holders known without the tracker; the tracker's join when it answers");
            session.note_silence(true);
        }
    }
    without_tracker(file, manifest, known, tracker_addr)
}

/// The download without the tracker: from the holders known, if one sent the manifest.
fn without_tracker(
    file: FileId,
    manifest: Option<Manifest>,
    known: Vec<Holder>,
    tracker_addr: &str,
) -> Result<(Manifest, Located)> {
    let Some(manifest) = manifest else {
        return Err(Error::NotFound(format!(
            "{}: no holder the ticket names or the local network knows sent its manifest, and the tracker at \
             {tracker_addr} does not answer; check that a holder is still running and reachable from here",
            file.short(),
        )));
    };
    let live = known.len() as u32;
    let alone = Located {
        manifest: None,
        holders: known,
        meta: Default::default(),
        live,
        retired: false,
    };
    Ok((manifest, alone))
}

/// How long the tracker has to answer a locate: less if it was silent lately.
fn patience(was_silent: bool) -> Duration {
    if was_silent {
        SHORT_PATIENCE
    } else {
        TRACKER_PATIENCE
    }
}

/// What the tracker and the holders known beforehand said, asked at once.
struct Race {
    /// The tracker's answer, if it gave one in time.
    answer: Option<Result<Located>>,
    /// The manifest, if a holder sent it.
    manifest: Option<Manifest>,
    /// The holders found on the local network.
    found: Vec<Holder>,
    /// The tracker had all its patience.
    waited: bool,
}

/// Asks the tracker where `file`'s holders are and the `known` holders (or the local
/// network) for its manifest, at once; gives the tracker its patience (less if it was
/// silent lately, or once a holder sent the manifest).
#[allow(clippy::too_many_arguments)]
async fn race(
    session: &Session,
    transport: &Transport,
    lan: Option<&LanDiscovery>,
    file: FileId,
    want: u16,
    known: &[Holder],
    saved: Option<Manifest>,
    was_silent: bool,
) -> Race {
    let patience = patience(was_silent);
    let tracker = tokio::time::timeout(patience, session.locate(file, false, want));
    tokio::pin!(tracker);
    let from_known = from_known_or_link(session, transport, lan, file, known, saved);
    tokio::pin!(from_known);
    let (answer, (manifest, found), waited) = tokio::select! {
        // The tracker answered first: the holders known get a moment more, then the tracker's
        // holders are asked too (with_manifest below).
        answer = &mut tracker => {
            let known = tokio::time::timeout(TRACKER_AFTER, &mut from_known).await;
            (answer.ok(), known.unwrap_or((None, Vec::new())), true)
        }
        (manifest, found) = &mut from_known => {
            // With the manifest in hand, the tracker gets a moment more (none if it was silent
            // lately); without, all its patience.
            let wait = match (&manifest, was_silent) {
                (Some(_), true) => Duration::ZERO,
                (Some(_), false) => SHORT_PATIENCE,
                (None, _) => patience,
            };
            let answer = tokio::time::timeout(wait, &mut tracker).await;
            let waited = manifest.is_none() || matches!(answer, Ok(Err(_)));
            (answer.ok().and_then(|answer| answer.ok()), (manifest, found), waited)
        }
    };
    Race {
        answer,
        manifest,
        found,
        waited,
    }
}

/// Where a fetch with no holders of its own found some.
enum Found {
    /// The tracker answered.
    ByTracker(Located),
    /// The tracker was slow or failed, and these holders on the local network answered.
    OnTheLink(Vec<Holder>),
}

/// The holders of `file` the tracker names; or, when it is slow (see [`LAN_AFTER`]) or fails,
/// those on the local network, if any answer. A silent tracker is asked until it answers (see
/// [`Session::locate_until_answered`]).
async fn tracker_or_link(session: &Session, lan: Option<&LanDiscovery>, file: FileId, want: u16) -> Result<Found> {
    // Nobody else to ask: a silent tracker is asked again rather than given up on.
    let tracker = session.locate_until_answered(file, want);
    tokio::pin!(tracker);
    let Some(lan) = lan else {
        return Ok(Found::ByTracker(tracker.await?));
    };
    let found = match tokio::time::timeout(LAN_AFTER, &mut tracker).await {
        Ok(Ok(located)) => return Ok(Found::ByTracker(located)),
        Ok(Err(e)) => match lan.holders(file, LAN_WAIT).await {
            found if found.is_empty() => return Err(e),
            found => found,
        },
        Err(_) => tokio::select! {
            answer = &mut tracker => return Ok(Found::ByTracker(answer?)),
            found = lan.holders(file, LAN_WAIT) => found,
        },
    };
    if found.is_empty() {
        return Ok(Found::ByTracker(tracker.await?));
    }
    debug!(file = %file.short(), holders = found.len(), "holders found on the local network");
    Ok(Found::OnTheLink(found))
}

/// The manifest of `file`: `saved`, or from the holders `known`, or from those of the local
/// network (if `lan`), whichever sends it first; and the local network's holders, if it was
/// theirs.
async fn from_known_or_link(
    session: &Session,
    transport: &Transport,
    lan: Option<&LanDiscovery>,
    file: FileId,
    known: &[Holder],
    saved: Option<Manifest>,
) -> (Option<Manifest>, Vec<Holder>) {
    if let Some(manifest) = saved {
        return (Some(manifest), Vec::new());
    }
    let named = from_holders(session, transport, file, known);
    let local = async {
        let found = match lan {
            Some(lan) => lan.holders(file, LAN_WAIT).await,
            None => Vec::new(),
        };
        let found: Vec<Holder> = found
            .into_iter()
            .filter(|h| !known.iter().any(|k| k.peer == h.peer))
            .collect();
        (from_holders(session, transport, file, &found).await, found)
    };
    tokio::pin!(named, local);
    tokio::select! {
        Some(manifest) = &mut named => (Some(manifest), Vec::new()),
        (Some(manifest), found) = &mut local => (Some(manifest), found),
        else => (None, Vec::new()),
    }
}

/// The manifest of `file` for the holders the tracker `located`: `saved` if there is one, else
/// the first a holder sends, else (or if none has within [`TRACKER_AFTER`], whichever comes
/// first) the tracker's.
async fn with_manifest(
    session: &Session,
    transport: &Transport,
    file: FileId,
    want: u16,
    saved: Option<Manifest>,
    mut located: Located,
) -> Result<(Manifest, Located)> {
    if let Some(manifest) = saved {
        return Ok((manifest, located));
    }
    let holders = located.holders.clone();
    let from_peers = from_holders(session, transport, file, &holders);
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
        return Ok((manifest, located));
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
async fn from_holders(session: &Session, transport: &Transport, file: FileId, holders: &[Holder]) -> Option<Manifest> {
    let mut waiting = holders.iter().cloned();
    let mut asking = JoinSet::new();
    loop {
        while asking.len() < ASKED_AT_ONCE {
            let Some(holder) = waiting.next() else { break };
            asking.spawn(ask(session.clone(), transport.clone(), file, holder));
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

/// Asks `holder` for the manifest of `file`, and checks it; a holder behind a NAT is reached
/// through the tracker of `session` (see [`traversal::reach`]).
async fn ask(
    session: Session,
    transport: Transport,
    file: FileId,
    holder: Holder,
) -> (Holder, std::result::Result<Manifest, String>) {
    let exchange = async {
        let reached = traversal::reach(&transport, &session, holder.peer, &holder.addrs())
            .await
            .map_err(|e| e.to_string())?;
        let request = PeerRequest::GetManifest { file };
        let answer = transport::exchange::<_, PeerResponse>(&reached.connection, &request, MAX_FRAME).await;
        let manifest = match answer.map_err(|e| e.to_string())?.0 {
            PeerResponse::Manifest(manifest) => match manifest.verify(&file) {
                Ok(()) => Ok(manifest),
                Err(e) => Err(format!("sent a manifest that does not match the id: {e}")),
            },
            PeerResponse::Error { message, .. } => Err(message),
            _ => Err("answered with something other than a manifest".into()),
        };
        match &manifest {
            // The fetch that follows works this holder: it takes the connection.
            Ok(_) => session.warm().keep(holder.peer, reached),
            Err(_) => reached.connection.close(CloseCode::Done.code(), b"done"),
        }
        manifest
    };
    let answer = match tokio::time::timeout(ANSWER_WITHIN, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {ANSWER_WITHIN:?}")),
    };
    (holder, answer)
}
