//! The tracker spot-checks what peers claim, on real loopback sockets: a peer that announces a
//! file it does not have is refused and never listed; one that had it and lost it (or starts
//! lying) is caught by a later check and dropped; honest holders stay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_engine::tracker_client::TrackerClient;
use swarm_engine::{Bitfield, Identity, Manifest, PeerId, Progress};
use swarm_proto::protocol::{self, ErrorCode, PeerRequest, PeerResponse};
use swarm_proto::transport::{self, Transport};
use swarm_tracker::{Audits, Tracker, TrackerConfig};

use crate::common::*;

/// A peer that answers chunk requests with the real data while `honest` holds (or, if
/// `knows_tracker`, to the tracker's own id and address only), and says it lacks them
/// otherwise. Registered at `tracker`; not yet announcing anything.
async fn claimant(
    tracker: &Tracker,
    data: Arc<Vec<u8>>,
    manifest: Arc<Manifest>,
    honest: Arc<AtomicBool>,
) -> (PeerId, TrackerClient) {
    claimant_knowing(tracker, data, manifest, honest, false).await
}

async fn claimant_knowing(
    tracker: &Tracker,
    data: Arc<Vec<u8>>,
    manifest: Arc<Manifest>,
    honest: Arc<AtomicBool>,
    knows_tracker: bool,
) -> (PeerId, TrackerClient) {
    let transport = Transport::bind(Arc::new(Identity::generate().unwrap()), loopback()).unwrap();
    let endpoint = transport.endpoint().clone();
    let (tracker_id, tracker_addr) = (tracker.id(), tracker.local_addr());
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let (data, manifest, honest) = (data.clone(), manifest.clone(), honest.clone());
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else { return };
                let is_tracker = transport::remote_id(&connection) == Some(tracker_id)
                    || connection.remote_address() == tracker_addr;
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let Ok(PeerRequest::GetChunk { index, .. }) = protocol::read_frame(&mut recv, 1024).await else {
                        return;
                    };
                    let truthful = if knows_tracker {
                        is_tracker
                    } else {
                        honest.load(Ordering::Relaxed)
                    };
                    if truthful {
                        let start = manifest.chunk_offset(index) as usize;
                        let chunk = &data[start..start + manifest.chunk_len(index) as usize];
                        let header = PeerResponse::Chunk {
                            len: chunk.len() as u32,
                        };
                        let _ = transport::send_frame(&mut send, &header).await;
                        let _ = send.write_all(chunk).await;
                    } else {
                        let refusal = PeerResponse::Error {
                            code: ErrorCode::NotHeld,
                            message: "gone".into(),
                        };
                        let _ = transport::send_frame(&mut send, &refusal).await;
                    }
                    let _ = send.finish();
                    let _ = send.stopped().await;
                }
            });
        }
    });
    let id = transport.id();
    let client = TrackerClient::new(transport, pinned(tracker), None);
    client.register(None, Vec::new()).await.unwrap();
    (id, client)
}

