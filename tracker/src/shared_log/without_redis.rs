//! A tracker built without the `shared-store` feature: no link to Redis can be made, so the
//! shared store is a type with no values, and every use of it is unreachable by construction.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::store_error::{redact, StoreError};
use crate::budget::Budgets;
use crate::change::Apply;
use crate::state::TrackerState;

/// A link to the shared store, which this build cannot make.
pub enum SharedLog {}

impl SharedLog {
    /// Refuses: this build has no Redis client.
    pub async fn open(
        url: &str,
        _prefix: &str,
        _peer_timeout: Duration,
        _budgets: Budgets,
    ) -> Result<(Arc<SharedLog>, Arc<Mutex<TrackerState>>), StoreError> {
        Err(StoreError {
            url: redact(url),
            message: "this tracker was built without the shared-store feature: build swarm with its default \
                      features to share a Redis"
                .into(),
        })
    }

    /// Never called: there is no link.
    pub async fn commit<C: Apply>(&self, _change: C) -> Result<C::Outcome, StoreError> {
        match *self {}
    }

    /// Never called: there is no link.
    pub async fn follow(self: Arc<Self>, _shutdown: CancellationToken) {
        match *self {}
    }

    /// Never called: there is no link.
    pub async fn keep_snapshots(self: Arc<Self>, _shutdown: CancellationToken) {
        match *self {}
    }
}
