//! `swarm shell`: one node driven by hand from a prompt. Line editing, history and tab
//! completion come from rustyline; downloads run in the background and announce themselves
//! above the prompt when they finish.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Editor, ExternalPrinter, Helper};
use swarm_engine::status::FileState;
use swarm_engine::{CatalogueEntry, FetchOptions, Node, Progress, Sources};
use swarm_proto::protocol::Holding;
use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;

use crate::args::ShellArgs;
use crate::commands::Sharing;
use crate::output;

const PROMPT: &str = "swarm> ";

const HELP: &str = "\
commands:
  help               this list
  show               files this node holds (shared, or being downloaded)
  ls                 the tracker's catalogue
  search NAME        catalogue entries whose name contains NAME
  peers NAME_OR_ID   which live peers hold which chunks of a file
  get NAME_OR_ID     download a file in the background, from one peer or all of them
  status             transfers in flight, with progress
  exit               leave the tracker, let transfers in flight finish, quit (Ctrl-D too)
Tab completes commands, file ids and names; Up and Down walk the history.";

const COMMANDS: [&str; 8] = ["help", "show", "ls", "search", "peers", "get", "status", "exit"];

/// `swarm shell`
pub async fn shell(args: ShellArgs) -> Result<()> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    // Installed before anything else so that Ctrl-C outside the prompt never kills the node
    // mid-transfer; `exit` uses it to let a second Ctrl-C force the way out.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let sharing = Sharing::start(&dir, &args.peer, false).await?;
    sharing.share_dir(&dir, Duration::ZERO, "").await?;
    println!(
        "node {} on tracker {}; type help for the commands",
        sharing.node().id().short(),
        sharing.peer.public_tracker
    );
    let console = Console {
        node: sharing.node().clone(),
        dir,
        runtime: Handle::current(),
        downloads: TaskTracker::new(),
        words: Arc::default(),
    };
    let refresher = tokio::spawn(refresh_completions(console.node.clone(), console.words.clone()));
    let downloads = console.downloads.clone();
    let history = console.node.state_dir().join("shell_history");
    tokio::task::spawn_blocking(move || console.read_eval_print(&history)).await??;
    refresher.abort();

    downloads.close();
    let waiting = sharing.node().downloads().list().len();
    if waiting > 0 {
        println!("waiting for {waiting} download(s) in flight (Ctrl-C to stop them)");
        tokio::select! {
            _ = downloads.wait() => {}
            _ = interrupts.recv() => println!("downloads stopped; they resume where they were with get"),
        }
    }
    sharing.stop().await;
    Ok(())
}

/// What the prompt works with.
struct Console {
    node: Node,
    dir: PathBuf,
    runtime: Handle,
    downloads: TaskTracker,
    /// Ids and names for tab completion, refreshed in the background.
    words: Arc<Mutex<Vec<String>>>,
}

/// Where background downloads report: above the prompt when there is a terminal.
type Printer = Arc<Mutex<dyn FnMut(String) + Send>>;

impl Console {
    /// Reads commands until `exit` or end of input. Runs on a blocking thread.
    fn read_eval_print(self, history: &Path) -> Result<()> {
        let config = rustyline::Config::builder()
            .completion_type(rustyline::CompletionType::List)
            .auto_add_history(true)
            .build();
        let mut editor: Editor<Completion, DefaultHistory> = Editor::with_config(config)?;
        editor.set_helper(Some(Completion {
            words: self.words.clone(),
        }));
        let _ = editor.load_history(history);
        let printer: Printer = match editor.create_external_printer() {
            Ok(mut p) => Arc::new(Mutex::new(move |line: String| {
                let _ = p.print(line);
            })),
            Err(_) => Arc::new(Mutex::new(|line: String| println!("{line}"))),
        };
        loop {
            match editor.readline(PROMPT) {
                Ok(line) => {
                    let line = line.trim();
                    if line.is_empty() {
                        continue;
                    }
                    let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
                    let rest = rest.trim();
                    if matches!(command, "exit" | "quit") {
                        break;
                    }
                    if let Err(e) = self.execute(command, rest, &mut editor, &printer) {
                        // Line by line: an error's own line breaks are kept, anything that
                        // could repaint the terminal is escaped.
                        let text = format!("{e:#}");
                        let lines: Vec<_> = text.lines().map(output::shown).collect();
                        println!("error: {}", lines.join("\n"));
                    }
                }
                Err(ReadlineError::Interrupted) => println!("(type exit, or press Ctrl-D, to leave)"),
                Err(ReadlineError::Eof) => break,
                Err(e) => bail!("reading the terminal failed: {e}"),
            }
        }
        if let Some(dir) = history.parent() {
            if dir.is_dir() {
                let _ = editor.save_history(history);
            }
        }
        Ok(())
    }

