//! Command-line arguments. Every flag can also come from a `SWARM_*` environment variable.
//! These types stay here: they are turned into the engine's plain config structs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use swarm_engine::TrackerAddr;
use swarm_proto::share_key::ShareTicket;

/// Exit codes, also listed in `swarm --help`.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Any other failure (network, protocol).
    pub const OTHER: u8 = 1;
    /// Bad usage (clap exits with it on its own; [`super::Usage`] errors too).
    pub const USAGE: u8 = 2;
    /// The file, id or peer was not found.
    pub const NOT_FOUND: u8 = 3;
    /// A manifest or content failed verification.
    pub const INTEGRITY: u8 = 4;
    /// Reading or writing local files failed.
    pub const IO: u8 = 5;
    /// Gave up after --timeout.
    pub const TIMEOUT: u8 = 6;
    /// Interrupted (Ctrl-C, SIGTERM): 128 + SIGINT, as shells report it.
    pub const INTERRUPTED: u8 = 130;
}

/// A mistake in how the command was given, found after parsing: exits with
/// [`exit::USAGE`], as clap's own do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

const AFTER_HELP: &str = "\
Exit codes:
  0  done
  1  other failure (network, protocol)
  2  bad usage
  3  not found (file id, name or peer)
  4  integrity failure (a manifest or content did not match its hash, or a
     pinned tracker or peer proved another id)
  5  I/O error (reading or writing local files)
  6  timed out (--timeout)
  130 interrupted (Ctrl-C)

Environment: every flag has a SWARM_* variable, e.g. SWARM_TRACKER, SWARM_STATE.
Logs: SWARM_LOG=debug (or any tracing filter).";

const SYNC_ABOUT: &str = "\
Keep DIR in step with every node syncing the same share: share its files, fetch every file it
lacks, and spread new, changed and deleted files within seconds. Other shares and plain seeds
never enter it.

The first sync of a folder makes a new share (its key is kept in DIR/.swarm/share-key) and
prints two commands for other machines:
- read-write (swarmrw1...): its holder may add, change and delete every file of the share.
  Give it only to machines you trust with that.
- read-only (swarmro1...): its holder follows the share; its own edits stay on its machine.
Every change is signed with the read-write key and checked by every node, so neither an
outsider who learns the share nor the tracker can change anyone's files. To take a key back,
sync the folder as a new share (move DIR/.swarm/share-key away) and invite the members again.

- The newest modification time wins. A local edit that loses is kept beside the winner as
  NAME.sync-conflict-YYYYMMDD-HHMMSS-NODE.EXT, which is then synced like any file.
- Deletions propagate. Files deleted or replaced by sync are moved to DIR/.swarm/versions/
  and kept for --keep-versions: nothing is destroyed.
- A deletion that raced an edit elsewhere loses: the edit comes back.
- Modification times travel with the files.
- A file is shared once it has not been modified for --settle.";

