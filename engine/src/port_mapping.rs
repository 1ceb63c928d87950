//! Asking the router for a port. A node behind a NAT asks the router on its network for a
//! mapping of its UDP port (UPnP IGD, which most home routers answer or can be set to), so that
//! peers reach it directly at the router's public address: also behind a NAT that maps every
//! destination to a new port, where no hole can be punched and only a relay helps otherwise.
//! The mapping is leased for an hour, renewed well before, and removed when the node stops.
//! Through `igd-next`, not a hand-written SSDP and SOAP client.

use std::net::SocketAddr;
use std::time::Duration;

use igd_next::aio::tokio::{search_gateway, Tokio};
use igd_next::aio::Gateway;
use igd_next::{PortMappingProtocol, SearchOptions};

/// How long the search for a router that answers has, in all: a network without one costs
/// this, once, in the background.
const SEARCH_WITHIN: Duration = Duration::from_secs(2);
/// How long a mapping is leased for.
const LEASE_SECS: u32 = 3600;
/// How often a mapping is renewed: a router that restarted meanwhile gets it again.
pub const RENEW_EVERY: Duration = Duration::from_secs(20 * 60);
/// What the router's list of mappings calls it.
const DESCRIPTION: &str = "swarm";

/// A port the router maps to this node.
pub struct Mapping {
    gateway: Gateway<Tokio>,
    /// Where peers reach the node: the router's public address and the port mapped.
    pub external: SocketAddr,
    /// The node's own address and port the router forwards to.
    pub local: SocketAddr,
}

impl Mapping {
    /// Maps UDP `port` of this machine on the router that answers, at the same port if free,
    /// else at one the router picks.
    pub async fn ask(port: u16) -> Result<Mapping, String> {
        let mut options = SearchOptions::default();
        options.timeout = Some(SEARCH_WITHIN);
        options.single_search_timeout = Some(SEARCH_WITHIN);
        let gateway = search_gateway(options)
            .await
            .map_err(|e| format!("no router answered UPnP: {e}"))?;
        let local_ip = crate::netutil::source_ip_towards(gateway.addr.ip())
            .ok_or_else(|| format!("no address of this machine faces the router at {}", gateway.addr))?;
        let local = SocketAddr::new(local_ip, port);
        let external_ip = gateway
            .get_external_ip()
            .await
            .map_err(|e| format!("the router at {} did not say its public address: {e}", gateway.addr))?;
        let protocol = PortMappingProtocol::UDP;
        let external_port = match gateway.add_port(protocol, port, local, LEASE_SECS, DESCRIPTION).await {
            Ok(()) => port,
            Err(_) => gateway
                .add_any_port(protocol, local, LEASE_SECS, DESCRIPTION)
                .await
                .map_err(|e| format!("the router at {} would not map a port: {e}", gateway.addr))?,
        };
        Ok(Mapping {
            gateway,
            external: SocketAddr::new(external_ip, external_port),
            local,
        })
    }

    /// Leases the mapping again.
    pub async fn renew(&self) -> Result<(), String> {
        let protocol = PortMappingProtocol::UDP;
        self.gateway
            .add_port(protocol, self.external.port(), self.local, LEASE_SECS, DESCRIPTION)
            .await
            .map_err(|e| format!("the router at {} would not renew the mapping: {e}", self.gateway.addr))
    }

    /// Removes the mapping (best effort, within a second).
    pub async fn remove(&self) {
        let removed = self.gateway.remove_port(PortMappingProtocol::UDP, self.external.port());
        let _ = tokio::time::timeout(Duration::from_secs(1), removed).await;
    }
}
