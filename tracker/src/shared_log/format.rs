//! The bytes of the shared log's entries and snapshots: a magic, the format version, then
//! bincode (through `swarm_proto::codec`). The golden tests below pin both byte for byte.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm_proto::codec;

use crate::change::Change;
use crate::state::Snapshot;

/// How often each tracker writes a snapshot of its state.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);
/// How much of the stream is kept, for trackers that lag behind: four snapshots' worth.
pub const LOG_KEPT: Duration = Duration::from_secs(120);

/// What every log entry's bytes start with.
pub const LOG_MAGIC: &[u8; 3] = b"swl";
/// What the snapshot's bytes start with.
pub const SNAPSHOT_MAGIC: &[u8; 3] = b"sws";
/// The format of log entries and snapshots this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// One entry of the stream: a change, and who wrote it (to hand its outcome back).
#[derive(Debug, Serialize, Deserialize)]
pub struct LogEntry {
    /// A number each tracker draws at start.
    pub writer: u64,
    /// The writer's count of its own changes.
    pub seq: u64,
    /// The change.
    pub change: Change,
}

/// The `snapshot` key's value.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The stream id of the last change it includes.
    pub log_id: String,
    /// The state after that change, with times relative to the change's.
    pub snapshot: Snapshot,
}

/// Why bytes from the store could not be used.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unreadable {
    /// Not this format at all (a foreign or damaged entry): skip it.
    Foreign(#[allow(dead_code)] String),
    /// This format, another version: stop rather than misread.
    Version(u8),
}

/// `value` encoded behind `magic` and the format version.
#[cfg_attr(not(feature = "shared-store"), allow(dead_code))]
pub(super) fn encode_framed<T: Serialize>(magic: &[u8; 3], value: &T) -> Vec<u8> {
    let mut bytes = magic.to_vec();
    bytes.push(FORMAT_VERSION);
    codec::encode_into(value, &mut bytes);
    bytes
}

/// A log entry's bytes, read as a tracker reads them from the stream (public for the fuzz
/// targets).
pub fn read_entry(bytes: &[u8]) -> Result<LogEntry, String> {
    decode_framed(LOG_MAGIC, bytes, false).map_err(|e| format!("{e:?}"))
}

/// A snapshot's bytes, read as a tracker reads them from the store (public for the fuzz
/// targets).
pub fn read_snapshot(bytes: &[u8]) -> Result<SnapshotRecord, String> {
    decode_framed(SNAPSHOT_MAGIC, bytes, true).map_err(|e| format!("{e:?}"))
}

