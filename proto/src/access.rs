//! Who may talk to a node: anyone (an open swarm, the default), or only nodes that prove they
//! hold the swarm's secret (a private swarm).
//!
//! # The proof
//! A private swarm's nodes share a secret file; its key is derived from the file with BLAKE3
//! (`derive_key`), and the secret itself never crosses the wire. Private nodes negotiate the
//! ALPN [`PRIVATE_ALPN`]. Right after the TLS handshake, on the connection's first stream, the
//! client sends a [`Proof`]: BLAKE3 keyed with the swarm key over 32 bytes of keying material
//! exported from *this* TLS session for the client's role; the server checks it, then answers
//! with its own proof for the server's role, which the client checks. A proof is worth nothing
//! on another connection (other keying material), or reflected back (other role).
//!
//! # Refusals
//! A node accepts both ALPNs so that it can say what is wrong: a private node closes a
//! connection made without a proof with [`crate::protocol::CloseCode::Unauthorized`] and a
//! sentence saying the swarm is private; an open node does the same to a client that expects a
//! private swarm. A wrong proof is refused the same way. A node's own key (`swarm status` on
//! its machine) needs no proof: it proves more than the secret does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::Connection;
use serde::{Deserialize, Serialize};

use crate::protocol::{self, CloseCode};

/// ALPN of a private swarm's nodes.
pub const PRIVATE_ALPN: &[u8] = b"swarm/5+private";
/// Context string of the key derivation (changing it changes every swarm key).
const KEY_CONTEXT: &str = "swarm 2026 private swarm key v1";
/// Label of the keying material exported from a TLS session for a proof.
const EXPORT_LABEL: &[u8] = b"EXPORTER-swarm-private-swarm";
/// How long a server waits for a client's proof.
pub const PROOF_TIMEOUT: Duration = Duration::from_secs(5);
/// Fewest bytes a secret file may hold.
const MIN_SECRET: usize = 16;

/// Who may talk to a node.
#[derive(Clone, Default)]
pub enum Access {
    /// Anyone who reaches its port.
    #[default]
    Open,
    /// Only nodes that prove they hold this swarm's secret.
    Private(Arc<SwarmKey>),
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Open => f.write_str("Open"),
            Access::Private(_) => f.write_str("Private"),
        }
    }
}

/// A private swarm's key, derived from its secret file.
pub struct SwarmKey([u8; 32]);

/// Why a secret file could not be used or made.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Reading or writing it failed.
    #[error("secret file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// It holds too little to be a secret.
    #[error("secret file {} holds {len} bytes; a secret needs at least {MIN_SECRET} (make one with `swarm secret new FILE`)", path.display())]
    TooShort {
        /// The file.
        path: PathBuf,
        /// What it holds.
        len: usize,
    },
}

/// Which side of a connection a proof speaks for.
#[derive(Debug, Clone, Copy)]
enum Role {
    Client,
    Server,
}

/// What each side sends on a private connection's first stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// BLAKE3 keyed with the swarm key over the session's keying material for the sender's role.
    pub mac: [u8; 32],
}

impl SwarmKey {
    /// A tag of `data` only holders of this key can make or recognise, for the purpose named
    /// by `context` (a subkey per purpose, derived from this one).
    pub fn tag(&self, context: &str, data: &[u8]) -> [u8; 32] {
        let subkey = blake3::derive_key(context, &self.0);
        *blake3::keyed_hash(&subkey, data).as_bytes()
    }

    /// The key of the secret in `path` (leading and trailing white space ignored).
    pub fn from_file(path: &Path) -> Result<SwarmKey, SecretError> {
        let bytes = std::fs::read(path).map_err(|source| SecretError::Io {
            path: path.to_owned(),
            source,
        })?;
        let secret = bytes.trim_ascii();
        if secret.len() < MIN_SECRET {
            return Err(SecretError::TooShort {
                path: path.to_owned(),
                len: secret.len(),
            });
        }
        Ok(SwarmKey(blake3::derive_key(KEY_CONTEXT, secret)))
    }

    /// Writes a new random secret (256 bits, as hex) to `path`, readable by its owner only;
    /// an existing file is never replaced.
    pub fn create_file(path: &Path) -> Result<(), SecretError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| SecretError::Io {
            path: path.to_owned(),
            source,
        };
        let secret: [u8; 32] = rand::random();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        writeln!(file, "{}", crate::ids::hex(&secret)).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Is `text` (white space around it ignored) this swarm's secret? For HTTP clients that
    /// give the secret as a bearer token. Compares derived keys, in constant time.
    pub fn is_secret(&self, text: &str) -> bool {
        let given = blake3::derive_key(KEY_CONTEXT, text.trim().as_bytes());
        blake3::Hash::from(given) == blake3::Hash::from(self.0)
    }