async fn holders(asker: &TrackerClient, manifest: &Manifest) -> Vec<PeerId> {
    asker
        .holdings(manifest.id())
        .await
        .map(|l| l.into_iter().map(|h| h.peer).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_spot_checked_at_once_and_again_later() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = Tracker::start(TrackerConfig {
        state_dir: tmp.path().join("tracker"),
        listen: loopback(),
        peer_timeout: Duration::from_secs(60),
        audits: Audits {
            every: Duration::from_millis(100),
            ..Audits::default()
        },
        ..TrackerConfig::default()
    })
    .await
    .unwrap();
    let data = Arc::new(content(20 * CHUNK as usize, 7));
    let share = tmp.path().join("share");
    write(&share, "real.bin", &data);
    let honest_seeder = start_node(tmp.path(), "seeder", pinned(&tracker), None).await;
    let file = honest_seeder
        .seed_dir(&share, CHUNK, &Progress::default())
        .await
        .unwrap()
        .remove(0);
    let manifest = file.manifest.clone();
    let full = Bitfield::full(manifest.chunk_count);

    // A liar claims the whole file: refused with a clear message, never listed.
    let (liar, liar_client) = claimant(
        &tracker,
        data.clone(),
        manifest.clone(),
        Arc::new(AtomicBool::new(false)),
    )
    .await;
    let err = liar_client
        .announce(&manifest, &full, Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("spot check failed"), "{err}");
    assert!(!holders(&liar_client, &manifest).await.contains(&liar));

    // A liar claiming a file nobody else has leaves no manifest behind.
    let other = Manifest::from_file(
        &write(tmp.path(), "other/x.bin", &content(5 * CHUNK as usize, 8)),
        "x.bin",
        CHUNK,
    )
    .unwrap();
    let err = liar_client
        .announce(&other, &Bitfield::full(other.chunk_count), Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spot check failed"), "{err}");
    assert!(liar_client.search("x.bin", true).await.unwrap().is_empty());

    // An honest claimant passes, then loses the file and says so to the next check: dropped.
    let honest = Arc::new(AtomicBool::new(true));
    let (turncoat, turncoat_client) = claimant(&tracker, data.clone(), manifest.clone(), honest.clone()).await;
    turncoat_client
        .announce(&manifest, &full, Default::default())
        .await
        .unwrap();
    assert!(holders(&turncoat_client, &manifest).await.contains(&turncoat));
    honest.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while holders(&turncoat_client, &manifest).await.contains(&turncoat) {
        assert!(Instant::now() < deadline, "a later spot check never caught it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        holders(&turncoat_client, &manifest).await.contains(&honest_seeder.id()),
        "the honest seeder stays listed"
    );

    // A liar that answers the tracker's id and port truthfully and everyone else with
    // nothing: the check comes from a fresh key on a fresh port, so it is caught like any.
    let (sly, sly_client) = claimant_knowing(&tracker, data.clone(), manifest.clone(), honest, true).await;
    let err = sly_client
        .announce(&manifest, &full, Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("spot check failed"), "{err}");
    assert!(!holders(&sly_client, &manifest).await.contains(&sly));
}

/// A holder shows the tracker's spot checks for what they are once they have ended (the
/// tracker says so when asked, naming only its checks of that holder), and a fetcher that took
/// one chunk as a fetcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_shows_the_trackers_checks_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = start_tracker(tmp.path()).await;
    let share = tmp.path().join("share");
    write(&share, "one-chunk.bin", &content(CHUNK as usize, 3));
    let seeder = start_node(tmp.path(), "seeder", pinned(&tracker), None).await;
    seeder.join_tracker().await.unwrap();
    let file = seeder
        .seed_dir(&share, CHUNK, &Progress::default())
        .await
        .unwrap()
        .remove(0);
    // The announcement was checked before it was answered: one chunk, to a one-time key.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let uploads = seeder.uploads();
        if uploads
            .iter()
            .any(|u| u.spot_check && u.file == file.id && u.chunks == 1)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no upload shown as the tracker's check: {uploads:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let fetcher = start_node(tmp.path(), "fetcher", pinned(&tracker), None).await;
    fetcher.fetch(file.id, options(&tmp.path().join("out"))).await.unwrap();
    let by_fetcher = |seeder: &swarm_engine::Node| seeder.uploads().into_iter().find(|u| u.peer == fetcher.id());
    // The seeder records an upload once the fetcher has acknowledged all of it, which may be
    // a moment after the fetch has verified the chunk and returned.
    let deadline = Instant::now() + Duration::from_secs(5);
    while by_fetcher(&seeder).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        by_fetcher(&seeder).is_some(),
        "the fetch is among the uploads: {:?}",
        seeder.uploads()
    );
    // Past the time the seeder asks about a one-chunk peer (2 s quiet, asked within the next
    // second): a fetcher is still a fetcher.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let upload = by_fetcher(&seeder).expect("still listed within 10 s");
    assert!(!upload.spot_check, "a fetcher shown as a check: {upload:?}");
}
