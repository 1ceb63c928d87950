//! From parsed arguments to the engine's and the tracker's configs, in one place and without
//! any network: what each flag becomes (unit-tested below).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use swarm_engine::{NodeConfig, Trackers};
use swarm_proto::access::{Access, SwarmKey};
use swarm_tracker::{RelayElsewhere, TrackerConfig};

use crate::args::{HttpArgs, NodeArgs, TrackerArgs};

/// The state directory used when --state is not given.
pub fn default_state(sub: &str) -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("swarm")
        .join(sub)
}

/// Who a node talks to: everyone, or the nodes that hold the secret in `file`.
pub fn access(file: &Option<PathBuf>) -> Result<Access> {
    Ok(match file {
        None => Access::Open,
        Some(path) => Access::Private(Arc::new(SwarmKey::from_file(path)?)),
    })
}

/// Most state directories tried beside the default one when it is in use.
const SPARE_STATES: u32 = 32;

/// A folder named `name` in the node's state directory (see [`node_state`]), which is then
/// fixed in `given`, so that the node and the folder share one state directory whichever it
/// is: `origins/` of `swarm seed --url`, `registry/` of `swarm registry`.
pub fn folder_in_node_state(given: &mut Option<PathBuf>, name: &str) -> PathBuf {
    let state = node_state(given);
    *given = Some(state.clone());
    state.join(name)
}

/// A node's state directory: --state, or the default one. When the default is in use by
/// another swarm process on this machine (a `swarm seed` running while its printed fetch
/// command is pasted in another terminal), the first free one beside it (`node-2`, `node-3`,
/// ...), with a note on stderr; a directory given with --state is used or refused, never
/// swapped.
pub fn node_state(given: &Option<PathBuf>) -> PathBuf {
    if let Some(dir) = given {
        return dir.clone();
    }
    let default = default_state("node");
    let mut in_use = None;
    for dir in std::iter::once(default.clone()).chain(spare_state_dirs()) {
        if std::fs::create_dir_all(&dir).is_err() {
            return default;
        }
        match swarm_proto::dir_lock::DirLock::acquire(&dir) {
            Err(swarm_proto::dir_lock::LockError::Held { holder, .. }) => {
                in_use.get_or_insert(holder);
            }
            // Free (the lock goes with this handle; the node takes it again), or a failure
            // that the node reports with its path when it starts.
            _ => {
                if let Some(holder) = in_use {
                    crate::note!(
                        "note: {} is in use ({holder}); this node keeps its state in {}",
                        default.display(),
                        dir.display()
                    );
                }
                return dir;
            }
        }
    }
    default
}

/// The state directories a node takes when the default one is busy: `node-2`, `node-3`, …
fn spare_state_dirs() -> impl Iterator<Item = PathBuf> {
    let default = default_state("node");
    (2..=SPARE_STATES).map(move |n| default.with_file_name(format!("node-{n}")))
}

/// Those of [`spare_state_dirs`] that exist.
pub fn spare_states() -> Vec<PathBuf> {
    spare_state_dirs().filter(|dir| dir.is_dir()).collect()
}

/// A node's config from its flags, joined to `tracker` (none for a node whose tracker is
/// chosen later, embedded or not).
pub fn node_config(args: &NodeArgs, tracker: Option<Trackers>) -> Result<NodeConfig> {
    Ok(NodeConfig {
        state_dir: node_state(&args.state),
        listen: args.listen,
        tracker,
        advertise: args.advertise,
        max_upload_rate: args.max_upload_rate,
        max_download_rate: args.max_download_rate,
        access: access(&args.secret_file)?,
        lan_discovery: !args.no_lan,
        port_mapping: !args.no_port_mapping,
    })
}

/// The HTTP port's options from its flags, on `listen`.
pub fn http_options(
    listen: std::net::SocketAddr,
    http: &HttpArgs,
    secret_file: &Option<PathBuf>,
) -> Result<swarm_engine::http::HttpOptions> {
    Ok(swarm_engine::http::HttpOptions {
        listen,
        public: http.public,
        access: access(secret_file)?,
        token: http.token.clone(),
        allow_hosts: http.allow_hosts.clone(),
    })
}

/// The metrics port's options: the HTTP port's guard; a loopback address answers its own
/// names only (as `--http` does), an address other machines can reach was asked for on
/// purpose and answers whatever name a scraper uses.
pub fn metrics_options(
    listen: SocketAddr,
    secret_file: &Option<PathBuf>,
    http: &HttpArgs,
) -> Result<swarm_engine::http::HttpOptions> {
    let mut allow_hosts = http.allow_hosts.clone();
    if !listen.ip().is_loopback() {
        allow_hosts.push("*".into());
    }
    Ok(swarm_engine::http::HttpOptions {
        listen,
        public: true,
        access: access(secret_file)?,
        token: http.token.clone(),
        allow_hosts,
    })
}

