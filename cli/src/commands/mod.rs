//! One function per subcommand, by family: turn arguments into engine configs, call the engine,
//! print. What several commands share is in `setup`.

mod demo;
mod doctor;
mod fetch;
mod query;
mod registry;
mod secret;
mod setup;
mod share;
mod tracker;

pub use demo::demo;
pub use doctor::doctor;
pub use fetch::fetch;
pub use query::{ls, peers, search, status};
pub use registry::registry;
pub use secret::secret;
pub use share::{seed, sync, Sharing};
pub use tracker::{relay, tracker};

/// `swarm man DIR`: swarm(1) and a page per subcommand, written into `dir`; says which.
pub fn man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    clap_mangen::generate_to(crate::args::Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("swarm") && name.ends_with(".1"))
        .collect();
    pages.sort();
    crate::out!("{} man page(s) in {}: {}", pages.len(), dir.display(), pages.join(" "));
    Ok(())
}
