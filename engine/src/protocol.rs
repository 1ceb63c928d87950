//! The swarm wire protocol, version 2. This module is the specification.
//!
//! # Transport
//! Every node (tracker or peer) has one QUIC endpoint. Connections negotiate the ALPN
//! [`ALPN`] and TLS 1.3 with a self-signed certificate on *both* sides: a node's id is the
//! BLAKE3 hash of its public key, so the TLS handshake authenticates both ends, and everything
//! a tracker records is filed under the id that TLS proved.
//!
//! # Streams
//! Each request opens its own bidirectional stream, sends one [`Request`] frame and finishes
//! its send side; the other end answers with one [`Response`] frame and finishes. A
//! [`Response::Chunk`] frame is followed on the same stream by exactly `len` raw bytes of chunk
//! data. Many streams run at once on a connection, which is how requests are pipelined.
//!
//! # Frames
//! ```text
//! +----------------+-----------------+-------------------------------+
//! | length: u32 BE | version: u16 BE | bincode 2 (standard) payload  |
//! +----------------+-----------------+-------------------------------+
//! ```
//! `length` counts the version and the payload and may not exceed [`MAX_FRAME`]; it is checked
//! before anything is allocated. A frame whose version is not [`PROTOCOL_VERSION`] is answered
//! with [`ErrorCode::VersionMismatch`] and the stream closed, so that both sides can say which
//! versions met. Decoding is bounded by the same limit.
//!
//! # Resets
//! A stream that is abandoned (for example the losing copy of an endgame request) is reset or
//! stopped with [`CANCELLED`].

use std::net::SocketAddr;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::bitfield::Bitfield;
use crate::ids::{FileId, PeerId};
use crate::manifest::Manifest;
use crate::meta::FileMeta;

/// This build's protocol version, carried in every frame.
pub const PROTOCOL_VERSION: u16 = 2;
/// QUIC application protocol name.
pub const ALPN: &[u8] = b"swarm";
/// Largest frame (version plus payload): 16 MiB, room for a manifest of the maximum
/// 262,144 chunks (8 MiB of hashes) and a locate answer listing many holders' bitfields.
pub const MAX_FRAME: u32 = 16 * 1024 * 1024;
/// Error code used when a stream is reset or stopped because its answer is no longer wanted.
pub const CANCELLED: u32 = 1;
/// Most holders listed in one [`Response::Located`].
pub const MAX_HOLDERS: usize = 200;
/// Most entries in one [`Response::Catalogue`].
pub const MAX_CATALOGUE: usize = 10_000;

/// What one node asks of another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Tracker: start (or restart) this peer's session, forgetting what it announced before.
    /// The tracker records the address it sees the peer connect from unless `advertise` is set.
    Register {
        /// Address other peers should use instead of the observed one.
        advertise: Option<SocketAddr>,
    },
    /// Tracker: this peer holds (some chunks of) a file.
    Announce {
        /// The file.
        manifest: Manifest,
        /// The chunks held.
        chunks: Bitfield,
        /// The holder's modification time and the version this one replaced.
        meta: FileMeta,
    },
    /// Tracker: chunk-register, i.e. this peer has newly verified these chunks of a file.
    HaveChunks {
        /// The file.
        file: FileId,
        /// Chunk indices.
        chunks: Vec<u32>,
    },
    /// Tracker: this peer no longer holds a file.
    Withdraw {
        /// The file.
        file: FileId,
    },
    /// Tracker: this peer is still alive.
    Keepalive,
    /// Tracker: this peer is going away; drop all its records.
    Leave,
    /// Tracker: the whole catalogue.
    List,
    /// Tracker: files whose name equals (`exact`) or contains `query`.
    Search {
        /// Name or part of a name.
        query: String,
        /// Match the whole name only.
        exact: bool,
    },
    /// Tracker: files whose id starts with these hex digits.
    Resolve {
        /// 8 to 64 lowercase hex digits.
        prefix: String,
    },
    /// Tracker: a file's manifest and who holds which chunks of it.
    Locate {
        /// The file.
        file: FileId,
    },
    /// Peer: send one chunk.
    GetChunk {
        /// The file.
        file: FileId,
        /// Chunk index.
        index: u32,
    },
    /// Peer: what do you hold and fetch? Answered only on a connection made with the node's
    /// own key (by `swarm status` on the same machine).
    Status,
}

