//! Collections: a folder as one content-addressed value. A collection lists, for every file of
//! a folder, its path inside the folder, its file id, size, permission bits and modification
//! time.
//!
//! A collection travels as an ordinary file whose content is its canonical encoding and whose
//! name ends in [`SUFFIX`]; the collection's id is that file's id. So the usual chain of trust
//! holds without anything new on the tracker or the wire: the id checks the manifest, the
//! manifest checks the encoding, the encoding names every file id, and each file id checks its
//! file. The encoding is written by hand, like a manifest's, so no serializer release can change
//! an id, and [`Collection::decode`] refuses anything that is not exactly canonical: sorted
//! unique paths, each a safe name ([`crate::name`]), no path that is also another's folder.

use std::collections::BTreeSet;

use crate::ids::FileId;
use crate::manifest::put_varint;
use crate::name::{validate_name, NameError};

/// What a collection's file name ends with.
pub const SUFFIX: &str = ".swarm-collection";
/// What every encoded collection starts with; the last byte is the format's version.
const MAGIC: &[u8] = b"swarm-collection\x01";
/// Most files one collection lists.
pub const MAX_ENTRIES: usize = 1 << 20;

/// A folder's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    /// The folder's own name: one path component.
    pub name: String,
    /// The files, sorted by path.
    pub entries: Vec<Entry>,
}

/// One file of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `/`-separated path inside the folder.
    pub path: String,
    /// The file's id (its manifest's hash).
    pub file: FileId,
    /// Size in bytes.
    pub size: u64,
    /// Unix permission bits (`0o777` at most).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch (0 if unknown).
    pub modified_ns: u64,
}

/// Why bytes or a folder are not a valid collection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectionError {
    /// The bytes do not start like a collection (or are of a later format).
    #[error("not a swarm collection (or one made by a newer swarm)")]
    NotACollection,
    /// The bytes end early or go on after the end.
    #[error("the collection is damaged: {0}")]
    Damaged(&'static str),
    /// The folder name or a path is unsafe.
    #[error("bad name `{name}` in the collection: {source}")]
    Name {
        /// The name, escaped for printing.
        name: String,
        /// What is wrong with it.
        source: NameError,
    },
    /// The folder's name has a `/`.
    #[error("the collection's folder name `{0}` is more than one path component")]
    FolderName(String),
    /// The paths are not sorted and unique.
    #[error("the collection's paths are not sorted and unique (at `{0}`)")]
    Unsorted(String),
    /// A path is both a file and the folder of another.
    #[error("`{0}` is listed as a file and as a folder")]
    FileAndFolder(String),
    /// More than [`MAX_ENTRIES`] files.
    #[error("{0} files is more than the limit of {MAX_ENTRIES} for one collection")]
    TooMany(u64),
}

impl Collection {
    /// Sorts `entries` by path and checks the result (see the module doc).
    pub fn new(name: String, mut entries: Vec<Entry>) -> Result<Collection, CollectionError> {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let collection = Collection { name, entries };
        collection.check()?;
        Ok(collection)
    }

    /// The name of the file that carries this collection.
    pub fn file_name(&self) -> String {
        format!("{}{SUFFIX}", self.name)
    }

    /// Is `name` the name of a file that carries a collection?
    pub fn is_collection_name(name: &str) -> bool {
        name.len() > SUFFIX.len() && name.ends_with(SUFFIX) && !name.contains('/')
    }

