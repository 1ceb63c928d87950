//! Availability between neighbours: telling the peers that fetch from this node what it holds
//! of a file, and learning from the peers it fetches from what they hold, as it changes (see
//! the protocol's "Availability between peers"). What a holder offers each watcher is
//! [`crate::offer`]'s to decide.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use quinn::{Connection, RecvStream, SendStream};
use swarm_proto::protocol::{self, Availability, PeerRequest, PeerResponse, ProtocolError, MAX_FRAME};
use swarm_proto::{transport, Bitfield, FileId, PeerId};

use crate::held::Held;
use crate::offer::{batch_interval, Offer, BATCH, OFFER_EXPIRY, STUCK};

/// Watch streams one peer may hold open on a node: one per file it fetches, and a node
/// fetches 16 files at once by default.
pub const MAX_WATCHES_PER_PEER: usize = 256;
/// Watch streams the peers of one network ([`crate::uploads::network`]) may hold open on a
/// node together.
pub const MAX_WATCHES_PER_NETWORK: usize = 1024;

/// The watch streams open on a node, by peer and by network, within their caps.
#[derive(Debug, Default)]
pub struct Watches {
    open: std::sync::Mutex<(HashMap<PeerId, usize>, HashMap<IpAddr, usize>)>,
}

/// One open watch stream, counted until dropped.
#[derive(Debug)]
pub struct WatchPass {
    watches: Arc<Watches>,
    peer: PeerId,
    network: IpAddr,
}

impl Watches {
    /// Counts a new watch stream of `peer` at `ip`, if its caps allow; otherwise says which
    /// cap it met.
    pub fn admit(self: &Arc<Self>, peer: PeerId, ip: IpAddr) -> Result<WatchPass, &'static str> {
        let network = crate::uploads::network(ip);
        let mut open = self.open.lock().expect("watch counts lock poisoned");
        let (by_peer, by_network) = &mut *open;
        if by_peer.get(&peer).copied().unwrap_or(0) >= MAX_WATCHES_PER_PEER {
            return Err("this peer has as many files watched here as it may");
        }
        if by_network.get(&network).copied().unwrap_or(0) >= MAX_WATCHES_PER_NETWORK {
            return Err("peers of this network have as many files watched here as they may");
        }
        *by_peer.entry(peer).or_default() += 1;
        *by_network.entry(network).or_default() += 1;
        Ok(WatchPass {
            watches: self.clone(),
            peer,
            network,
        })
    }
}

impl Drop for WatchPass {
    fn drop(&mut self) {
        let mut open = self.watches.open.lock().expect("watch counts lock poisoned");
        let (by_peer, by_network) = &mut *open;
        crate::uploads::decrement(by_peer, &self.peer, 1);
        crate::uploads::decrement(by_network, &self.network, 1);
    }
}

/// Serves a watch: answers what is offered of `held` to `watcher`, holding `theirs`, then
/// tells it of every change, and follows what it says it gains, until either side ends.
pub async fn serve(
    held: Arc<Held>,
    watcher: PeerId,
    theirs: Bitfield,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), ProtocolError> {
    let mut changes = held.subscribe();
    let mut freed = held.offers_freed();
    let (mut offer, first) = Offer::new(held.clone(), watcher, theirs, rand::random());
    transport::send_frame(&mut send, &PeerResponse::Have(first)).await?;
    let mut next_batch = tokio::time::Instant::now();
    // A seeder looks again now and then, for watchers that are stuck, and for idle ones.
    let mut stuck = tokio::time::interval(STUCK);
    let mut idle = tokio::time::interval(OFFER_EXPIRY / 2);
    let mut pending = true;
    loop {
        tokio::select! {
            _ = stuck.tick(), if offer.super_seeds() => pending = true,
            _ = freed.changed(), if offer.super_seeds() => pending = true,
            _ = idle.tick(), if offer.super_seeds() && offer.is_active() => offer.expire_if_idle(),
            update = protocol::read_frame::<Availability, _>(&mut recv, MAX_FRAME) => match update? {
                Availability::Gained(chunks) => {
                    offer.they_gained(&chunks);
                    // A seeder tops the watcher's window up at once: its lanes wait on it.
                    let more = offer.more();
                    if !more.is_empty() {
                        transport::send_frame(&mut send, &Availability::Gained(more)).await?;
                    }
                }
                Availability::Lost(chunks) => {
                    offer.they_lost(&chunks);
                    pending = true;
                }
            },
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                pending = true;
            }
            _ = tokio::time::sleep_until(next_batch), if pending => {
                pending = false;
                next_batch = tokio::time::Instant::now() + batch_interval(held.watchers());
                let lost = offer.lost();
                if !lost.is_empty() {
                    transport::send_frame(&mut send, &Availability::Lost(lost)).await?;
                }
                let gained = offer.more();
                if !gained.is_empty() {
                    transport::send_frame(&mut send, &Availability::Gained(gained)).await?;
                }
            }
        }
    }
}