/// One entry of the tracker's catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    /// The file's id.
    pub file: FileId,
    /// Its name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunk_count: u32,
    /// Live peers holding at least one chunk.
    pub holders: u32,
    /// How many distinct chunks live peers hold between them.
    pub available: u32,
    /// The newest modification time its holders announced, and the version it replaced.
    pub meta: FileMeta,
}

/// A live peer holding chunks of a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    /// Its id (the fetcher checks it during the TLS handshake).
    pub peer: PeerId,
    /// Where to reach it.
    pub addr: SocketAddr,
    /// The chunks it holds.
    pub chunks: Bitfield,
}

/// Error codes carried in [`Response::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame's protocol version is not the receiver's.
    VersionMismatch,
    /// The frame could not be decoded.
    Malformed,
    /// The request is not one this node answers.
    Unsupported,
    /// No such file.
    NotFound,
    /// This peer does not hold that chunk.
    NotHeld,
    /// Too many uploads at once: ask someone else.
    Busy,
    /// The request is well formed but refused (bad manifest, unsafe name, ...).
    Invalid,
    /// Send `Register` first.
    NotRegistered,
    /// Too many requests or records from this peer.
    Limit,
    /// The node failed internally.
    Internal,
}

/// What a node answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The request was done.
    Ok,
    /// Answer to `Register`.
    Registered {
        /// The address recorded for the peer.
        addr: SocketAddr,
        /// The peer's id as the tracker sees it.
        peer: PeerId,
        /// Seconds of silence after which the tracker drops the peer.
        timeout_secs: u64,
    },
    /// Answer to `List` and `Search`.
    Catalogue(Vec<CatalogueEntry>),
    /// Answer to `Resolve`: ids and names.
    Matches(Vec<(FileId, String)>),
    /// Answer to `Locate`.
    Located {
        /// The manifest (the fetcher checks it against the id).
        manifest: Manifest,
        /// What the holders announced with it.
        meta: FileMeta,
        /// Live holders, rarest-chunk holders not favoured in any way: at most [`MAX_HOLDERS`].
        holders: Vec<Holder>,
    },
    /// Answer to `GetChunk`: `len` bytes of data follow on the stream.
    Chunk {
        /// Number of bytes that follow.
        len: u32,
    },
    /// Answer to `Status`.
    Status(Vec<crate::status::FileStatus>),
    /// The request failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A sentence for people.
        message: String,
    },
}

impl Response {
    /// An error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error {
            code,
            message: message.into(),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The other side speaks another protocol version.
    #[error("protocol version mismatch: the other side speaks v{theirs}, this swarm speaks v{PROTOCOL_VERSION}; run the same swarm version on both")]
    Version {
        /// The version in the frame.
        theirs: u16,
    },
    /// The frame is over the limit for its kind (at most [`MAX_FRAME`]) or under the header
    /// size.
    #[error("frame of {len} bytes refused (limit {limit})")]
    FrameSize {
        /// The length announced.
        len: u32,
        /// The limit that applied.
        limit: u32,
    },
    /// The payload does not decode.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The stream ended early or failed.
    #[error("stream failed: {0}")]
    Io(#[from] std::io::Error),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_FRAME as usize }>()
}

/// Encodes `message` as one frame.
pub fn encode_frame<T: Serialize>(message: &T) -> Vec<u8> {
    let mut frame = vec![0u8; 6];
    bincode::serde::encode_into_std_write(message, &mut frame, config()).expect("writing to a Vec cannot fail");
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    frame[4..6].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    frame
}

/// Decodes a frame body (version plus payload, without the length prefix).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProtocolError> {
    let (version, payload) = body.split_at_checked(2).ok_or(ProtocolError::FrameSize {
        len: body.len() as u32,
        limit: MAX_FRAME,
    })?;
    let version = u16::from_be_bytes([version[0], version[1]]);
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version { theirs: version });
    }
    let (message, used) =
        bincode::serde::decode_from_slice(payload, config()).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(ProtocolError::Malformed(format!(
            "{} trailing bytes",
            payload.len() - used
        )));
    }
    Ok(message)
}

