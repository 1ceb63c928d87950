//! Connections to holders kept a moment after a short exchange, for the fetch that follows.
//!
//! A fetch begins by asking holders for the manifest, then works those same holders: without
//! this, the connection that brought the manifest was closed and the holder dialled again at
//! once, a handshake (one round trip, more when its first flight is lost) spent for nothing
//! on every distant path. A connection kept here is taken by the next dial of its holder
//! ([`crate::traversal::reach`]) and is closed if nobody takes it within [`KEPT_FOR`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarm_proto::protocol::CloseCode;
use swarm_proto::PeerId;

use crate::nat::Reached;

/// How long a connection waits to be taken: the gap between a manifest and the fetch's first
/// dial is a few milliseconds, or a folder's files being listed.
pub const KEPT_FOR: Duration = Duration::from_secs(10);

/// Connections kept for their holder's next dial, one per holder.
#[derive(Default)]
pub struct Warm(Mutex<HashMap<PeerId, Reached>>);

impl Warm {
    /// Keeps `reached` (a connection to `peer`) for the next dial of `peer`, closing any kept
    /// before; closes it after [`KEPT_FOR`] if nobody took it.
    pub fn keep(self: &Arc<Self>, peer: PeerId, reached: Reached) {
        let id = reached.connection.stable_id();
        if let Some(old) = self.lock().insert(peer, reached) {
            old.connection.close(CloseCode::Done.code(), b"done");
        }
        let warm = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(KEPT_FOR).await;
            let Some(warm) = warm.upgrade() else { return };
            let mut kept = warm.lock();
            if kept.get(&peer).is_some_and(|r| r.connection.stable_id() == id) {
                let unused = kept.remove(&peer).expect("just found");
                unused.connection.close(CloseCode::Done.code(), b"done");
            }
        });
    }

    /// The connection kept for `peer`, if it is still open.
    pub fn take(&self, peer: &PeerId) -> Option<Reached> {
        self.lock()
            .remove(peer)
            .filter(|reached| reached.connection.close_reason().is_none())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Reached>> {
        self.0.lock().expect("warm connections lock poisoned")
    }
}