    fn execute(
        &self,
        command: &str,
        rest: &str,
        editor: &mut Editor<Completion, DefaultHistory>,
        printer: &Printer,
    ) -> Result<()> {
        let need = |what: &str| -> Result<()> {
            if rest.is_empty() {
                bail!("{command} needs {what}; type help for the commands");
            }
            Ok(())
        };
        match command {
            "help" => println!("{HELP}"),
            "show" => self.show(),
            "ls" => output::catalogue(&self.runtime.block_on(self.node.list())?, false),
            "search" => {
                need("a NAME")?;
                let found = self.runtime.block_on(self.node.search(rest, false))?;
                if found.is_empty() {
                    println!("no file name contains `{rest}`");
                } else {
                    output::catalogue(&found, false);
                }
            }
            "peers" => {
                need("a NAME or ID")?;
                let entry = self.runtime.block_on(self.find(rest))?;
                let holdings = self.runtime.block_on(self.node.holdings(entry.file))?;
                output::holders(&entry.name, entry.chunk_count, &holdings, false);
            }
            "get" => {
                need("a NAME or ID")?;
                self.get(rest, editor, printer)?;
            }
            "status" => self.status(),
            other => println!("unknown command `{other}`; type help for the commands"),
        }
        Ok(())
    }

    /// Lists what the node holds.
    fn show(&self) {
        let held = match self.node.status() {
            Ok(held) => held,
            Err(e) => {
                println!("{e}");
                return;
            }
        };
        if held.is_empty() {
            println!("this node holds no files; get one, or start the shell on a folder");
            return;
        }
        println!("{:<16}  {:>10}  {:>13}  NAME", "ID", "SIZE", "CHUNKS");
        for file in held {
            println!(
                "{:<16}  {:>10}  {:>13}  {}{}",
                &file.id.to_string()[..16],
                output::bytes(file.size),
                format!("{}/{}", file.chunks_held, file.chunk_count),
                output::shown(&file.name),
                match file.state {
                    FileState::Seeding => "",
                    FileState::Downloading => "  (downloading)",
                    FileState::Paused => "  (paused)",
                }
            );
        }
    }

    /// Lists downloads in flight with their progress, and the uploads running.
    fn status(&self) {
        let transfers = self.node.downloads().list();
        if transfers.is_empty() {
            println!("no downloads in flight");
        }
        for transfer in &transfers {
            let (done, total) = (transfer.progress.done(), transfer.progress.total());
            let percent = if total == 0 {
                0.0
            } else {
                100.0 * done as f64 / total as f64
            };
            println!(
                "downloading {}  {:.0}%  {} of {}  {:.1} MB/s  from {} peer(s)",
                output::shown(&transfer.name),
                percent,
                output::bytes(done),
                output::bytes(total),
                output::mb_per_sec(done, transfer.started.elapsed()),
                transfer.progress.peers()
            );
        }
        println!("{} chunk upload(s) in flight", self.node.uploads_in_flight());
    }

    /// The catalogue entry a person means by `what`: an id or id prefix, an exact name (the
    /// newest version if several), or the only name containing it (see
    /// [`swarm_engine::TrackerClient::resolve`]).
    async fn find(&self, what: &str) -> Result<CatalogueEntry> {
        let id = self.node.resolve(what).await?;
        let entries = self.node.list().await?;
        match entries.into_iter().find(|e| e.file == id) {
            Some(entry) => Ok(entry),
            None => bail!("{} is no longer in the catalogue; try ls", id.short()),
        }
    }