    /// Total bytes of all files.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The canonical encoding: `MAGIC`, then the name, the entry count, and per entry the
    /// path, the 32 id bytes, size, mode and modification time; integers and lengths as varints.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 16 + self.entries.len() * 64);
        out.extend_from_slice(MAGIC);
        put_str(&mut out, &self.name);
        put_varint(&mut out, self.entries.len() as u64);
        for entry in &self.entries {
            put_str(&mut out, &entry.path);
            out.extend_from_slice(&entry.file.0);
            put_varint(&mut out, entry.size);
            put_varint(&mut out, u64::from(entry.mode));
            put_varint(&mut out, entry.modified_ns);
        }
        out
    }

    /// Decodes and checks a collection. Never panics and never allocates more than the input
    /// can justify, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Collection, CollectionError> {
        let mut reader = Reader(bytes.strip_prefix(MAGIC).ok_or(CollectionError::NotACollection)?);
        let name = reader.string()?;
        let count = reader.varint()?;
        if count > MAX_ENTRIES as u64 {
            return Err(CollectionError::TooMany(count));
        }
        // Each entry takes at least 37 bytes, so a count the input cannot hold is refused early.
        if count > (reader.0.len() / 37) as u64 {
            return Err(CollectionError::Damaged("it lists more files than it holds"));
        }
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let path = reader.string()?;
            let file = FileId(reader.bytes(32)?.try_into().expect("32 bytes"));
            let size = reader.varint()?;
            let mode = u32::try_from(reader.varint()?)
                .ok()
                .filter(|m| m & !0o777 == 0)
                .ok_or(CollectionError::Damaged("a file's mode is not permission bits"))?;
            let modified_ns = reader.varint()?;
            entries.push(Entry {
                path,
                file,
                size,
                mode,
                modified_ns,
            });
        }
        if !reader.0.is_empty() {
            return Err(CollectionError::Damaged("bytes after the end"));
        }
        let collection = Collection { name, entries };
        collection.check()?;
        Ok(collection)
    }

    fn check(&self) -> Result<(), CollectionError> {
        let bad = |name: &str, source| CollectionError::Name {
            name: crate::name::printable(name).into_owned(),
            source,
        };
        validate_name(&self.name).map_err(|e| bad(&self.name, e))?;
        if self.name.contains('/') {
            return Err(CollectionError::FolderName(
                crate::name::printable(&self.name).into_owned(),
            ));
        }
        if self.entries.len() > MAX_ENTRIES {
            return Err(CollectionError::TooMany(self.entries.len() as u64));
        }
        // Found by fuzzing: sizes that add up past u64 made `size` overflow (and wrap in a
        // release build, so a folder could claim to be small).
        if self
            .entries
            .iter()
            .try_fold(0u64, |sum, e| sum.checked_add(e.size))
            .is_none()
        {
            return Err(CollectionError::Damaged("its files' sizes add up past 2^64 bytes"));
        }
        let mut folders = BTreeSet::new();
        for pair in self.entries.windows(2) {
            if pair[0].path >= pair[1].path {
                return Err(CollectionError::Unsorted(
                    crate::name::printable(&pair[1].path).into_owned(),
                ));
            }
        }
        for entry in &self.entries {
            validate_name(&entry.path).map_err(|e| bad(&entry.path, e))?;
            if entry.mode & !0o777 != 0 {
                return Err(CollectionError::Damaged("a file's mode is not permission bits"));
            }
            let mut end = 0;
            while let Some(slash) = entry.path[end..].find('/') {
                end += slash;
                folders.insert(&entry.path[..end]);
                end += 1;
            }
        }
        if let Some(both) = self.entries.iter().find(|e| folders.contains(e.path.as_str())) {
            return Err(CollectionError::FileAndFolder(
                crate::name::printable(&both.path).into_owned(),
            ));
        }
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// Reads the canonical encoding front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], CollectionError> {
        if self.0.len() < n {
            return Err(CollectionError::Damaged("it ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The inverse of `put_varint`; a value written longer than needed is refused, so that
    /// one collection has one encoding.
    fn varint(&mut self) -> Result<u64, CollectionError> {
        let first = self.bytes(1)?[0];
        let (width, min) = match first {
            0..=250 => return Ok(u64::from(first)),
            251 => (2, 251),
            252 => (4, 0x1_0000),
            253 => (8, 0x1_0000_0000),
            _ => return Err(CollectionError::Damaged("a number is badly encoded")),
        };
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(self.bytes(width)?);
        let value = u64::from_le_bytes(le);
        if value < min {
            return Err(CollectionError::Damaged("a number is not in its shortest form"));
        }
        Ok(value)
    }

    fn string(&mut self) -> Result<String, CollectionError> {
        let len = self.varint()?;
        if len > crate::name::MAX_NAME_LEN as u64 {
            return Err(CollectionError::Damaged("a name is too long"));
        }
        let bytes = self.bytes(len as usize)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CollectionError::Damaged("a name is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(path: &str, n: u8) -> Entry {
        Entry {
            path: path.into(),
            file: FileId([n; 32]),
            size: u64::from(n) * 1000,
            mode: 0o644,
            modified_ns: 1_700_000_000_000_000_000 + u64::from(n),
        }
    }

    #[test]
    fn round_trips_sorted() {
        let c = Collection::new(
            "photos".into(),
            vec![entry("b/c.jpg", 2), entry("a.jpg", 1), entry("b/d", 3)],
        )
        .unwrap();
        assert_eq!(c.entries[0].path, "a.jpg");
        assert_eq!(Collection::decode(&c.encode()).unwrap(), c);
        assert_eq!(c.file_name(), "photos.swarm-collection");
        assert!(Collection::is_collection_name(&c.file_name()));
        assert!(!Collection::is_collection_name(SUFFIX));
        assert!(!Collection::is_collection_name("a/b.swarm-collection"));
    }

    #[test]
    fn refuses_hostile_collections() {
        let bad_name = |path: &str| Collection::new("x".into(), vec![entry(path, 1)]);
        for path in ["../etc/passwd", "/abs", "a//b", "a/./b", "a\\b", "", "a/"] {
            assert!(matches!(bad_name(path), Err(CollectionError::Name { .. })), "{path}");
        }
        assert!(Collection::new("a/b".into(), vec![]).is_err());
        assert!(Collection::new("..".into(), vec![]).is_err());
        assert_eq!(
            Collection::new("x".into(), vec![entry("a", 1), entry("a/b", 2)]),
            Err(CollectionError::FileAndFolder("a".into()))
        );
        assert!(matches!(
            Collection::new("x".into(), vec![entry("a", 1), entry("a", 2)]),
            Err(CollectionError::Unsorted(_))
        ));
        let mut setuid = entry("a", 1);
        setuid.mode = 0o4755;
        assert!(Collection::new("x".into(), vec![setuid]).is_err());
        // Found by the collection fuzz target: sizes whose sum overflows.
        let (mut huge, mut more) = (entry("a", 1), entry("b", 2));
        (huge.size, more.size) = (u64::MAX - 10, 11);
        assert_eq!(
            Collection::new("x".into(), vec![huge, more]),
            Err(CollectionError::Damaged("its files' sizes add up past 2^64 bytes"))
        );
    }

    #[test]
    fn refuses_non_canonical_bytes() {
        let c = Collection::new("x".into(), vec![entry("a", 1), entry("b", 2)]).unwrap();
        let bytes = c.encode();
        assert_eq!(Collection::decode(b"hello"), Err(CollectionError::NotACollection));
        assert!(Collection::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Collection::decode(&longer).is_err());
        // Entries swapped by hand: the same files, not the canonical order.
        let swapped = Collection {
            name: "x".into(),
            entries: vec![entry("b", 2), entry("a", 1)],
        };
        assert!(matches!(
            Collection::decode(&swapped.encode()),
            Err(CollectionError::Unsorted(_))
        ));
        // A count far beyond the bytes present is refused before anything is allocated.
        let mut huge = MAGIC.to_vec();
        put_str(&mut huge, "x");
        put_varint(&mut huge, MAX_ENTRIES as u64);
        assert!(Collection::decode(&huge).is_err());
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut input = MAGIC.to_vec();
            input.extend_from_slice(&bytes);
            let _ = Collection::decode(&input);
            let _ = Collection::decode(&bytes);
        }

        #[test]
        fn valid_collections_round_trip(
            paths in proptest::collection::btree_set("[a-z]{1,6}(/[a-z]{1,6}){0,2}", 0..20),
            seed in any::<u8>(),
        ) {
            let entries: Vec<Entry> = paths.iter().enumerate().map(|(i, p)| entry(p, seed.wrapping_add(i as u8))).collect();
            if let Ok(c) = Collection::new("folder".into(), entries) {
                prop_assert_eq!(Collection::decode(&c.encode()).unwrap(), c);
            }
        }
    }
}
