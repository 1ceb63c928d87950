//! Which congestion controller a node's QUIC connections use. quinn ships three; the default
//! (BBR under a loss bound, in `transport`) was chosen by measuring them through `wan-relay`
//! (`just wan`) and on the hundred-host namespace scenario.
//! `SWARM_CONGESTION` (`cubic`, `newreno`, `bbr` or `bbr-bound`) overrides it, for measuring
//! them again.

use std::str::FromStr;
use std::sync::Arc;

use quinn::congestion::{BbrConfig, ControllerFactory, CubicConfig, NewRenoConfig};

use crate::loss_bound::LossBoundConfig;

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

    /// What quinn needs to build one controller per connection.
    pub fn factory(self) -> Arc<dyn ControllerFactory + Send + Sync + 'static> {
        match self {
            Congestion::Cubic => Arc::new(CubicConfig::default()),
            Congestion::NewReno => Arc::new(NewRenoConfig::default()),
            Congestion::Bbr => Arc::new(BbrConfig::default()),
            Congestion::BbrLossBound => Arc::new(LossBoundConfig::new(Arc::new(BbrConfig::default()))),
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
            other => Err(format!(
                "no congestion controller {other:?}: cubic, newreno, bbr or bbr-bound"
            )),
        }
    }
}
