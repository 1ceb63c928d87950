//! Finding holders on the local network, with no tracker: the messages.
//!
//! A fetcher multicasts a [`LanMessage::Query`] to [`GROUP`]:[`PORT`] out of each of its IPv4
//! interfaces and to [`GROUP_V6`]:[`PORT`] out of each of its IPv6 ones; the nodes of the link that hold the file answer [`LanMessage::Here`] to the
//! query's source address, with their id and QUIC port, and the fetcher dials them as it
//! dials holders a tracker names (their ids proved in the handshake). Like mDNS, nodes speak
//! only when asked: nothing is sent while nobody fetches.
//!
//! A query names its file by a tag, not its id: in a private swarm a hash keyed with the
//! swarm's key, so that an outsider on the link learns neither which files are asked for nor
//! which nodes hold them (it sees that some node answered some query).

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::access::Access;
use crate::codec;
use crate::ids::{FileId, PeerId};

/// The multicast group queries go to: administratively scoped (RFC 2365), so routers keep it
/// within the site.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 70, 71);
/// The IPv6 group queries go to: link-local scope (`ff02::`, RFC 4291), so they never leave
/// the link; the low bits spell "swarm".
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0x73, 0x7761, 0x726d);
/// The UDP port nodes listen on for queries (beside the tracker's 7070).
pub const PORT: u16 = 7071;
/// Largest message: anything longer is not a swarm message.
pub const MAX_MESSAGE: usize = 128;
/// What every message starts with, before its bincode body: `swl` and the format version.
const MAGIC: &[u8; 4] = b"swl1";
/// The purpose a private swarm's key tags files for.
const TAG_CONTEXT: &str = "swarm lan query tag v1";

/// A message of local discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LanMessage {
    /// Who holds the file tagged `tag` (see [`tag_of`])? Answers quote `nonce`.
    Query {
        /// The file's tag.
        tag: [u8; 32],
        /// Chosen at random per query.
        nonce: u64,
    },
    /// The sender holds the file of the query with this `nonce`: node `peer`, at the address
    /// the answer came from with QUIC port `port`.
    Here {
        /// The query's nonce.
        nonce: u64,
        /// The holder's id.
        peer: PeerId,
        /// The holder's QUIC port.
        port: u16,
    },
}

impl LanMessage {
    /// The datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        codec::encode_into(self, &mut bytes);
        bytes
    }

    /// The message in `datagram`, if it is one.
    pub fn decode(datagram: &[u8]) -> Option<LanMessage> {
        let body = datagram.strip_prefix(MAGIC)?;
        if datagram.len() > MAX_MESSAGE {
            return None;
        }
        codec::decode(body).ok()
    }
}

/// The tag a query names `file` by among nodes of `access`.
pub fn tag_of(file: &FileId, access: &Access) -> [u8; 32] {
    match access {
        Access::Open => *blake3::hash(&file.0).as_bytes(),
        Access::Private(key) => key.tag(TAG_CONTEXT, &file.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::SwarmKey;
    use std::sync::Arc;

    fn private(secret: &str) -> Access {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, secret.repeat(4)).unwrap();
        Access::Private(Arc::new(SwarmKey::from_file(&path).unwrap()))
    }

    #[test]
    fn messages_round_trip_and_anything_else_is_ignored() {
        let messages = [
            LanMessage::Query { tag: [7; 32], nonce: 9 },
            LanMessage::Here {
                nonce: 9,
                peer: PeerId([3; 32]),
                port: 7000,
            },
        ];
        for message in messages {
            let bytes = message.encode();
            assert!(bytes.len() <= MAX_MESSAGE);
            assert_eq!(LanMessage::decode(&bytes), Some(message));
            assert_eq!(LanMessage::decode(&bytes[..bytes.len() - 1]), None);
        }
        assert_eq!(LanMessage::decode(b"M-SEARCH * HTTP/1.1"), None);
        assert_eq!(LanMessage::decode(&[b"swl1".as_slice(), &[0; 200]].concat()), None);
    }

    #[test]
    fn a_private_swarms_tags_mean_nothing_without_its_secret() {
        let file = FileId([5; 32]);
        let (ours, theirs) = (private("our secret"), private("another secret"));
        assert_eq!(tag_of(&file, &ours), tag_of(&file, &private("our secret")));
        assert_ne!(tag_of(&file, &ours), tag_of(&file, &theirs));
        assert_ne!(tag_of(&file, &ours), tag_of(&file, &Access::Open));
        assert_ne!(tag_of(&file, &Access::Open), file.0, "not the id itself");
    }
}
