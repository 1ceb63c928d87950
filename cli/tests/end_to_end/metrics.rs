//! `--metrics HOST:PORT` on the real binary: after a fetch, the fetcher's, the seeder's and the
//! tracker's Prometheus endpoints account for the bytes and requests that moved.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

/// The body of `GET /metrics` at `addr`.
fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

/// The value of the sample whose name and labels are `series`, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn metrics_account_for_a_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let [tracker_metrics, seed_metrics, fetch_metrics] = <[String; 3]>::try_from(free_ports(3)).unwrap();
    let (_tracker, addr) = start_tracker_with(tmp.path(), &["--metrics", &tracker_metrics]);
    let share = tmp.path().join("share");
    let size = 3 * 1024 * 1024 + 12_345;
    write(share.join("movie.bin"), &content(size, 7));
    let seed_log = tmp.path().join("seeder.log");
    let (seed_proc, seeded, _) = start_seeder_logged(
        tmp.path(),
        "seeder",
        &share,
        &["--tracker", &addr, "--metrics", &seed_metrics],
        1,
        Some(&seed_log),
    );
    let id = &seeded[0].0;
    let out = tmp.path().join("out");
    let log = tmp.path().join("fetch.log");
    let mut fetch = fetch_command(
        id,
        &addr,
        &out,
        &tmp.path().join("fetcher"),
        &log,
        &["--seed", "--metrics", &fetch_metrics],
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.join("movie.bin").exists() {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let file = &id[..8];

    let fetcher = scrape(&fetch_metrics);
    let downloaded = sample(&fetcher, &format!("swarm_downloaded_bytes_total{{file=\"{file}\"}}"));
    assert_eq!(downloaded, Some(size as f64), "{fetcher}");
    let chunks = size.div_ceil(64 * 1024) as f64;
    assert_eq!(
        sample(&fetcher, "swarm_chunks_verified_total"),
        Some(chunks),
        "{fetcher}"
    );
    assert_eq!(
        sample(&fetcher, "swarm_fetches_total{outcome=\"done\"}"),
        Some(1.0),
        "{fetcher}"
    );

    // The seeder sent the file, and one chunk more if the tracker spot-checked it.
    let seeder = scrape(&seed_metrics);
    let uploaded = sample(&seeder, &format!("swarm_uploaded_bytes_total{{file=\"{file}\"}}")).unwrap_or(0.0);
    assert!(
        uploaded >= size as f64 && uploaded <= (size + 64 * 1024) as f64,
        "uploaded {uploaded} of {size}:\n{seeder}"
    );

    let tracker = scrape(&tracker_metrics);
    let locates = sample(&tracker, "swarm_tracker_requests_total{kind=\"locate\",outcome=\"ok\"}");
    assert!(locates >= Some(1.0), "{tracker}");
    assert!(
        tracker.contains("swarm_tracker_request_seconds_count{kind=\"locate\"}"),
        "{tracker}"
    );
    eprintln!("fetcher: {downloaded:?} bytes down; seeder: {uploaded} bytes up; tracker: {locates:?} locates");
    let _ = fetch.kill();
    let _ = fetch.wait();

    // Uploads in the open: the seeder named the new peer at once, and sums it up when it
    // stops (or after 10 s of quiet).
    let log = wait_for_text(&seed_log, "serving a new peer", Duration::from_secs(10));
    assert!(
        log.contains("name=\"movie.bin\"") || log.contains("name=movie.bin"),
        "{log}"
    );
    assert!(seed_proc.terminate().success());
    let log = std::fs::read_to_string(&seed_log).unwrap();
    let summaries: Vec<&str> = log.lines().filter(|l| l.contains("served: ")).collect();
    assert!(
        summaries.iter().any(|l| l.contains(&format!("bytes={size}"))),
        "a summary of the whole file sent to the fetcher:\n{log}"
    );
}