    fn proof(&self, connection: &Connection, role: Role) -> Option<Proof> {
        let mut material = [0u8; 32];
        let context: &[u8] = match role {
            Role::Client => b"client",
            Role::Server => b"server",
        };
        connection
            .export_keying_material(&mut material, EXPORT_LABEL, context)
            .ok()?;
        Some(Proof {
            mac: *blake3::keyed_hash(&self.0, &material).as_bytes(),
        })
    }

    fn verify(&self, connection: &Connection, role: Role, proof: &Proof) -> bool {
        // blake3::Hash compares in constant time.
        self.proof(connection, role)
            .is_some_and(|mine| blake3::Hash::from(mine.mac) == blake3::Hash::from(proof.mac))
    }
}

/// The ALPN a node with this access offers as a client.
pub fn alpn_of(access: &Access) -> &'static [u8] {
    match access {
        Access::Open => protocol::ALPN,
        Access::Private(_) => PRIVATE_ALPN,
    }
}

/// Was `connection` negotiated with the private ALPN?
fn is_private(connection: &Connection) -> bool {
    connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol)
        .is_some_and(|alpn| alpn == PRIVATE_ALPN)
}

/// Client side, right after the handshake: proves the secret and checks the server's proof.
/// Returns the sentence to report if the server is not of this private swarm.
pub async fn prove_as_client(connection: &Connection, key: &SwarmKey) -> Result<(), String> {
    let exchange = async {
        let mine = key.proof(connection, Role::Client).ok_or("no keying material")?;
        let failed = |e: String| match connection.close_reason() {
            Some(reason) => reason.to_string(),
            None => e,
        };
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| failed(e.to_string()))?;
        send.write_all(&protocol::encode_frame(&mine))
            .await
            .map_err(|e| failed(e.to_string()))?;
        let _ = send.finish();
        let answer: Proof = protocol::read_frame(&mut recv, 64)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if key.verify(connection, Role::Server, &answer) {
            Ok(())
        } else {
            Err("the node does not hold this swarm's secret".to_owned())
        }
    };
    match tokio::time::timeout(PROOF_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err("no answer to the proof of the swarm's secret".to_owned()),
    }
}

/// Server side, right after the handshake with a node other than itself: lets the
/// connection on only if it is of this swarm (open, or private with a good proof); otherwise
/// closes it with a sentence saying why.
pub async fn admit(connection: &Connection, access: &Access) -> bool {
    let refuse = |why: &str| {
        connection.close(CloseCode::Unauthorized.code(), why.as_bytes());
        false
    };
    match (access, is_private(connection)) {
        (Access::Open, false) => true,
        (Access::Open, true) => {
            refuse("this node is in an open swarm, not a private one: drop --secret-file to talk to it")
        }
        (Access::Private(_), false) => refuse(
            "this swarm is private: only nodes started with its --secret-file (SWARM_SECRET_FILE) may talk to it",
        ),
        (Access::Private(key), true) => {
            let checked = async {
                let (mut send, mut recv) = connection.accept_bi().await.ok()?;
                let proof: Proof = protocol::read_frame(&mut recv, 64).await.ok()?;
                if !key.verify(connection, Role::Client, &proof) {
                    return Some(false);
                }
                let mine = key.proof(connection, Role::Server)?;
                send.write_all(&protocol::encode_frame(&mine)).await.ok()?;
                let _ = send.finish();
                Some(true)
            };
            match tokio::time::timeout(PROOF_TIMEOUT, checked).await {
                Ok(Some(true)) => true,
                Ok(Some(false)) => refuse("wrong swarm secret: this node's private swarm has another --secret-file"),
                _ => refuse("no proof of the swarm's secret"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_made_private_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm.secret");
        SwarmKey::create_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let before = std::fs::read(&path).unwrap();
        assert!(SwarmKey::create_file(&path).is_err(), "an existing secret is kept");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let a = SwarmKey::from_file(&path).unwrap();
        std::fs::write(
            dir.path().join("copy"),
            format!("  {}\n\n", String::from_utf8(before).unwrap().trim()),
        )
        .unwrap();
        let b = SwarmKey::from_file(&dir.path().join("copy")).unwrap();
        assert_eq!(a.0, b.0, "white space around the secret does not matter");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(a.is_secret(&text) && a.is_secret(text.trim()));
        assert!(!a.is_secret("") && !a.is_secret(&text.trim().replace('a', "b").replace('1', "2")));
        std::fs::write(dir.path().join("short"), "tiny").unwrap();
        assert!(matches!(
            SwarmKey::from_file(&dir.path().join("short")),
            Err(SecretError::TooShort { .. })
        ));
    }
}
