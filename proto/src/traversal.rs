//! Crossing NATs: what a tracker tells two peers so that they can meet, and the two kinds of
//! bare UDP datagram a node sends from its QUIC socket for it.
//!
//! A peer behind a NAT keeps a [`crate::protocol::TrackerRequest::AwaitIntroductions`] open at
//! its tracker. A fetcher that cannot reach it asks the tracker to introduce them
//! ([`crate::protocol::TrackerRequest::Introduce`]); the tracker hands the holder an
//! [`Introduction`] (the fetcher's address as the tracker sees it), and the holder sends a few
//! [`PUNCH`] datagrams there, so that its NAT lets the fetcher's QUIC handshake in ("hole
//! punching"). Where that cannot work (a NAT that maps every destination to a new port), the
//! tracker opens a relay session and gives each side a [`RelayPass`]: each sends the pass's
//! [`bind_datagram`] to the relay from its QUIC socket, and the relay forwards every datagram
//! of one side to the other. QUIC's TLS runs end to end, so the relay reads nothing and the
//! fetcher still checks the holder's id.
//!
//! Both datagrams start with a zero byte: QUIC packets always have their second-highest bit
//! set (the "fixed bit"), so an endpoint drops these as not QUIC, wherever they arrive.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::PeerId;

/// What a punch datagram carries: nothing anyone acts on; it only opens the sender's NAT.
pub const PUNCH: [u8; 4] = [0, b's', b'w', b'p'];

/// When handshakes to a peer just introduced start (see [`crate::dial::connect_repeatedly`]):
/// its punches may reach this side's NAT a moment after this side's first packet reached its.
pub const DIALS_AFTER_INTRODUCTION: [Duration; 3] =
    [Duration::ZERO, Duration::from_millis(250), Duration::from_millis(750)];

/// First bytes of a relay bind datagram; the pass's token follows.
const BIND_MAGIC: [u8; 4] = [0, b's', b'w', b'r'];
/// Length of a relay bind datagram.
pub const BIND_LEN: usize = BIND_MAGIC.len() + 16;

/// A peer that wants to reach this one, as the tracker tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Introduction {
    /// Who asks (the id its connection to the tracker proved).
    pub peer: PeerId,
    /// Where the tracker sees it: punch towards this.
    pub addr: SocketAddr,
    /// A relay session opened for the two, if the asker wanted one: bind to it.
    pub relay: Option<RelayPass>,
}

/// One side's way into a relay session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayPass {
    /// Where the relay listens for this session, as reachable by this side.
    pub addr: SocketAddr,
    /// The secret that binds this side's address to the session (one per side).
    pub token: [u8; 16],
}

/// The datagram that tells a relay "the sender of this is the side `token` names".
pub fn bind_datagram(token: &[u8; 16]) -> [u8; BIND_LEN] {
    let mut datagram = [0; BIND_LEN];
    datagram[..BIND_MAGIC.len()].copy_from_slice(&BIND_MAGIC);
    datagram[BIND_MAGIC.len()..].copy_from_slice(token);
    datagram
}

/// The token of a bind datagram, or `None` if `datagram` is something else (a QUIC packet
/// to forward).
pub fn bind_token(datagram: &[u8]) -> Option<[u8; 16]> {
    if datagram.len() != BIND_LEN || datagram[..BIND_MAGIC.len()] != BIND_MAGIC {
        return None;
    }
    datagram[BIND_MAGIC.len()..].try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_datagram_gives_back_its_token_and_nothing_else_passes_for_one() {
        let token = [7; 16];
        assert_eq!(bind_token(&bind_datagram(&token)), Some(token));
        assert_eq!(bind_token(&PUNCH), None);
        let mut longer = bind_datagram(&token).to_vec();
        longer.push(0);
        assert_eq!(bind_token(&longer), None);
        // A QUIC long-header packet of the same length is not a bind.
        let mut quic = bind_datagram(&token);
        quic[0] = 0xc0;
        assert_eq!(bind_token(&quic), None);
    }

    #[test]
    fn neither_datagram_has_the_quic_fixed_bit() {
        assert_eq!(PUNCH[0] & 0x40, 0);
        assert_eq!(bind_datagram(&[0; 16])[0] & 0x40, 0);
    }
}
