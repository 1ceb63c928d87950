//! Chunk buffers and the disk side of a download.
//!
//! A download writes each verified chunk with direct I/O (`O_DIRECT`) and reads it straight
//! back from the device, comparing it with what was verified, so the whole file is confirmed
//! from disk while it arrives instead of in one pass at the end (a comparison also costs far
//! less CPU than hashing again). Direct I/O skips the page cache: moving many
//! gigabytes through it costs a copy into freshly allocated cache pages (47% of a fetcher's
//! CPU on the 2-core VMs we measure on) and evicts whatever else the machine had cached. File
//! systems that refuse direct I/O (tmpfs before Linux 6.6, some FUSE), and a last chunk whose
//! length is not a multiple of [`ALIGN`], use ordinary writes and reads instead.
//!
//! Buffers come from a [`BufferPool`] and go back to it when dropped, so chunks in flight
//! reuse the same memory instead of faulting in and zeroing a fresh megabyte each time.

use std::fs::File;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Writes are read back in pieces of at most this size (a default chunk: smaller pieces cost
/// more in system calls than they save in memory).
const READ_BACK_PIECE: usize = 1024 * 1024;

/// Alignment of buffers, offsets and lengths for direct I/O: the largest logical block size
/// in common use.
pub const ALIGN: usize = 4096;

/// Reusable chunk buffers; keeps at most a set number of spare ones.
#[derive(Debug)]
pub struct BufferPool {
    spare: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl BufferPool {
    /// A pool that keeps up to `keep` spare buffers.
    pub fn new(keep: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            spare: Mutex::new(Vec::new()),
            keep,
        })
    }

    /// A buffer of `len` bytes, aligned to [`ALIGN`]. Its content is unspecified (zeros or an
    /// earlier chunk): callers fill it before reading it.
    pub fn take(self: &Arc<Self>, len: usize) -> ChunkBuf {
        let needed = len + ALIGN;
        let reused = {
            let mut spare = self.spare.lock().expect("buffer pool lock poisoned");
            spare
                .iter()
                .position(|s| s.len() >= needed)
                .map(|i| spare.swap_remove(i))
        };
        let space = reused.unwrap_or_else(|| vec![0u8; needed]);
        let start = space.as_ptr().align_offset(ALIGN);
        ChunkBuf {
            space,
            start,
            len,
            pool: Arc::clone(self),
        }
    }

    fn give_back(&self, space: Vec<u8>) {
        let mut spare = self.spare.lock().expect("buffer pool lock poisoned");
        if spare.len() < self.keep {
            spare.push(space);
        }
    }
}

/// A chunk-sized, [`ALIGN`]-aligned buffer that returns to its pool when dropped.
pub struct ChunkBuf {
    space: Vec<u8>,
    start: usize,
    len: usize,
    pool: Arc<BufferPool>,
}

impl Deref for ChunkBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.space[self.start..self.start + self.len]
    }
}

impl DerefMut for ChunkBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.space[self.start..self.start + self.len]
    }
}

impl AsRef<[u8]> for ChunkBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.space));
    }
}

/// A download's partial file: written and read back with direct I/O where the file system
/// allows it, with ordinary I/O otherwise.
#[derive(Debug)]
pub struct ChunkFile {
    /// Ordinary handle: metadata, sync, and the I/O direct I/O cannot do.
    file: Arc<File>,
    /// The same file opened with `O_DIRECT`, if the file system accepted it.
    direct: Option<File>,
    /// Cleared if the file system refuses a direct write after all.
    direct_works: AtomicBool,
    /// Buffers for reading writes back.
    read_back: Arc<BufferPool>,
    /// Ordinary writes take turns: the file system locks the inode for each anyway, and
    /// writers queued here sleep instead of spinning on that lock in the kernel.
    buffered_turn: Mutex<()>,
}

impl ChunkFile {
    /// Wraps `file` (opened read-write) and `direct`, the same file opened with `O_DIRECT`
    /// where the file system takes it. Up to `writers` chunks are expected to be written at
    /// once: as many read-back buffers are kept.
    pub fn new(direct: Option<File>, file: File, writers: usize) -> ChunkFile {
        ChunkFile {
            file: Arc::new(file),
            direct_works: AtomicBool::new(direct.is_some()),
            direct,
            read_back: BufferPool::new(writers),
            buffered_turn: Mutex::new(()),
        }
    }