/// Reads one frame from `stream`, checking its length before allocating.
pub async fn read_frame<T, R>(stream: &mut R) -> Result<T, ProtocolError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    read_frame_limited(stream, MAX_FRAME).await
}

/// Reads one frame of at most `max` bytes (and never more than [`MAX_FRAME`]). Memory grows
/// with the bytes that actually arrive, not with the length announced.
pub async fn read_frame_limited<T, R>(stream: &mut R, max: u32) -> Result<T, ProtocolError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let len = stream.read_u32().await?;
    let limit = max.min(MAX_FRAME);
    if !(2..=limit).contains(&len) {
        return Err(ProtocolError::FrameSize { len, limit });
    }
    let mut body = Vec::with_capacity((len as usize).min(64 * 1024));
    stream.take(u64::from(len)).read_to_end(&mut body).await?;
    if body.len() != len as usize {
        return Err(ProtocolError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("frame cut short: {} of {len} bytes", body.len()),
        )));
    }
    decode_body(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Digest;
    use proptest::prelude::*;

    #[test]
    fn golden_bytes() {
        // Pins the encoding: changing it breaks compatibility and needs a new PROTOCOL_VERSION.
        let frame = encode_frame(&Request::GetChunk {
            file: FileId([0xab; 32]),
            index: 300,
        });
        let mut want = vec![0, 0, 0, 38, 0, 2, 10];
        want.extend([0xab; 32]);
        want.extend([251, 44, 1]);
        assert_eq!(frame, want);

        let frame = encode_frame(&Response::Chunk { len: 1 << 20 });
        assert_eq!(frame, vec![0, 0, 0, 8, 0, 2, 5, 252, 0, 0, 16, 0]);
    }

    #[test]
    fn manifest_canonical_bytes_are_pinned() {
        let m = Manifest {
            name: "a".into(),
            hash: Digest([1; 32]),
            size: 5,
            chunk_size: 65536,
            chunk_count: 1,
            chunks: vec![Digest([2; 32])],
        };
        let bytes = m.canonical_bytes();
        let mut want = vec![1, b'a'];
        want.extend([1; 32]);
        want.extend([5, 252, 0, 0, 1, 0, 1, 1]);
        want.extend([2; 32]);
        assert_eq!(bytes, want);
    }

    #[tokio::test]
    async fn frames_round_trip_through_a_stream() {
        let request = Request::Search {
            query: "movie".into(),
            exact: false,
        };
        let frame = encode_frame(&request);
        let got: Request = read_frame(&mut frame.as_slice()).await.unwrap();
        assert_eq!(got, request);
    }

    #[tokio::test]
    async fn refuses_oversized_and_foreign_frames() {
        let huge = (MAX_FRAME + 1).to_be_bytes();
        let err = read_frame::<Request, _>(&mut huge.as_slice()).await.unwrap_err();
        assert!(matches!(err, ProtocolError::FrameSize { .. }));

        let mut frame = encode_frame(&Request::List);
        frame[5] = 9;
        let err = read_frame::<Request, _>(&mut frame.as_slice()).await.unwrap_err();
        assert!(matches!(err, ProtocolError::Version { theirs: 9 }), "{err}");
        assert!(err.to_string().contains("v9"));

        let truncated = &encode_frame(&Request::List)[..5];
        assert!(read_frame::<Request, _>(&mut &truncated[..]).await.is_err());
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_body::<Request>(&body);
            let _ = decode_body::<Response>(&body);
        }

        #[test]
        fn random_bodies_with_valid_version_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut body = PROTOCOL_VERSION.to_be_bytes().to_vec();
            body.extend(payload);
            let _ = decode_body::<Request>(&body);
            let _ = decode_body::<Response>(&body);
        }

        #[test]
        fn requests_round_trip(file in any::<[u8; 32]>(), index in any::<u32>(), query in ".{0,40}") {
            for request in [Request::GetChunk { file: FileId(file), index }, Request::Search { query: query.clone(), exact: true }] {
                let frame = encode_frame(&request);
                prop_assert_eq!(decode_body::<Request>(&frame[4..]).unwrap(), request);
            }
        }
    }
}
