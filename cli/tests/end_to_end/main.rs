//! The `swarm` binary end to end, as people use it: each module is one area (its own doc says
//! what it drives). One test binary for them all, so that it is linked once and the slow
//! tests of one area run beside those of another.

mod common;

mod cli;
mod devtools;
mod faults;
mod http;
mod lan;
mod metrics;
mod nat;
mod origins;
mod private;
mod redis_trackers;
mod registry;
mod resume;
mod scripting;
mod shell;
mod sync;
mod tracker_limits;
mod unreadable;
mod web_view;