    /// The ordinary handle.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Does this file take direct I/O?
    fn is_direct(&self) -> bool {
        self.direct_works.load(Ordering::Relaxed)
    }

    /// Writes `data` at `offset`.
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        if let Some(direct) = self.direct_for(data, offset) {
            match direct.write_all_at(data, offset) {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    self.direct_works.store(false, Ordering::Relaxed);
                }
                done => return done,
            }
        }
        let _turn = self.buffered_turn.lock().expect("write lock poisoned");
        self.file.write_all_at(data, offset)
    }

    /// Writes `data` at `offset`, then reads it back (from the device itself when the write was
    /// direct) and says whether the disk gave back the same bytes.
    pub fn write_confirmed(&self, data: &[u8], offset: u64) -> io::Result<bool> {
        self.write_at(data, offset)?;
        let mut piece = self.read_back.take(READ_BACK_PIECE.min(data.len()));
        for (i, expected) in data.chunks(READ_BACK_PIECE).enumerate() {
            let back = &mut piece[..expected.len()];
            self.read_at(back, offset + (i * READ_BACK_PIECE) as u64)?;
            if back != expected {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads `buf.len()` bytes at `offset`: from the device itself after a direct write.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if let Some(direct) = self.direct_for(buf, offset) {
            match direct.read_exact_at(buf, offset) {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    self.direct_works.store(false, Ordering::Relaxed);
                }
                done => return done,
            }
        }
        self.file.read_exact_at(buf, offset)
    }

    /// The direct handle, if it works and `buf` and `offset` are aligned for it.
    fn direct_for(&self, buf: &[u8], offset: u64) -> Option<&File> {
        let aligned = buf.as_ptr().align_offset(ALIGN) == 0
            && buf.len().is_multiple_of(ALIGN)
            && offset.is_multiple_of(ALIGN as u64);
        self.direct.as_ref().filter(|_| aligned && self.is_direct())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    #[test]
    fn buffers_are_aligned_and_reused() {
        let pool = BufferPool::new(2);
        let first = pool.take(100_000);
        assert_eq!(first.as_ptr().align_offset(ALIGN), 0);
        assert_eq!(first.len(), 100_000);
        let address = first.as_ptr() as usize - first.start;
        drop(first);
        let second = pool.take(65_536);
        assert_eq!(
            second.as_ptr() as usize - second.start,
            address,
            "the spare buffer is reused"
        );
        assert_eq!(second.as_ptr().align_offset(ALIGN), 0);
    }

    #[test]
    fn the_pool_keeps_only_so_many_spares() {
        let pool = BufferPool::new(1);
        let (a, b) = (pool.take(10), pool.take(10));
        drop(a);
        drop(b);
        assert_eq!(pool.spare.lock().unwrap().len(), 1);
    }

    #[test]
    fn aligned_and_unaligned_chunks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        round_trip(&dir.path().join("direct"), true);
        round_trip(&dir.path().join("buffered"), false);
    }

    fn round_trip(path: &Path, direct: bool) {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        file.set_len(3 * 65_536).unwrap();
        let reopened = direct
            .then(|| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
                    .open(path)
                    .ok()
            })
            .flatten();
        let chunks = ChunkFile::new(reopened, file, 1);
        let pool = BufferPool::new(4);
        // A whole aligned chunk (direct where the file system allows) and a short last one.
        for (offset, len, byte) in [(65_536u64, 65_536usize, 7u8), (131_072, 1_000, 9)] {
            let mut data = pool.take(len);
            data.fill(byte);
            assert!(chunks.write_confirmed(&data, offset).unwrap());
            let mut back = pool.take(len);
            back.fill(0);
            chunks.read_at(&mut back, offset).unwrap();
            assert!(back.iter().all(|&b| b == byte));
        }
        // Asked for buffered I/O, it never goes direct; asked for direct I/O where the file
        // system takes it at all, the aligned chunk went that way and did not make it fall back.
        if !direct {
            assert!(chunks.direct.is_none());
        }
        assert_eq!(chunks.is_direct(), chunks.direct.is_some());
        let on_disk = std::fs::read(path).unwrap();
        assert!(on_disk[..65_536].iter().all(|&b| b == 0));
        assert!(on_disk[65_536..131_072].iter().all(|&b| b == 7));
        assert!(on_disk[131_072..132_072].iter().all(|&b| b == 9));
    }
}
