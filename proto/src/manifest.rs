//! Manifests: what a file is, chunk by chunk. A manifest's id is the BLAKE3 hash of its
//! canonical encoding, so whoever holds an id can check any manifest handed to them, and from
//! there every chunk and the whole file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::bitfield::Bitfield;
use crate::hashing::{self, FileHashes};
use crate::ids::{Digest, FileId};
use crate::name::{validate_name, NameError};

/// Smallest chunk size: 64 KiB.
pub const MIN_CHUNK_SIZE: u32 = 64 * 1024;
/// Largest chunk size: 16 MiB.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Default chunk size: 1 MiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
/// Most chunks in one manifest: 262,144, whose hashes take 8 MiB. With 16 MiB chunks that is a
/// 4 TiB file; [`chunk_size_for`] moves to bigger chunks when a file would need more.
pub const MAX_CHUNKS: u32 = 1 << 18;

/// Describes one file: its name, size, global hash and the hash of every chunk.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Relative `/`-separated path inside the shared directory.
    pub name: String,
    /// BLAKE3 of the whole content.
    pub hash: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Bytes per chunk (the last chunk may be shorter): a power of two.
    pub chunk_size: u32,
    /// Number of chunks, `size.div_ceil(chunk_size)`.
    pub chunk_count: u32,
    /// Each chunk's BLAKE3 chaining value (see [`crate::hashing`]).
    pub chunks: Vec<Digest>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The name is unsafe.
    #[error("bad file name: {0}")]
    Name(#[from] NameError),
    /// The chunk size is not an allowed power of two.
    #[error("chunk size {0} is not a power of two between 64 KiB and 16 MiB")]
    ChunkSize(u32),
    /// The chunk count does not follow from size and chunk size.
    #[error("chunk count {count} does not match size {size} with chunk size {chunk_size}")]
    ChunkCount {
        /// Claimed count.
        count: u32,
        /// Claimed size.
        size: u64,
        /// Claimed chunk size.
        chunk_size: u32,
    },
    /// More chunks than [`MAX_CHUNKS`].
    #[error("{0} chunks is more than the limit of {MAX_CHUNKS}")]
    TooManyChunks(u64),
    /// The hash list is not as long as the chunk count.
    #[error("{listed} chunk hashes listed for {count} chunks")]
    HashCount {
        /// Hashes present.
        listed: usize,
        /// Chunk count claimed.
        count: u32,
    },
    /// The chunk hashes do not combine into the global hash.
    #[error("the chunk hashes do not add up to the file's hash")]
    Inconsistent,
    /// The manifest does not hash to the id it was fetched under.
    #[error("manifest hashes to {actual}, not to the requested id {expected}")]
    WrongId {
        /// The id asked for.
        expected: FileId,
        /// What the manifest hashes to.
        actual: FileId,
    },
}

/// Checks that `chunk_size` is a power of two between [`MIN_CHUNK_SIZE`] and [`MAX_CHUNK_SIZE`].
pub fn check_chunk_size(chunk_size: u32) -> Result<(), ManifestError> {
    if chunk_size.is_power_of_two() && (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        Ok(())
    } else {
        Err(ManifestError::ChunkSize(chunk_size))
    }
}

/// The chunk size to use for a `size`-byte file: `preferred`, doubled as often as needed to stay
/// within [`MAX_CHUNKS`].
pub fn chunk_size_for(size: u64, preferred: u32) -> u32 {
    let mut chunk_size = preferred;
    while size.div_ceil(u64::from(chunk_size)) > u64::from(MAX_CHUNKS) && chunk_size < MAX_CHUNK_SIZE {
        chunk_size *= 2;
    }
    chunk_size
}

