//! The web view in a real browser: a tracker, two rate-capped seeders and a slow fetch, each
//! with `--http`; headless Chromium (from Debian's packages, installed when missing) loads the
//! fetcher's page twice and the tracker's once. The transfer and the chunk map must be there
//! and must move between the two loads; the tracker's page, printed to PDF, must show its file. The test saves a screenshot of the fetcher's page
//! (docs/usage.md's), at `$SWARM_SCREENSHOT` if set.
//!
//! Everything runs in a network namespace of its own with only loopback, so that the browser
//! cannot reach anything else (it calls home on its own otherwise). Needs root, as CI has.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
use crate::devtools::Browser;

/// Set in the copy of this test that runs inside the namespace, to a file it writes when it
/// passed (so that a copy that ran nothing, its name filtered out, is no pass).
const INSIDE: &str = "SWARM_TEST_INSIDE_NETNS";
/// The test's full name, as the harness filters by it.
const TEST: &str = "web_view::the_web_view_shows_transfers_and_chunk_maps_in_chromium";

#[test]
fn the_web_view_shows_transfers_and_chunk_maps_in_chromium() {
    let Some(passed) = std::env::var_os(INSIDE) else {
        install_if_missing("chromium", "chromium");
        install_if_missing("pdftotext", "poppler-utils");
        install_if_missing("ip", "iproute2");
        let marker = tempfile::tempdir().unwrap();
        let passed = marker.path().join("passed");
        let status = Command::new("unshare")
            .args(["--net", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(INSIDE, &passed)
            .status()
            .expect("unshare runs (util-linux)");
        assert!(
            status.success(),
            "the test failed inside its network namespace (output above)"
        );
        assert!(
            passed.exists(),
            "the test did not run inside its network namespace ({TEST})"
        );
        return;
    };
    let up = Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
    assert!(up.success(), "could not bring loopback up in the namespace");

    let tmp = tempfile::tempdir().unwrap();
    let tracker_http = "127.0.0.1:7801";
    let (_tracker, addr) = start_tracker_with(tmp.path(), &["--http", tracker_http]);
    let share = tmp.path().join("share");
    // 96 chunks of 64 KiB from two seeders capped at 200 KB/s each: about 16 s, time enough
    // for the browser's loads on a loaded machine.
    write(share.join("film.mkv"), &content(96 * 65_536, 9));
    let cap = ["--tracker", &addr, "--max-upload-rate", "200KB/s"];
    let (_seeder_a, seeded, _) = start_seeder(tmp.path(), "seeder-a", &share, &cap, 1);
    let (_seeder_b, _, _) = start_seeder(tmp.path(), "seeder-b", &share, &cap, 1);
    let id = &seeded[0].0;
    let fetcher_http = "127.0.0.1:7802";
    let out = tmp.path().join("out");
    let state = tmp.path().join("fetcher");
    let _fetch = Proc::spawn(&[
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
        "--http",
        fetcher_http,
        "--seed",
    ]);
    let page = format!("http://{fetcher_http}/");
    wait_until("the fetch to be under way", || {
        let dom = dump_dom(&page, tmp.path());
        held_here(&dom).is_some_and(|held| held > 0)
    });

    let first = dump_dom(&page, tmp.path());
    assert!(first.contains("film.mkv"), "{first}");
    assert!(
        between(&first, "class=\"sources muted\">", "<").is_some(),
        "no sources row: {first}"
    );
    let holders = first.matches("class=\"row holder\"").count();
    assert_eq!(holders, 2, "both seeders in the chunk map: {first}");
    // The tracker's page: the file with its holders, the live peers, the map.
    let swarm = dump_dom(&format!("http://{tracker_http}/"), tmp.path());
    assert!(swarm.contains("swarm tracker") && swarm.contains("film.mkv"), "{swarm}");
    assert!(
        swarm.matches("class=\"peer\"").count() >= 3,
        "seeders and fetcher listed: {swarm}"
    );
    assert!(swarm.matches("class=\"row holder\"").count() >= 2, "{swarm}");
    // What the browser shows of it, not what its DOM holds: the page printed, then read.
    let shown = visible_text(&format!("http://{tracker_http}/"), tmp.path());
    for part in [
        "swarm tracker",
        "Files in the swarm",
        "share.swarm-collection",
        "Live peers",
    ] {
        assert!(
            shown.contains(part),
            "the tracker's page does not show {part:?}: {shown}"
        );
    }

    // The fetcher's page as shown: the fetch form, the download with its time left, sizes in
    // the command line's units.
    let shown = visible_text(&page, tmp.path());
    for part in [
        "swarm node",
        "Fetch",
        "Downloads",
        "time left",
        "film.mkv",
        "MiB",
        "MB/s",
    ] {
        assert!(shown.contains(part), "the node's page does not show {part:?}: {shown}");
    }

    // The page as it refreshes later: the transfer and the map have moved on.
    let mut second = String::new();
    wait_until("the page to show more of the download", || {
        second = dump_dom(&page, tmp.path());
        transfer_done(&second) != transfer_done(&first) && held_here(&second) > held_here(&first)
    });

    fetch_a_folder_from_the_page(tmp.path(), &addr, &page, &out);

    let shot =
        std::env::var("SWARM_SCREENSHOT").unwrap_or_else(|_| format!("{}/web-view.png", env!("CARGO_TARGET_TMPDIR")));
    screenshot(&page, Path::new(&shot), tmp.path());
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "not a screenshot: {} bytes",
        png.len()
    );
    eprintln!("screenshot of the web view at {shot}");
    std::fs::write(passed, b"passed").unwrap();
}

/// A folder fetched from the node's page as a person does it: its ticket pasted into the form
/// and Fetch clicked. The folder's row shows while it runs, and where it went once it ended;
/// the files are on disk, whole.
fn fetch_a_folder_from_the_page(dir: &Path, tracker: &str, page: &str, out: &Path) {
    let photos = dir.join("photos");
    // 1.5 MiB from a seeder capped at 300 KB/s: about 5 s, time for a few of the page's
    // one-second refreshes.
    let pictures: Vec<Vec<u8>> = (0..3).map(|i| content(8 * 65_536, 20 + i)).collect();
    for (i, data) in pictures.iter().enumerate() {
        write(photos.join(format!("p{i}.jpg")), data);
    }
    let state = dir.join("seeder-photos");
    let cap = ["--tracker", tracker, "--max-upload-rate", "300KB/s"];
    let seeder = Proc::spawn(&seed_args(&photos, &state, &cap));
    while !seeder.line().trim_end().ends_with("photos/ (3 file(s))") {}
    let command = seeder.line();
    let ticket = command
        .trim()
        .strip_prefix("swarm fetch ")
        .expect("the folder's command");

    let mut browser = Browser::open(page, dir);
    browser.click("#fetch-what");
    browser.type_text(ticket);
    browser.click("#fetch button");
    let mut shown = String::new();
    browser.wait_for("the folder's row on the page", |b| {
        shown = b.shown_text();
        shown.contains("photos/ (")
    });
    assert!(shown.contains("of 3 files)"), "the folder's row: {shown}");
    browser.wait_for("the page to say the folder was fetched", |b| {
        shown = b.shown_text();
        shown.contains("fetched photos/")
    });
    println!("the page, once the folder was fetched:\n{shown}");
    for (i, data) in pictures.iter().enumerate() {
        let fetched = std::fs::read(out.join(format!("photos/p{i}.jpg"))).unwrap();
        assert!(fetched == *data, "photos/p{i}.jpg differs");
    }
}

/// The "done" column of the transfer's row.
fn transfer_done(dom: &str) -> String {
    between(dom, "class=\"num done\">", "<")
        .unwrap_or_else(|| panic!("no transfer row: {dom}"))
        .to_owned()
}

/// How many chunks the fetcher's chunk map says it holds.
fn held_here(dom: &str) -> Option<u32> {
    let mine = &dom[dom.find("id=\"mine\"")?..];
    between(mine, "data-held=\"", "\"")?.parse().ok()
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// Headless Chromium with everything that talks to the outside turned off.
fn chromium(profile: &Path) -> Command {
    let mut command = Command::new("timeout");
    command
        .args(["60", "chromium"])
        .args(crate::devtools::HEADLESS)
        .arg("--hide-scrollbars")
        // Three rounds of the page's one-second refresh, in virtual time.
        .arg("--virtual-time-budget=3000")
        .arg(format!("--user-data-dir={}", profile.join("chromium").display()))
        .stderr(Stdio::null());
    command
}

/// The page at `url` as the browser left it after running its script.
fn dump_dom(url: &str, dir: &Path) -> String {
    let output = chromium(dir).args(["--dump-dom", url]).output().expect("chromium runs");
    assert!(output.status.success(), "chromium failed on {url}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text the browser shows of the page at `url` (hidden parts left out): printed to PDF by
/// Chromium, read back by `pdftotext`.
fn visible_text(url: &str, dir: &Path) -> String {
    let pdf = dir.join("page.pdf");
    let status = chromium(dir)
        .args([
            "--no-pdf-header-footer",
            &format!("--print-to-pdf={}", pdf.display()),
            url,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "chromium could not print {url}");
    let text = Command::new("pdftotext")
        .arg(&pdf)
        .arg("-")
        .output()
        .expect("pdftotext runs");
    assert!(text.status.success(), "pdftotext could not read the page printed");
    String::from_utf8_lossy(&text.stdout).into_owned()
}

fn screenshot(url: &str, path: &Path, dir: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = chromium(dir)
        .args([
            "--window-size=1200,720",
            &format!("--screenshot={}", path.display()),
            url,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "chromium could not take a screenshot of {url}");
}