/// The value behind `magic` and the format version in `bytes`.
pub(super) fn decode_framed<T: serde::de::DeserializeOwned>(
    magic: &[u8; 3],
    bytes: &[u8],
    record: bool,
) -> Result<T, Unreadable> {
    let body = match bytes.split_at_checked(4) {
        Some((head, body)) if head[..3] == magic[..] => match head[3] {
            FORMAT_VERSION => body,
            other => return Err(Unreadable::Version(other)),
        },
        _ => return Err(Unreadable::Foreign("not a swarm tracker's record".into())),
    };
    let decoded = if record {
        codec::decode_record(body)
    } else {
        codec::decode(body)
    };
    decoded.map_err(|e| Unreadable::Foreign(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes as the first format-1 trackers wrote them: struct variants of one enum. Each
    /// kind is now a type of its own inside a newtype variant, encoded byte for byte alike,
    /// so trackers of both builds read each other's log.
    #[derive(Serialize)]
    #[allow(dead_code)]
    enum ChangeBefore {
        Register {
            peer: swarm_proto::PeerId,
            addr: std::net::SocketAddr,
            other_addrs: Vec<std::net::SocketAddr>,
            ip: std::net::IpAddr,
        },
        Announce,
        Join,
        Have,
        Withdraw,
        Keepalive,
        Leave,
        Checked {
            peer: swarm_proto::PeerId,
            file: swarm_proto::FileId,
            lied: bool,
        },
        Expire,
        ShareUpdate {
            peer: swarm_proto::PeerId,
            share: swarm_proto::ShareId,
            changes: Vec<swarm_proto::share_key::SignedChange>,
            epoch: u64,
        },
    }

    #[test]
    fn changes_encode_as_they_did_when_they_were_struct_variants() {
        use crate::change::{Checked, Expire, Register, ShareUpdate};
        use swarm_proto::{FileId, PeerId, ShareId};
        let (peer, addr, ip) = (
            PeerId([3; 32]),
            "10.0.0.1:7071".parse().unwrap(),
            "10.0.0.9".parse().unwrap(),
        );
        let pairs: Vec<(Vec<u8>, Change)> = vec![
            (
                codec::encode(&ChangeBefore::Register {
                    peer,
                    addr,
                    other_addrs: vec![addr],
                    ip,
                }),
                Register {
                    peer,
                    addr,
                    other_addrs: vec![addr],
                    ip,
                }
                .into(),
            ),
            (
                codec::encode(&ChangeBefore::Checked {
                    peer,
                    file: FileId([5; 32]),
                    lied: true,
                }),
                Checked {
                    peer,
                    file: FileId([5; 32]),
                    lied: true,
                }
                .into(),
            ),
            (codec::encode(&ChangeBefore::Expire), Expire.into()),
            (
                codec::encode(&ChangeBefore::ShareUpdate {
                    peer,
                    share: ShareId([6; 32]),
                    changes: Vec::new(),
                    epoch: 77,
                }),
                ShareUpdate {
                    peer,
                    share: ShareId([6; 32]),
                    changes: Vec::new(),
                    epoch: 77,
                }
                .into(),
            ),
        ];
        for (before, now) in pairs {
            assert_eq!(before, codec::encode(&now), "{now:?}");
        }
    }

    #[test]
    fn log_entries_and_snapshots_are_pinned() {
        use swarm_proto::PeerId;
        let entry = encode_framed(
            LOG_MAGIC,
            &LogEntry {
                writer: 1,
                seq: 300,
                change: crate::change::Keepalive { peer: PeerId([7; 32]) }.into(),
            },
        );
        // Magic, version 1, writer 1, seq 300 (varint), Keepalive (variant 5), the peer.
        let mut expected = b"swl\x01".to_vec();
        expected.extend_from_slice(&[1, 251, 44, 1, 5]);
        expected.extend_from_slice(&[7; 32]);
        assert_eq!(entry, expected);
        let back: LogEntry = decode_framed(LOG_MAGIC, &entry, false).unwrap();
        assert_eq!((back.writer, back.seq), (1, 300));

        let snapshot = encode_framed(
            SNAPSHOT_MAGIC,
            &SnapshotRecord {
                log_id: "5-0".into(),
                snapshot: Snapshot {
                    files: vec![],
                    peers: vec![],
                    shares: vec![],
                },
            },
        );
        // Magic, version 1, the id "5-0", then three empty lists.
        assert_eq!(snapshot, b"sws\x01\x035-0\x00\x00\x00".to_vec());
    }

    #[test]
    fn foreign_bytes_are_skipped_and_another_version_is_told_apart() {
        let entry = |bytes: &[u8]| decode_framed::<LogEntry>(LOG_MAGIC, bytes, false).map(|_| ());
        assert!(matches!(entry(b"hello"), Err(Unreadable::Foreign(_))));
        assert!(matches!(entry(b""), Err(Unreadable::Foreign(_))));
        assert!(matches!(entry(b"swl\x01\xff\xff"), Err(Unreadable::Foreign(_))));
        assert_eq!(entry(b"swl\x02anything"), Err(Unreadable::Version(2)));
        assert!(matches!(
            decode_framed::<SnapshotRecord>(SNAPSHOT_MAGIC, b"swl\x01", true),
            Err(Unreadable::Foreign(_))
        ));
    }
}