/// swarm: move big files between many machines, fast, every byte verified.
#[derive(Debug, Parser)]
#[command(
    name = "swarm",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SWARM_COMMIT"), ")"),
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Print only results, warnings and errors (no progress display, notes or log lines).
    #[arg(short, long, global = true, env = "SWARM_QUIET")]
    pub quiet: bool,
    /// Log what the node does on stderr: `-v` for its log lines (who was served, how holders
    /// were reached), `-vv` for debugging, `-vvv` for everything. Without it, only warnings
    /// (a tracker logs its requests anyway). `SWARM_LOG` or `RUST_LOG` (as `info,swarm_engine=debug`)
    /// choose in detail.
    #[arg(short, long, global = true, env = "SWARM_VERBOSE", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Also append the log, at least its info lines, to FILE (without colours).
    #[arg(long, global = true, env = "SWARM_LOG_FILE", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a tracker: the catalogue of files and of who holds which chunks.
    #[command(after_help = "Examples:
  swarm tracker                                  listen on [::]:7070 (IPv6 and IPv4), state in ~/.local/share/swarm/tracker
  swarm tracker --http 127.0.0.1:8080            with its web view and JSON API
  swarm tracker --store redis://10.0.0.5:6379/0  one of several trackers sharing a Redis store")]
    Tracker(TrackerArgs),
    /// Share a folder (or one file) and print one ticket that fetches it all (starts a tracker
    /// in-process if none is given).
    #[command(after_help = "Examples:
  swarm seed ./photos                    share a folder; prints one `swarm fetch swarm3...` for all of it
  swarm seed ./photos --each             also a ticket per file
  swarm seed big.iso --tracker t:7070    share one file through an existing tracker")]
    Seed(SeedArgs),
    /// Keep DIR in step with every node syncing the same share: share its files, fetch what
    /// it lacks, spread changes and deletions within seconds.
    #[command(long_about = SYNC_ABOUT, after_help = "Examples:
  swarm sync ./shared                        make ./shared a share; prints the commands to join it
  swarm sync ./shared --share swarmrw1...    join it from another machine (read-write)
  swarm sync ./shared --share swarmro1...    follow it (read-only)
  swarm sync ./shared --json                 what happens, as JSON lines")]
    Sync(SyncArgs),
    /// Mirror a container registry for this host's container runtime: image manifests come from
    /// the upstream, layers through the swarm, each read from the upstream once for all hosts.
    #[command(after_help = "Examples:
  swarm registry --upstream http://registry.internal:5000 --tracker t:7070
      then pull through it: skopeo copy --src-tls-verify=false docker://127.0.0.1:5050/app:1 dir:app
      (or name 127.0.0.1:5050 as a mirror in containerd's or Docker's registry settings)")]
    Registry(RegistryArgs),
    /// Download a file or a whole folder by ticket or id (or a unique prefix of 8+ hex digits)
    /// from every peer holding it.
    #[command(after_help = "Examples:
  swarm fetch swarm3...                          what `swarm seed` printed: a file, or a whole folder
  swarm fetch swarm3... --list                   what a folder holds, without fetching
  swarm fetch swarm3... --only '*.jpg' -o ~/in   only some files of a folder
  swarm fetch 3f2a9c1b --tracker t:7070          by id prefix (or by name)
  swarm fetch swarm3... --json --progress        progress as JSON lines, for scripts")]
    Fetch(FetchArgs),
    /// List the tracker's catalogue.
    #[command(after_help = "Examples:
  swarm ls                       the tracker used last from this machine's state
  swarm ls --tracker t:7070 --json")]
    Ls(QueryArgs),
    /// Find files by name (substring, or --exact).
    #[command(after_help = "Examples:
  swarm search holiday            names containing `holiday`, any case
  swarm search notes.txt --exact")]
    Search(SearchArgs),
    /// Show which peers hold which chunks of a file (by id, id prefix or name).
    #[command(after_help = "Examples:
  swarm peers notes.txt
  swarm peers 3f2a9c1b --json")]
    Peers(PeersArgs),
    /// Show this node's downloads (with progress) and seeded files.
    #[command(after_help = "Examples:
  swarm status                   the node on the default state (running or not)
  swarm status --state ./st --json")]
    Status(StatusArgs),
    /// Relay for trackers whose peers cannot reach each other through their NATs, on a host of
    /// its own (the tracker relays by default)
    #[command(after_help = "Examples:
  swarm relay --for 5f0c77ab...                     on R; prints --relay ID@R:7072 for the tracker
  swarm tracker --relay 9a1b2c3d...@203.0.113.9:7072   on T: sessions are opened on R")]
    Relay(RelayArgs),
    /// Check what makes a transfer fail or crawl here, and say what to change: the tracker,
    /// each holder of a file, UDP buffers, the disk, the CPU
    #[command(after_help = "Examples:
  swarm doctor                       the tracker last used, UDP buffers, the disk here, the CPU
  swarm doctor swarm3...             and how each holder of the ticket's file is reached
  swarm doctor swarm3... -o /data    with the disk a fetch would write to")]
    Doctor(DoctorArgs),
    /// Run a node with a prompt: browse the catalogue, fetch in the background, see transfers.
    #[command(after_help = "Examples:
  swarm shell ./inbox --tracker t:7070   then: ls, search NAME, get NAME, status, help")]
    Shell(ShellArgs),
    /// Generate a file, seed it from several in-process peers and fetch it, printing the rate.
    #[command(after_help = "Examples:
  swarm demo                     1 GiB from 4 in-process seeders
  swarm demo --size 256MiB --seeders 8")]
    Demo(DemoArgs),
    /// Make a private swarm's secret: `swarm secret new FILE`, then give FILE to every node.
    #[command(
        subcommand,
        after_help = "Examples:
  swarm secret new team.key
  swarm seed ./data --secret-file team.key       every node of the swarm gets the same file
  swarm secret share-key                         a key for `swarm sync DIR --share KEY`"
    )]
    Secret(SecretCommand),
    /// Print a completion script for SHELL, e.g. `swarm completions bash >
    /// ~/.local/share/bash-completion/completions/swarm`.
    #[command(after_help = "Examples:
  swarm completions bash > ~/.local/share/bash-completion/completions/swarm
  swarm completions zsh > ~/.zfunc/_swarm")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages into DIR: swarm(1) and one per subcommand (swarm-fetch(1), …); with
    /// no DIR, print swarm(1) (roff).
    #[command(after_help = "Examples:
  swarm man ~/.local/share/man/man1     then `man swarm-fetch`
  swarm man | man -l -                  read the main page now")]
    Man {
        /// Where to write the pages (made if missing).
        dir: Option<PathBuf>,
    },
}

