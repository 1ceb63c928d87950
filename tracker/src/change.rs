//! Every change to the tracker state as a value. The embedded store applies a change at once;
//! the shared store ([`crate::shared_log`]) first appends it to a log that every tracker on
//! the same Redis applies in the same order, with the same clock, so that they all hold the
//! same state and answer alike.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use swarm_proto::protocol::Refusal;
use swarm_proto::share_key::SignedChange;
use swarm_proto::{Bitfield, FileId, FileMeta, Manifest, PeerId, ShareId};

use crate::state::{Expired, TrackerState};

/// A change to the state, made by one peer's request (filed under the id its connection
/// proved), by a spot check, or by the passing of time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// [`TrackerState::register`].
    Register {
        /// The peer.
        peer: PeerId,
        /// The address given out for it.
        addr: SocketAddr,
        /// Its other addresses.
        other_addrs: Vec<SocketAddr>,
        /// The address it connected from.
        ip: IpAddr,
    },
    /// [`TrackerState::announce`].
    Announce {
        /// The holder.
        peer: PeerId,
        /// The file.
        manifest: Manifest,
        /// What it holds.
        chunks: Bitfield,
        /// What it says of the file.
        meta: FileMeta,
    },
    /// [`TrackerState::join`].
    Join {
        /// The holder.
        peer: PeerId,
        /// The file.
        file: FileId,
        /// What it holds.
        chunks: Bitfield,
        /// What it says of the file.
        meta: FileMeta,
    },
    /// [`TrackerState::have`].
    Have {
        /// The holder.
        peer: PeerId,
        /// The file.
        file: FileId,
        /// Its newly verified chunks.
        chunks: Vec<u32>,
    },
    /// [`TrackerState::withdraw`].
    Withdraw {
        /// The former holder.
        peer: PeerId,
        /// The file.
        file: FileId,
    },
    /// [`TrackerState::keepalive`].
    Keepalive {
        /// The peer.
        peer: PeerId,
    },
    /// [`TrackerState::remove_peer`].
    Leave {
        /// The peer.
        peer: PeerId,
    },
    /// [`TrackerState::checked`]: the outcome of a spot check.
    Checked {
        /// The claimant.
        peer: PeerId,
        /// The file checked.
        file: FileId,
        /// Whether it lied.
        lied: bool,
    },
    /// [`TrackerState::expire`].
    Expire,
    /// [`TrackerState::share_update`].
    ShareUpdate {
        /// The node that saw the changes.
        peer: PeerId,
        /// The share.
        share: ShareId,
        /// What changed.
        changes: Vec<SignedChange>,
        /// The epoch of a share new to the tracker: milliseconds since the Unix epoch when
        /// the tracker took the change (carried in the change, so that every tracker on a
        /// shared store gives the same one).
        epoch: u64,
    },
}

/// What applying a [`Change`] gave.
#[derive(Debug)]
pub enum Outcome {
    /// Register, Join, Have, Withdraw, Keepalive.
    Done(Result<(), Refusal>),
    /// Announce: the file id and whether its manifest was new.
    Announced(Result<(FileId, bool), Refusal>),
    /// Leave, Checked: whether anything was dropped.
    Dropped(bool),
    /// Expire.
    Expired(Expired),
    /// ShareUpdate: how many changes were taken.
    Shared(Result<usize, Refusal>),
}

impl Change {
    /// Applies the change to `state` at `now`.
    pub fn apply(self, state: &mut TrackerState, now: Instant) -> Outcome {
        match self {
            Change::Register {
                peer,
                addr,
                other_addrs,
                ip,
            } => Outcome::Done(state.register(peer, addr, other_addrs, ip, now)),
            Change::Announce {
                peer,
                manifest,
                chunks,
                meta,
            } => Outcome::Announced(state.announce(peer, manifest, chunks, meta, now)),
            Change::Join {
                peer,
                file,
                chunks,
                meta,
            } => Outcome::Done(state.join(peer, file, chunks, meta, now)),
            Change::Have { peer, file, chunks } => Outcome::Done(state.have(peer, file, &chunks, now)),
            Change::Withdraw { peer, file } => Outcome::Done(state.withdraw(peer, file, now)),
            Change::Keepalive { peer } => Outcome::Done(state.keepalive(peer, now)),
            Change::Leave { peer } => Outcome::Dropped(state.remove_peer(&peer, now)),
            Change::Checked { peer, file, lied } => Outcome::Dropped(state.checked(&peer, &file, lied, now)),
            Change::Expire => Outcome::Expired(state.expire(now)),
            Change::ShareUpdate {
                peer,
                share,
                changes,
                epoch,
            } => Outcome::Shared(state.share_update(peer, &share, changes, epoch, now)),
        }
    }
}
