//! Headless Chromium driven as a person would drive it: clicks at the coordinates of what is
//! shown, typing into the focused field, and reading back the text the page shows (the DOM's
//! `innerText`, which leaves out what CSS hides). Spoken to over the DevTools protocol on a
//! pipe (`--remote-debugging-pipe`: JSON messages ended by a NUL byte, read by Chromium from
//! its fd 3 and written to its fd 4), so that no port is opened and no crate is needed beyond
//! serde_json: the protocol takes a few lines, where a DevTools client crate would bring a
//! WebSocket stack and a browser downloader.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

/// Headless Chromium with everything that talks to the outside turned off (it calls home on
/// its own otherwise), as every browser test starts it.
pub const HEADLESS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
];

/// Longest any one DevTools call may take before the test gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One page open in a headless Chromium.
pub struct Browser {
    chromium: Child,
    commands: ChildStdin,
    answers: mpsc::Receiver<Value>,
    last_id: u64,
    session: String,
}

impl Browser {
    /// Chromium (with everything that talks to the outside turned off, its profile under
    /// `profile`) showing `url`.
    pub fn open(url: &str, profile: &Path) -> Browser {
        // The shell hands Chromium its stdin as fd 3 and its stdout as fd 4, then lets go of both.
        let mut chromium = Command::new("sh")
            .args(["-c", r#"exec "$@" 3<&0 4>&1 </dev/null >/dev/null"#, "sh", "chromium"])
            .args(HEADLESS)
            .arg("--window-size=1200,900")
            .arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.join("chromium-driven").display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let commands = chromium.stdin.take().expect("piped");
        let mut from = BufReader::new(chromium.stdout.take().expect("piped"));
        let (send, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut message = Vec::new();
            while from.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop_if(|last| *last == 0);
                if let Ok(value) = serde_json::from_slice(&message) {
                    if send.send(value).is_err() {
                        return;
                    }
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            chromium,
            commands,
            answers,
            last_id: 0,
            session: String::new(),
        };
        let target = browser.call(false, "Target.createTarget", json!({ "url": url }))["targetId"].clone();
        let attached = browser.call(
            false,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().expect("a session id").to_owned();
        // A new tab is at about:blank, complete, until the page's navigation starts.
        let loaded = "document.readyState === 'complete' && location.href !== 'about:blank'";
        browser.wait_for("the page to load", |b| b.eval(loaded) == true);
        browser
    }

    /// Calls `method` (on the page if `on_page`, else on the browser) and returns its result.
    fn call(&mut self, on_page: bool, method: &str, params: Value) -> Value {
        self.last_id += 1;
        let id = self.last_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if on_page {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("chromium takes commands");
        loop {
            let answer = self
                .answers
                .recv_timeout(CALL_TIMEOUT)
                .unwrap_or_else(|e| panic!("no answer from chromium to {method}: {e}"));
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method} failed: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of the JavaScript `expression` on the page (awaited if a promise).
    pub fn eval(&mut self, expression: &str) -> Value {
        let params = json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let result = self.call(true, "Runtime.evaluate", params);
        assert!(result.get("exceptionDetails").is_none(), "{expression} threw: {result}");
        result["result"]["value"].clone()
    }

    /// The text the page shows now: what CSS hides is left out.
    pub fn shown_text(&mut self) -> String {
        self.eval("document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Clicks the middle of the element `selector` names, as a mouse would.
    pub fn click(&mut self, selector: &str) {
        let centre = self.eval(&format!(
            "(() => {{ const r = document.querySelector({selector:?}).getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = (centre[0].as_f64().unwrap(), centre[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            let event = json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 });
            self.call(true, "Input.dispatchMouseEvent", event);
        }
    }

    /// Types `text` into the focused field, as a paste would.
    pub fn type_text(&mut self, text: &str) {
        self.call(true, "Input.insertText", json!({ "text": text }));
    }

    /// Waits (up to a minute) until `done` holds of the page.
    pub fn wait_for(&mut self, what: &str, mut done: impl FnMut(&mut Browser) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.chromium.kill();
        let _ = self.chromium.wait();
    }
}
