//! Identifiers: 32-byte BLAKE3 digests wrapped in newtypes so that a file id can never be
//! passed where a peer id is expected. All of them print as lowercase hex and have a short
//! form (the first 8 hex digits) for logs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Fewest hex digits accepted as an id prefix on the command line.
pub const MIN_PREFIX_LEN: usize = 8;

macro_rules! digest_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The first 8 hex digits, for log lines and tables.
            pub fn short(&self) -> String {
                hex(&self.0[..4])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s).map($name)
            }
        }

        impl From<blake3::Hash> for $name {
            fn from(hash: blake3::Hash) -> Self {
                $name(*hash.as_bytes())
            }
        }
    };
}

digest_id!(
    /// Identifies a file: the BLAKE3 hash of its manifest's canonical encoding.
    FileId
);
digest_id!(
    /// Identifies a node (peer or tracker): the BLAKE3 hash of its TLS public key.
    PeerId
);
digest_id!(
    /// Identifies a share: the Ed25519 public key that signs its changes
    /// ([`crate::share_key`]).
    ShareId
);
digest_id!(
    /// A BLAKE3 digest of content: a chunk's chaining value or a file's global hash.
    Digest
);

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a 64-digit hex id")]
pub struct ParseIdError {
    input: String,
}

/// 32 bytes from 64 hex digits (either case), as ids and digests are written.
pub fn parse_hex32(s: &str) -> Result<[u8; 32], ParseIdError> {
    let err = || ParseIdError {
        input: s.chars().take(80).collect(),
    };
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return Err(err());
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0]).ok_or_else(err)? << 4 | nibble(pair[1]).ok_or_else(err)?;
    }
    Ok(out)
}

/// The value of one hex digit; nothing else (no sign, no space) is a digit.
fn nibble(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|v| v as u8)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Is `s` a plausible id prefix (8 to 64 hex digits)?
pub fn is_id_prefix(s: &str) -> bool {
    (MIN_PREFIX_LEN..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = FileId(blake3::hash(b"x").into());
        let parsed: FileId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        assert_eq!(id.short().len(), 8);
        assert!(id.to_string().starts_with(&id.short()));
    }

    #[test]
    fn rejects_bad_hex() {
        assert!("zz".parse::<FileId>().is_err());
        assert!("g".repeat(64).parse::<FileId>().is_err());
        assert!("é".repeat(32).parse::<FileId>().is_err());
        // from_str_radix would take a sign: "+0" is not two hex digits.
        assert!("+0".repeat(32).parse::<FileId>().is_err());
        assert!(" 0".repeat(32).parse::<FileId>().is_err());
        let upper = "AB".repeat(32);
        assert_eq!(upper.parse::<FileId>().unwrap(), FileId([0xab; 32]));
    }

    #[test]
    fn prefix_rules() {
        assert!(is_id_prefix("0123abcd"));
        assert!(!is_id_prefix("0123abc"));
        assert!(!is_id_prefix("0123abcx"));
    }
}