impl Command {
    /// Was JSON asked for? Then an error is printed as JSON on stdout too.
    pub fn wants_json(&self) -> bool {
        match self {
            Command::Seed(a) => a.json,
            Command::Sync(a) => a.json,
            Command::Fetch(a) => a.json,
            Command::Ls(a) => a.json,
            Command::Search(a) => a.query.json,
            Command::Peers(a) => a.query.json,
            Command::Status(a) => a.json,
            _ => false,
        }
    }
}

/// `swarm secret`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Write a new random secret to FILE (readable by you only; an existing file is kept).
    New {
        /// Where to write it.
        file: PathBuf,
    },
    /// Print a new share key for `swarm sync DIR --share KEY`: the read-write key, then its
    /// read-only key (for setting up many machines at once; `swarm sync DIR` alone makes one).
    ShareKey,
}

/// The HTTP port of a node or a tracker.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Serve a web view and a JSON API at http://HOST:PORT/ (a node: its transfers, peers,
    /// chunk maps, fetches started and cancelled, files readable while they download at
    /// /files/ID; a tracker: the whole swarm). Loopback only unless --http-public; in a
    /// private swarm, requests must carry the secret.
    #[arg(id = "http", long = "http", env = "SWARM_HTTP", value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Allow --http on an address other machines can reach.
    #[arg(id = "http_public", long = "http-public", env = "SWARM_HTTP_PUBLIC")]
    pub public: bool,
    /// Require this token on every request to --http and --metrics (`Authorization: Bearer TOKEN` or
    /// ?token=TOKEN); better given as SWARM_HTTP_TOKEN, out of sight of `ps`.
    #[arg(
        id = "http_token",
        long = "http-token",
        env = "SWARM_HTTP_TOKEN",
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// A host name --http answers to besides IP addresses and localhost (repeatable): the
    /// port refuses other names, as a web page reaching it under its own name would use.
    #[arg(
        id = "http_allow_host",
        long = "http-allow-host",
        env = "SWARM_HTTP_ALLOW_HOST",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub allow_hosts: Vec<String>,
}

