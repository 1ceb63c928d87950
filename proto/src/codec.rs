//! The one place bincode is used: message payloads on the wire and local records (sled), both
//! in bincode 2's standard configuration, decoded with a size limit so that no input can make
//! the decoder allocate more than [`LIMIT`].
//!
//! File ids do not depend on bincode: a manifest's canonical encoding is written by hand
//! ([`crate::manifest::Manifest::canonical_bytes`]), so a serializer's release can never change
//! an id. bincode is unmaintained for good (RUSTSEC-2025-0141; 3.0.0 is a deliberate compile
//! error); keeping it behind this module makes it a one-file change to replace.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Most bytes one decoded value may claim: 16 MiB, the largest frame
/// ([`crate::protocol::MAX_FRAME`]).
pub const LIMIT: usize = 16 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

/// `value` encoded, appended to `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    bincode::serde::encode_into_std_write(value, out, config()).expect("writing to a Vec cannot fail");
}

/// `value` encoded.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Most bytes one decoded store record may claim ([`decode_record`]): 1 GiB.
pub const RECORD_LIMIT: usize = 1 << 30;

/// Decodes `bytes`, which must hold exactly one value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_with(bytes, config())
}

/// Decodes one record that a tracker keeps in its own store (a state snapshot, which can be far
/// larger than a frame), with [`RECORD_LIMIT`] in place of [`LIMIT`].
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_with(bytes, bincode::config::standard().with_limit::<RECORD_LIMIT>())
}

fn decode_with<T: DeserializeOwned>(bytes: &[u8], config: impl bincode::config::Config) -> Result<T, DecodeError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config).map_err(|e| DecodeError(e.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError(format!("{} trailing bytes", bytes.len() - used)));
    }
    Ok(value)
}
