//! `--http` and `fetch --stream` on the real binary: the JSON API starts a fetch and reports
//! it done, a range in the middle of a file still downloading comes back verified before the
//! rest, a private swarm's port wants its secret, and a public bind must be asked for.

use std::time::{Duration, Instant};

use crate::common::*;
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
    assert!(upload["bytes_per_second"].as_f64().unwrap() > 0.0);

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

/// One raw HTTP/1.1 request to `addr` (every header as given, `Host` included): the status,
/// and the body as far as it came within a second.
fn raw(addr: &str, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0; 65536];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || answer.len() > 1 << 20 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A web page the user visits cannot use the node's port: not under the page's own host name
/// (DNS rebinding: no status, no file bytes, no fetch started), not by posting a form or JSON
/// from its origin; the node's own page and local programs still can.
#[test]
fn the_port_answers_its_user_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (_tracker, addr) = start_tracker(tmp.path());
    let share = tmp.path().join("share");
    let secret_words = b"the words on the user's disk";
    write(share.join("diary.txt"), secret_words);
    let other = tmp.path().join("other");
    write(other.join("payload.bin"), &content(10_000, 9));
    let http = free_ports(1).remove(0);
    let (_node, seeded, _) = start_seeder(tmp.path(), "node", &share, &["--tracker", &addr, "--http", &http], 1);
    let (_attacker, theirs, _) = start_seeder(tmp.path(), "attacker", &other, &["--tracker", &addr], 1);
    let (mine, payload) = (&seeded[0].0, &theirs[0].0);
    first_answer(&format!("http://{http}/api/status"));
    let port = http.rsplit(':').next().unwrap();
    let fetch_body = format!("{{\"id\": \"{payload}\"}}");
    let post = |host: &str, extra: &str, content_type: &str, body: &str| {
        raw(
            &http,
            &format!(
                "POST /api/fetches HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let rebound = format!("attacker.example:{port}");
    let cases = [
        ("status, rebound", raw(&http, &format!("GET /api/status HTTP/1.1\r\nHost: {rebound}\r\nConnection: close\r\n\r\n"))),
        ("catalogue, rebound", raw(&http, &format!("GET /api/catalogue HTTP/1.1\r\nHost: {rebound}\r\nConnection: close\r\n\r\n"))),
        ("a held file, rebound", raw(&http, &format!("GET /files/{mine} HTTP/1.1\r\nHost: {rebound}\r\nConnection: close\r\n\r\n"))),
        ("a fetch, rebound", post(&rebound, "", "application/json", &fetch_body)),
        ("a fetch from a foreign origin", post(&http, "Origin: http://attacker.example\r\n", "application/json", &fetch_body)),
        (
            "a cross-site form post",
            post(&http, "Origin: http://attacker.example\r\nSec-Fetch-Site: cross-site\r\n", "application/x-www-form-urlencoded", "id=x"),
        ),
        (
            "a same-site script",
            raw(&http, &format!("GET /api/status HTTP/1.1\r\nHost: {http}\r\nSec-Fetch-Site: same-site\r\nSec-Fetch-Mode: cors\r\nConnection: close\r\n\r\n")),
        ),
    ];
    for (what, (status, answer)) in &cases {
        assert_eq!(*status, 403, "{what}: {answer}");
        assert!(
            !answer.contains("the words on the user"),
            "{what} leaked the file: {answer}"
        );
        assert!(!answer.contains(mine.as_str()), "{what} leaked an id: {answer}");
    }
    // Nothing was started, and nothing of the attacker's came into the folder.
    let status = get_json(&format!("http://{http}/api/status"));
    assert_eq!(status["downloads"].as_array().map(Vec::len), Some(0), "{status:#}");
    assert!(!share.join("payload.bin").exists());
    // The user's own ways in: an address, localhost, the page's own origin.
    let (status, _) = raw(
        &http,
        &format!("GET /api/status HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200);
    let (status, answer) = raw(
        &http,
        &format!(
            "GET /files/{mine} HTTP/1.1\r\nHost: {http}\r\nSec-Fetch-Site: same-origin\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer.ends_with("the words on the user's disk"), "{answer}");
    // A path that is not an id is neither looked up nor repeated.
    for path in [
        "/files/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/files/diary.txt",
        "/api/files/diary.txt",
    ] {
        let (status, answer) = raw(
            &http,
            &format!(
                "GET {path} HTTP/1.1
Host: {http}
Connection: close

"
            ),
        );
        assert_eq!(status, 400, "{answer}");
        assert!(!answer.contains("script") && !answer.contains("diary"), "{answer}");
    }
    let (status, answer) = post(
        &http,
        &format!("Origin: http://{http}\r\nSec-Fetch-Site: same-origin\r\n"),
        "application/json",
        &fetch_body,
    );
    assert_eq!(status, 202, "{answer}");
}

/// Readers that ask for a file and never read it hold at most the readers' budget: the rest
/// are told to come back, and the port goes on answering.
#[test]
fn idle_readers_are_bounded() {
    use std::io::{BufRead, Write};
    let tmp = tempfile::tempdir().unwrap();
    let (_tracker, addr) = start_tracker(tmp.path());
    let share = tmp.path().join("share");
    // Larger than what the kernel buffers of a loopback connection take in: a reader that does
    // not read keeps its answer unfinished.
    write(share.join("big.bin"), &content(64 << 20, 4));
    let http = free_ports(1).remove(0);
    let state = tmp.path().join("node");
    let node = Proc::spawn(&[
        "seed",
        s(&share.join("big.bin")),
        "--state",
        s(&state),
        "--listen",
        "127.0.0.1:0",
        "--tracker",
        &addr,
        "--chunk-size",
        "1MiB",
        "--http",
        &http,
    ]);
    let id = node.line().split_whitespace().next().unwrap().to_owned();
    first_answer(&format!("http://{http}/api/status"));
    let mut readers = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..100 {
        let mut stream = std::net::TcpStream::connect(&http).unwrap();
        write!(
            stream,
            "GET /files/{id} HTTP/1.1\r\nHost: {http}\r\nRange: bytes=0-\r\n\r\n"
        )
        .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&stream).read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        *statuses.entry(status).or_insert(0) += 1;
        readers.push(stream);
    }
    // 1 MiB chunks: each reader may hold two, in a budget of 64 MiB.
    assert_eq!(statuses.get(&206), Some(&32), "{statuses:?}");
    assert_eq!(statuses.get(&503), Some(&68), "{statuses:?}");
    let started = Instant::now();
    get_json(&format!("http://{http}/api/status"));
    eprintln!(
        "with 32 idle readers and 68 refused, the port answered in {:.2?}",
        started.elapsed()
    );
    drop(readers);
    // Their room comes back as their connections close.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = get(&format!("http://{http}/files/{id}"), &[("Range", "bytes=0-9")]);
        if status == 206 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room for a reader after the idle ones left: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The metrics port is the user's too: a lone port binds loopback and answers its own names
/// only; in a private swarm a scraper sends the secret; an address other machines reach must
/// be named, and then answers the names scrapers use.
#[test]
fn the_metrics_port_answers_its_user_only() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("swarm.secret");
    assert!(run(&["secret", "new", s(&secret)]).status.success());
    let token = std::fs::read_to_string(&secret).unwrap().trim().to_owned();
    let share = tmp.path().join("share");
    write(share.join("a.txt"), b"private words");
    let node = |name: &str, metrics: &str| {
        let log = tmp.path().join(format!("{name}.log"));
        let proc = Proc::spawn_logged(
            &[
                "seed",
                s(&share),
                "--state",
                s(&tmp.path().join(name)),
                "--listen",
                "127.0.0.1:0",
                "--tracker-listen",
                "127.0.0.1:0",
                "--secret-file",
                s(&secret),
                "--metrics",
                metrics,
            ],
            &log,
        );
        let said = wait_for_text(&log, "metrics at http://", Duration::from_secs(30));
        let at = said.split("metrics at http://").nth(1).unwrap();
        (proc, at[..at.find('/').unwrap()].to_owned())
    };
    let scrape = |addr: &str, host: &str, auth: &str| {
        raw(
            addr,
            &format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"),
        )
    };
    let bearer = format!("Authorization: bearer {token}\r\n");

    let port = free_ports(1).remove(0).rsplit(':').next().unwrap().to_owned();
    let (_local, addr) = node("local", &port);
    assert_eq!(addr, format!("127.0.0.1:{port}"), "a lone port is loopback's");
    let (status, body) = scrape(&addr, &addr, "");
    assert_eq!(status, 401, "no secret, no metrics: {body}");
    assert!(!body.contains("swarm_"), "{body}");
    let (status, body) = scrape(&addr, &addr, &bearer);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("swarm_tracker_requests_total"), "{body}");
    let (status, body) = scrape(&addr, &format!("attacker.example:{port}"), &bearer);
    assert_eq!(status, 403, "a rebound name is refused: {body}");

    let port = free_ports(1).remove(0).rsplit(':').next().unwrap().to_owned();
    let (_public, addr) = node("public", &format!("0.0.0.0:{port}"));
    let near = format!("127.0.0.1:{port}");
    assert_eq!(addr, format!("0.0.0.0:{port}"));
    assert_eq!(scrape(&near, &near, "").0, 401);
    let (status, body) = scrape(&near, &format!("node7:{port}"), &bearer);
    assert_eq!(status, 200, "a named public address answers a scraper's name: {body}");
}
