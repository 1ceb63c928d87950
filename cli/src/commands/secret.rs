//! `swarm secret`: a private swarm's secret and share keys.

use anyhow::Result;
use swarm_proto::access::SwarmKey;
use swarm_proto::share_key::{ShareKey, ShareTicket};

use crate::args::SecretCommand;

/// `swarm secret new FILE`
pub fn secret(command: SecretCommand) -> Result<()> {
    match command {
        SecretCommand::New { file } => {
            SwarmKey::create_file(&file)?;
            crate::out!(
                "wrote a new swarm secret to {}; give it to every node of the swarm (--secret-file {} or SWARM_SECRET_FILE) and to nobody else",
                file.display(),
                file.display()
            );
            Ok(())
        }
        SecretCommand::ShareKey => {
            let key = ShareKey::ReadWrite(swarm_proto::share_key::WriteKey::generate());
            for key in [key.clone(), key.read_only()] {
                let ticket = ShareTicket {
                    key,
                    trackers: Vec::new(),
                };
                crate::out!("{ticket}");
            }
            Ok(())
        }
    }
}
