//! Which congestion controller a node's QUIC connections use. quinn ships three; the default
//! (CUBIC on the local network, BBR under a loss bound beyond, in `transport`) was chosen by
//! measuring them through `wan-relay` (`just wan`) and on the namespace scenarios.
//! `SWARM_CONGESTION` (`cubic`, `newreno`, `bbr`, `bbr-bound` or `by-path`) overrides it, for
//! measuring them again.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::{BbrConfig, ControllerFactory, CubicConfig, NewRenoConfig};

use crate::by_path::{ByPath, ByPathConfig};
use crate::loss_bound::{LossBound, LossBoundConfig};

/// The environment variable that overrides the controller.
pub const CONGESTION_ENV: &str = "SWARM_CONGESTION";

/// A congestion controller quinn provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Congestion {
    /// CUBIC (RFC 9438), quinn's default.
    Cubic,
    /// NewReno (RFC 9002's example).
    NewReno,
    /// BBR (quinn's experimental version 1).
    Bbr,
    /// BBR under a bound on what is in flight when a round trip loses more than 2%
    /// ([`crate::loss_bound`], as BBR version 2 does).
    BbrLossBound,
    /// CUBIC with peers on the local network, BBR under the loss bound with the others
    /// ([`crate::by_path`]).
    ByPath,
}

impl Congestion {
    /// The controller to use: [`CONGESTION_ENV`] if set, else `default`. An unknown name is
    /// said in a warning and `default` is used.
    pub fn from_env_or(default: Congestion) -> Congestion {
        let Ok(name) = std::env::var(CONGESTION_ENV) else {
            return default;
        };
        name.parse().unwrap_or_else(|why| {
            tracing::warn!("{CONGESTION_ENV}: {why}; using {default:?}");
            default
        })
    }

    /// What quinn needs to build one controller per connection, for a connection with `peer`
    /// (`None`: not known yet, as for the settings connections are accepted with by default).
    pub fn factory(self, peer: Option<SocketAddr>) -> Arc<dyn ControllerFactory + Send + Sync + 'static> {
        match self {
            Congestion::Cubic => {
                let mut cubic = CubicConfig::default();
                if let Some(local) = peer.filter(|peer| crate::by_path::is_local(peer.ip())) {
                    cubic.initial_window(crate::by_path::near_initial_window(local));
                }
                Arc::new(cubic)
            }
            Congestion::NewReno => Arc::new(NewRenoConfig::default()),
            Congestion::Bbr => Arc::new(BbrConfig::default()),
            Congestion::BbrLossBound => Arc::new(LossBoundConfig::new(Arc::new(BbrConfig::default()))),
            Congestion::ByPath => Arc::new(ByPathConfig::new(
                peer,
                Congestion::Cubic.factory(peer),
                Congestion::BbrLossBound.factory(peer),
            )),
        }
    }
}

impl FromStr for Congestion {
    type Err = String;

    fn from_str(name: &str) -> Result<Congestion, String> {
        match name.to_ascii_lowercase().as_str() {
            "cubic" => Ok(Congestion::Cubic),
            "newreno" | "reno" => Ok(Congestion::NewReno),
            "bbr" => Ok(Congestion::Bbr),
            "bbr-bound" => Ok(Congestion::BbrLossBound),
            "by-path" => Ok(Congestion::ByPath),
            other => Err(format!(
                "no congestion controller {other:?}: cubic, newreno, bbr, bbr-bound or by-path"
            )),
        }
    }
}

/// The shortest round trip `connection`'s path has shown: its controller's, if it keeps one
/// ([`ByPath`], [`LossBound`]) and has seen an acknowledgement, else the smoothed round trip
/// (which counts whatever queueing the path has now).
pub fn min_rtt(connection: &quinn::Connection) -> Duration {
    let state = connection.congestion_state().into_any();
    let kept = match state.downcast::<ByPath>() {
        Ok(by_path) => by_path.min_rtt(),
        Err(state) => state.downcast::<LossBound>().ok().and_then(|bound| bound.min_rtt()),
    };
    kept.unwrap_or_else(|| connection.rtt())
}