/// Options every peer node takes.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// State directory (keys, known trackers, download progress). Give each node on one
    /// machine its own.
    #[arg(long, env = "SWARM_STATE")]
    pub state: Option<PathBuf>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (bytes moved, chunks verified and
    /// rejected, uploads, Busy answers, fetch times; the in-process tracker's too). A lone
    /// PORT means 127.0.0.1:PORT; in a private swarm, scrapers send the secret as a bearer token.
    #[arg(long, env = "SWARM_METRICS", value_name = "[HOST:]PORT", value_parser = parse_metrics_addr)]
    pub metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub http: HttpArgs,
    /// The private swarm's secret (made by `swarm secret new FILE`): only nodes that hold it
    /// are talked to, and they prove it on every connection. Without it, the swarm is open.
    #[arg(long, env = "SWARM_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Address of this node's QUIC endpoint.
    #[arg(long, env = "SWARM_LISTEN", default_value = "[::]:0")]
    pub listen: SocketAddr,
    /// Address other peers should use to reach this node (default: as the tracker sees it).
    #[arg(long, env = "SWARM_ADVERTISE")]
    pub advertise: Option<SocketAddr>,
    /// Cap on upload rate across all connections: bytes as 40MB/s or 512KiB/s, bits as
    /// 100Mbit/s, 100mbit or 100Mbps (a lone `Mb` is refused as ambiguous).
    #[arg(long, env = "SWARM_MAX_UPLOAD_RATE", value_parser = parse_rate)]
    pub max_upload_rate: Option<u64>,
    /// Cap on download rate across all downloads: bytes as 40MB/s, bits as 100Mbit/s.
    #[arg(long, env = "SWARM_MAX_DOWNLOAD_RATE", value_parser = parse_rate)]
    pub max_download_rate: Option<u64>,
    /// Neither answer the local network's queries for files held here (multicast on UDP
    /// 7071), nor ask it when the tracker is slow or gone.
    #[arg(long, env = "SWARM_NO_LAN")]
    pub no_lan: bool,
    /// Do not ask the router for a port (UPnP IGD) when behind a NAT.
    #[arg(long, env = "SWARM_NO_PORT_MAPPING")]
    pub no_port_mapping: bool,
}

/// `swarm tracker`
#[derive(Debug, Args)]
pub struct TrackerArgs {
    /// State directory (keys and the manifest catalogue).
    #[arg(long, env = "SWARM_STATE")]
    pub state: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "SWARM_LISTEN", default_value = "[::]:7070")]
    pub listen: SocketAddr,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (requests by kind with latencies,
    /// live peers, catalogue size, budget use, spot checks). A lone PORT means
    /// 127.0.0.1:PORT; in a private swarm, scrapers send the secret as a bearer token.
    #[arg(long, env = "SWARM_METRICS", value_name = "[HOST:]PORT", value_parser = parse_metrics_addr)]
    pub metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Drop peers silent for this long (e.g. 180s, 3m).
    #[arg(long, env = "SWARM_PEER_TIMEOUT", default_value = "180s", value_parser = parse_duration)]
    pub peer_timeout: Duration,
    /// Most the tracker keeps for one IP address (an IPv6 /64): its peers' sessions, the
    /// manifests it introduced and its holdings. Beyond it, announcements are refused.
    #[arg(long, env = "SWARM_BUDGET_PER_ADDRESS", default_value = "128MiB", value_parser = parse_size)]
    pub budget_per_address: u64,
    /// Most the tracker keeps in all.
    #[arg(long, env = "SWARM_BUDGET", default_value = "1GiB", value_parser = parse_size)]
    pub budget: u64,
    /// Forget a file's manifest once no live peer has held it for this long.
    #[arg(long, env = "SWARM_FORGET_AFTER", default_value = "1h", value_parser = parse_duration)]
    pub forget_after: Duration,
    /// The private swarm's secret (made by `swarm secret new FILE`): the tracker answers only
    /// nodes that prove they hold it. Without it, anyone who reaches the port is answered.
    #[arg(long, env = "SWARM_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Do not spot-check peers' claims (by default the tracker fetches one chunk of each
    /// announced claim, and one random claim every 10 s, and drops holders that lie).
    #[arg(long, env = "SWARM_NO_AUDITS")]
    pub no_audits: bool,
    /// Share the state with every tracker on this Redis (redis://HOST:PORT/DB), so that peers
    /// may use any of them; by default the state is this tracker's own (memory and --state).
    #[arg(long, env = "SWARM_STORE", value_name = "URL", value_parser = parse_store)]
    pub store: Option<String>,
    /// Relay between peers that cannot reach each other through their NATs, up to this many
    /// bytes per second in all (0: do not relay). What passes is encrypted end to end.
    #[arg(long, env = "SWARM_RELAY_RATE", default_value = "10MiB", value_name = "BYTES", value_parser = parse_size)]
    pub relay_rate: u64,
    /// Relay through `swarm relay` on another host instead (ID@HOST:PORT, as it printed it;
    /// started with --for this tracker's id): its rate applies, and this host carries none
    /// of the relayed traffic.
    #[arg(long, env = "SWARM_RELAY", value_name = "ID@HOST:PORT")]
    pub relay: Option<TrackerAddr>,
}

