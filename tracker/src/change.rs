//! Every change to the tracker state as a value. The embedded store applies a change at once;
//! the shared store ([`crate::shared_log`]) first appends it to a log that every tracker on
//! the same Redis applies in the same order, with the same clock, so that they all hold the
//! same state and answer alike.
//!
//! Each kind of change is a type of its own with the outcome that kind gives ([`Apply`]): the
//! service commits a [`Register`] and gets `Result<(), Refusal>` back, a [`Leave`] and gets
//! whether the peer was there. [`Change`] is any of them, as the shared log carries it.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use swarm_proto::protocol::Refusal;
use swarm_proto::share_key::SignedChange;
use swarm_proto::{Bitfield, FileId, FileMeta, Manifest, PeerId, ShareId};

use crate::state::{Expired, TrackerState};

/// A kind of change, and what applying it gives.
pub trait Apply: Clone + Into<Change> + Send + 'static {
    /// What applying it gives.
    type Outcome: Send + 'static;
    /// Whether it changes what an embedded tracker saves (who holds what, the shares).
    const SAVED: bool = true;
    /// Applies it to `state` at `now`.
    fn apply(self, state: &mut TrackerState, now: Instant) -> Self::Outcome;
    /// Refuses it at once if `state` has no budget for it: a tracker on a shared store asks
    /// this before the change reaches the log that every tracker reads.
    fn precheck(&self, _state: &TrackerState) -> Result<(), Refusal> {
        Ok(())
    }
}

/// [`TrackerState::register`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    /// The peer.
    pub peer: PeerId,
    /// The address given out for it.
    pub addr: SocketAddr,
    /// Its other addresses.
    pub other_addrs: Vec<SocketAddr>,
    /// The address it connected from.
    pub ip: IpAddr,
}

impl Apply for Register {
    type Outcome = Result<(), Refusal>;
    fn apply(self, state: &mut TrackerState, now: Instant) -> Self::Outcome {
        state.register(self.peer, self.addr, self.other_addrs, self.ip, now)
    }
}

/// [`TrackerState::announce`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announce {
    /// The holder.
    pub peer: PeerId,
    /// The file.
    pub manifest: Manifest,
    /// What it holds.
    pub chunks: Bitfield,
    /// What it says of the file.
    pub meta: FileMeta,
}

impl Apply for Announce {
    /// The file id and whether its manifest was new.
    type Outcome = Result<(FileId, bool), Refusal>;
    fn apply(self, state: &mut TrackerState, now: Instant) -> Self::Outcome {
        state.announce(self.peer, self.manifest, self.chunks, self.meta, now)
    }
    fn precheck(&self, state: &TrackerState) -> Result<(), Refusal> {
        state.precheck(&self.peer, Some(&self.manifest), 0)
    }
}

/// [`TrackerState::join`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Join {
    /// The holder.
    pub peer: PeerId,
    /// The file.
    pub file: FileId,
    /// What it holds.
    pub chunks: Bitfield,
    /// What it says of the file.
    pub meta: FileMeta,
}

impl Apply for Join {
    type Outcome = Result<(), Refusal>;
    fn apply(self, state: &mut TrackerState, now: Instant) -> Self::Outcome {
        state.join(self.peer, self.file, self.chunks, self.meta, now)
    }
}

/// [`TrackerState::have`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Have {
    /// The holder.
    pub peer: PeerId,
    /// The file.
    pub file: FileId,
    /// Its newly verified chunks.
    pub chunks: Vec<u32>,
}

impl Apply for Have {
    type Outcome = Result<(), Refusal>;
    fn apply(self, state: &mut TrackerState, now: Instant) -> Self::Outcome {
        state.have(self.peer, self.file, &self.chunks, now)
    }
}

/// [`TrackerState::withdraw`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdraw {
    /// The former holder.
    pub peer: PeerId,
    /// The file.
    pub file: FileId,
}

impl Apply for Withdraw {
    type Outcome = Result<(), Refusal>;
    fn apply(self, state: &mut TrackerState, now: Instant) -> Self::Outcome {
        state.withdraw(self.peer, self.file, now)
    }
}

