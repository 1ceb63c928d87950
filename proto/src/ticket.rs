//! Tickets: one copy-pasteable string that carries a file's id, the trackers that know it and
//! a few of its holders, so that `swarm fetch TICKET` needs no other flag, and still works when
//! every tracker named is gone.
//!
//! A ticket is `swarm3` followed by the lowercase base32 (RFC 4648, no padding) of the
//! encoded [`Ticket`] and a checksum (the first [`CHECKSUM_LEN`] bytes of its BLAKE3 hash), so
//! that a character mistyped or lost is told as such, never read as another tracker or file;
//! the digit is the format's version. Versions 1 (`swarm1`, without holders) and 2 (`swarm2`,
//! without the checksum) are still read. Base32 survives being read aloud, double-click selection, URLs and
//! case-folding terminals. A ticket is a convenience, not a credential: the file id in it is
//! what the fetch trusts; pinned tracker ids are proved by TLS as if given with
//! `--tracker ID@HOST:PORT`, and holders' ids the same way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use std::net::SocketAddr;

use crate::codec;
use crate::ids::{FileId, PeerId};

/// What every ticket written now starts with.
pub const PREFIX: &str = "swarm3";
/// What tickets of the second version, without a checksum, start with.
pub const PREFIX_V2: &str = "swarm2";
/// What tickets of the first version, without holders, start with.
pub const PREFIX_V1: &str = "swarm1";
/// Bytes of checksum at the end of a ticket: one damaged ticket in four billion goes unseen.
pub const CHECKSUM_LEN: usize = 4;
/// Most trackers one ticket names.
pub const MAX_TRACKERS: usize = 16;
/// Most holders one ticket names.
pub const MAX_HOLDERS: usize = 8;
/// Most addresses of one holder.
pub const MAX_HOLDER_ADDRS: usize = 4;
/// Longest `HOST:PORT` in a ticket (a DNS name is at most 253 characters).
const MAX_HOST_PORT: usize = 261;

/// A file and where to ask for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The file (or folder) id.
    pub file: FileId,
    /// Trackers that know it, in the order to try them (at least one).
    pub trackers: Vec<TicketTracker>,
    /// Nodes that held it when the ticket was made, dialled at once (none in a version 1
    /// ticket).
    pub holders: Vec<TicketHolder>,
}

/// A ticket of the first version: what it encoded.
#[derive(Deserialize)]
struct TicketV1 {
    file: FileId,
    trackers: Vec<TicketTracker>,
}

/// One holder of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketHolder {
    /// Its id, proved by TLS when dialled.
    pub id: PeerId,
    /// Where it listens, in the order to try them.
    pub addrs: Vec<SocketAddr>,
}

/// One tracker of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketTracker {
    /// Its id, if pinned.
    pub id: Option<PeerId>,
    /// `HOST:PORT`.
    pub host_port: String,
}

/// Why a string is not a usable ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// It does not start with [`PREFIX`].
    #[error("not a ticket (tickets start with `{PREFIX}`)")]
    NotATicket,
    /// It starts like one but does not decode: cut short or mistyped.
    #[error("the ticket is damaged: {0}; copy it again, whole")]
    Damaged(String),
}

impl Ticket {
    /// Is `text` meant as a ticket (whatever its state)?
    pub fn looks_like(text: &str) -> bool {
        Ticket::version_prefix(text).is_some()
    }

    /// The prefix `text` starts with (any case), if it is a ticket's.
    fn version_prefix(text: &str) -> Option<&'static str> {
        [PREFIX, PREFIX_V2, PREFIX_V1]
            .into_iter()
            .find(|prefix| text.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix)))
    }

    fn check(&self) -> Result<(), TicketError> {
        if self.trackers.is_empty() || self.trackers.len() > MAX_TRACKERS {
            return Err(TicketError::Damaged(format!(
                "it names {} trackers; a ticket names 1 to {MAX_TRACKERS}",
                self.trackers.len()
            )));
        }
        if self.trackers.iter().any(|t| !t.is_well_formed()) {
            return Err(TicketError::Damaged("a tracker in it is not HOST:PORT".into()));
        }
        let too_many_addrs = |h: &TicketHolder| h.addrs.is_empty() || h.addrs.len() > MAX_HOLDER_ADDRS;
        if self.holders.len() > MAX_HOLDERS || self.holders.iter().any(too_many_addrs) {
            return Err(TicketError::Damaged(format!(
                "a ticket names at most {MAX_HOLDERS} holders, each with 1 to {MAX_HOLDER_ADDRS} addresses"
            )));
        }
        Ok(())
    }
}