fn parse_share_key(s: &str) -> Result<ShareTicket, String> {
    s.parse::<ShareTicket>().map_err(|e| match e {
        swarm_proto::share_key::ShareKeyError::NotAKey => format!(
            "{e}. A share is named by its key since shares got write authority: run `swarm sync DIR` \
             once without --share to make one, and use the keys it prints"
        ),
        damaged => damaged.to_string(),
    })
}

fn parse_store(s: &str) -> Result<String, String> {
    if s.starts_with("redis://") || s.starts_with("rediss://") || s.starts_with("redis+unix://") {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` is not a Redis address: give redis://HOST:PORT/DB"))
    }
}

/// `swarm seed`
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The folder or file to share. With --url, the folder the URLs' files are kept in
    /// (default: `origins/` in the state directory), shared with whatever else it holds.
    #[arg(value_name = "PATH", required_unless_present = "urls")]
    pub dir: Option<PathBuf>,
    /// Read the file at this http:// or https:// URL into PATH, hashing it as it streams in,
    /// and share it (repeatable). The origin is read once: the swarm serves the copy. On a
    /// later start the copy is kept if the origin says it has not changed.
    #[arg(long = "url", env = "SWARM_URL", value_name = "URL")]
    pub urls: Vec<String>,
    #[command(flatten)]
    pub peer: PeerArgs,
    /// Also print a ticket for every file of the folder (the folder's own ticket fetches them all).
    #[arg(long, env = "SWARM_EACH")]
    pub each: bool,
    /// Print what is shared as JSON: the folder's collection and every file, with tickets.
    #[arg(long, env = "SWARM_JSON")]
    pub json: bool,
}

/// `swarm registry`
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The registry mirrored, as http://HOST:PORT or https://HOST (anonymous pulls).
    #[arg(long, env = "SWARM_UPSTREAM", value_name = "URL")]
    pub upstream: String,
    /// Where the mirror answers container runtimes (the OCI distribution API, pulls only;
    /// --listen is the node's own port, as for every command).
    #[arg(
        long,
        env = "SWARM_REGISTRY_SERVE",
        default_value = "127.0.0.1:5050",
        value_name = "HOST:PORT"
    )]
    pub serve: SocketAddr,
    /// Answer on an address other machines can reach (by default only loopback is taken).
    #[arg(long, env = "SWARM_REGISTRY_PUBLIC")]
    pub serve_public: bool,
    /// The folder blobs are kept in and shared from (default: `registry/` in the state directory).
    #[arg(long, env = "SWARM_REGISTRY_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub peer: PeerArgs,
}

/// What `swarm seed` and `swarm sync` share, and with which tracker.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// The folder to share (`swarm seed` also takes a single file).
    #[arg(value_name = "PATH")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub peer: PeerArgs,
}

/// A peer node that shares files, and its tracker.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// Tracker as HOST:PORT or ID@HOST:PORT; several trackers sharing one store as A,B,C (or
    /// the flag repeated). Without one, a tracker starts in-process.
    #[arg(long, env = "SWARM_TRACKER", value_delimiter = ',')]
    pub tracker: Vec<TrackerAddr>,
    /// Chunk size: a power of two from 64KiB to 16MiB.
    #[arg(long, env = "SWARM_CHUNK_SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Where the in-process tracker listens (only without --tracker).
    #[arg(long, env = "SWARM_TRACKER_LISTEN", default_value = "[::]:7070")]
    pub tracker_listen: SocketAddr,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `swarm shell`
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Directory to share; downloads land here too (default: the current directory).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub peer: PeerArgs,
}

/// `swarm sync`
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub share: ShareArgs,
    /// Join the share of this key (as printed by `swarm sync` on a member): `swarmrw1...`
    /// changes the share, `swarmro1...` follows it. Default: the folder's own share (kept in
    /// DIR/.swarm/share-key), or a new one.
    #[arg(long = "share", env = "SWARM_SHARE", value_name = "KEY", value_parser = parse_share_key)]
    pub share_key: Option<ShareTicket>,
    /// Keep files deleted or replaced by sync in DIR/.swarm/versions/ this long (e.g. 30d).
    #[arg(long, env = "SWARM_KEEP_VERSIONS", default_value = "30d", value_parser = parse_duration)]
    pub keep_versions: Duration,
    /// How often to compare the folder with the share's listing at the tracker.
    #[arg(long, env = "SWARM_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Share (or replace) a file only once it has not been modified for this long.
    #[arg(long, env = "SWARM_SETTLE", default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Rescan the whole folder this often, in case a change notification was missed.
    #[arg(long, env = "SWARM_RESCAN", default_value = "30s", value_parser = parse_duration)]
    pub rescan: Duration,
    /// Print what happens as JSON lines, for scripts.
    #[arg(long, env = "SWARM_JSON")]
    pub json: bool,
}

/// `swarm fetch`
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// A ticket (swarm3..., as `swarm seed` prints it: it names the trackers, and holders, too), a file or
    /// folder id, a unique prefix of at least 8 hex digits, or a name (exact, a folder's
    /// name, or the only one containing it).
    pub id: String,
    /// Tracker as HOST:PORT or ID@HOST:PORT; several trackers sharing one store as A,B,C (or
    /// the flag repeated). Given, it is used instead of a ticket's. Default: the ticket's, else
    /// the trackers last used from the state directory.
    #[arg(long, env = "SWARM_TRACKER", value_delimiter = ',')]
    pub tracker: Vec<TrackerAddr>,
    /// Directory to write into (a file lands at its name inside it, a folder as OUTPUT/NAME).
    #[arg(short = 'o', long = "output", env = "SWARM_OUTPUT", default_value = ".")]
    pub output: PathBuf,
    /// Fetch only from this peer (id, id prefix of 8+ hex digits, or HOST:PORT).
    #[arg(long, env = "SWARM_FROM")]
    pub from: Option<swarm_engine::PeerFilter>,
    /// Keep serving the file after it is complete, until Ctrl-C.
    #[arg(long, env = "SWARM_SEED")]
    pub seed: bool,
    /// Make the file readable over HTTP while it downloads: prints its URL first (on --http,
    /// or on a free loopback port), then fetches; ranges a player asks for are fetched first.
    /// Serves until Ctrl-C.
    #[arg(long, env = "SWARM_STREAM")]
    pub stream: bool,
    /// Replace an existing file whose content differs.
    #[arg(long, env = "SWARM_FORCE")]
    pub force: bool,
    /// Give up (exit code 6) if not done within this time, e.g. 10m.
    #[arg(long, env = "SWARM_TIMEOUT", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Reserve the file's whole size on disk before fetching, so that the disk cannot fill up
    /// halfway.
    #[arg(long, env = "SWARM_PREALLOCATE")]
    pub preallocate: bool,
    /// Write through the page cache instead of with direct I/O (may suit spinning disks better).
    #[arg(long, env = "SWARM_BUFFERED_IO")]
    pub buffered_io: bool,
    /// Of a folder, fetch only the files whose path matches GLOB (repeatable). `*` stays
    /// within a folder, `**` crosses them; a GLOB without `/` matches file names at any depth.
    #[arg(long, value_name = "GLOB", env = "SWARM_ONLY", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Show what a folder holds (path, size, id) and fetch nothing.
    #[arg(long, env = "SWARM_LIST")]
    pub list: bool,
    /// Files of a folder fetched at once.
    #[arg(long, env = "SWARM_PARALLEL", default_value_t = swarm_engine::collection::DEFAULT_PARALLEL)]
    pub parallel: usize,
    /// Print the result as JSON.
    #[arg(long, env = "SWARM_JSON")]
    pub json: bool,
    /// With --json: print progress as JSON lines (one a second) and the result as one last
    /// line, for scripts that follow a transfer.
    #[arg(long, env = "SWARM_PROGRESS", requires = "json")]
    pub progress: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Options of the catalogue queries.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Tracker as HOST:PORT or ID@HOST:PORT; several trackers sharing one store as A,B,C (or
    /// the flag repeated). Default: the trackers last used from the state directory (by a
    /// seed, sync, shell, fetch or query).
    #[arg(long, env = "SWARM_TRACKER", value_delimiter = ',')]
    pub tracker: Vec<TrackerAddr>,
    /// State directory (for the known-trackers file and the last tracker used).
    #[arg(long, env = "SWARM_STATE")]
    pub state: Option<PathBuf>,
    /// The private swarm's secret (made by `swarm secret new FILE`): only nodes that hold it
    /// are talked to, and they prove it on every connection. Without it, the swarm is open.
    #[arg(long, env = "SWARM_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, env = "SWARM_JSON")]
    pub json: bool,
}

/// `swarm relay`
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The trackers to relay for, by id (as `swarm tracker` prints it; ID@HOST:PORT works too).
    #[arg(
        long = "for",
        env = "SWARM_RELAY_FOR",
        value_delimiter = ',',
        required = true,
        value_name = "TRACKER"
    )]
    pub trackers: Vec<String>,
    /// State directory (the relay's key).
    #[arg(long, env = "SWARM_STATE")]
    pub state: Option<PathBuf>,
    /// Address to listen on; relay sessions take ephemeral UDP ports of the same IP.
    #[arg(long, env = "SWARM_LISTEN", default_value = "[::]:7072")]
    pub listen: SocketAddr,
    /// Bytes per second across all sessions (0: no cap).
    #[arg(long, env = "SWARM_RELAY_RATE", default_value = "10MiB", value_name = "BYTES", value_parser = parse_size)]
    pub rate: u64,
    /// The private swarm's secret, if the trackers are private.
    #[arg(long, env = "SWARM_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
}

/// `swarm doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// A ticket, file id or name whose holders to check (optional).
    pub id: Option<String>,
    /// Tracker as HOST:PORT or ID@HOST:PORT. Default: the ticket's, else the one last used.
    #[arg(long, env = "SWARM_TRACKER", value_delimiter = ',')]
    pub tracker: Vec<TrackerAddr>,
    /// The directory a fetch would write to: its free space and write speed are checked.
    #[arg(short = 'o', long = "output", env = "SWARM_OUTPUT", default_value = ".")]
    pub output: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `swarm search`
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Name, or part of a name (case-insensitive).
    pub name: String,
    /// Match the whole name exactly.
    #[arg(long, env = "SWARM_EXACT")]
    pub exact: bool,
    #[command(flatten)]
    pub query: QueryArgs,
}

/// `swarm peers`
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// A ticket, a file id, a unique prefix of at least 8 hex digits, or a name.
    pub id: String,
    #[command(flatten)]
    pub query: QueryArgs,
}

