//! Which congestion controller a node's QUIC connections use. quinn ships three; the default
//! (BBR, in `transport`) was chosen by measuring them through `wan-relay` (`just wan`).
//! `SWARM_CONGESTION` (`cubic`, `newreno` or `bbr`) overrides it, for measuring them again.

use std::str::FromStr;
use std::sync::Arc;

use quinn::congestion::{BbrConfig, ControllerFactory, CubicConfig, NewRenoConfig};

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
            other => Err(format!("no congestion controller {other:?}: cubic, newreno or bbr")),
        }
    }
}
