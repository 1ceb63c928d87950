//! A client given several trackers turns from one that does not answer to the next.

use std::time::{Duration, Instant};

use crate::common::*;
use swarm_engine::{TrackerAddr, TrackerClient, Trackers};
use swarm_proto::access::Access;

#[tokio::test]
async fn a_client_turns_from_a_silent_tracker_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = start_tracker(dir.path()).await;
    // A UDP socket that never answers stands for a tracker that died.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = TrackerAddr {
        host_port: silent.local_addr().unwrap().to_string(),
        id: Some(tracker.id()),
    };
    // Each client starts at one of the two at random; eight of them all but surely meet the
    // silent one first at least once.
    let mut slowest = Duration::ZERO;
    for _ in 0..8 {
        let trackers = Trackers::new(vec![dead.clone(), pinned(&tracker)]).unwrap();
        let client = TrackerClient::ephemeral(trackers, None, Access::Open).unwrap();
        let started = Instant::now();
        client.list().await.expect("answered by the live tracker");
        slowest = slowest.max(started.elapsed());
        assert_eq!(client.addr(), &pinned(&tracker), "it stays with the one that answered");
    }
    eprintln!("slowest first answer: {slowest:.2?} (a silent tracker costs one 2 s wait)");
    tracker.stop().await;
}
