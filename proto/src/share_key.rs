//! Share keys: who may change a share, and the changes they sign.
//!
//! A share is an Ed25519 key pair made by the first node that syncs the folder. Its public key
//! is the share's id ([`ShareId`]): every member and the tracker know it, and check with it
//! that every change ([`SignedChange`]) was signed by the share's secret key before they act on
//! it. Whoever holds the secret, the *read-write key*, may put and delete any path of the
//! share; whoever holds only the id, the *read-only key*, may follow it. Neither an outsider
//! who learns the id nor a lying tracker can forge a change; they can only replay changes that
//! were signed, and those lose to anything newer ([`crate::share`]).
//!
//! Keys print as `swarmrw1…` (read-write) and `swarmro1…` (read-only), followed by the
//! lowercase base32 of the key and, optionally, the trackers that keep the share: one string
//! that `swarm sync DIR --share KEY` takes, as a ticket does for `swarm fetch`. The signed
//! bytes are a fixed domain tag, the share id and the change's encoding
//! ([`SignedChange::signed_bytes`]), pinned by golden tests.
//!
//! ring does the Ed25519 arithmetic: a signature scheme is not written by hand.

use std::fmt;
use std::str::FromStr;

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec;
use crate::ids::{FileId, ShareId};
use crate::meta::FileMeta;
use crate::ticket::{TicketTracker, MAX_TRACKERS};

/// What a read-write key starts with.
pub const READ_WRITE_PREFIX: &str = "swarmrw1";
/// What a read-only key starts with.
pub const READ_ONLY_PREFIX: &str = "swarmro1";
/// What every signed change's bytes start with, so that a share key's signature can never be
/// taken for a signature of anything else.
const DOMAIN: &[u8] = b"swarm share change 1\0";

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", crate::ids::hex(&self.0[..4]))
    }
}

// serde derives arrays up to 32 elements only: 64 bytes are written as a tuple, which bincode
// encodes as the bytes themselves.
impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(64)?;
        for byte in &self.0 {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Signature, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 bytes of signature")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Signature, A::Error> {
                let mut out = [0u8; 64];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(Signature(out))
            }
        }
        deserializer.deserialize_tuple(64, Bytes)
    }
}

/// A change a sync node saw in its folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareChange {
    /// The file at `name` is now this version (the tracker must list it, under that name).
    Put {
        /// The path in the share.
        name: String,
        /// The version.
        file: FileId,
        /// Its modification time and the version it replaced.
        meta: FileMeta,
    },
    /// The file at `name`, version `was`, was deleted.
    Delete {
        /// The path in the share.
        name: String,
        /// The version deleted.
        was: FileId,
        /// When the deletion was seen, nanoseconds since the Unix epoch.
        deleted_ns: u64,
    },
}

impl ShareChange {
    /// The path the change is about.
    pub fn name(&self) -> &str {
        match self {
            ShareChange::Put { name, .. } | ShareChange::Delete { name, .. } => name,
        }
    }

    /// When it happened, nanoseconds since the Unix epoch: a version's modification time, or
    /// when a deletion was seen.
    pub fn stamp(&self) -> u64 {
        match self {
            ShareChange::Put { meta, .. } => meta.modified_ns,
            ShareChange::Delete { deleted_ns, .. } => *deleted_ns,
        }
    }
}

/// A change to a share with the share key's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedChange {
    /// The change.
    pub change: ShareChange,
    /// Ed25519 signature by the share's key over [`SignedChange::signed_bytes`].
    pub signature: Signature,
}

impl SignedChange {
    /// The bytes a share key signs for `change` to `share`.
    pub fn signed_bytes(share: &ShareId, change: &ShareChange) -> Vec<u8> {
        let mut bytes = DOMAIN.to_vec();
        bytes.extend_from_slice(share.as_bytes());
        codec::encode_into(change, &mut bytes);
        bytes
    }

    /// Was this change signed by the key of `share`?
    pub fn verify(&self, share: &ShareId) -> bool {
        UnparsedPublicKey::new(&ED25519, share.as_bytes())
            .verify(&Self::signed_bytes(share, &self.change), &self.signature.0)
            .is_ok()
    }
}

