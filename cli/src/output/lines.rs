//! Where lines go: results on stdout (a reader that stopped reading is no error), notes and
//! warnings on stderr above any progress bar; and text from the network made safe to show.

use std::io::Write;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;

use indicatif::MultiProgress;

/// Every progress bar on screen; log lines and notes are printed above them, never through.
pub(super) static BARS: LazyLock<MultiProgress> = LazyLock::new(MultiProgress::new);
/// `--quiet`: no notes and no progress display.
pub(super) static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns notes and progress displays off (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// What `note!` calls.
pub fn note_line(line: std::fmt::Arguments<'_>) {
    if !QUIET.load(Ordering::Relaxed) {
        // A closed stderr is no reason to stop, nor to panic.
        BARS.suspend(|| writeln!(std::io::stderr(), "{line}")).ok();
    }
}

/// Set once stdout's reader has gone.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// What `out!` calls.
pub fn out_line(line: std::fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let written = BARS.suspend(|| writeln!(std::io::stdout().lock(), "{line}"));
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => STDOUT_GONE.store(true, Ordering::Relaxed),
        Err(e) => warning(format_args!("cannot print the result: {e}")),
        Ok(()) => {}
    }
}

/// Prints a warning on stderr, even with `--quiet`, above any progress bar.
pub fn warning(line: std::fmt::Arguments<'_>) {
    BARS.suspend(|| writeln!(std::io::stderr(), "warning: {line}")).ok();
}

/// Where log lines go: stderr, above the progress bars (see [`BARS`]). tracing writes each
/// event with one `write_all`, so a line is never split by a redraw.
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        BARS.suspend(|| std::io::stderr().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Human-readable bytes (binary units).
pub fn bytes(n: u64) -> String {
    swarm_engine::human(n)
}

/// `text` (a name or path that may come from the network) with anything that could repaint the
/// terminal or forge a line escaped.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    swarm_proto::name::printable(text)
}

/// `text` as one word of a POSIX shell command line, quoted if it needs to be (a path with a
/// space), so that a printed command runs as printed; `text` itself if it cannot be quoted.
pub fn shell_word(text: &str) -> std::borrow::Cow<'_, str> {
    shlex::try_quote(text).unwrap_or(std::borrow::Cow::Borrowed(text))
}

/// [`shown`] for a path.
pub fn shown_path(path: &std::path::Path) -> String {
    shown(&path.display().to_string()).into_owned()
}

/// Megabytes (10^6) per second over `elapsed`.
pub fn mb_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// Prints a result as JSON: pretty, or as one `"event": "done"` line after progress lines.
pub(super) fn print_json(mut value: serde_json::Value, as_event: bool) {
    if as_event {
        if let Some(object) = value.as_object_mut() {
            object.insert("event".into(), "done".into());
        }
        crate::out!("{value}");
    } else {
        crate::out!(
            "{}",
            serde_json::to_string_pretty(&value).expect("plain data serializes")
        );
    }
}