/// Why a manifest could not be made from a file.
#[derive(Debug, thiserror::Error)]
pub enum FromFileError {
    /// Reading the file failed.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The result would not be a valid manifest (a bad name or chunk size).
    #[error(transparent)]
    Invalid(#[from] ManifestError),
}

/// Appends `value` as a variable-length integer: one byte below 251, else a marker byte (251,
/// 252, 253) and the value in 2, 4 or 8 little-endian bytes. This is bincode 2's "standard"
/// integer encoding, which the first ids were made with; it is written out here so that ids
/// never depend on a serializer's release.
pub(crate) fn put_varint(out: &mut Vec<u8>, value: u64) {
    match value {
        0..=250 => out.push(value as u8),
        251..=0xffff => {
            out.push(251);
            out.extend_from_slice(&(value as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(252);
            out.extend_from_slice(&(value as u32).to_le_bytes());
        }
        _ => {
            out.push(253);
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

impl Manifest {
    /// Hashes the file at `path` and describes it under `name`.
    pub fn from_file(path: &Path, name: &str, chunk_size: u32) -> Result<Manifest, FromFileError> {
        validate_name(name).map_err(ManifestError::from)?;
        check_chunk_size(chunk_size)?;
        let read = |source| FromFileError::Read {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        let chunk_size = chunk_size_for(size, chunk_size);
        let FileHashes { size, chunks, global } = hashing::hash_file(path, chunk_size).map_err(read)?;
        let manifest = Manifest {
            name: name.to_owned(),
            hash: global,
            size,
            chunk_size,
            chunk_count: chunks.len() as u32,
            chunks,
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// Describes content hashed elsewhere (as by [`crate::hashing::StreamHasher`]) under
    /// `name`, in chunks of `chunk_size`.
    pub fn from_hashes(name: &str, chunk_size: u32, hashes: FileHashes) -> Result<Manifest, ManifestError> {
        let manifest = Manifest {
            name: name.to_owned(),
            hash: hashes.global,
            size: hashes.size,
            chunk_size,
            chunk_count: hashes.chunks.len() as u32,
            chunks: hashes.chunks,
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// The canonical encoding whose BLAKE3 hash is the file id: the fields in order, each
    /// integer and length as a varint (see `put_varint`), strings as UTF-8 bytes and
    /// digests as their 32 bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.name.len() + 32 * self.chunks.len());
        put_varint(&mut out, self.name.len() as u64);
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.hash.0);
        put_varint(&mut out, self.size);
        put_varint(&mut out, u64::from(self.chunk_size));
        put_varint(&mut out, u64::from(self.chunk_count));
        put_varint(&mut out, self.chunks.len() as u64);
        for chunk in &self.chunks {
            out.extend_from_slice(&chunk.0);
        }
        out
    }

    /// This manifest's file id.
    pub fn id(&self) -> FileId {
        blake3::hash(&self.canonical_bytes()).into()
    }

    /// Checks every internal rule: safe name, allowed chunk size, counts that agree, and chunk
    /// hashes that combine into the global hash.
    pub fn validate(&self) -> Result<(), ManifestError> {
        validate_name(&self.name)?;
        check_chunk_size(self.chunk_size)?;
        let expected = self.size.div_ceil(u64::from(self.chunk_size));
        if expected > u64::from(MAX_CHUNKS) {
            return Err(ManifestError::TooManyChunks(expected));
        }
        if expected != u64::from(self.chunk_count) {
            return Err(ManifestError::ChunkCount {
                count: self.chunk_count,
                size: self.size,
                chunk_size: self.chunk_size,
            });
        }
        if self.chunks.len() != self.chunk_count as usize {
            return Err(ManifestError::HashCount {
                listed: self.chunks.len(),
                count: self.chunk_count,
            });
        }
        match hashing::global_from_chunks(self.size, self.chunk_size, &self.chunks) {
            Some(global) if global != self.hash => Err(ManifestError::Inconsistent),
            _ => Ok(()),
        }
    }

    /// Validates the manifest and checks that it is the one `id` names.
    pub fn verify(&self, id: &FileId) -> Result<(), ManifestError> {
        let actual = self.id();
        if actual != *id {
            return Err(ManifestError::WrongId { expected: *id, actual });
        }
        self.validate()
    }

    /// Byte offset of chunk `index`.
    pub fn chunk_offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.chunk_size)
    }

    /// Length in bytes of chunk `index` (the last one may be short).
    pub fn chunk_len(&self, index: u32) -> u32 {
        let rest = self.size.saturating_sub(self.chunk_offset(index));
        rest.min(u64::from(self.chunk_size)) as u32
    }

    /// Bytes in the chunks of `chunks`.
    pub fn bytes_in(&self, chunks: &Bitfield) -> u64 {
        chunks.iter().map(|c| u64::from(self.chunk_len(c))).sum()
    }

    /// Does `data` hash to chunk `index`'s recorded hash?
    pub fn chunk_matches(&self, index: u32, data: &[u8]) -> bool {
        self.chunks.get(index as usize).is_some_and(|expected| {
            data.len() == self.chunk_len(index) as usize
                && hashing::chunk_hash(u64::from(index), self.chunk_size, data) == *expected
        })
    }
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("chunk_size", &self.chunk_size)
            .field("chunk_count", &self.chunk_count)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn manifest_of(data: &[u8], chunk_size: u32) -> Manifest {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(data).unwrap();
        Manifest::from_file(file.path(), "dir/file.bin", chunk_size).unwrap()
    }

    #[test]
    fn builds_valid_manifests_at_edge_sizes() {
        let cs = MIN_CHUNK_SIZE;
        for len in [0usize, 1, cs as usize, cs as usize + 1, 3 * cs as usize - 5] {
            let data = vec![7u8; len];
            let m = manifest_of(&data, cs);
            assert_eq!(m.size, len as u64);
            assert_eq!(m.chunk_count as usize, len.div_ceil(cs as usize));
            assert_eq!(m.hash, blake3::hash(&data).into());
            m.validate().unwrap();
            m.verify(&m.id()).unwrap();
            for i in 0..m.chunk_count {
                let start = m.chunk_offset(i) as usize;
                let end = start + m.chunk_len(i) as usize;
                assert!(m.chunk_matches(i, &data[start..end]));
                assert!(!m.chunk_matches(i, &data[start..end - 1]));
            }
        }
    }

    #[test]
    fn detects_tampering() {
        let m = manifest_of(&[1u8; 200_000], MIN_CHUNK_SIZE);
        let id = m.id();
        let mut renamed = m.clone();
        renamed.name = "other".into();
        assert!(matches!(renamed.verify(&id), Err(ManifestError::WrongId { .. })));

        let mut swapped = m.clone();
        swapped.chunks.swap(0, 1);
        assert_eq!(swapped.validate(), Err(ManifestError::Inconsistent));

        let mut count = m.clone();
        count.chunk_count += 1;
        assert!(matches!(count.validate(), Err(ManifestError::ChunkCount { .. })));

        let mut huge = m.clone();
        huge.size = u64::MAX;
        assert!(matches!(huge.validate(), Err(ManifestError::TooManyChunks(_))));

        let mut odd = m;
        odd.chunk_size = 100_000;
        assert_eq!(odd.validate(), Err(ManifestError::ChunkSize(100_000)));
    }

    #[test]
    fn chunk_size_grows_for_huge_files() {
        assert_eq!(chunk_size_for(1 << 30, DEFAULT_CHUNK_SIZE), DEFAULT_CHUNK_SIZE);
        let big = 1u64 << 40; // 1 TiB
        let cs = chunk_size_for(big, DEFAULT_CHUNK_SIZE);
        assert!(big.div_ceil(u64::from(cs)) <= u64::from(MAX_CHUNKS));
        assert_eq!(cs, 4 << 20);
    }

    #[test]
    fn offsets_do_not_wrap_past_4_gib() {
        let m = Manifest {
            name: "big".into(),
            hash: Digest([0; 32]),
            size: 5 << 30,
            chunk_size: MAX_CHUNK_SIZE,
            chunk_count: 320,
            chunks: vec![Digest([0; 32]); 320],
        };
        assert_eq!(m.chunk_offset(319), 319 * u64::from(MAX_CHUNK_SIZE));
        assert_eq!(m.chunk_len(319), MAX_CHUNK_SIZE);
    }

    fn any_manifest() -> impl Strategy<Value = Manifest> {
        let name = prop_oneof![
            "[a-z/._]{0,24}",
            proptest::string::string_regex("(?s).{0,40}").unwrap(),
            Just("../up".to_owned()),
            Just("/abs".to_owned()),
        ];
        let sizes = prop_oneof![any::<u64>(), 0u64..10_000_000];
        let chunk_sizes = prop_oneof![any::<u32>(), (16u32..25).prop_map(|p| 1 << p)];
        let parts = (
            name,
            sizes,
            chunk_sizes,
            any::<u32>(),
            proptest::collection::vec(any::<[u8; 32]>(), 0..200),
            any::<bool>(),
        );
        parts.prop_map(|(name, size, chunk_size, chunk_count, chunks, consistent)| {
            let mut chunks: Vec<Digest> = chunks.into_iter().map(Digest).collect();
            let mut chunk_count = chunk_count;
            let mut hash = Digest([9; 32]);
            // Half the cases are consistent apart from the name, so that the validator's
            // acceptance is exercised too, not only its refusals.
            let needed = size
                .checked_div(u64::from(chunk_size))
                .map(|_| size.div_ceil(u64::from(chunk_size)));
            // Only a chunk size the validator allows forms a BLAKE3 tree that can be merged.
            let mergeable = check_chunk_size(chunk_size).is_ok();
            if let Some(needed) = needed.filter(|&n| consistent && mergeable && n <= 200) {
                chunk_count = needed as u32;
                chunks.resize(needed as usize, Digest([3; 32]));
                if let Some(global) = crate::hashing::global_from_chunks(size, chunk_size, &chunks) {
                    hash = global;
                }
            }
            Manifest {
                name,
                hash,
                size,
                chunk_size,
                chunk_count,
                chunks,
            }
        })
    }

    /// Random manifests: the validator never panics, and whatever it accepts is consistent.
    #[test]
    fn the_validator_never_panics_and_accepts_only_consistent_manifests() {
        let accepted = std::cell::Cell::new(0);
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&any_manifest(), |m| {
                if m.validate().is_ok() {
                    accepted.set(accepted.get() + 1);
                    prop_assert_eq!(u64::from(m.chunk_count), m.size.div_ceil(u64::from(m.chunk_size)));
                    prop_assert_eq!(m.chunks.len(), m.chunk_count as usize);
                    prop_assert!(crate::name::validate_name(&m.name).is_ok());
                    for c in 0..m.chunk_count {
                        prop_assert!(m.chunk_offset(c) + u64::from(m.chunk_len(c)) <= m.size);
                    }
                }
                Ok(())
            })
            .unwrap();
        assert!(
            accepted.get() > 0,
            "no random manifest was valid: the strategy tests refusals only"
        );
    }

    #[test]
    fn canonical_bytes_are_pinned() {
        let m = Manifest {
            name: "a".into(),
            hash: Digest([1; 32]),
            size: 5,
            chunk_size: 65536,
            chunk_count: 1,
            chunks: vec![Digest([2; 32])],
        };
        let mut want = vec![1, b'a']; // name: length 1, "a"
        want.extend([1; 32]); // global hash
        want.extend([5]); // size 5
        want.extend([252, 0, 0, 1, 0]); // chunk size 65536: marker 252, u32 LE
        want.extend([1]); // chunk count
        want.extend([1]); // one chunk hash follows
        want.extend([2; 32]);
        assert_eq!(m.canonical_bytes(), want);
        // Every width of varint.
        let mut out = Vec::new();
        for v in [250, 251, 65_535, 65_536, u64::from(u32::MAX), 1 << 32] {
            put_varint(&mut out, v);
        }
        let mut want = vec![
            250, 251, 251, 0, 251, 255, 255, 252, 0, 0, 1, 0, 252, 255, 255, 255, 255,
        ];
        want.extend([253, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(out, want);
    }

    proptest! {
        /// Random bytes decoded as a manifest, with the wire limit: no panic, no unbounded
        /// allocation (a huge length prefix is refused before anything is allocated).
        #[test]
        fn random_bytes_never_panic_the_manifest_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(m) = crate::codec::decode::<Manifest>(&bytes) {
                let _ = m.validate();
            }
        }

        /// The hand-written canonical encoding is what bincode wrote when ids were first made
        /// (and what the wire carries), at every size of every field.
        #[test]
        fn canonical_bytes_match_the_wire_encoding(
            name in ".{0,300}",
            size in prop_oneof![0u64..300, any::<u64>()],
            chunk_size in any::<u32>(),
            chunk_count in prop_oneof![0u32..300, any::<u32>()],
            chunks in proptest::collection::vec(any::<[u8; 32]>(), 0..300),
        ) {
            let m = Manifest { name, hash: Digest([7; 32]), size, chunk_size, chunk_count, chunks: chunks.into_iter().map(Digest).collect() };
            prop_assert_eq!(m.canonical_bytes(), crate::codec::encode(&m));
        }
    }
}