    /// Offers the holders of a file, asks which to use, and starts the download.
    fn get(&self, what: &str, editor: &mut Editor<Completion, DefaultHistory>, printer: &Printer) -> Result<()> {
        let entry = self.runtime.block_on(self.find(what))?;
        if self.node.downloads().get(&entry.file).is_some() {
            bail!("{} is already downloading; see status", output::shown(&entry.name));
        }
        let holders: Vec<Holding> = self
            .runtime
            .block_on(self.node.holdings(entry.file))?
            .into_iter()
            .filter(|h| h.peer != self.node.id())
            .collect();
        if holders.is_empty() {
            bail!(
                "no live peer holds {} right now; try again later",
                output::shown(&entry.name)
            );
        }
        println!(
            "{} ({}, {}) is held by:",
            output::shown(&entry.name),
            output::bytes(entry.size),
            entry.file.short()
        );
        for (i, h) in holders.iter().enumerate() {
            println!(
                "  {}) {}  {}  {}/{} chunks",
                i + 1,
                h.peer.short(),
                h.addr,
                h.chunks.count(),
                entry.chunk_count
            );
        }
        let question = format!("fetch from which? [1-{}, or Enter for all] ", holders.len());
        let answer = match editor.readline(&question) {
            Ok(answer) => answer,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                println!("not fetched");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let answer = answer.trim();
        let from = if answer.is_empty() || answer.eq_ignore_ascii_case("all") {
            None
        } else {
            match answer
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| holders.get(i))
            {
                Some(h) => Some(swarm_engine::PeerFilter::IdPrefix(h.peer.to_string())),
                None => bail!("`{answer}` is not one of 1-{}; not fetched", holders.len()),
            }
        };
        println!(
            "fetching {} from {} in the background; status shows progress",
            output::shown(&entry.name),
            if from.is_some() { "one peer" } else { "every holder" }
        );
        self.start_download(entry, from, printer.clone());
        Ok(())
    }

    fn start_download(&self, entry: CatalogueEntry, from: Option<swarm_engine::PeerFilter>, printer: Printer) {
        let options = FetchOptions {
            out_dir: self.dir.clone(),
            sources: from.map_or(Sources::All, Sources::Only),
            progress: Arc::new(Progress::default()),
            label: Some(entry.name.clone()),
            ..FetchOptions::default()
        };
        let fetching = self.node.fetch(entry.file, options);
        let task = async move {
            let result = fetching.await;
            let line = match result {
                Ok(report) if report.already_complete => {
                    format!(
                        "done: {} was already complete at {}",
                        output::shown(&entry.name),
                        output::shown_path(&report.path)
                    )
                }
                Ok(report) => format!(
                    "done: {} ({}) from {} peer(s) in {:.1}s, saved as {}",
                    output::shown(&entry.name),
                    output::bytes(report.manifest.size),
                    report.received.len(),
                    report.elapsed.as_secs_f64(),
                    output::shown_path(&report.path)
                ),
                Err(e) => format!(
                    "failed: {}: {}",
                    output::shown(&entry.name),
                    e.to_string().lines().map(output::shown).collect::<Vec<_>>().join("\n")
                ),
            };
            (printer.lock().expect("lock poisoned"))(line);
        };
        self.downloads.spawn_on(task, &self.runtime);
    }
}

/// Keeps the completion words (ids and names from the catalogue) fresh.
async fn refresh_completions(node: Node, words: Arc<Mutex<Vec<String>>>) {
    loop {
        if let Ok(Ok(entries)) = tokio::time::timeout(Duration::from_secs(5), node.list()).await {
            let mut fresh: Vec<String> = entries
                .iter()
                .flat_map(|e| [e.name.clone(), e.file.to_string()])
                .collect();
            fresh.sort();
            fresh.dedup();
            *words.lock().expect("lock poisoned") = fresh;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Tab completion: command names first, then file names and ids.
struct Completion {
    words: Arc<Mutex<Vec<String>>>,
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let pair = |word: &str, suffix: &str| Pair {
            display: word.to_owned(),
            replacement: format!("{word}{suffix}"),
        };
        let Some((command, argument)) = before.split_once(' ') else {
            let matches = COMMANDS.iter().filter(|c| c.starts_with(before));
            return Ok((0, matches.map(|c| pair(c, " ")).collect()));
        };
        if !matches!(command, "get" | "peers" | "search") {
            return Ok((pos, Vec::new()));
        }
        let words = self.words.lock().expect("lock poisoned");
        let matches = words.iter().filter(|w| w.starts_with(argument.trim_start()));
        let start = before.len() - argument.trim_start().len();
        Ok((start, matches.map(|w| pair(w, "")).collect()))
    }
}

impl rustyline::hint::Hinter for Completion {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Completion {}
impl rustyline::validate::Validator for Completion {}
impl Helper for Completion {}
