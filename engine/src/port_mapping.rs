//! Asking the router for a port. A node behind a NAT asks the router on its network for a
//! mapping of its UDP port, so that peers reach it directly at the router's public address:
//! also behind a NAT that maps every destination to a new port, where no hole can be punched
//! and only a relay helps otherwise. UPnP IGD is asked first (most home routers answer it, or
//! can be set to), then NAT-PMP (Apple's and others'). The mapping is leased for an hour,
//! renewed well before, and removed when the node stops. Through `igd-next` and `natpmp`, not
//! hand-written SSDP, SOAP or NAT-PMP clients.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use igd_next::aio::tokio::{search_gateway, Tokio};
use igd_next::aio::Gateway;
use igd_next::{PortMappingProtocol, SearchOptions};
use natpmp::{NatpmpAsync, Protocol, Response};

/// How long the search for a router that answers UPnP has, in all: a network without one
/// costs this, once, in the background.
const SEARCH_WITHIN: Duration = Duration::from_secs(2);
/// How long a NAT-PMP router has to answer one request (sent three times).
const PMP_ANSWER_WITHIN: Duration = Duration::from_millis(500);
/// How long a mapping is leased for.
const LEASE_SECS: u32 = 3600;
/// How often a mapping is renewed: a router that restarted meanwhile gets it again.
pub const RENEW_EVERY: Duration = Duration::from_secs(20 * 60);
/// What the router's list of mappings calls it.
const DESCRIPTION: &str = "swarm";

/// The router that maps the port, as it was asked.
enum Router {
    Upnp(Gateway<Tokio>),
    Pmp(NatpmpAsync<tokio::net::UdpSocket>),
}

/// A port the router maps to this node.
pub struct Mapping {
    router: Router,
    /// Where peers reach the node: the router's public address and the port mapped.
    pub external: SocketAddr,
    /// The node's own address and port the router forwards to.
    pub local: SocketAddr,
}

impl Mapping {
    /// Maps UDP `port` of this machine on the router that answers (UPnP IGD, else NAT-PMP), at
    /// the same port if free, else at one the router picks.
    pub async fn ask(port: u16) -> Result<Mapping, String> {
        let upnp = match ask_upnp(port).await {
            Ok(mapping) => return Ok(mapping),
            Err(why) => why,
        };
        match ask_pmp(port).await {
            Ok(mapping) => Ok(mapping),
            Err(pmp) => Err(format!("{upnp}; {pmp}")),
        }
    }

    /// Leases the mapping again.
    pub async fn renew(&self) -> Result<(), String> {
        match &self.router {
            Router::Upnp(gateway) => gateway
                .add_port(
                    PortMappingProtocol::UDP,
                    self.external.port(),
                    self.local,
                    LEASE_SECS,
                    DESCRIPTION,
                )
                .await
                .map_err(|e| format!("the router at {} would not renew the mapping: {e}", gateway.addr)),
            Router::Pmp(client) => pmp_map(client, self.local.port(), self.external.port(), LEASE_SECS)
                .await
                .map(|_| ()),
        }
    }

    /// Removes the mapping (best effort, within a second).
    pub async fn remove(&self) {
        let removed = async {
            match &self.router {
                Router::Upnp(gateway) => {
                    let _ = gateway
                        .remove_port(PortMappingProtocol::UDP, self.external.port())
                        .await;
                }
                // A lifetime of 0 removes a mapping (RFC 6886, 3.4).
                Router::Pmp(client) => {
                    let _ = pmp_map(client, self.local.port(), 0, 0).await;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), removed).await;
    }
}

async fn ask_upnp(port: u16) -> Result<Mapping, String> {
    let mut options = SearchOptions::default();
    options.timeout = Some(SEARCH_WITHIN);
    options.single_search_timeout = Some(SEARCH_WITHIN);
    let gateway = search_gateway(options)
        .await
        .map_err(|e| format!("no router answered UPnP: {e}"))?;
    let local = local_towards(gateway.addr.ip(), port)?;
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
        router: Router::Upnp(gateway),
        external: SocketAddr::new(external_ip, external_port),
        local,
    })
}

async fn ask_pmp(port: u16) -> Result<Mapping, String> {
    let mut client = natpmp::new_tokio_natpmp()
        .await
        .map_err(|e| format!("no router for NAT-PMP: {e}"))?;
    let gateway = IpAddr::V4(*client.gateway());
    let local = local_towards(gateway, port)?;
    let mut public = None;
    for _ in 0..3 {
        client
            .send_public_address_request()
            .await
            .map_err(|e| format!("NAT-PMP to {gateway}: {e}"))?;
        match tokio::time::timeout(PMP_ANSWER_WITHIN, client.read_response_or_retry()).await {
            Ok(Ok(Response::Gateway(answer))) => {
                public = Some(*answer.public_address());
                break;
            }
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(format!("the router at {gateway} refused NAT-PMP: {e}")),
            Err(_) => continue,
        }
    }
    let public = public.ok_or_else(|| format!("no NAT-PMP answer from {gateway}"))?;
    let external_port = pmp_map(&client, port, port, LEASE_SECS).await?;
    Ok(Mapping {
        router: Router::Pmp(client),
        external: SocketAddr::new(IpAddr::V4(public), external_port),
        local,
    })
}

/// Asks a NAT-PMP router to map UDP `port` at `public_port` for `lifetime` seconds (three
/// tries); returns the public port it gave.
async fn pmp_map(
    client: &NatpmpAsync<tokio::net::UdpSocket>,
    port: u16,
    public_port: u16,
    lifetime: u32,
) -> Result<u16, String> {
    let gateway = client.gateway();
    for _ in 0..3 {
        client
            .send_port_mapping_request(Protocol::UDP, port, public_port, lifetime)
            .await
            .map_err(|e| format!("NAT-PMP to {gateway}: {e}"))?;
        match tokio::time::timeout(PMP_ANSWER_WITHIN, client.read_response_or_retry()).await {
            Ok(Ok(Response::UDP(mapped))) => return Ok(mapped.public_port()),
            Ok(Ok(_)) | Err(_) => continue,
            Ok(Err(e)) => return Err(format!("the router at {gateway} would not map a port: {e}")),
        }
    }
    Err(format!("no NAT-PMP answer from {gateway}"))
}

/// This machine's address towards the router at `router`, with `port`.
fn local_towards(router: IpAddr, port: u16) -> Result<SocketAddr, String> {
    crate::netutil::source_ip_towards(router)
        .map(|ip| SocketAddr::new(ip, port))
        .ok_or_else(|| format!("no address of this machine faces the router at {router}"))
}
