//! The numbers a download keeps its neighbours by: how many, how often more are asked of the
//! tracker, which are let go to make room, and how often its pace is measured. The
//! coordinator runs by them, and so does the simulator (`swarm-sim`).

use std::time::Duration;

/// Neighbours asked of the tracker, and most neighbours at once: enough that some always have
/// what is missing, few enough that every one gets real work and a swarm of thousands is many
/// small overlapping groups (as BitTorrent's 30 to 80).
pub const NEIGHBOURS: u16 = 40;
/// Fewer neighbours than this and the tracker is asked for more every [`RELOCATE_SOON`].
pub const FEW_NEIGHBOURS: usize = 8;
/// How often more neighbours are asked for while they are few or lack missing chunks.
pub const RELOCATE_SOON: Duration = Duration::from_secs(3);
/// How often more neighbours are asked for otherwise.
pub const RELOCATE_EVERY: Duration = Duration::from_secs(30);
/// A peer that could not be reached is not dialled again for this long.
pub const UNREACHABLE_PAUSE: Duration = Duration::from_secs(30);
/// The in-flight budget follows the download rate measured this often.
pub const PACE_EVERY: Duration = Duration::from_millis(500);
/// Neighbours with nothing missing here that are let go, at most, when new ones come.
pub const REPLACED_AT_ONCE: usize = 8;
/// A chunk transfer that makes no progress for this long is abandoned and asked elsewhere.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long until the tracker is asked for more neighbours, given how many chunks no
/// neighbour holds (`unavailable`) and how many neighbours there are.
pub fn relocate_after(unavailable: u32, neighbours: usize) -> Duration {
    if unavailable > 0 || neighbours < FEW_NEIGHBOURS {
        RELOCATE_SOON
    } else {
        RELOCATE_EVERY
    }
}

/// May a neighbour be let go to make room for new ones? Only one that holds nothing missing
/// here (`useful` is false), and never a seed: a seeder offers a few chunks at a time and more
/// as they spread, so offering nothing now says nothing of the next moment, and a watcher that
/// leaves it takes along what the seeder knew it holds (the seeder would send those again).
pub fn may_let_go(useful: bool, seed: bool) -> bool {
    !useful && !seed
}

/// How many of `neighbours` to let go so that `wanted` new ones fit under [`NEIGHBOURS`]:
/// at most [`REPLACED_AT_ONCE`], and only those with nothing missing here (the caller picks).
pub fn room_to_make(neighbours: usize, wanted: usize) -> usize {
    (neighbours + wanted)
        .saturating_sub(usize::from(NEIGHBOURS))
        .min(REPLACED_AT_ONCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_neighbours_with_nothing_missing_here_and_not_seeds_are_let_go() {
        assert!(may_let_go(false, false));
        assert!(!may_let_go(true, false), "it has what is missing");
        assert!(!may_let_go(false, true), "a seed offers more as its chunks spread");
    }
}