/// `swarm status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The node's state directory.
    #[arg(long, env = "SWARM_STATE")]
    pub state: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, env = "SWARM_JSON")]
    pub json: bool,
}

/// `swarm demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Size of the generated file.
    #[arg(long, env = "SWARM_DEMO_SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Number of seeders.
    #[arg(long, env = "SWARM_DEMO_SEEDERS", default_value_t = 4)]
    pub seeders: usize,
    /// Chunk size.
    #[arg(long, env = "SWARM_CHUNK_SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Work directory (default: a temporary one, removed afterwards).
    #[arg(long, env = "SWARM_DEMO_DIR")]
    pub dir: Option<PathBuf>,
}

/// A metrics address: `HOST:PORT`, or a lone `PORT` on loopback (what other machines may read
/// is asked for by naming an address).
pub fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("`{text}` is not PORT or HOST:PORT (as 9100, 127.0.0.1:9100 or 0.0.0.0:9100)"))
}

/// Parses sizes such as `1MiB`, `64KiB`, `1GB` or `4096`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{text}` is not a size like 1MiB: {e}"))
}

/// Parses rates into bytes per second. Bytes take a capital `B`: `40MB/s`, `1.5GB/s`,
/// `512KiB/s` (the `/s` may be left out). Bits are spelt out: `100Mbit/s`, `100mbit` (as `tc`
/// writes it), `100Mbps`. A lone lowercase `b` after a prefix (`100mb/s`, `100Mb/s`) is refused
/// as ambiguous: people mean bytes as often as bits by it.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let body = trimmed.strip_suffix("/s").unwrap_or(trimmed);
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, unit) = body.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a rate like 40MB/s or 100Mbit/s"))?;
    let unit = unit.trim();
    if unit.is_empty() {
        // `10` would be 10 bytes a second, a fetch that seems stuck: most mean megabytes.
        return Err(format!(
            "`{text}` has no unit: write {number}MB/s or {number}KiB/s for bytes, {number}Mbit/s for bits"
        ));
    }
    let lower = unit.to_ascii_lowercase();
    let scale = |prefix: &str| match prefix {
        "" => Some(1.0),
        "k" => Some(1e3),
        "m" => Some(1e6),
        "g" => Some(1e9),
        _ => None,
    };
    let bits = ["bit", "bits", "bps"]
        .iter()
        .find_map(|suffix| lower.strip_suffix(suffix).and_then(scale));
    let bytes = match bits {
        Some(scale) => number * scale / 8.0,
        None if unit.ends_with('b') && unit.len() <= 2 => {
            return Err(format!(
                "`{text}` is ambiguous: write {number}{}bit/s for bits or {number}{}B/s for bytes",
                &unit[..unit.len() - 1],
                unit[..unit.len() - 1].to_ascii_uppercase()
            ))
        }
        None => parse_size(&format!("{number}{unit}"))? as f64,
    };
    if bytes < 1.0 {
        return Err(format!("`{text}` is not a positive rate"));
    }
    Ok(bytes as u64)
}