impl TicketTracker {
    /// Is it `HOST:PORT` of printable ASCII, of a usable length?
    pub fn is_well_formed(&self) -> bool {
        let port = self
            .host_port
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        matches!(port, Some((host, Ok(_))) if !host.is_empty())
            && self.host_port.len() <= MAX_HOST_PORT
            && self.host_port.chars().all(|c| c.is_ascii_graphic())
    }
}

/// The checksum of a ticket's encoded `body`.
fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let hash = blake3::hash(body);
    let mut sum = [0; CHECKSUM_LEN];
    sum.copy_from_slice(&hash.as_bytes()[..CHECKSUM_LEN]);
    sum
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = codec::encode(self);
        bytes.extend_from_slice(&checksum(&bytes));
        let encoded = data_encoding::BASE32_NOPAD.encode(&bytes);
        write!(f, "{PREFIX}{}", encoded.to_ascii_lowercase())
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(text: &str) -> Result<Ticket, TicketError> {
        let text = text.trim();
        let Some(prefix) = Ticket::version_prefix(text) else {
            return Err(TicketError::NotATicket);
        };
        let body = text[prefix.len()..].to_ascii_uppercase();
        let mut bytes = data_encoding::BASE32_NOPAD.decode(body.as_bytes()).map_err(|e| {
            TicketError::Damaged(match e.kind {
                data_encoding::DecodeKind::Symbol => {
                    format!("character {} is not one a ticket uses", prefix.len() + e.position + 1)
                }
                _ => "it is cut short or has a character too many".to_owned(),
            })
        })?;
        if prefix == PREFIX {
            let body_len = bytes.len().saturating_sub(CHECKSUM_LEN);
            if bytes.len() < CHECKSUM_LEN || bytes[body_len..] != checksum(&bytes[..body_len]) {
                return Err(TicketError::Damaged(
                    "a character is wrong, missing or one too many (the checksum does not match)".into(),
                ));
            }
            bytes.truncate(body_len);
        }
        // What the encoding says is wrong is of no use to a person: a ticket that passed its
        // checksum was made wrong, one of an older version without it was damaged.
        let damaged = |_: codec::DecodeError| TicketError::Damaged("its contents do not read as a ticket".into());
        let ticket = if prefix == PREFIX_V1 {
            let v1: TicketV1 = codec::decode(&bytes).map_err(damaged)?;
            Ticket {
                file: v1.file,
                trackers: v1.trackers,
                holders: Vec::new(),
            }
        } else {
            codec::decode(&bytes).map_err(damaged)?
        };
        ticket.check()?;
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn holder(id: u8, addrs: &[&str]) -> TicketHolder {
        TicketHolder {
            id: PeerId([id; 32]),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn tracker(id: Option<u8>, host_port: &str) -> TicketTracker {
        TicketTracker {
            id: id.map(|n| PeerId([n; 32])),
            host_port: host_port.into(),
        }
    }

    #[test]
    fn a_ticket_round_trips_and_reads_in_any_case() {
        let ticket = Ticket {
            file: FileId([9; 32]),
            trackers: vec![
                tracker(Some(1), "192.168.1.20:7070"),
                tracker(None, "tracker.example:7070"),
            ],
            holders: vec![holder(3, &["192.168.1.20:40000", "[fd00::20]:40000"])],
        };
        let text = ticket.to_string();
        assert!(text.starts_with("swarm3") && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!(text.parse::<Ticket>().unwrap(), ticket);
        assert_eq!(text.to_ascii_uppercase().parse::<Ticket>().unwrap(), ticket);
        assert_eq!(format!("  {text}\n").parse::<Ticket>().unwrap(), ticket);
    }

    #[test]
    fn damaged_and_foreign_strings_are_told_apart() {
        let text = Ticket {
            file: FileId([9; 32]),
            trackers: vec![tracker(None, "h:1")],
            holders: vec![],
        }
        .to_string();
        assert_eq!("9a3c41d2".parse::<Ticket>(), Err(TicketError::NotATicket));
        assert!(matches!(
            text[..text.len() - 5].parse::<Ticket>(),
            Err(TicketError::Damaged(_))
        ));
        assert!(matches!(
            format!("{text}q").parse::<Ticket>(),
            Err(TicketError::Damaged(_))
        ));
        // Any one character changed is caught by the checksum, and said in words.
        for at in PREFIX.len()..text.len() {
            let mut changed = text.clone().into_bytes();
            changed[at] = if changed[at] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(changed).unwrap();
            match changed.parse::<Ticket>() {
                Err(TicketError::Damaged(why)) => assert!(!why.contains('{'), "{why}"),
                other => panic!("character {at} changed: {other:?}"),
            }
        }
        for bad in [vec![], vec![tracker(None, "no-port")], vec![tracker(None, "h:1\u{7}")]] {
            let body = codec::encode(&Ticket {
                file: FileId([1; 32]),
                trackers: bad,
                holders: vec![],
            });
            assert!(
                matches!(signed(&body).parse::<Ticket>(), Err(TicketError::Damaged(_))),
                "{body:?}"
            );
        }
        let no_addrs = vec![holder(1, &[])];
        let too_many_addrs = vec![holder(1, &["1.2.3.4:1"; MAX_HOLDER_ADDRS + 1])];
        let too_many_holders = vec![holder(1, &["1.2.3.4:1"]); MAX_HOLDERS + 1];
        for bad in [no_addrs, too_many_addrs, too_many_holders] {
            let body = codec::encode(&Ticket {
                file: FileId([1; 32]),
                trackers: vec![tracker(None, "h:1")],
                holders: bad,
            });
            assert!(
                matches!(signed(&body).parse::<Ticket>(), Err(TicketError::Damaged(_))),
                "{body:?}"
            );
        }
    }

    /// A ticket of the current version around `body`, its checksum right.
    fn signed(body: &[u8]) -> String {
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(&checksum(body));
        format!("{PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&bytes))
    }

    /// Pinned bytes: a ticket printed today reads the same in every later version.
    #[test]
    fn ticket_bytes_are_pinned() {
        let ticket = Ticket {
            file: FileId([7; 32]),
            trackers: vec![tracker(Some(1), "h:9")],
            holders: vec![holder(2, &["10.0.0.5:7070"])],
        };
        let expected = [
            &[7u8; 32][..],
            // One tracker: its id (Some), "h:9".
            &[1, 1],
            &[1; 32],
            &[3, b'h', b':', b'9'],
            // One holder: its id, one address (IPv4, variant 0) and its port as a varint.
            &[1],
            &[2; 32],
            &[1, 0, 10, 0, 0, 5, 251, 158, 27],
        ]
        .concat();
        assert_eq!(codec::encode(&ticket), expected);
        let text = ticket.to_string();
        assert_eq!(
            text,
            "swarm3a4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaebwqorzaebaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaiabiaaabp3tyn42uhl64"
        );
        assert_eq!(text.parse::<Ticket>().unwrap(), ticket);
        let v2 = format!(
            "swarm2{}",
            data_encoding::BASE32_NOPAD.encode(&expected).to_ascii_lowercase()
        );
        assert_eq!(
            v2.parse::<Ticket>().unwrap(),
            ticket,
            "a second version ticket still reads"
        );
    }

    /// A ticket printed by a version that knew no holders: read as it was written.
    #[test]
    fn a_first_version_ticket_still_reads() {
        let v1 = "swarm1a4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaebwqorz";
        let ticket: Ticket = v1.parse().unwrap();
        assert_eq!(ticket.file, FileId([7; 32]));
        assert_eq!(ticket.trackers, vec![tracker(Some(1), "h:9")]);
        assert!(ticket.holders.is_empty());
    }

    proptest! {
        #[test]
        fn any_string_parses_or_is_refused_without_panicking(body in "[a-z2-7]{0,200}") {
            let _ = format!("swarm1{body}").parse::<Ticket>();
            let _ = format!("swarm2{body}").parse::<Ticket>();
            let _ = format!("swarm3{body}").parse::<Ticket>();
        }

        #[test]
        fn tickets_round_trip(file in any::<[u8; 32]>(), hosts in proptest::collection::vec(("[a-z0-9.-]{1,30}", any::<u16>(), any::<Option<u8>>()), 1..5)) {
            let ticket = Ticket {
                file: FileId(file),
                trackers: hosts.iter().map(|(h, p, id)| tracker(*id, &format!("{h}:{p}"))).collect(),
                holders: hosts.iter().map(|(_, p, id)| holder(id.unwrap_or(0), &[&format!("10.1.2.3:{p}")])).collect(),
            };
            prop_assert_eq!(ticket.to_string().parse::<Ticket>().unwrap(), ticket);
        }
    }
}
