//! What the tracker agrees to keep: every byte it holds for someone (a peer's session, a
//! manifest, a holding's bitfield) is charged to the IP address that asked for it (an IPv6
//! address by its /64, which one machine usually has whole), within a budget per address and
//! one for the whole tracker. Peer ids cost nothing to make; addresses do, so this, not a
//! per-id limit, bounds what one machine can make the tracker keep.
//!
//! The costs are estimates of the memory each record takes (its bytes and the bookkeeping
//! around them), not exact figures; the budgets bound the tracker's memory to within a small
//! factor of their sum.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use swarm_proto::protocol::{ErrorCode, Refusal};
use swarm_proto::Manifest;

/// What the tracker may keep, and for how long it keeps what nobody holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Bytes charged to one IP address at most.
    pub per_address: u64,
    /// Bytes charged in all at most.
    pub total: u64,
    /// A manifest no live peer holds is forgotten after this long.
    pub forget_after: Duration,
}

impl Default for Budgets {
    /// 128 MiB per address (the manifests of 16 files of 4 TiB, or of 200,000 files of
    /// 10 MB), 1 GiB in all, and an hour for a file nobody holds (holders announce their files
    /// again whenever they register).
    fn default() -> Self {
        Budgets {
            per_address: 128 << 20,
            total: 1 << 30,
            forget_after: Duration::from_secs(3600),
        }
    }
}

/// What a peer's session costs, its addresses (at most
/// [`swarm_proto::protocol::MAX_PEER_ADDRS`]) included.
pub const PEER_COST: u64 = 512;

/// What a manifest costs: its hashes, its name and the bookkeeping around it.
pub fn manifest_cost(manifest: &Manifest) -> u64 {
    32 * manifest.chunks.len() as u64 + manifest.name.len() as u64 + 512
}

/// What one peer's holding of a file of `chunk_count` chunks costs: its bitfield and entry.
pub fn holding_cost(chunk_count: u32) -> u64 {
    u64::from(chunk_count.div_ceil(64)) * 8 + 128
}

/// The bytes charged, per address and in all.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Usage {
    by_address: HashMap<IpAddr, u64>,
    total: u64,
}

impl Usage {
    /// Charges `bytes` to `address` (or to nobody but the total), if the budgets allow.
    pub fn charge(&mut self, budgets: &Budgets, address: Option<IpAddr>, bytes: u64) -> Result<(), Refusal> {
        self.fits(budgets, address, bytes)?;
        self.force_charge(address, bytes);
        Ok(())
    }

    /// Would the budgets allow charging `bytes` to `address` now?
    pub fn fits(&self, budgets: &Budgets, address: Option<IpAddr>, bytes: u64) -> Result<(), Refusal> {
        if self.total.saturating_add(bytes) > budgets.total {
            return Err(Refusal::new(
                ErrorCode::Limit,
                format!(
                    "the tracker is full ({} MiB of {} MiB kept); try again later or ask its operator",
                    self.total >> 20,
                    budgets.total >> 20
                ),
            ));
        }
        if let Some(address) = address {
            let used = self.of(&address);
            if used.saturating_add(bytes) > budgets.per_address {
                return Err(Refusal::new(
                    ErrorCode::Limit,
                    format!(
                        "{address} already has the tracker keep {} KiB of its {} KiB per address; \
                         withdraw some files first",
                        used >> 10,
                        budgets.per_address >> 10
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Charges `bytes` whatever the budgets say (what a restored state already kept, which
    /// may come from a hostile snapshot: the sums stop at `u64::MAX` rather than wrap).
    pub fn force_charge(&mut self, address: Option<IpAddr>, bytes: u64) {
        if let Some(address) = address {
            let used = self.by_address.entry(address).or_default();
            *used = used.saturating_add(bytes);
        }
        self.total = self.total.saturating_add(bytes);
    }

    /// Gives back what was charged to `address` (or to nobody).
    pub fn refund(&mut self, address: Option<IpAddr>, bytes: u64) {
        self.total = self.total.saturating_sub(bytes);
        let Some(address) = address else { return };
        if let Some(used) = self.by_address.get_mut(&address) {
            *used = used.saturating_sub(bytes);
            if *used == 0 {
                self.by_address.remove(&address);
            }
        }
    }

    /// Bytes charged in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes charged to `address`.
    pub fn of(&self, address: &IpAddr) -> u64 {
        self.by_address.get(address).copied().unwrap_or(0)
    }

    /// Bytes charged to some address (the rest is the catalogue reloaded at start).
    pub fn charged_to_addresses(&self) -> u64 {
        self.by_address
            .values()
            .fold(0, |sum, bytes| sum.saturating_add(*bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_bound_each_address_and_the_whole() {
        let budgets = Budgets {
            per_address: 1000,
            total: 1500,
            forget_after: Duration::from_secs(1),
        };
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let mut usage = Usage::default();
        usage.charge(&budgets, Some(a), 900).unwrap();
        let refusal = usage.charge(&budgets, Some(a), 200).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::Limit);
        assert!(refusal.message.contains("10.0.0.1"), "{}", refusal.message);
        usage.charge(&budgets, Some(b), 500).unwrap();
        assert!(usage
            .charge(&budgets, Some(b), 200)
            .unwrap_err()
            .message
            .contains("full"));
        usage.refund(Some(a), 900);
        usage.charge(&budgets, Some(b), 200).unwrap();
        assert_eq!((usage.of(&a), usage.of(&b), usage.total()), (0, 700, 700));
    }
}
