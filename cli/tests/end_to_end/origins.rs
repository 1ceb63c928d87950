//! A file that starts on an HTTP server (Python's `http.server`, logging every request):
//! `swarm seed --url` reads it once and seeds it; fetchers use the printed command; the origin
//! sees one read, and on a restart one conditional request answered "not modified".

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;

use crate::common::*;

/// An HTTP server on loopback serving `dir`, its request log in `log`.
struct Origin {
    child: Child,
    port: u16,
}

impl Origin {
    fn serve(dir: &Path, log: &Path) -> Origin {
        let port: u16 = free_ports(1)[0].rsplit_once(':').unwrap().1.parse().unwrap();
        let child = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("python3 runs");
        wait_until("the origin to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Origin { child, port }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The requests for `path` in the origin's log that were answered `status`.
fn answered(log: &Path, path: &str, status: u16) -> usize {
    let needle = format!("\"GET {path} HTTP/1.1\" {status}");
    std::fs::read_to_string(log).unwrap().matches(&needle).count()
}

/// Starts `swarm seed --url URL` and returns it with the file id it printed and the ticket of
/// the fetch command under it.
fn seed_from(url: &str, tracker: &str, state: &Path, extra: &[&str]) -> (Proc, String, String) {
    let mut args = seed_url_args(url, tracker, state);
    args.extend_from_slice(extra);
    let seeder = Proc::spawn(&args);
    let mut before = String::new();
    loop {
        let line = seeder.line();
        if let Some(ticket) = line.trim().strip_prefix("swarm fetch ") {
            let id = before.split_whitespace().next().unwrap().to_owned();
            return (seeder, id, ticket.to_owned());
        }
        before = line;
    }
}

/// Runs `swarm seed --url URL` to its end (for the cases where it refuses).
fn seed_once(url: &str, tracker: &str, state: &Path) -> std::process::Output {
    run(&seed_url_args(url, tracker, state))
}

/// The arguments of `swarm seed --url URL` with its tracker and state, on loopback.
fn seed_url_args<'a>(url: &'a str, tracker: &'a str, state: &'a Path) -> Vec<&'a str> {
    vec![
        "seed",
        "--url",
        url,
        "--tracker",
        tracker,
        "--state",
        s(state),
        "--listen",
        "127.0.0.1:0",
    ]
}

#[test]
fn a_file_from_an_http_origin_is_read_once_and_spread_by_the_swarm() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    let image = content(3 << 20, 17);
    write(www.join("disk image.img"), &image);
    let log = tmp.path().join("origin.log");
    let origin = Origin::serve(&www, &log);
    let (_tracker, addr) = start_tracker(tmp.path());
    let state = tmp.path().join("seeder");
    let url = origin.url("disk%20image.img");
    let [metrics, http] = <[String; 2]>::try_from(free_ports(2)).unwrap();
    let (seeder, id, ticket) = seed_from(&url, &addr, &state, &["--metrics", &metrics, "--http", &http]);
    let kept = state.join("origins/disk image.img");
    assert_eq!(std::fs::read(&kept).unwrap(), image, "the copy on disk");

    // Three machines fetch at once with the printed command.
    let fetchers: Vec<_> = (0..3)
        .map(|i| {
            let (ticket, dir) = (ticket.clone(), tmp.path().to_owned());
            thread::spawn(move || {
                let out = dir.join(format!("out{i}"));
                let fetched = run(&[
                    "fetch",
                    &ticket,
                    "-o",
                    s(&out),
                    "--state",
                    s(&dir.join(format!("fetcher{i}"))),
                    "--listen",
                    "127.0.0.1:0",
                ]);
                assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
                std::fs::read(out.join("disk image.img")).unwrap()
            })
        })
        .collect();
    for fetcher in fetchers {
        assert!(fetcher.join().unwrap() == image, "a fetched copy differs");
    }
    assert_eq!(answered(&log, "/disk%20image.img", 200), 1, "one read of the origin");
    // The metrics tell the origin's bytes beside what the swarm served of the same file.
    let scraped = ureq::get(&format!("http://{metrics}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let short = &id[..8];
    let value = |name: &str| -> f64 {
        let series = format!("{name}{{file=\"{short}\"}} ");
        let line = scraped
            .lines()
            .find(|l| l.starts_with(&series))
            .unwrap_or_else(|| panic!("no {series}in {scraped}"));
        line[series.len()..].trim().parse().unwrap()
    };
    assert_eq!(value("swarm_origin_read_bytes_total"), image.len() as f64);
    assert!(value("swarm_uploaded_bytes_total") >= image.len() as f64, "{scraped}");
    // And so does the node's status, per file (the web page's "served" and "from its origin").
    let status: serde_json::Value = ureq::get(&format!("http://{http}/api/status"))
        .call()
        .unwrap()
        .into_body()
        .read_json()
        .unwrap();
    let file = &status["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap();
    assert_eq!(file["bytes_from_origin"], image.len() as u64, "{file}");
    assert!(file["bytes_served"].as_u64().unwrap() >= image.len() as u64, "{file}");

    // Started again: the origin is asked whether it changed, and reads nothing.
    drop(seeder);
    let (restarted, again, _) = seed_from(&url, &addr, &state, &[]);
    assert_eq!(again, id, "the same file");
    assert_eq!(answered(&log, "/disk%20image.img", 200), 1, "still one read");
    assert_eq!(answered(&log, "/disk%20image.img", 304), 1, "one 'not modified'");

    // The origin gets a new version: the copy is someone's file now, so it stays as it is and
    // the new version is refused in words (the seeder above still runs: stop it first).
    drop(restarted);
    write(www.join("disk image.img"), &content(3 << 20, 18));
    // Seconds are all Last-Modified tells: the new version is dated a minute later.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    set_modified(&www.join("disk image.img"), later);
    let refused = seed_once(&url, &addr, &state);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("another version"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&kept).unwrap(), image, "the copy is left alone");

    // A URL the origin does not have, and one that names no file, are refused in words.
    for (bad, said) in [(origin.url("gone.img"), "404"), (origin.url(""), "names no file")] {
        let refused = seed_once(&bad, &addr, &tmp.path().join("bad"));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && stderr.contains(said), "{bad}: {stderr}");
    }
}