/// [`TrackerState::keepalive`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keepalive {
    /// The peer.
    pub peer: PeerId,
}

impl Apply for Keepalive {
    type Outcome = Result<(), Refusal>;
    const SAVED: bool = false;
    fn apply(self, state: &mut TrackerState, now: Instant) -> Self::Outcome {
        state.keepalive(self.peer, now)
    }
}

/// [`TrackerState::remove_peer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leave {
    /// The peer.
    pub peer: PeerId,
}

impl Apply for Leave {
    /// Whether the peer was there.
    type Outcome = bool;
    fn apply(self, state: &mut TrackerState, now: Instant) -> Self::Outcome {
        state.remove_peer(&self.peer, now)
    }
}

/// [`TrackerState::checked`]: the outcome of a spot check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checked {
    /// The claimant.
    pub peer: PeerId,
    /// The file checked.
    pub file: FileId,
    /// Whether it lied.
    pub lied: bool,
}

impl Apply for Checked {
    /// Whether the claimant's holding was dropped.
    type Outcome = bool;
    fn apply(self, state: &mut TrackerState, now: Instant) -> Self::Outcome {
        state.checked(&self.peer, &self.file, self.lied, now)
    }
}

/// [`TrackerState::expire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expire;

impl Apply for Expire {
    type Outcome = Expired;
    fn apply(self, state: &mut TrackerState, now: Instant) -> Self::Outcome {
        state.expire(now)
    }
}

/// [`TrackerState::share_update`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareUpdate {
    /// The node that saw the changes.
    pub peer: PeerId,
    /// The share.
    pub share: ShareId,
    /// What changed.
    pub changes: Vec<SignedChange>,
    /// The epoch of a share new to the tracker: milliseconds since the Unix epoch when the
    /// tracker took the change (carried in the change, so that every tracker on a shared
    /// store gives the same one).
    pub epoch: u64,
}

impl Apply for ShareUpdate {
    /// How many changes were taken.
    type Outcome = Result<usize, Refusal>;
    fn apply(self, state: &mut TrackerState, now: Instant) -> Self::Outcome {
        state.share_update(self.peer, &self.share, self.changes, self.epoch, now)
    }
    fn precheck(&self, state: &TrackerState) -> Result<(), Refusal> {
        state.precheck(&self.peer, None, state.share_cost(&self.share, &self.changes))
    }
}

/// Any change, as the shared log carries it: made by one peer's request (filed under the id
/// its connection proved), by a spot check, or by the passing of time. Its encoding is each
/// kind's fields after the variant's index (as when the kinds were this enum's struct
/// variants; the golden bytes in `shared_log` pin it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// A peer registers.
    Register(Register),
    /// A peer announces a file.
    Announce(Announce),
    /// A peer joins a file's swarm.
    Join(Join),
    /// A peer reports chunks.
    Have(Have),
    /// A peer withdraws a file.
    Withdraw(Withdraw),
    /// A peer is still there.
    Keepalive(Keepalive),
    /// A peer leaves.
    Leave(Leave),
    /// A spot check's outcome.
    Checked(Checked),
    /// Silent peers expire, unheld files are forgotten.
    Expire(Expire),
    /// A share's listing changes.
    ShareUpdate(ShareUpdate),
}

/// For each kind: `impl From<Kind> for Change`; and `Change::apply`, which applies whichever
/// kind it holds.
macro_rules! any_change {
    ($($kind:ident),*) => {
        $(
            impl From<$kind> for Change {
                fn from(change: $kind) -> Change {
                    Change::$kind(change)
                }
            }
        )*

        impl Change {
            /// Applies the change to `state` at `now` (its outcome is for whoever made it).
            pub fn apply(self, state: &mut TrackerState, now: Instant) {
                match self {
                    $(Change::$kind(change) => {
                        let _ = change.apply(state, now);
                    })*
                }
            }
        }
    };
}
any_change!(
    Register,
    Announce,
    Join,
    Have,
    Withdraw,
    Keepalive,
    Leave,
    Checked,
    Expire,
    ShareUpdate
);
