//! Where trackers are: `HOST:PORT` or `ID@HOST:PORT`, and a list of trackers sharing one state
//! (as a ticket names them).

use std::fmt;
use std::str::FromStr;

use swarm_proto::ticket::{self, Ticket, TicketTracker};
use swarm_proto::{FileId, PeerId};

/// Where a tracker is, and optionally which id it must prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerAddr {
    /// `HOST:PORT`, resolved at each dial.
    pub host_port: String,
    /// The pinned id, from `ID@HOST:PORT`.
    pub id: Option<PeerId>,
}

impl FromStr for TrackerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, host_port) = match s.split_once('@') {
            Some((id, rest)) => (
                Some(
                    id.parse::<PeerId>()
                        .map_err(|e| format!("bad tracker id in `{s}`: {e}"))?,
                ),
                rest,
            ),
            None => (None, s),
        };
        match host_port.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(TrackerAddr {
                host_port: host_port.to_owned(),
                id,
            }),
            _ => Err(format!("`{s}` is not HOST:PORT or ID@HOST:PORT")),
        }
    }
}

impl fmt::Display for TrackerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "{id}@{}", self.host_port),
            None => f.write_str(&self.host_port),
        }
    }
}

/// Several trackers that share one state (`--store` on one Redis): a peer uses one of them,
/// picked at random so that peers spread over them, and turns to the next when it stops
/// answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trackers(pub(super) Vec<TrackerAddr>);

impl Trackers {
    /// The list, or `None` if it is empty.
    pub fn new(list: Vec<TrackerAddr>) -> Option<Trackers> {
        (!list.is_empty()).then_some(Trackers(list))
    }

    /// Every tracker, in the order given.
    pub fn list(&self) -> &[TrackerAddr] {
        &self.0
    }

    /// The trackers a ticket names.
    pub fn of_ticket(ticket: &Ticket) -> Trackers {
        Trackers::named(&ticket.trackers).expect("a ticket names at least one tracker")
    }

    /// The trackers of a ticket's list, or `None` if it is empty.
    pub fn named(list: &[TicketTracker]) -> Option<Trackers> {
        let list = list
            .iter()
            .map(|t| TrackerAddr {
                host_port: t.host_port.clone(),
                id: t.id,
            })
            .collect();
        Trackers::new(list)
    }

    /// These trackers as a ticket names them (the first [`ticket::MAX_TRACKERS`]).
    pub fn for_ticket(&self) -> Vec<TicketTracker> {
        self.0
            .iter()
            .take(ticket::MAX_TRACKERS)
            .map(|t| TicketTracker {
                id: t.id,
                host_port: t.host_port.clone(),
            })
            .collect()
    }

    /// A ticket for `file` on these trackers, naming `holders` too.
    pub fn ticket_for(&self, file: FileId, holders: Vec<ticket::TicketHolder>) -> Ticket {
        Ticket {
            file,
            trackers: self.for_ticket(),
            holders: holders.into_iter().take(ticket::MAX_HOLDERS).collect(),
        }
    }
}

impl From<TrackerAddr> for Trackers {
    fn from(addr: TrackerAddr) -> Self {
        Trackers(vec![addr])
    }
}

impl FromStr for Trackers {
    type Err = String;

    /// `A,B,C`, each `HOST:PORT` or `ID@HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let list = s
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(TrackerAddr::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Trackers::new(list).ok_or_else(|| "no tracker given".to_owned())
    }
}

impl fmt::Display for Trackers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tracker_addresses() {
        let plain: TrackerAddr = "tracker:7070".parse().unwrap();
        assert_eq!(plain.host_port, "tracker:7070");
        assert_eq!(plain.id, None);
        let id = PeerId([7; 32]);
        let pinned: TrackerAddr = format!("{id}@10.0.0.1:7070").parse().unwrap();
        assert_eq!(pinned.id, Some(id));
        assert_eq!(pinned.to_string(), format!("{id}@10.0.0.1:7070"));
        assert!("nohost".parse::<TrackerAddr>().is_err());
        assert!("x@h:1".parse::<TrackerAddr>().is_err());
        assert!("h:99999".parse::<TrackerAddr>().is_err());
    }
}
