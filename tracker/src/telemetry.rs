//! The tracker's metrics, through the `metrics` facade: whoever runs the tracker decides
//! whether and where they are exported (`swarm tracker --metrics HOST:PORT` serves them in
//! Prometheus's text format).

use std::time::Duration;

use swarm_proto::protocol::TrackerResponse;

/// Requests answered, by kind and outcome (`ok`, `refused`, `busy`).
pub const REQUESTS: &str = "swarm_tracker_requests_total";
/// Time from a request read to its answer ready, by kind.
pub const REQUEST_SECONDS: &str = "swarm_tracker_request_seconds";
/// Live peers.
pub const PEERS: &str = "swarm_tracker_peers";
/// Files in the catalogue.
pub const FILES: &str = "swarm_tracker_files";
/// Bytes charged against the budgets, in all.
pub const BUDGET_BYTES: &str = "swarm_tracker_budget_used_bytes";
/// Bytes the relay forwarded between peers.
pub const RELAYED_BYTES: &str = "swarm_tracker_relayed_bytes_total";
/// Spot checks by verdict (`held`, `lied`, `unknown`).
pub const AUDITS: &str = "swarm_tracker_audits_total";

/// Records one answered request of `kind`.
pub fn request(kind: &'static str, response: &TrackerResponse, took: Duration) {
    let outcome = match response {
        TrackerResponse::Error {
            code: swarm_proto::protocol::ErrorCode::Busy,
            ..
        } => "busy",
        TrackerResponse::Error { .. } => "refused",
        _ => "ok",
    };
    metrics::counter!(REQUESTS, "kind" => kind, "outcome" => outcome).increment(1);
    metrics::histogram!(REQUEST_SECONDS, "kind" => kind).record(took.as_secs_f64());
}

/// Records the state's size.
pub fn state(peers: usize, files: usize, budget_used: u64) {
    metrics::gauge!(PEERS).set(peers as f64);
    metrics::gauge!(FILES).set(files as f64);
    metrics::gauge!(BUDGET_BYTES).set(budget_used as f64);
}

/// Records a spot check's verdict.
pub fn audit(verdict: &'static str) {
    metrics::counter!(AUDITS, "verdict" => verdict).increment(1);
}