/// The secret of a share: it signs changes.
pub struct WriteKey {
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl WriteKey {
    /// A new, random share key.
    pub fn generate() -> WriteKey {
        WriteKey::from_seed(rand::random()).expect("any 32 bytes are an Ed25519 seed")
    }

    /// The key of this 32-byte secret.
    pub fn from_seed(seed: [u8; 32]) -> Result<WriteKey, ShareKeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| ShareKeyError::Damaged("not an Ed25519 key".into()))?;
        Ok(WriteKey { seed, pair })
    }

    /// The share's id: the public key.
    pub fn id(&self) -> ShareId {
        let mut id = [0; 32];
        id.copy_from_slice(self.pair.public_key().as_ref());
        ShareId(id)
    }

    /// `change`, signed.
    pub fn sign(&self, change: ShareChange) -> SignedChange {
        let signature = self.pair.sign(&SignedChange::signed_bytes(&self.id(), &change));
        let mut bytes = [0; 64];
        bytes.copy_from_slice(signature.as_ref());
        SignedChange {
            change,
            signature: Signature(bytes),
        }
    }
}

impl Clone for WriteKey {
    fn clone(&self) -> WriteKey {
        WriteKey::from_seed(self.seed).expect("made from this seed before")
    }
}

impl fmt::Debug for WriteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteKey(share {}, secret not shown)", self.id().short())
    }
}

impl PartialEq for WriteKey {
    fn eq(&self, other: &WriteKey) -> bool {
        self.seed == other.seed
    }
}

impl Eq for WriteKey {}

/// What a node knows of a share: its secret (it may change the share) or only its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareKey {
    /// May put and delete.
    ReadWrite(WriteKey),
    /// May only follow.
    ReadOnly(ShareId),
}

impl ShareKey {
    /// The share's id.
    pub fn id(&self) -> ShareId {
        match self {
            ShareKey::ReadWrite(key) => key.id(),
            ShareKey::ReadOnly(id) => *id,
        }
    }

    /// The secret, if this key may write.
    pub fn writer(&self) -> Option<&WriteKey> {
        match self {
            ShareKey::ReadWrite(key) => Some(key),
            ShareKey::ReadOnly(_) => None,
        }
    }

    /// The read-only key of the same share.
    pub fn read_only(&self) -> ShareKey {
        ShareKey::ReadOnly(self.id())
    }
}

/// Why a string is not a usable share key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareKeyError {
    /// It starts like neither kind of key.
    #[error("not a share key (share keys start with `{READ_WRITE_PREFIX}` or `{READ_ONLY_PREFIX}`)")]
    NotAKey,
    /// It starts like one but does not decode: cut short or mistyped.
    #[error("the share key is damaged ({0}); copy it again, whole")]
    Damaged(String),
}

/// A share key and the trackers that keep the share: what `swarm sync` prints for other
/// nodes to join with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareTicket {
    /// The key.
    pub key: ShareKey,
    /// Trackers that keep the share, in the order to try them (may be none).
    pub trackers: Vec<TicketTracker>,
}

/// The encoded body of a share ticket: the secret or the id, then the trackers.
#[derive(Serialize, Deserialize)]
struct Body {
    key: [u8; 32],
    trackers: Vec<TicketTracker>,
}

impl ShareTicket {
    /// Is `text` meant as a share key (whatever its state)?
    pub fn looks_like(text: &str) -> bool {
        let text = text.trim();
        [READ_WRITE_PREFIX, READ_ONLY_PREFIX]
            .iter()
            .any(|prefix| text.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix)))
    }
}

impl fmt::Display for ShareTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, key) = match &self.key {
            ShareKey::ReadWrite(key) => (READ_WRITE_PREFIX, key.seed),
            ShareKey::ReadOnly(id) => (READ_ONLY_PREFIX, id.0),
        };
        let body = codec::encode(&Body {
            key,
            trackers: self.trackers.clone(),
        });
        let encoded = data_encoding::BASE32_NOPAD.encode(&body);
        write!(f, "{prefix}{}", encoded.to_ascii_lowercase())
    }
}

impl FromStr for ShareTicket {
    type Err = ShareKeyError;