/// A watch on a neighbour: the stream on which it tells what it offers.
pub struct Watching {
    send: SendStream,
    recv: RecvStream,
    told: Bitfield,
}

/// Opens a watch on `connection` for `file`, telling what `ours` holds; returns the watch and
/// what the neighbour offers now.
pub async fn open(connection: &Connection, file: FileId, ours: &Held) -> Result<(Watching, Bitfield), ProtocolError> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(std::io::Error::from)?;
    let told = ours.chunks();
    let request = PeerRequest::Watch {
        file,
        have: told.clone(),
    };
    transport::send_frame(&mut send, &request).await?;
    match protocol::read_frame::<PeerResponse, _>(&mut recv, MAX_FRAME).await? {
        PeerResponse::Have(offered) if offered.len() == told.len() && offered.is_well_formed() => {
            Ok((Watching { send, recv, told }, offered))
        }
        PeerResponse::Error { code, message } => Err(ProtocolError::Closed(format!("{code:?}: {message}"))),
        other => Err(ProtocolError::Closed(format!("answered {other:?} to a watch"))),
    }
}

impl Watching {
    /// Passes every change the neighbour tells of to `changed`, and tells it of every chunk
    /// `ours` gains, until the neighbour ends the watch or fails.
    pub async fn follow(mut self, ours: Arc<Held>, mut changed: impl FnMut(Availability)) -> Result<(), ProtocolError> {
        let mut changes = ours.subscribe();
        let mut batch = tokio::time::interval(BATCH);
        batch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = false;
        loop {
            tokio::select! {
                update = protocol::read_frame::<Availability, _>(&mut self.recv, MAX_FRAME) => changed(update?),
                result = changes.changed() => {
                    if result.is_err() {
                        return Ok(());
                    }
                    pending = true;
                }
                _ = batch.tick(), if pending => {
                    pending = false;
                    let now = ours.chunks();
                    let gained: Vec<u32> = now.minus(&self.told).collect();
                    if !gained.is_empty() {
                        transport::send_frame(&mut self.send, &Availability::Gained(gained)).await?;
                    }
                    self.told = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_streams_are_capped_per_peer_and_per_network() {
        let watches = Arc::new(Watches::default());
        let ip = |last: u8| IpAddr::from([10, 0, 0, last]);
        let one = PeerId([1; 32]);
        let mut passes: Vec<_> = (0..MAX_WATCHES_PER_PEER)
            .map(|_| watches.admit(one, ip(1)).unwrap())
            .collect();
        assert!(watches.admit(one, ip(1)).unwrap_err().contains("this peer"));
        for n in 2..=(MAX_WATCHES_PER_NETWORK / MAX_WATCHES_PER_PEER) as u8 {
            for _ in 0..MAX_WATCHES_PER_PEER {
                passes.push(watches.admit(PeerId([n; 32]), ip(n)).unwrap());
            }
        }
        let refused = watches.admit(PeerId([99; 32]), ip(99)).unwrap_err();
        assert!(refused.contains("network"), "{refused}");
        assert!(
            watches.admit(PeerId([99; 32]), IpAddr::from([10, 0, 1, 1])).is_ok(),
            "another network"
        );
        passes.pop();
        assert!(
            watches.admit(PeerId([99; 32]), ip(99)).is_ok(),
            "a watch ended frees its place"
        );
    }
}
