//! Tickets: one copy-pasteable string that carries a file's id and the trackers that know it,
//! so that `swarm fetch TICKET` needs no other flag.
//!
//! A ticket is `swarm1` followed by the lowercase base32 (RFC 4648, no padding) of the
//! encoded [`Ticket`]; the `1` is the format's version. Base32 survives being read aloud,
//! double-click selection, URLs and case-folding terminals. A ticket is a convenience, not a
//! credential: the file id in it is what the fetch trusts, and pinned tracker ids are proved
//! by TLS as if given with `--tracker ID@HOST:PORT`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::ids::{FileId, PeerId};

/// What every ticket starts with.
pub const PREFIX: &str = "swarm1";
/// Most trackers one ticket names.
pub const MAX_TRACKERS: usize = 16;
/// Longest `HOST:PORT` in a ticket (a DNS name is at most 253 characters).
const MAX_HOST_PORT: usize = 261;

/// A file and where to ask for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The file (or, later, collection) id.
    pub file: FileId,
    /// Trackers that know it, in the order to try them (at least one).
    pub trackers: Vec<TicketTracker>,
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
    #[error("the ticket is damaged ({0}); copy it again, whole")]
    Damaged(String),
}

impl Ticket {
    /// Is `text` meant as a ticket (whatever its state)?
    pub fn looks_like(text: &str) -> bool {
        text.get(..PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
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

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoded = data_encoding::BASE32_NOPAD.encode(&codec::encode(self));
        write!(f, "{PREFIX}{}", encoded.to_ascii_lowercase())
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(text: &str) -> Result<Ticket, TicketError> {
        let text = text.trim();
        if !Ticket::looks_like(text) {
            return Err(TicketError::NotATicket);
        }
        let body = text[PREFIX.len()..].to_ascii_uppercase();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.as_bytes())
            .map_err(|e| TicketError::Damaged(e.to_string()))?;
        let ticket: Ticket = codec::decode(&bytes).map_err(|e| TicketError::Damaged(e.to_string()))?;
        ticket.check()?;
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        };
        let text = ticket.to_string();
        assert!(text.starts_with("swarm1") && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!(text.parse::<Ticket>().unwrap(), ticket);
        assert_eq!(text.to_ascii_uppercase().parse::<Ticket>().unwrap(), ticket);
        assert_eq!(format!("  {text}\n").parse::<Ticket>().unwrap(), ticket);
    }

    #[test]
    fn damaged_and_foreign_strings_are_told_apart() {
        let text = Ticket {
            file: FileId([9; 32]),
            trackers: vec![tracker(None, "h:1")],
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
        for bad in [vec![], vec![tracker(None, "no-port")], vec![tracker(None, "h:1\u{7}")]] {
            let body = codec::encode(&Ticket {
                file: FileId([1; 32]),
                trackers: bad,
            });
            let text = format!("swarm1{}", data_encoding::BASE32_NOPAD.encode(&body));
            assert!(matches!(text.parse::<Ticket>(), Err(TicketError::Damaged(_))), "{text}");
        }
    }

    proptest! {
        #[test]
        fn any_string_parses_or_is_refused_without_panicking(body in "[a-z2-7]{0,200}") {
            let _ = format!("swarm1{body}").parse::<Ticket>();
        }

        #[test]
        fn tickets_round_trip(file in any::<[u8; 32]>(), hosts in proptest::collection::vec(("[a-z0-9.-]{1,30}", any::<u16>(), any::<Option<u8>>()), 1..5)) {
            let ticket = Ticket {
                file: FileId(file),
                trackers: hosts.iter().map(|(h, p, id)| tracker(*id, &format!("{h}:{p}"))).collect(),
            };
            prop_assert_eq!(ticket.to_string().parse::<Ticket>().unwrap(), ticket);
        }
    }
}