/// Parses durations such as `180s`, `3m` or `1h30m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration like 180s: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_sizes() {
        assert_eq!(parse_rate("40MB/s").unwrap(), 40_000_000);
        assert_eq!(parse_rate("40MB").unwrap(), 40_000_000);
        assert_eq!(parse_rate("100Mbit/s").unwrap(), 12_500_000);
        assert_eq!(parse_rate("100mbit").unwrap(), 12_500_000);
        assert_eq!(parse_rate("100Mbps").unwrap(), 12_500_000);
        assert_eq!(parse_rate("1GiB/s").unwrap(), 1 << 30);
        assert_eq!(parse_rate("512KiB/s").unwrap(), 512 << 10);
        assert_eq!(parse_rate("8kbit").unwrap(), 1000);
        assert_eq!(parse_rate("1.5GB/s").unwrap(), 1_500_000_000);
        assert_eq!(parse_rate("4096B/s").unwrap(), 4096);
        let bare = parse_rate("10").unwrap_err();
        assert!(bare.contains("no unit") && bare.contains("10MB/s"), "{bare}");
        for ambiguous in ["100mb/s", "100Mb/s", "100kb", "1gb/s"] {
            let err = parse_rate(ambiguous).unwrap_err();
            assert!(err.contains("ambiguous") && err.contains("bit/s"), "{ambiguous}: {err}");
        }
        assert!(parse_rate("0MB/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10 parsecs").is_err());
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        use clap::CommandFactory;
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if !arg.is_positional() && id != "help" && id != "version" && arg.get_env().is_none() {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or(id)));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "swarm", &mut missing);
        assert!(missing.is_empty(), "flags without a SWARM_* variable: {missing:?}");
    }

    #[test]
    fn every_subcommand_shows_examples() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let without: Vec<&str> = cli
            .get_subcommands()
            .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
            .filter(|sub| {
                !sub.get_after_help()
                    .is_some_and(|h| h.to_string().contains("Examples:\n  swarm "))
            })
            .map(|sub| sub.get_name())
            .collect();
        assert!(without.is_empty(), "subcommands without examples: {without:?}");
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
