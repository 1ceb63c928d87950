//! Progress while a command works: a bar on a terminal, a log line every few seconds
//! otherwise, or a JSON line a second for scripts.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use indicatif::{ProgressBar, ProgressStyle};
use swarm_engine::Progress;

use super::lines::{bytes, mb_per_sec, BARS, QUIET};

/// Shows `progress` until the returned guard is dropped: a bar on a terminal, a log line
/// every few seconds otherwise.
pub fn show_progress(label: &str, progress: Arc<Progress>, with_peers: bool) -> ProgressGuard {
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    let label = label.to_owned();
    let task = tokio::spawn(async move {
        if QUIET.load(Ordering::Relaxed) {
            return;
        }
        let terminal = std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = BARS.add(ProgressBar::new(progress.total()));
            let template = if with_peers {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {decimal_bytes_per_sec} ETA {eta} {prefix}"
            } else {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {decimal_bytes_per_sec} ETA {eta}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(label.clone());
            bar
        });
        let started = Instant::now();
        let mut last_log = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(if terminal { 100 } else { 1000 }));
        loop {
            let stopping = tokio::select! {
                _ = token.cancelled() => true,
                _ = ticker.tick() => false,
            };
            let (done, total) = (progress.done(), progress.total());
            match &bar {
                Some(bar) => {
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_prefix(format!("{} peer(s)", progress.peers()));
                }
                None if last_log.elapsed() >= Duration::from_secs(5) || (stopping && done > 0) => {
                    last_log = Instant::now();
                    crate::note!(
                        "{label}: {} of {} ({:.1} MB/s){}",
                        bytes(done),
                        bytes(total),
                        mb_per_sec(done, started.elapsed()),
                        if with_peers {
                            format!(", {} peer(s)", progress.peers())
                        } else {
                            String::new()
                        }
                    );
                }
                None => {}
            }
            if stopping {
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                    BARS.remove(&bar);
                }
                return;
            }
        }
    });
    ProgressGuard { stop, task: Some(task) }
}

/// Prints `progress` as a JSON line on stdout every second until the guard is finished (for
/// `fetch --json --progress`): `{"event":"progress","name":..,"done":..,"total":..,
/// "bytes_per_second":..,"peers":..}`, from the moment the total is known.
pub fn json_progress(name: &str, progress: Arc<Progress>) -> ProgressGuard {
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let mut last = (Instant::now(), progress.done());
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // Nothing to say until the file is known (its manifest located).
            if progress.total() == 0 {
                continue;
            }
            let now = (Instant::now(), progress.done());
            let rate = now.1.saturating_sub(last.1) as f64 / now.0.duration_since(last.0).as_secs_f64().max(1e-3);
            last = now;
            let line = serde_json::json!({
                "event": "progress",
                "name": name,
                "done": now.1,
                "total": progress.total(),
                "bytes_per_second": rate.round() as u64,
                "peers": progress.peers(),
            });
            crate::out!("{line}");
        }
    });
    ProgressGuard { stop, task: Some(task) }
}

/// Stops a progress display.
pub struct ProgressGuard {
    stop: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressGuard {
    /// Stops the display and waits for it to clear.
    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