/// A tracker's config from its flags; `relay_elsewhere` is the relay `--relay` names, once
/// its address is resolved.
pub fn tracker_config(args: &TrackerArgs, relay_elsewhere: Option<RelayElsewhere>) -> Result<TrackerConfig> {
    Ok(TrackerConfig {
        state_dir: args.state.clone().unwrap_or_else(|| default_state("tracker")),
        listen: args.listen,
        peer_timeout: args.peer_timeout,
        budgets: swarm_tracker::Budgets {
            per_address: args.budget_per_address,
            total: args.budget,
            forget_after: args.forget_after,
        },
        audits: swarm_tracker::Audits {
            enabled: !args.no_audits,
            ..Default::default()
        },
        access: access(&args.secret_file)?,
        store: args
            .store
            .clone()
            .map_or(swarm_tracker::StoreConfig::Embedded, swarm_tracker::StoreConfig::Redis),
        // 0 turns the relay off.
        relay_rate: std::num::NonZeroU32::new(args.relay_rate.min(u64::from(u32::MAX)) as u32),
        relay_elsewhere,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn parsed(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("swarm").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    #[test]
    fn a_fetch_s_flags_become_its_node_config() {
        let Command::Fetch(args) = parsed(&[
            "fetch",
            "abcd1234",
            "--state",
            "/tmp/n1",
            "--listen",
            "127.0.0.1:7000",
            "--max-upload-rate",
            "40MB/s",
            "--max-download-rate",
            "8Mbit/s",
            "--no-lan",
        ]) else {
            panic!("not a fetch")
        };
        let config = node_config(&args.node, None).unwrap();
        assert_eq!(config.state_dir, PathBuf::from("/tmp/n1"));
        assert_eq!(config.listen, "127.0.0.1:7000".parse::<SocketAddr>().unwrap());
        assert_eq!(config.max_upload_rate, Some(40_000_000));
        assert_eq!(config.max_download_rate, Some(1_000_000));
        assert!(!config.lan_discovery);
        assert!(config.port_mapping);
        assert!(matches!(config.access, Access::Open));
        assert!(config.tracker.is_none());
    }

    #[test]
    fn defaults_listen_on_both_families_and_find_the_lan() {
        let Command::Fetch(args) = parsed(&["fetch", "abcd1234", "--state", "/tmp/n2"]) else {
            panic!("not a fetch")
        };
        let config = node_config(&args.node, None).unwrap();
        assert_eq!(config.listen.ip(), std::net::Ipv6Addr::UNSPECIFIED);
        assert!(config.lan_discovery && config.port_mapping);
        assert_eq!((config.max_upload_rate, config.max_download_rate), (None, None));
    }

    #[test]
    fn a_missing_secret_file_is_an_error_that_names_it() {
        let Command::Fetch(args) = parsed(&[
            "fetch",
            "abcd1234",
            "--state",
            "/tmp/n3",
            "--secret-file",
            "/nonexistent/swarm.secret",
        ]) else {
            panic!("not a fetch")
        };
        let error = node_config(&args.node, None).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/swarm.secret"), "{error}");
    }

    #[test]
    fn a_tracker_s_flags_become_its_config() {
        let Command::Tracker(args) = parsed(&[
            "tracker",
            "--state",
            "/tmp/t1",
            "--no-audits",
            "--relay-rate",
            "0",
            "--store",
            "redis://10.0.0.5:6379/0",
        ]) else {
            panic!("not a tracker")
        };
        let config = tracker_config(&args, None).unwrap();
        assert_eq!(config.state_dir, PathBuf::from("/tmp/t1"));
        assert!(!config.audits.enabled);
        assert_eq!(config.relay_rate, None, "--relay-rate 0 turns the relay off");
        assert!(matches!(config.store, swarm_tracker::StoreConfig::Redis(ref url) if url == "redis://10.0.0.5:6379/0"));
        let Command::Tracker(args) = parsed(&["tracker", "--state", "/tmp/t2"]) else {
            panic!("not a tracker")
        };
        let config = tracker_config(&args, None).unwrap();
        assert!(config.audits.enabled);
        assert!(config.relay_rate.is_some());
        assert!(matches!(config.store, swarm_tracker::StoreConfig::Embedded));
    }

    #[test]
    fn the_metrics_port_answers_any_name_only_where_others_reach_it() {
        let Command::Fetch(args) = parsed(&["fetch", "abcd1234"]) else {
            panic!("not a fetch")
        };
        let http = args.node.http;
        let local = metrics_options("127.0.0.1:9100".parse().unwrap(), &None, &http).unwrap();
        assert!(!local.allow_hosts.iter().any(|h| h == "*"));
        let public = metrics_options("0.0.0.0:9100".parse().unwrap(), &None, &http).unwrap();
        assert!(public.allow_hosts.iter().any(|h| h == "*"));
    }
}