    fn from_str(text: &str) -> Result<ShareTicket, ShareKeyError> {
        let text = text.trim();
        let starts = |prefix: &str| text.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
        let (writable, rest) = if starts(READ_WRITE_PREFIX) {
            (true, &text[READ_WRITE_PREFIX.len()..])
        } else if starts(READ_ONLY_PREFIX) {
            (false, &text[READ_ONLY_PREFIX.len()..])
        } else {
            return Err(ShareKeyError::NotAKey);
        };
        let bytes = data_encoding::BASE32_NOPAD
            .decode(rest.to_ascii_uppercase().as_bytes())
            .map_err(|e| ShareKeyError::Damaged(e.to_string()))?;
        let body: Body = codec::decode(&bytes).map_err(|e| ShareKeyError::Damaged(e.to_string()))?;
        if body.trackers.len() > MAX_TRACKERS {
            return Err(ShareKeyError::Damaged(format!(
                "it names {} trackers; at most {MAX_TRACKERS}",
                body.trackers.len()
            )));
        }
        if body.trackers.iter().any(|t| !t.is_well_formed()) {
            return Err(ShareKeyError::Damaged("a tracker in it is not HOST:PORT".into()));
        }
        let key = if writable {
            ShareKey::ReadWrite(WriteKey::from_seed(body.key)?)
        } else {
            ShareKey::ReadOnly(ShareId(body.key))
        };
        Ok(ShareTicket {
            key,
            trackers: body.trackers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn put(modified_ns: u64) -> ShareChange {
        ShareChange::Put {
            name: "a.txt".into(),
            file: FileId([7; 32]),
            meta: FileMeta {
                modified_ns,
                replaces: None,
            },
        }
    }

    #[test]
    fn a_signature_holds_for_its_share_and_change_only() {
        let key = WriteKey::generate();
        let signed = key.sign(put(10));
        assert!(signed.verify(&key.id()));
        assert!(!signed.verify(&WriteKey::generate().id()), "another share");
        let mut changed = signed.clone();
        changed.change = put(11);
        assert!(!changed.verify(&key.id()), "another change under the same signature");
        let mut flipped = signed.clone();
        flipped.signature.0[5] ^= 1;
        assert!(!flipped.verify(&key.id()));
        // Not a point on the curve: refused, not a panic.
        assert!(!signed.verify(&ShareId([0xff; 32])));
    }

    #[test]
    fn keys_round_trip_and_tell_their_kind() {
        let key = WriteKey::generate();
        let tracker = TicketTracker {
            id: None,
            host_port: "10.0.0.5:7070".into(),
        };
        let rw = ShareTicket {
            key: ShareKey::ReadWrite(key.clone()),
            trackers: vec![tracker.clone()],
        };
        let text = rw.to_string();
        assert!(text.starts_with(READ_WRITE_PREFIX), "{text}");
        assert_eq!(text.parse::<ShareTicket>().unwrap(), rw);
        assert_eq!(text.to_ascii_uppercase().parse::<ShareTicket>().unwrap(), rw);
        let ro = ShareTicket {
            key: rw.key.read_only(),
            trackers: vec![],
        };
        let text = ro.to_string();
        assert!(text.starts_with(READ_ONLY_PREFIX), "{text}");
        let parsed: ShareTicket = text.parse().unwrap();
        assert_eq!(parsed.key.id(), key.id());
        assert!(parsed.key.writer().is_none());
        assert_eq!("swarm1abc".parse::<ShareTicket>(), Err(ShareKeyError::NotAKey));
        assert!(matches!(
            text[..text.len() - 4].parse::<ShareTicket>(),
            Err(ShareKeyError::Damaged(_))
        ));
    }

    /// The signed bytes never change between builds: a change signed by one build verifies in
    /// every other.
    #[test]
    fn signed_bytes_are_pinned() {
        let share = ShareId([1; 32]);
        let delete = ShareChange::Delete {
            name: "a".into(),
            was: FileId([2; 32]),
            deleted_ns: 300,
        };
        let mut expected = b"swarm share change 1\0".to_vec();
        expected.extend_from_slice(&[1; 32]);
        expected.extend_from_slice(&[1, 1, b'a']);
        expected.extend_from_slice(&[2; 32]);
        expected.extend_from_slice(&[251, 44, 1]);
        assert_eq!(SignedChange::signed_bytes(&share, &delete), expected);
        // And a known key signs it the same way in every build (Ed25519 is deterministic).
        let key = WriteKey::from_seed([3; 32]).unwrap();
        assert_eq!(
            key.id().to_string(),
            "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1"
        );
        let signed = key.sign(delete);
        assert_eq!(
            crate::ids::hex(&signed.signature.0),
            "3a011a47f0618a002eb551393a53a22414c22c5f216ced61bc2cf7fdd05ff291\
             29c68b7579c361cb1c4616cc45a2c380a025119c7e1ddd3729f3266b26011000"
        );
        assert!(signed.verify(&key.id()));
        let encoded = codec::encode(&signed.signature);
        assert_eq!(encoded.len(), 64, "64 bytes, no length prefix");
        assert_eq!(codec::decode::<Signature>(&encoded).unwrap(), signed.signature);
    }

    proptest! {
        #[test]
        fn any_string_parses_or_is_refused_without_panicking(body in "[a-z2-7]{0,200}", rw in any::<bool>()) {
            let prefix = if rw { READ_WRITE_PREFIX } else { READ_ONLY_PREFIX };
            let _ = format!("{prefix}{body}").parse::<ShareTicket>();
        }
    }
}
