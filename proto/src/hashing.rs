//! Content hashing with BLAKE3's tree.
//!
//! A chunk's hash is its BLAKE3 *chaining value*: the interior node of BLAKE3's tree that
//! covers exactly that chunk at its offset in the file. Because chunk sizes are powers of two
//! (at least 1 KiB), every chunk is a complete subtree of the file's tree, so the file's global
//! BLAKE3 hash is obtained by merging the chunk hashes, without touching the content again.
//! This gives three things at once:
//!
//! - building a manifest is one pass over the file, run on all cores;
//! - a manifest whose chunk hashes do not add up to its global hash is caught with no data;
//! - every chunk is still checked on its own, before it is written.
//!
//! The one exception is a file of exactly one chunk: its root hash cannot be derived from the
//! chunk's chaining value, so it is computed from the bytes directly.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};
use rayon::prelude::*;

use crate::ids::Digest;

/// The chaining value of chunk `index` (of `chunk_size` bytes each) holding `data`.
pub fn chunk_hash(index: u64, chunk_size: u32, data: &[u8]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(index * u64::from(chunk_size));
    hasher.update(data);
    Digest(hasher.finalize_non_root())
}

/// The global hash of a `size`-byte file from its chunk hashes, or `None` for a file of exactly
/// one chunk (whose root hash needs the content; see the module doc).
///
/// `chunks` must hold `size.div_ceil(chunk_size)` entries.
///
/// # Panics
/// If `chunk_size` is not a power of two of at least 1 KiB: such chunks are not subtrees of
/// BLAKE3's tree. [`crate::manifest::Manifest::validate`] checks the chunk size first, so a
/// manifest from the network never gets here with one.
pub fn global_from_chunks(size: u64, chunk_size: u32, chunks: &[Digest]) -> Option<Digest> {
    match chunks.len() {
        0 => Some(blake3::hash(b"").into()),
        1 => None,
        _ => {
            let chunk_size = u64::from(chunk_size);
            let (left, right, left_bytes) = split(chunks, chunk_size, size);
            let left_cv = subtree(left, chunk_size, left_bytes);
            let right_cv = subtree(right, chunk_size, size - left_bytes);
            Some(hazmat::merge_subtrees_root(&left_cv, &right_cv, Mode::Hash).into())
        }
    }
}

/// Splits a run of chunks covering `bytes` bytes the way BLAKE3's tree does.
fn split(chunks: &[Digest], chunk_size: u64, bytes: u64) -> (&[Digest], &[Digest], u64) {
    let left_bytes = hazmat::left_subtree_len(bytes);
    // left_bytes is a power of two times 1 KiB that is at least one chunk, so it is a whole
    // number of chunks.
    let left_count = (left_bytes / chunk_size) as usize;
    (&chunks[..left_count], &chunks[left_count..], left_bytes)
}

fn subtree(chunks: &[Digest], chunk_size: u64, bytes: u64) -> ChainingValue {
    if chunks.len() == 1 {
        return chunks[0].0;
    }
    let (left, right, left_bytes) = split(chunks, chunk_size, bytes);
    hazmat::merge_subtrees_non_root(
        &subtree(left, chunk_size, left_bytes),
        &subtree(right, chunk_size, bytes - left_bytes),
        Mode::Hash,
    )
}

/// What hashing a file produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHashes {
    /// The file's size when it was read.
    pub size: u64,
    /// One chaining value per chunk.
    pub chunks: Vec<Digest>,
    /// BLAKE3 of the whole content.
    pub global: Digest,
}

/// Hashes the file at `path` in `chunk_size` pieces, reading chunks in parallel on all cores
/// with positional reads; memory use is one chunk buffer per core.
pub fn hash_file(path: &Path, chunk_size: u32) -> io::Result<FileHashes> {
    hash_open_file(&File::open(path)?, chunk_size)
}

/// [`hash_file`] of a file already open.
pub fn hash_open_file(file: &File, chunk_size: u32) -> io::Result<FileHashes> {
    let size = file.metadata()?.len();
    let count = size.div_ceil(u64::from(chunk_size));
    if count == 1 {
        let mut data = vec![0u8; size as usize];
        file.read_exact_at(&mut data, 0)?;
        return Ok(FileHashes {
            size,
            chunks: vec![chunk_hash(0, chunk_size, &data)],
            global: blake3::hash(&data).into(),
        });
    }
    let chunks = (0..count)
        .into_par_iter()
        .map_init(Vec::new, |buf, index| {
            let offset = index * u64::from(chunk_size);
            let len = (size - offset).min(u64::from(chunk_size)) as usize;
            buf.resize(len, 0);
            file.read_exact_at(buf, offset)?;
            Ok(chunk_hash(index, chunk_size, buf))
        })
        .collect::<io::Result<Vec<Digest>>>()?;
    let global = global_from_chunks(size, chunk_size, &chunks).expect("two or more chunks");
    Ok(FileHashes { size, chunks, global })
}

