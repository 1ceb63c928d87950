//! The `swarm` binary: parses arguments, installs logging, runs one subcommand and maps its
//! outcome to an exit code. Everything else lives in the engine and tracker crates.

mod args;
mod commands;
mod config;
mod logging;
mod output;
mod shell;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use swarm_engine::ErrorKind;

use args::{exit, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.command.wants_json();
    output::set_quiet(cli.quiet);
    if let Err(e) = logging::install(&cli) {
        eprintln!("error: {e}");
        return ExitCode::from(exit::USAGE);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Tracker(args) => commands::tracker(args).await,
            Command::Seed(args) => commands::seed(args).await,
            Command::Registry(args) => commands::registry(args).await,
            Command::Sync(args) => commands::sync(args).await,
            Command::Fetch(args) => commands::fetch(args).await,
            Command::Ls(args) => commands::ls(args).await,
            Command::Search(args) => commands::search(args).await,
            Command::Peers(args) => commands::peers(args).await,
            Command::Status(args) => commands::status(args).await,
            Command::Shell(args) => shell::shell(args).await,
            Command::Doctor(args) => commands::doctor(args).await,
            Command::Relay(args) => commands::relay(args).await,
            Command::Demo(args) => commands::demo(args).await,
            Command::Secret(command) => commands::secret(command),
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "swarm", &mut std::io::stdout());
                Ok(())
            }
            Command::Man { dir: None } => clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(Into::into),
            Command::Man { dir: Some(dir) } => commands::man_pages(&dir),
        }
    });
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            // Error texts may quote a tracker's or a peer's words: nothing in them may repaint
            // the terminal (their line breaks are the engine's own and kept).
            let text = format!("{}{}", sentence(&e), hint(&e));
            let lines: Vec<_> = text.lines().map(swarm_proto::name::printable).collect();
            // Said even if nobody reads stderr any more; nothing to do about that.
            let _ = writeln!(std::io::stderr(), "error: {}", lines.join("\n"));
            let code = exit_code(&e);
            if json {
                let error = serde_json::json!({ "error": { "message": text, "exit_code": code } });
                crate::out!("{error}");
            }
            ExitCode::from(code)
        }
    }
}

/// The error and its causes in one line, each cause said once: most errors already quote the
/// error they wrap, which `{:#}` would print again.
fn sentence(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if !text.contains(&said) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&said);
        }
    }
    text
}

/// What to do about an engine error, in terms of this binary's flags: the engine does not know
/// how it is driven.
fn hint(error: &anyhow::Error) -> &'static str {
    let Some(error) = error.chain().find_map(|c| c.downcast_ref::<swarm_engine::Error>()) else {
        return "";
    };
    match error {
        swarm_engine::Error::Exists(_) => "; pass --force to replace it",
        swarm_engine::Error::Locked(_) => "; give each node its own --state DIR",
        swarm_engine::Error::Tracker { addr, .. } if addr == "(none)" => {
            "; pass --tracker HOST:PORT or set SWARM_TRACKER"
        }
        _ => "",
    }
}

fn exit_code(error: &anyhow::Error) -> u8 {
    let misused = |c: &(dyn std::error::Error + 'static)| {
        c.downcast_ref::<args::Usage>().is_some() || c.downcast_ref::<swarm_proto::ticket::TicketError>().is_some()
    };
    if error.chain().any(misused) {
        return exit::USAGE;
    }
    let kind = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<swarm_engine::Error>())
        .map(swarm_engine::Error::kind);
    match kind {
        Some(ErrorKind::NotFound) => exit::NOT_FOUND,
        Some(ErrorKind::Integrity) => exit::INTEGRITY,
        Some(ErrorKind::Io) => exit::IO,
        Some(ErrorKind::Timeout) => exit::TIMEOUT,
        Some(ErrorKind::Cancelled) => exit::INTERRUPTED,
        _ => exit::OTHER,
    }
}
