//! One function per subcommand, by family: turn arguments into engine configs, call the engine,
//! print. What several commands share is in `setup`.

mod demo;
mod fetch;
mod query;
mod secret;
mod setup;
mod share;
mod tracker;

pub use demo::demo;
pub use fetch::fetch;
pub use query::{ls, peers, search, status};
pub use secret::secret;
pub use share::{seed, sync, Sharing};
pub use tracker::tracker;
