//! `swarm shell`, driven through a pseudo-terminal like a person would: commands, tab
//! completion, a download in the background while typing, and an exit that waits for it.

use std::process::Command;
use std::time::Duration;

use crate::common::*;
use expectrl::{Eof, Expect, Session};

const PROMPT: &str = "swarm> ";

/// Prints the terminal transcript if the test panics.
struct ShowOnPanic(std::path::PathBuf);

impl Drop for ShowOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read(&self.0).unwrap_or_default();
            eprintln!("terminal transcript:\n{}", String::from_utf8_lossy(&text));
        }
    }
}

/// Waits for the prompt, types `line`, and waits until `shown` appears.
fn command_shows(shell: &mut impl Expect, line: &str, shown: &str) {
    if let Err(e) = shell.expect(PROMPT) {
        panic!("no prompt before `{line}`: {e}");
    }
    shell.send_line(line).unwrap();
    if let Err(e) = shell.expect(shown) {
        panic!("`{line}` did not show `{shown}`: {e}");
    }
}

#[test]
fn a_person_browses_fetches_in_the_background_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let (_tracker, addr) = start_tracker(tmp.path());
    let shared = tmp.path().join("shared");
    let remote = content(600_000, 3);
    let second = content(400_000, 4);
    write(shared.join("remote.bin"), &remote);
    write(shared.join("second.bin"), &second);
    // Capped, so that the downloads are still running while the person types.
    let (_seeder, _, _) = start_seeder(
        tmp.path(),
        "seeder",
        &shared,
        &["--tracker", &addr, "--max-upload-rate", "400KB/s"],
        2,
    );
    let home = tmp.path().join("home");
    write(home.join("local.txt"), b"mine\n");

    let mut command = Command::new(BIN);
    command
        .args(["shell", s(&home), "--tracker", &addr, "--listen", "127.0.0.1:0"])
        .args(["--chunk-size", "64KiB", "--state", s(&tmp.path().join("state"))])
        .env("SWARM_LOG", "warn")
        .env("TERM", "xterm");
    // Everything the terminal shows is kept in a transcript, printed if the test fails.
    let transcript = tmp.path().join("transcript");
    let mut shell = expectrl::session::log(
        Session::spawn(command).unwrap(),
        std::fs::File::create(&transcript).unwrap(),
    )
    .unwrap();
    let _show = ShowOnPanic(transcript);
    shell.set_expect_timeout(Some(Duration::from_secs(30)));
    shell.expect("type help").unwrap();

    command_shows(&mut shell, "help", "get NAME_OR_ID");
    command_shows(&mut shell, "show", "local.txt");
    command_shows(&mut shell, "ls", "remote.bin");
    command_shows(&mut shell, "search secon", "second.bin");
    command_shows(&mut shell, "frobnicate", "unknown command `frobnicate`");
    command_shows(&mut shell, "peers remote.bin", "remote.bin: 1 live holder(s)");

    // Tab completes the command and then the file name (from the catalogue).
    shell.expect(PROMPT).unwrap();
    shell.send("ge\t").unwrap();
    shell.expect("get ").unwrap();
    shell.send("remo\t").unwrap();
    shell.expect("remote.bin").unwrap();
    shell.send("\r").unwrap();
    shell.expect("is held by:").unwrap();
    shell.expect("1) ").unwrap();
    shell.expect("fetch from which?").unwrap();
    shell.send_line("").unwrap();
    shell.expect("in the background").unwrap();

    // The prompt is free while the download runs.
    command_shows(&mut shell, "status", "downloading remote.bin");
    shell.expect("done: remote.bin").unwrap();
    assert_eq!(std::fs::read(home.join("remote.bin")).unwrap(), remote);
    command_shows(&mut shell, "peers remote.bin", "remote.bin: 2 live holder(s)");

    // Exit waits for the download in flight, then leaves.
    command_shows(&mut shell, "get second.bin", "fetch from which?");
    shell.send_line("1").unwrap();
    shell.expect("from one peer in the background").unwrap();
    command_shows(&mut shell, "exit", "waiting for 1 download(s)");
    shell.expect(Eof).unwrap();
    assert_eq!(std::fs::read(home.join("second.bin")).unwrap(), second);
    let status = shell.get_process_mut().wait().unwrap();
    assert!(
        matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}