/// Hashes content as it arrives, in order, in `chunk_size` pieces: the same [`FileHashes`] as
/// [`hash_file`] would give of the whole, without reading it again (for content that streams
/// in from elsewhere, as from an HTTP origin). Holds at most one chunk.
#[derive(Debug)]
pub struct StreamHasher {
    chunk_size: u32,
    /// The chunk being filled.
    pending: Vec<u8>,
    chunks: Vec<Digest>,
    size: u64,
}

impl StreamHasher {
    /// A hasher of `chunk_size` pieces (a power of two of at least 1 KiB, as manifests use).
    pub fn new(chunk_size: u32) -> StreamHasher {
        StreamHasher {
            chunk_size,
            pending: Vec::with_capacity(chunk_size as usize),
            chunks: Vec::new(),
            size: 0,
        }
    }

    /// Takes the next bytes of the content.
    pub fn update(&mut self, mut data: &[u8]) {
        self.size += data.len() as u64;
        let chunk = self.chunk_size as usize;
        while !data.is_empty() {
            let take = (chunk - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            // A full chunk is hashed only once more bytes follow: the last chunk of a file of
            // exactly one chunk is hashed differently (see `finish`).
            if self.pending.len() == chunk && !data.is_empty() {
                self.hash_pending();
            }
        }
    }

    /// Bytes taken so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn hash_pending(&mut self) {
        let index = self.chunks.len() as u64;
        self.chunks.push(chunk_hash(index, self.chunk_size, &self.pending));
        self.pending.clear();
    }

    /// The hashes of everything taken.
    pub fn finish(mut self) -> FileHashes {
        if self.chunks.is_empty() && !self.pending.is_empty() {
            let global = blake3::hash(&self.pending).into();
            return FileHashes {
                size: self.size,
                chunks: vec![chunk_hash(0, self.chunk_size, &self.pending)],
                global,
            };
        }
        if !self.pending.is_empty() {
            self.hash_pending();
        }
        let global = global_from_chunks(self.size, self.chunk_size, &self.chunks).expect("none or two or more chunks");
        FileHashes {
            size: self.size,
            chunks: self.chunks,
            global,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn chunk_hashes(data: &[u8], chunk_size: u32) -> Vec<Digest> {
        data.chunks(chunk_size as usize)
            .enumerate()
            .map(|(i, c)| chunk_hash(i as u64, chunk_size, c))
            .collect()
    }

    #[test]
    fn empty_file_hash() {
        assert_eq!(global_from_chunks(0, 65536, &[]), Some(blake3::hash(b"").into()));
    }

    #[test]
    fn merged_chunks_match_blake3_at_awkward_sizes() {
        let chunk_size = 1024u32;
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for len in [1025, 2048, 2049, 3072, 4097, 7 * 1024 + 3, 16 * 1024, 39_999] {
            let data = &data[..len];
            let got = global_from_chunks(len as u64, chunk_size, &chunk_hashes(data, chunk_size));
            assert_eq!(got, Some(blake3::hash(data).into()), "len {len}");
        }
    }

    #[test]
    fn hash_file_matches_blake3() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i ^ (i >> 9)) as u8).collect();
        file.write_all(&data).unwrap();
        for chunk_size in [65536u32, 1 << 20] {
            let hashes = hash_file(file.path(), chunk_size).unwrap();
            assert_eq!(hashes.global, blake3::hash(&data).into());
            assert_eq!(hashes.size, data.len() as u64);
            assert_eq!(hashes.chunks, chunk_hashes(&data, chunk_size));
        }
    }

    proptest! {
        #[test]
        fn hashing_as_it_streams_in_equals_hashing_the_file(
            len in 0usize..40_000,
            shift in 10u32..13,
            cuts in proptest::collection::vec(0usize..40_000, 0..8),
        ) {
            let chunk_size = 1u32 << shift;
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut file = tempfile::NamedTempFile::new().unwrap();
            file.write_all(&data).unwrap();
            let whole = hash_file(file.path(), chunk_size).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(len)).collect();
            cuts.sort();
            let mut streamed = StreamHasher::new(chunk_size);
            let mut from = 0;
            for cut in cuts.into_iter().chain([len]) {
                streamed.update(&data[from..cut]);
                from = cut;
            }
            prop_assert_eq!(streamed.finish(), whole);
        }

        #[test]
        fn tree_merge_equals_blake3(len in 0usize..70_000, shift in 10u32..14) {
            let chunk_size = 1u32 << shift;
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let chunks = chunk_hashes(&data, chunk_size);
            match global_from_chunks(len as u64, chunk_size, &chunks) {
                Some(global) => prop_assert_eq!(global, blake3::hash(&data).into()),
                None => prop_assert_eq!(chunks.len(), 1),
            }
        }
    }
}
