//! Where log lines go: a terminal shows results, notes and warnings; the log (who was served,
//! how holders were reached, what the tracker did) is asked for with `-v`, `SWARM_LOG` or
//! `RUST_LOG`, or kept in a file with `--log-file`.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::args::{Cli, Command};
use crate::output;

/// Crates whose log is noise at the levels a person asks for: quinn_udp warns of every
/// datagram sent where no route leads (a holder's addresses are all dialled, and the fetch says
/// in its own words when none answers).
const QUIETER: &str = "quinn=warn,quinn_proto=warn,quinn_udp=error,sled=warn";

/// Installs the log for `cli`'s command: stderr above the progress bars, at the level `-v`
/// asks for, and `--log-file` if given.
pub fn install(cli: &Cli) -> Result<(), String> {
    let terminal = filter(&terminal_level(cli));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(|| output::LogWriter)
        .with_ansi(colour)
        .with_target(false);
    // Warnings alone read as messages, not as a log: no time stamp.
    let to_terminal = if shows_log(cli) {
        layer.boxed()
    } else {
        layer.without_time().boxed()
    }
    .with_filter(terminal);
    let to_file = match &cli.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            let level = if cli.verbose > 1 {
                verbose_level(cli.verbose)
            } else {
                verbose_level(1)
            };
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_ansi(false)
                    .with_target(false)
                    .with_filter(filter(&level)),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(to_terminal)
        .with(to_file)
        .try_init()
        .map_err(|e| format!("cannot install the log: {e}"))
}

/// `SWARM_LOG`, else `RUST_LOG`, else `default`.
fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("SWARM_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default))
}

/// Whether the terminal shows the log (`-v`, a filter in `SWARM_LOG` or `RUST_LOG`, or a
/// tracker: a service, whose log is its output, kept by a journal), or only warnings and
/// errors.
fn shows_log(cli: &Cli) -> bool {
    let filter_asked = ["SWARM_LOG", "RUST_LOG"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    !cli.quiet && (cli.verbose > 0 || filter_asked || matches!(cli.command, Command::Tracker(_)))
}

/// What the terminal shows of the log for `cli`.
fn terminal_level(cli: &Cli) -> String {
    match cli.verbose {
        _ if cli.quiet => "error".to_owned(),
        _ if shows_log(cli) => verbose_level(cli.verbose),
        // sled's own complaints are said again in the engine's words (a damaged database).
        _ => "warn,quinn_udp=error,sled=off".to_owned(),
    }
}

/// The filter for `-v` given `count` times.
fn verbose_level(count: u8) -> String {
    match count {
        0 | 1 => format!("info,{QUIETER}"),
        2 => "debug,quinn=info,quinn_proto=info,quinn_udp=error,sled=info".to_owned(),
        _ => "trace".to_owned(),
    }
}
