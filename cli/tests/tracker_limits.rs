//! A hostile announcer against the real `swarm tracker`: manifests cost nothing to make (random
//! chunk hashes that add up to a global hash pass every check), so the tracker keeps only what
//! its budgets allow, refuses the rest with a clear `Limit`, and forgets what nobody holds.
//! The tracker's memory before and after is printed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use swarm_proto::protocol::{ErrorCode, TrackerRequest, TrackerResponse, MAX_FRAME};
use swarm_proto::transport::{self, Transport};
use swarm_proto::{Bitfield, Identity, PeerId};

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

#[test]
fn a_hostile_announcer_gets_its_budget_and_no_more() {
    let tmp = tempfile::tempdir().unwrap();
    let (tracker, addr) = start_tracker_with(tmp.path(), &["--budget-per-address", "32MiB", "--forget-after", "2s"]);
    let (id, host_port) = addr.split_once('@').unwrap();
    let (id, host_port): (PeerId, std::net::SocketAddr) = (id.parse().unwrap(), host_port.parse().unwrap());
    let pid = tracker.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_mib(pid);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (accepted, refused, message) = runtime.block_on(async {
        let me = Transport::bind(Arc::new(Identity::generate().unwrap()), "127.0.0.1:0".parse().unwrap()).unwrap();
        let (connection, _) = me.connect(host_port, Some(id)).await.unwrap();
        let ask = |request: TrackerRequest| {
            let connection = connection.clone();
            async move {
                transport::exchange::<_, TrackerResponse>(&connection, &request, MAX_FRAME)
                    .await
                    .unwrap()
                    .0
            }
        };
        assert!(matches!(
            ask(TrackerRequest::Register { advertise: None }).await,
            TrackerResponse::Registered { .. }
        ));
        let (mut accepted, mut refused, mut message) = (0, 0, String::new());
        for n in 0..100 {
            let request = TrackerRequest::Announce {
                manifest: junk(n),

                chunks: Bitfield::new(JUNK_CHUNKS),
                meta: Default::default(),
            };
            match ask(request).await {
                TrackerResponse::Ok => accepted += 1,
                TrackerResponse::Error {
                    code: ErrorCode::Limit,
                    message: m,
                } => {
                    refused += 1;
                    message = m;
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
        ask(TrackerRequest::Leave).await;
        (accepted, refused, message)
    });
    let after = rss_mib(pid);
    println!(
        "hostile announcer, 100 manifests of 2 MiB against a 32 MiB budget per address: {accepted} kept, \
         {refused} refused; tracker RSS {before:.0} MiB before, {after:.0} MiB after"
    );
    assert!(accepted > 0 && accepted * 2 <= 32, "{accepted} kept");
    assert_eq!(accepted + refused, 100);
    assert!(message.contains("per address"), "the refusal says why: {message}");
    // Bounded by the budget (plus frames in flight and the allocator's slack), not by what was
    // sent: 200 MiB of manifests arrived.
    assert!(after - before < 120.0, "tracker RSS grew by {:.0} MiB", after - before);

    // Nobody holds them: forgotten after 2 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed = json(&run(&[
            "ls",
            "--tracker",
            &addr,
            "--json",
            "--state",
            s(&tmp.path().join("q")),
        ]));
        if listed.as_array().unwrap().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still listed: {listed}");
        std::thread::sleep(Duration::from_millis(300));
    }
}
