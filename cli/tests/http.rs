//! `--http` and `fetch --stream` on the real binary: the JSON API starts a fetch and reports
//! it done, a range in the middle of a file still downloading comes back verified before the
//! rest, a private swarm's port wants its secret, and a public bind must be asked for.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// An HTTP client that hands back every status instead of failing on 4xx and 5xx.
fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// `GET url` with extra headers: status and body.
fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut answer = request.call().unwrap();
    let status = answer.status().as_u16();
    let body = answer.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap();
    (status, body)
}

fn get_json(url: &str) -> Value {
    let (status, body) = get(url, &[]);
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The first answer to `GET url` once the port is up (for up to a minute): status and body.
fn first_answer(url: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client().get(url).call() {
            Ok(mut answer) => return (answer.status().as_u16(), answer.body_mut().read_to_string().unwrap()),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("{url}: {e}"),
        }
    }
}

/// Polls `url` until `done` holds for its JSON, for up to a minute.
fn wait_json(url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = get_json(url);
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}: {value:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_api_starts_a_fetch_reports_it_done_and_maps_its_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let (_tracker, addr) = start_tracker(tmp.path());
    let share = tmp.path().join("share");
    let data = content(2 * 1024 * 1024 + 4321, 3);
    write(share.join("report.pdf"), &data);
    let [seed_http, http] = <[String; 2]>::try_from(free_ports(2)).unwrap();
    let (_seeder, seeded, _) = start_seeder(
        tmp.path(),
        "seeder",
        &share,
        &["--tracker", &addr, "--http", &seed_http],
        1,
    );
    let id = &seeded[0].0;

    // A node with an empty folder and an HTTP port, told over HTTP to fetch the file.
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let state = tmp.path().join("fetcher");
    let _node = Proc::spawn(&[
        "seed",
        s(&inbox),
        "--state",
        s(&state),
        "--listen",
        "127.0.0.1:0",
        "--tracker",
        &addr,
        "--http",
        &http,
    ]);
    let api = format!("http://{http}/api");
    first_answer(&format!("{api}/status"));
    let catalogue = get_json(&format!("{api}/catalogue"));
    assert!(
        catalogue
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id.as_str() && e["name"] == "report.pdf"),
        "{catalogue:#}"
    );

    let mut started = client()
        .post(format!("{api}/fetches"))
        .send_json(serde_json::json!({ "id": &id[..12] }))
        .unwrap();
    let body = started.body_mut().read_to_string().unwrap();
    assert_eq!(started.status().as_u16(), 202, "{body}");
    let done = wait_json(&format!("{api}/status"), "the fetch to end", |s| {
        s["finished"].as_array().is_some_and(|f| !f.is_empty())
    });
    let finished = &done["finished"][0];
    assert_eq!(finished["ok"], true, "{finished:#}");
    assert_eq!(finished["id"], id.as_str());
    assert_eq!(std::fs::read(inbox.join("report.pdf")).unwrap(), data);
    let held = done["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(held["state"], "seeding", "{held:#}");

    // The chunk map: this node holds everything now, and so does the seeder, per the tracker.
    let map = get_json(&format!("{api}/files/{id}"));
    let chunks = map["chunk_count"].as_u64().unwrap() as usize;
    assert_eq!(map["mine"].as_str().unwrap(), "1".repeat(chunks));
    let holders = map["holders"].as_array().unwrap();
    assert!(
        holders
            .iter()
            .any(|h| h["chunks"].as_str() == Some(&"1".repeat(chunks))),
        "{map:#}"
    );
    assert!(map["availability"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n.as_u64() >= Some(1)));

    // The seeder's status shows the upload to that node, with its bytes.
    let seeder = get_json(&format!("http://{seed_http}/api/status"));
    let upload = &seeder["uploads"][0];
    assert_eq!(upload["file"], id.as_str(), "{seeder:#}");
    assert_eq!(upload["bytes"].as_u64(), Some(data.len() as u64), "{seeder:#}");
    assert!(upload["rate"].as_f64().unwrap() > 0.0);

    // Clear answers to what cannot be done.
    let (status, body) = get(&format!("{api}/files/{}", "ab".repeat(32)), &[]);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let mut gone = client().delete(format!("{api}/fetches/{id}")).call().unwrap();
    assert_eq!(
        gone.status().as_u16(),
        404,
        "{}",
        gone.body_mut().read_to_string().unwrap()
    );
    let (status, page) = get(&format!("http://{http}/"), &[]);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("Chunk map"));
}

