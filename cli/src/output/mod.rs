//! Printing: tables for people, JSON for scripts, progress bars on a terminal and plain log
//! lines otherwise.
//!
//! `lines`: where lines go (stdout, stderr above the bars) and how text is made safe to show;
//! `status`: `swarm status`; `results`: what the other commands print; `progress`: bars and
//! progress lines.

mod lines;
mod progress;
mod results;
mod status;

pub use lines::{bytes, mb_per_sec, note_line, out_line, set_quiet, shell_word, shown, shown_path, warning, LogWriter};
pub use progress::{json_progress, show_progress};
pub use results::{catalogue, collection, collection_report, fetch_report, holders, seeded_json, sync_event};
pub use status::{status, NodeShown};

/// Prints a line for people on stderr (what is going on), unless `--quiet`; above any
/// progress bar, which is redrawn below it.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => { $crate::output::note_line(format_args!($($arg)*)) };
}

/// Prints a line of results on stdout. A reader that stopped reading (`swarm ls | head -n 1`)
/// is not an error: what is left is not printed, and the command goes on (a seed keeps
/// seeding).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::out_line(format_args!($($arg)*)) };
}