#[test]
fn a_range_in_the_middle_comes_verified_before_the_rest_of_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (_tracker, addr) = start_tracker(tmp.path());
    let share = tmp.path().join("share");
    // 64 chunks of 64 KiB from a seeder capped at 512 KB/s: about 8 s for the whole file.
    let data = content(64 * 65_536, 5);
    write(share.join("film.mkv"), &data);
    let (_seeder, seeded, _) = start_seeder(
        tmp.path(),
        "seeder",
        &share,
        &["--tracker", &addr, "--max-upload-rate", "512KB/s"],
        1,
    );
    let id = &seeded[0].0;
    let out = tmp.path().join("out");
    let state = tmp.path().join("streamer");
    let streamer = Proc::spawn(&[
        "fetch",
        id,
        "--tracker",
        &addr,
        "-o",
        s(&out),
        "--state",
        s(&state),
        "--listen",
        "127.0.0.1:0",
        "--stream",
    ]);
    let url = streamer.line();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with(&format!("/files/{id}")),
        "{url}"
    );
    let status_url = url.replace(&format!("/files/{id}"), "/api/status");

    // Bytes in chunk 48, asked for at once: they come back right and the file is not done.
    let (start, end) = (48 * 65_536 + 1000, 48 * 65_536 + 1000 + 9_999);
    let asked = Instant::now();
    let (status, body) = get(&url, &[("Range", &format!("bytes={start}-{end}"))]);
    let waited = asked.elapsed();
    assert_eq!(status, 206);
    assert_eq!(body, &data[start..=end]);
    let now = get_json(&status_url);
    let download = &now["downloads"][0];
    let (done, total) = (download["done"].as_u64().unwrap(), download["total"].as_u64().unwrap());
    assert!(done < total, "the range came only after the whole file: {now:#}");
    assert!(!out.join("film.mkv").exists());
    eprintln!("range of chunk 48 after {waited:?}, with {done} of {total} bytes fetched");
    let now = wait_json(&status_url, "bytes per source", |s| {
        s["downloads"][0]["sources"].as_array().is_some_and(|a| !a.is_empty())
    });
    let source = &now["downloads"][0]["sources"][0];
    assert!(
        source["bytes"].as_u64() > Some(0) && source["peer"].as_str().unwrap().len() == 64,
        "{now:#}"
    );

    // The whole file, read while it downloads, and a range past the end.
    let (status, body) = get(&url, &[]);
    assert_eq!(status, 200);
    assert!(body == data, "the streamed file differs from the original");
    let (status, _) = get(&url, &[("Range", &format!("bytes={}-", data.len() + 10))]);
    assert_eq!(status, 416);
    wait_json(&status_url, "the download to end", |s| {
        s["downloads"].as_array().is_some_and(|d| d.is_empty())
    });
    assert_eq!(std::fs::read(out.join("film.mkv")).unwrap(), data);
    // The file stays readable from its final place.
    let (status, body) = get(&url, &[("Range", "bytes=0-99")]);
    assert_eq!((status, body.as_slice()), (206, &data[..100]));
}

#[test]
fn a_private_node_wants_its_secret_and_a_public_bind_must_be_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("swarm.secret");
    let made = run(&["secret", "new", s(&secret)]);
    assert!(made.status.success());
    let share = tmp.path().join("share");
    write(share.join("a.txt"), b"private words");
    let http = free_ports(1).remove(0);
    let state = tmp.path().join("node");
    let _node = Proc::spawn(&[
        "seed",
        s(&share),
        "--state",
        s(&state),
        "--listen",
        "127.0.0.1:0",
        "--tracker-listen",
        "127.0.0.1:0",
        "--secret-file",
        s(&secret),
        "--http",
        &http,
    ]);
    let url = format!("http://{http}/api/status");
    let (status, body) = first_answer(&url);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Bearer") && body.contains("--secret-file"), "{body}");
    let (status, _) = get(&url, &[("Authorization", "Bearer not-the-secret-at-all-0123456789")]);
    assert_eq!(status, 401);
    let token = std::fs::read_to_string(&secret).unwrap();
    let (status, body) = get(&url, &[("Authorization", &format!("Bearer {}", token.trim()))]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _) = get(&format!("{url}?token={}", token.trim()), &[]);
    assert_eq!(status, 200);

    let refused = run(&[
        "seed",
        s(&share),
        "--state",
        s(&tmp.path().join("other")),
        "--listen",
        "127.0.0.1:0",
        "--tracker-listen",
        "127.0.0.1:0",
        "--http",
        "0.0.0.0:0",
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("--http-public") && stderr.contains("127.0.0.1"),
        "{stderr}"
    );
}
